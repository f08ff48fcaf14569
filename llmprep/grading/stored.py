"""Each submission's validated run results, kept on the trusted side for regrades without re-running.

After stages 3 and 4, the batch keeps what a submission's sandbox run produced, *after* validation
(``sub.run``, the exercises lost to a crash, the notes the run added), under
``build/grading-results/<assignment>/<student>/`` with the hash of the job that produced it. Nothing in the
sandbox or on a worker can reach that folder. ``llmprep grade CHAPTER --regrade`` then judges a submission
from its stored results when its job hash is unchanged (only the judge changed: tolerances, messages,
points), and runs it again when the hash differs (the notebook, the probes or cases, the sandbox code,
the limits or the files handed in changed).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from llmprep.grading.collect import SandboxRun
from llmprep.grading.run import stage_folder

FORMAT = 1


def job_hash(sub) -> str:
    """What decides a submission's run: the job (cells, probes, cases, limits written into it), the code that
    runs inside the sandbox, the limits, and the files of the submission folder the sandbox is given."""
    h = hashlib.sha256()
    h.update(json.dumps(sub.job, sort_keys=True, default=str).encode())
    here = Path(__file__).parent
    for name in ("sandbox.py", "protocol.py"):
        h.update((here / name).read_bytes())
    h.update(json.dumps(dataclasses.asdict(sub.limits), sort_keys=True).encode())
    # the folder exactly as the sandbox is given it: staged with the same rules and caps (no symlinks, FIFOs
    # or devices followed: the folder is the student's)
    with tempfile.TemporaryDirectory(prefix="llmprep-hash-") as tmp:
        staged = Path(tmp) / "s"
        stage_folder(sub.folder, staged)
        for path in sorted(staged.rglob("*")):
            if path.is_file():
                h.update(path.relative_to(staged).as_posix().encode() + b"\0")
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _paths(place: Path) -> tuple[Path, Path]:
    return place / "run.json", place / "run.npz"


def keep_results(sub, notes_before: int) -> None:
    """Store ``sub.run`` (validated), ``sub.lost`` and the notes the run added, with the job hash."""
    place = sub.results_dir
    if place is None:
        return
    place.mkdir(parents=True, exist_ok=True)
    meta_path, npz_path = _paths(place)
    run = sub.run
    meta = {"format": FORMAT, "job_hash": sub.job_hash, "ok": run.ok, "reason": run.reason, "cells": run.cells,
            "probes": run.probes, "seconds": run.seconds, "progress": run.progress, "log_tail": run.log_tail,
            "lost": sub.lost, "notes": sub.notes[notes_before:]}
    tmp = npz_path.with_name(f"run.{os.getpid()}.tmp.npz")
    np.savez(tmp, **run.arrays)
    os.replace(tmp, npz_path)
    tmp = meta_path.with_name(f"run.{os.getpid()}.tmp.json")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)


def reuse_results(sub) -> bool:
    """Stages 3 and 4 from the store: True (``sub.run``, ``sub.lost``, notes filled) when this submission's
    results are stored under the same job hash; False when it must be run."""
    if sub.results_dir is None:
        return False
    sub.job_hash = job_hash(sub)
    if not sub.regrade:
        return False
    meta_path, npz_path = _paths(sub.results_dir)
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT or meta.get("job_hash") != sub.job_hash:
            return False
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: np.array(data[k]) for k in data.files}
    except (OSError, ValueError, KeyError):
        return False  # nothing stored, or unreadable: run it
    sub.run = SandboxRun(meta["ok"], meta["reason"], meta["cells"], meta["probes"], arrays, meta["log_tail"],
                         meta["seconds"], meta["progress"])
    sub.lost = dict(meta["lost"])
    sub.notes += list(meta["notes"])
    sub.reused = True
    return True
