"""First process inside the grading namespaces: hide the course's private files, then become the sandbox.

The engine starts ``unshare --mount --net --pid --fork --mount-proc --kill-child python -I -m
llmprep.grading.jail CONFIG`` where the OS allows it. Inside the new mount namespace (private, so
nothing leaks out) this module

1. bind-mounts the folders the sandbox needs (the ``llmprep`` package, the virtual environment)
   to a staging place in the sandbox's working folder,
2. mounts an empty tmpfs over every hidden folder (the course repository with ``solutions/``,
   ``autograder/``, ``submitted/``, the gradebook and ``.git``; the instructor's course root),
3. binds the kept folders back in their old places, read-only,

and then ``exec``s :mod:`llmprep.grading.sandbox`, which reads the job from standard input. Being
pid 1 of a fresh pid namespace, its exit takes every process the submission spawned with it,
double-forked daemons included.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def hide(hidden: list[str], keep: list[str], staging: str) -> None:
    _mount("--make-rprivate", "/")
    keep = [os.path.realpath(k) for k in keep if os.path.isdir(k)]
    staged = []
    for i, path in enumerate(keep):
        target = os.path.join(staging, f"keep{i}")
        os.makedirs(target, exist_ok=True)
        _mount("--bind", path, target)
        staged.append((path, target))
    for folder in sorted({os.path.realpath(h) for h in hidden if os.path.isdir(h)}, key=len):
        _mount("-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", folder)
    for path, target in staged:
        os.makedirs(path, exist_ok=True)
        _mount("--bind", target, path)
        _mount("-o", "remount,bind,ro", path)
        subprocess.run(["umount", "-l", target], capture_output=True)


def main() -> None:
    config = json.loads(sys.argv[1])
    try:
        hide(config["hide"], config["keep"], config["staging"])
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        sys.stderr.write(f"llmprep jail: could not hide private files: {exc} {detail.decode(errors='replace')}\n")
        os._exit(70)
    os.execv(sys.executable, [sys.executable, "-I", "-m", "llmprep.grading.sandbox"])


if __name__ == "__main__":
    main()
