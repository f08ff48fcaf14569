"""How the course talks to nbgrader and Jupyter (ground floor): the environment that points nbgrader at
the course's configuration (``autograder/nbgrader_config.py``), one nbgrader command, and the kernel
metadata every released notebook stores.

Used by the course wing (release, lab) and by the grading engine (gradebook, feedback); imports only
:mod:`llmprep.paths`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llmprep.paths import ROOT_ENV, format_path, repo_root


def nbgrader_env(root: Path | None = None) -> dict:
    """Environment for nbgrader commands: the course's config (autograder/) and this venv's tools."""
    root = root or repo_root()
    env = dict(os.environ)
    env["JUPYTER_CONFIG_PATH"] = str(format_path("autograder"))
    env[ROOT_ENV] = str(root)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def nbgrader(args: list[str], root: Path | None = None, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in the course root with the course's configuration; RuntimeError (with the
    tail of its output) when it fails."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root or repo_root(),
                          env=nbgrader_env(root), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{tail}")
    if not quiet:
        print(proc.stdout + proc.stderr)
    return proc


# What the course's kernel (ipykernel's ``python3``) reports, stored in every released notebook so that
# opening one in JupyterLab changes nothing: JupyterLab rewrites ``kernelspec`` with the kernel's spec and
# ``language_info`` with its kernel_info reply, and marks the notebook modified when either differs. The
# Python version is left out (it depends on the machine); autograder/jupyter_server_config.py drops it
# again on save, so a saved notebook stays byte-identical.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3"}
