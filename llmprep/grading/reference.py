"""The reference outputs: the solution notebook run through the same sandbox, once per change of
notebook, spec or sandbox code (``sandbox.py``, the ``protocol.py`` it speaks, its environment), cached where no
sandbox can reach (``build/grading-cache``).

The known mistakes' outputs (every spec mutant swapped into the solution notebook, for the hints of
:mod:`llmprep.grading.hints`) are computed and cached the same way, beside them: :func:`mistakes_run`."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from llmprep.grading.collect import SandboxRun
from llmprep.grading.isolate import Limits, sandbox_env
from llmprep.grading.notebook import build_job, read_notebook
from llmprep.grading.protocol import WORK
from llmprep.grading.run import run_sandbox
from llmprep.grading.trusted import GradingError, cache_dir, load_spec, solutions_dir, spec_source_hash


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
MISTAKES = "mistakes"  # the cache's name for the run of every known mistake


def reference_run(chapter: str, limits: Limits | None = None) -> SandboxRun:
    """The solution notebook's outputs on every case, computed once and cached on disk
    (once per process at a time: batch grading asks from several threads)."""
    return _once(chapter, "", limits)


def mistakes_run(chapter: str, limits: Limits | None = None) -> SandboxRun:
    """Every spec mutant's outputs on every case (variants ``mutant:<name>``): the solution notebook run
    with each mutant swapped in, in the same sandbox as the reference, cached beside it and keyed the same
    way (the job, which holds every mutant's source, the spec file and the sandbox code). GradingError when
    it cannot be computed; a mutant that raises on a case is an outcome, not a failure."""
    return _once(chapter, MISTAKES, limits)


def _once(chapter: str, kind: str, limits: Limits | None) -> SandboxRun:
    with _locks_guard:
        lock = _locks.setdefault(f"{chapter}.{kind}", threading.Lock())
    with lock:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        # and once across processes (two graders, two test workers): the second waits, then reads the cache
        try:
            import fcntl
        except ImportError:  # (Windows: no sandbox, one process)
            return _cached_run(chapter, kind, limits)
        name = f".{chapter}.{kind}.lock" if kind else f".{chapter}.reference.lock"
        with open(folder / name, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                return _cached_run(chapter, kind, limits)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def mistakes_job(nb, exercises) -> dict:
    """The job of :func:`mistakes_run`: the solution's cells, then each exercise probed with every mutant
    swapped in (neither the solution itself nor the alternative-correct fixtures)."""
    job = build_job(nb, list(exercises), mutants=True)
    for ex in job["exercises"]:
        ex["variants"] = [v for v in ex["variants"] if v["name"].startswith("mutant:")]
    return job


def _cached_run(chapter: str, kind: str, limits: Limits | None) -> SandboxRun:
    spec = load_spec(chapter)
    nb_path = solutions_dir() / chapter / spec.notebook
    nb = read_notebook(nb_path)
    job = mistakes_job(nb, spec.exercises) if kind == MISTAKES else build_job(nb, list(spec.exercises))
    inside = "".join(Path(__file__).with_name(name).read_text() for name in ("sandbox.py", "protocol.py"))
    inside += json.dumps(sandbox_env(WORK), sort_keys=True)  # (its environment too: XLA's flags change the numbers)
    key = hashlib.sha256((json.dumps(job, sort_keys=True) + spec_source_hash(chapter) + inside).encode()).hexdigest()[:20]
    folder = cache_dir()
    stem = folder / (f"{chapter}-{kind}-{key}" if kind else f"{chapter}-{key}")
    if stem.with_suffix(".json").is_file() and stem.with_suffix(".npz").is_file():
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
                arrays = {k: np.array(data[k]) for k in data.files}
            return SandboxRun(True, "", meta["cells"], meta["probes"], arrays)
        except Exception:  # noqa: BLE001 - a broken cache is recomputed
            pass
    run = run_sandbox(job, limits, folder=nb_path.parent)
    what = "with its known mistakes swapped in " if kind == MISTAKES else ""
    if not run.ok:
        raise GradingError(f"the solution notebook of {chapter} could not be run {what}: {run.reason}\n"
                           f"{run.log_tail[-2000:]}")
    if kind != MISTAKES:
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
