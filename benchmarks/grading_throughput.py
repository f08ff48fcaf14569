"""Grading throughput: `llmprep grade` serial vs --jobs 2, beside stock `nbgrader autograde`.

Generates N submissions of one chapter (default: 100 of ch01_training) in a temporary course:
a deterministic mix of complete solutions, untouched stubs and partial answers (some solution
cells replaced by the stub). Grades them three ways, each from a fresh gradebook, and prints
submissions per minute and seconds per submission. Writes build/bench-grading.json.

    python benchmarks/grading_throughput.py [--n 100] [--chapter ch01_training] [--skip-nbgrader]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import nbformat  # noqa: E402

from llmprep.grading.batch import grade_assignment  # noqa: E402
from llmprep.grading.engine import load_spec, reference_run  # noqa: E402
from llmprep.nbgrader_wiring import nbgrader_env  # noqa: E402
from llmprep.paths import format_path, repo_root  # noqa: E402


def make_class(course: Path, chapter: str, n: int) -> None:
    root = repo_root()
    spec = load_spec(chapter)
    shutil.copytree(root / "solutions" / chapter, course / "solutions" / chapter)
    solution = nbformat.read(str(root / "solutions" / chapter / spec.notebook), as_version=4)
    stub = nbformat.read(str(root / "course" / chapter / spec.notebook), as_version=4)
    stub_cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in stub.cells}
    rng = random.Random(0)
    for i in range(n):
        nb = nbformat.from_dict(json.loads(json.dumps(solution)))
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and rng.random() < 0.3:
                cell.source = stub_cells.get(meta.get("grade_id"), cell.source)
        folder = course / "submitted" / f"student{i:03d}" / chapter
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / spec.notebook))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--chapter", default="ch01_training")
    ap.add_argument("--skip-nbgrader", action="store_true")
    args = ap.parse_args()
    reference_run(args.chapter)  # computed once per spec version; not part of per-class cost
    results = {"n": args.n, "chapter": args.chapter}
    with tempfile.TemporaryDirectory(prefix="llmprep-bench-") as tmp:
        course = Path(tmp) / "course"
        make_class(course, args.chapter, args.n)
        devnull = open(os.devnull, "w")
        for jobs in (1, 2):
            (course / "gradebook.db").unlink(missing_ok=True)
            stdout = sys.stdout
            sys.stdout = devnull
            try:
                secs = timed(lambda jobs=jobs: grade_assignment(args.chapter, root=course, jobs=jobs))
            finally:
                sys.stdout = stdout
            results[f"llmprep_jobs{jobs}_s"] = round(secs, 1)
            print(f"llmprep grade --jobs {jobs}: {secs:7.1f} s  {60 * args.n / secs:6.1f} submissions/min  "
                  f"{secs / args.n:5.2f} s each", flush=True)
        if not args.skip_nbgrader:
            (course / "gradebook.db").unlink(missing_ok=True)
            shutil.rmtree(course / "autograded", ignore_errors=True)
            env = nbgrader_env(course)
            # the course's config runs the trusted engine inside `nbgrader autograde`; the comparison is with
            # stock nbgrader, so its own preprocessors (Execute in the student's kernel) are put back here
            stock = Path(tmp) / "stock-config"
            stock.mkdir()
            config = (repo_root() / "autograder" / "nbgrader_config.py").read_text()
            (stock / "nbgrader_config.py").write_text(
                config + "\nfrom nbgrader.converters import Autograde as _Stock\n"
                "c.Autograde.autograde_preprocessors = _Stock.class_traits()['autograde_preprocessors'].default()\n")
            env["JUPYTER_CONFIG_PATH"] = str(stock)
            subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", args.chapter, "--force",
                            f"--CourseDirectory.release_directory={tmp}/release"], cwd=course, env=env,
                           capture_output=True, check=True)
            proc = []
            secs = timed(lambda: proc.append(subprocess.run(
                [sys.executable, "-m", "nbgrader", "autograde", args.chapter, "--force"],
                cwd=course, env=env, capture_output=True, text=True)))
            graded = len(list((course / "autograded").glob(f"*/{args.chapter}/*.ipynb")))
            if proc[0].returncode != 0 or graded < args.n:
                print(f"nbgrader autograde failed or graded {graded} of {args.n}:\n{proc[0].stderr[-1500:]}")
                return 1
            results["nbgrader_autograde_s"] = round(secs, 1)
            print(f"nbgrader autograde:        {secs:7.1f} s  {60 * args.n / secs:6.1f} submissions/min  "
                  f"{secs / args.n:5.2f} s each (serial; trusts the student's kernel)", flush=True)
    out = format_path("bench-grading")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
