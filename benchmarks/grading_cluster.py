"""Grading on a Dask cluster beside one host, a worker killed mid-batch, and regrades from kept results.

Generates N submissions of one chapter (default: 40 of ch13_distributed, the mix of solutions, stubs and
partial answers of grading_throughput.py) and grades the same submissions, each from a fresh gradebook:

1. ``--jobs 1`` and ``--jobs 2`` on this host;
2. ``--cluster`` with a local scheduler and 1, then 2 worker processes (in the 2-worker run one worker is
   killed with SIGKILL after a quarter of the class is recorded; every submission must still be recorded
   exactly once, with the scores of the ``--jobs 1`` run);
3. ``--regrade`` of ``--regrade-n`` submissions (default 100: the class copied with its kept results) with
   nothing changed, so every verdict comes from the store.

Prints wall seconds, CPU seconds (this process and every reaped descendant: workers, sandboxes) and
submissions per minute; writes build/bench-grading-cluster.json.

    python benchmarks/grading_cluster.py [--n 40] [--chapter ch13_distributed] [--regrade-n 100]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

from grading_throughput import make_class  # noqa: E402

from llmprep.grading import cluster, record  # noqa: E402
from llmprep.grading import run as run_module  # noqa: E402
from llmprep.grading.batch import grade_assignment  # noqa: E402
from llmprep.grading.engine import reference_run  # noqa: E402
from llmprep.paths import repo_root  # noqa: E402


def cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def scores(course: Path, chapter: str) -> dict[str, str]:
    with open(course / "build" / "grades" / f"{chapter}.csv") as fh:
        return {r["student"]: f"{r['status']} {r['score']}" for r in csv.DictReader(fh)}


def fresh(course: Path) -> None:
    (course / "gradebook.db").unlink(missing_ok=True)
    shutil.rmtree(course / "autograded", ignore_errors=True)


def quiet(fn):
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        return fn()
    finally:
        sys.stdout.close()
        sys.stdout = stdout


def measure(label: str, n: int, fn, results: dict) -> None:
    c0, t0 = cpu(), time.perf_counter()
    code = quiet(fn)
    wall, used = time.perf_counter() - t0, cpu() - c0
    results[label] = {"wall_s": round(wall, 1), "cpu_s": round(used, 1), "per_min": round(60 * n / wall, 1),
                      "cpu_s_each": round(used / n, 2), "exit": code}
    print(f"{label:<28} {wall:7.1f} s wall {used:7.1f} s CPU  {60 * n / wall:6.1f} submissions/min  "
          f"{used / n:5.2f} CPU s each  exit {code}", flush=True)


def on_cluster(course: Path, chapter: str, workers: int, kill_after: int | None, results: dict) -> dict:
    from distributed import Client

    calls: dict[str, int] = {}
    real = record.record

    def counted(db_url, assignment, student, *args, **kwargs):
        calls[student] = calls.get(student, 0) + 1
        return real(db_url, assignment, student, *args, **kwargs)

    record.record = counted
    killed = {}
    try:
        with cluster.local_cluster(workers) as lc, Client(lc, set_as_default=False) as client:
            if kill_after is not None:
                def killer():
                    while not killed:
                        busy = [w for w, keys in client.processing().items() if keys]
                        if len(calls) >= kill_after and busy:
                            os.kill(client.run(os.getpid, workers=[busy[0]])[busy[0]], signal.SIGKILL)
                            killed["after"] = len(calls)
                        time.sleep(0.1)
                threading.Thread(target=killer, daemon=True).start()
            return {"code": grade_assignment(chapter, root=course, cluster=lc), "calls": calls, "killed": killed}
    finally:
        record.record = real


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--chapter", default="ch13_distributed")
    ap.add_argument("--regrade-n", type=int, default=100)
    args = ap.parse_args()
    n, ch = args.n, args.chapter
    reference_run(ch)  # computed once per spec version; not part of per-class cost
    results: dict = {"n": n, "chapter": ch, "cores": os.cpu_count(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="llmprep-bench-") as tmp:
        course = Path(tmp) / "course"
        make_class(course, ch, n)
        base = {}
        for jobs in (1, 2):
            fresh(course)
            measure(f"one host --jobs {jobs}", n, lambda jobs=jobs: grade_assignment(ch, root=course, jobs=jobs), results)
            base = base or scores(course, ch)
        for workers in (1, 2):
            fresh(course)
            kill = n // 4 if workers == 2 else None
            out = {}
            measure(f"cluster {workers} worker(s)" + (" + 1 killed" if kill else ""), n,
                    lambda w=workers, k=kill, o=out: o.update(on_cluster(course, ch, w, k, results)) or o["code"],
                    results)
            same = scores(course, ch) == base
            once = sorted(out["calls"].values()) == [1] * n
            results[f"cluster_{workers}"] = {"same_scores_as_one_host": same, "each_recorded_once": once,
                                             "killed_after": out["killed"].get("after")}
            print(f"    same scores as one host: {same}; each recorded exactly once: {once}; "
                  f"worker killed after {out['killed'].get('after', '-')} recorded", flush=True)
        # regrade: the class copied to regrade_n students, kept results copied with it; nothing changed
        kept = course / "build" / "grading-results" / ch
        students = sorted(p.name for p in (course / "submitted").iterdir())
        for i in range(n, args.regrade_n):
            src = students[i % n]
            shutil.copytree(course / "submitted" / src, course / "submitted" / f"copy{i:03d}")
            shutil.copytree(kept / src, kept / f"copy{i:03d}")
        fresh(course)
        runs = []
        real = run_module.attempt
        run_module.attempt = lambda *a, **k: runs.append(1) or real(*a, **k)
        try:
            measure(f"--regrade of {args.regrade_n}", args.regrade_n,
                    lambda: grade_assignment(ch, root=course, jobs=1, regrade=True), results)
        finally:
            run_module.attempt = real
        results["regrade_sandbox_runs"] = len(runs)
        print(f"    sandbox runs during the regrade: {len(runs)}", flush=True)
    out = repo_root() / "build" / "bench-grading-cluster.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
