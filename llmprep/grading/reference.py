"""The reference outputs: the solution notebook run through the same sandbox, once per change of
notebook, spec or sandbox code (``sandbox.py`` and the ``protocol.py`` it speaks), cached where no
sandbox can reach (``build/grading-cache``)."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from llmprep.grading.collect import SandboxRun
from llmprep.grading.isolate import Limits
from llmprep.grading.notebook import build_job, read_notebook
from llmprep.grading.run import run_sandbox
from llmprep.grading.trusted import GradingError, cache_dir, load_spec, solutions_dir, spec_source_hash


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def reference_run(chapter: str, limits: Limits | None = None) -> SandboxRun:
    """The solution notebook's outputs on every case, computed once and cached on disk
    (once per process at a time: batch grading asks from several threads)."""
    with _locks_guard:
        lock = _locks.setdefault(chapter, threading.Lock())
    with lock:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        # and once across processes (two graders, two test workers): the second waits, then reads the cache
        try:
            import fcntl
        except ImportError:  # (Windows: no sandbox, one process)
            return _reference_run(chapter, limits)
        with open(folder / f".{chapter}.reference.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                return _reference_run(chapter, limits)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _reference_run(chapter: str, limits: Limits | None) -> SandboxRun:
    spec = load_spec(chapter)
    nb_path = solutions_dir() / chapter / spec.notebook
    nb = read_notebook(nb_path)
    job = build_job(nb, list(spec.exercises))
    inside = "".join(Path(__file__).with_name(name).read_text() for name in ("sandbox.py", "protocol.py"))
    key = hashlib.sha256((json.dumps(job, sort_keys=True) + spec_source_hash(chapter) + inside).encode()).hexdigest()[:20]
    folder = cache_dir()
    stem = folder / f"{chapter}-{key}"
    if stem.with_suffix(".json").is_file() and stem.with_suffix(".npz").is_file():
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
                arrays = {k: np.array(data[k]) for k in data.files}
            return SandboxRun(True, "", meta["cells"], meta["probes"], arrays)
        except Exception:  # noqa: BLE001 - a broken cache is recomputed
            pass
    run = run_sandbox(job, limits, folder=nb_path.parent)
    if not run.ok:
        raise GradingError(f"the solution notebook of {chapter} could not be run: {run.reason}\n{run.log_tail[-2000:]}")
    bad = [p for p in run.probes if p["status"] != "ok"]
    if bad:
        raise GradingError(f"the solution notebook of {chapter} fails its own spec: "
                           f"{bad[0]['grade_id']} case {bad[0]['case']}: {bad[0].get('message')}")
    folder.mkdir(parents=True, exist_ok=True)
    tmp_npz = stem.with_name(stem.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp_npz, **run.arrays)
    os.replace(tmp_npz, stem.with_suffix(".npz"))
    tmp_json = stem.with_name(stem.name + f".{os.getpid()}.tmp.json")
    tmp_json.write_text(json.dumps({"cells": run.cells, "probes": run.probes}))
    os.replace(tmp_json, stem.with_suffix(".json"))
    return run
