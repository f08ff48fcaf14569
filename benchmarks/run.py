"""Benchmarks behind README's results table (first cut; see issue "Results and speed").

Measures, on this machine:
* each chapter's graded notebook: wall time of a headless execution on ONE thread (budget: 60 s);
* the trusted grader: seconds to grade the solution notebook (reference cached) and the released stub.

Budgets are checked here and reported, never asserted in unit tests. Writes build/bench.json.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LLMPREP_THREADS", "1")

from llmprep.course import chapters, execute_notebook  # noqa: E402
from llmprep.grading import engine  # noqa: E402

GRADED_NOTEBOOK_BUDGET_S = 60.0


def main() -> int:
    root = engine.repo_root()
    build = root / "build"
    build.mkdir(exist_ok=True)
    rows, over = [], 0
    for chapter in chapters(root):
        spec = engine.load_spec(chapter) if chapter in engine.all_chapters() else None
        if spec is None:
            continue
        nb = root / "solutions" / chapter / spec.NOTEBOOK
        secs = execute_notebook(nb, build / "bench" / chapter / nb.name, build / "bench" / "results.jsonl")
        engine.reference_run(chapter)  # warm the reference cache so the next figures are per submission
        t0 = time.perf_counter()
        solved = engine.check_notebook(nb)
        t1 = time.perf_counter()
        stub = engine.check_notebook(root / "course" / chapter / spec.NOTEBOOK)
        t2 = time.perf_counter()
        ok = secs <= GRADED_NOTEBOOK_BUDGET_S
        over += not ok
        rows.append({"chapter": chapter, "graded_notebook_s": round(secs, 2), "budget_s": GRADED_NOTEBOOK_BUDGET_S,
                     "within_budget": ok, "grade_solution_s": round(t1 - t0, 2), "grade_stub_s": round(t2 - t1, 2),
                     "solution_score": f"{solved.score:g}/{solved.max_score:g}",
                     "stub_score": f"{stub.score:g}/{stub.max_score:g}"})
    print(f"{'chapter':<18} {'graded nb (1 thread)':>22} {'grade solution':>15} {'grade stub':>11}  scores")
    for r in rows:
        flag = "" if r["within_budget"] else "  OVER BUDGET"
        print(f"{r['chapter']:<18} {r['graded_notebook_s']:>20.1f} s {r['grade_solution_s']:>13.1f} s "
              f"{r['grade_stub_s']:>9.1f} s  {r['solution_score']} / {r['stub_score']}{flag}")
    (build / "bench.json").write_text(json.dumps(rows, indent=1))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
