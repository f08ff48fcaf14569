"""Opening and saving a committed notebook through the Jupyter server `llmprep lab` starts changes nothing.

The server is the real one, with the configuration and kernel spec `llmprep lab` gives it; the browser's
part is played as JupyterLab 4 plays it: on opening, it writes the kernel's spec (name, display name,
language) and the kernel_info reply's ``language_info`` into the notebook's metadata (marking it
modified if either differs from what is stored), then saves the whole model back."""
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from llmprep import cli

NOTEBOOKS = ["course/ch01_training/ch01_exercises.ipynb", "course/ch09_transformer/ch09_reference.ipynb"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_open_and_save_through_the_server_changes_nothing(root, tmp_path):
    for rel in NOTEBOOKS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, tmp_path / rel)
    cmd, env = cli.lab_command([], tmp_path)
    env["JUPYTER_CONFIG_PATH"] = str(root / "autograder")
    port, token = _free_port(), "llmprep-test"
    server = subprocess.Popen([sys.executable, "-m", "jupyter_server", f"--ServerApp.root_dir={tmp_path}",
                               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--no-browser",
                               f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
                               *(["--allow-root"] if "--allow-root" in cmd else [])],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def api(path, method="GET", body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    try:
        for _ in range(240):
            try:
                specs = api("kernelspecs")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.5)
        else:
            raise AssertionError("the Jupyter server did not start")
        spec = specs["kernelspecs"][specs["default"]]
        assert "--InteractiveShellApp.extensions=llmprep.jupyter" in spec["spec"]["argv"]  # %llmprep_check
        from ipykernel.ipkernel import IPythonKernel

        language_info = dict(IPythonKernel.language_info)  # what the kernel's kernel_info reply carries
        for rel in NOTEBOOKS:
            before = (tmp_path / rel).read_bytes()
            model = api(f"contents/{rel}?content=1")
            meta = model["content"]["metadata"]
            kernelspec = {"name": spec["name"], "display_name": spec["spec"]["display_name"],
                          "language": spec["spec"]["language"]}
            assert meta["kernelspec"] == kernelspec, "JupyterLab would mark the notebook modified"
            meta["kernelspec"] = kernelspec
            meta["language_info"] = language_info
            api(f"contents/{rel}", "PUT", {"type": "notebook", "format": "json", "content": model["content"]})
            assert (tmp_path / rel).read_bytes() == before, rel
    finally:
        server.terminate()
        server.wait(timeout=30)
