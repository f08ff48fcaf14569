"""Issue 27 item 6: `llmprep start` points at the exercises notebook and names the chapter; a folder outside
the course root opens in `llmprep lab`; LLMPREP_WORKSPACE moves `start` and `lab` (as it moves nbgrader's fetch)."""
import json
import socket
import subprocess
import time
import urllib.request

import pytest

from llmprep import cli, course

pytestmark = pytest.mark.slow


def test_start_names_the_chapter_and_points_check_at_the_exercises(tmp_path, capsys):
    dest = tmp_path / "my-practice" / "two"  # outside the course root, named unlike the chapter
    assert cli.main(["start", "ch02", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "copied ch02_imbalance (course/ch02_imbalance/)" in out, out
    assert f"llmprep check {dest / 'ch02_exercises.ipynb'}" in out, out
    assert "reference" not in out.split("llmprep check", 1)[1], out  # never the ungraded reference notebook
    assert f"`llmprep lab {dest}`" in out, out  # plain `llmprep lab` would not show this folder


def test_workspace_variable_moves_start_and_lab(tmp_path, monkeypatch, capsys):
    ws = tmp_path / "elsewhere" / "ws"
    monkeypatch.setenv("LLMPREP_WORKSPACE", str(ws))
    assert course.workspace() == ws.resolve()
    assert cli.main(["start", "ch01"]) == 0
    assert (ws / "ch01_training" / "ch01_exercises.ipynb").is_file()
    out = capsys.readouterr().out
    assert "`llmprep lab` (or `make lab`)" in out and f"llmprep check {ws / 'ch01_training' / 'ch01_exercises.ipynb'}" in out
    root = tmp_path / "root"
    (root / "course").mkdir(parents=True)
    cmd, _ = cli.lab_command([], root, uid=1000)
    assert f"--ServerApp.root_dir={ws.resolve()}" in cmd and "--LabApp.default_url=/lab" in cmd
    monkeypatch.setenv("LLMPREP_WORKSPACE", str(root / "inside"))  # inside the course root: root stays
    (root / "inside" / "ch01_training").mkdir(parents=True)
    cmd, _ = cli.lab_command([], root, uid=1000)
    assert f"--ServerApp.root_dir={root.resolve()}" in cmd and "--LabApp.default_url=/lab/tree/inside" in cmd


def test_lab_takes_a_folder_or_notebook_inside_or_outside_the_course_root(tmp_path, monkeypatch):
    root, mine = tmp_path / "root", tmp_path / "mine"
    (root / "work" / "ch03_finetuning").mkdir(parents=True)
    mine.mkdir()
    (mine / "a.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)
    cmd, _ = cli.lab_command(["mine", "--no-browser"], root, uid=1000)
    assert f"--ServerApp.root_dir={mine.resolve()}" in cmd and "--LabApp.default_url=/lab" in cmd
    assert "mine" not in cmd and cmd[-1] == "--no-browser"  # the folder is not handed to jupyter as an option
    cmd, _ = cli.lab_command(["mine/a.ipynb"], root, uid=1000)
    assert f"--ServerApp.root_dir={mine.resolve()}" in cmd and "--LabApp.default_url=/lab/tree/a.ipynb" in cmd
    cmd, _ = cli.lab_command([str(root / "work" / "ch03_finetuning")], root, uid=1000)
    assert f"--ServerApp.root_dir={root.resolve()}" in cmd and "--LabApp.default_url=/lab/tree/work/ch03_finetuning" in cmd
    with pytest.raises(cli.UsageFailure, match="nope does not exist"):
        cli.lab_command(["nope"], root, uid=1000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, token: str, path: str):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def when_up(server, call, tries: int = 240):
    """``call()``'s answer once the Jupyter server started as ``server`` answers it (it fails if the server exits)."""
    for _ in range(tries):
        try:
            return call()
        except OSError:
            assert server.poll() is None, server.stderr.read()[-3000:]
            time.sleep(0.5)
    raise AssertionError("the Jupyter server did not start")


def test_a_started_folder_outside_the_course_root_opens_in_the_lab_server(root, tmp_path, capsys):
    """The real `jupyter lab` command `llmprep lab DIR` runs serves the exercises `llmprep start` copied there."""
    dest = tmp_path / "practice" / "ch01"
    assert cli.main(["start", "ch01", str(dest)]) == 0
    capsys.readouterr()
    cmd, env = cli.lab_command([str(dest)], root)
    port, token = _free_port(), "llmprep-test"
    server = subprocess.Popen(cmd + [f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--no-browser",
                                     f"--IdentityProvider.token={token}"],
                              cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        model = when_up(server, lambda: _get(port, token, "/api/contents/ch01_exercises.ipynb?content=1"))
        assert model["type"] == "notebook" and model["content"]["cells"]
    finally:
        server.terminate()
        server.wait(timeout=30)
