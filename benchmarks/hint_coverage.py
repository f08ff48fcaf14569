"""Hint coverage: does every known mistake receive its own hint, and no correct alternative a hint?

For each chapter, every spec mutant is submitted as if a learner wrote it (one fresh sandbox run of the
solution notebook with every mutant and alternative swapped in) and diagnosed against the cached known
mistakes exactly as `llmprep check` diagnoses a submission (llmprep.grading.hints). Prints, per chapter and
in all: the mutants, how many get their own hint (and how many only their own), how many already have a
written Hint (and a Chinese one), the alternatives wrongly given a hint, and the mutants whose verdict
reason the catalogue also says in Chinese (llmprep.i18n; the rest are sentences a spec words itself).
Writes build/hint-coverage.json.

    python benchmarks/hint_coverage.py [CHAPTER ...]
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict

os.environ.setdefault("OMP_NUM_THREADS", "1")

from llmprep.grading.hint_coverage import coverage  # noqa: E402
from llmprep.grading.trusted import all_chapters  # noqa: E402
from llmprep.paths import format_path  # noqa: E402


def main(argv: list[str]) -> int:
    chapters = argv or all_chapters()
    unknown = sorted(set(chapters) - set(all_chapters()))
    if unknown:
        print(f"error: unknown chapter(s) {', '.join(unknown)}; the chapters are: {', '.join(all_chapters())}",
              file=sys.stderr)
        return 2
    out, totals = {}, [0] * 8
    print(f"{'chapter':<20} {'mutants':>7} {'own hint':>9} {'only own':>9} {'Hint':>5} {'中文':>5} "
          f"{'alts':>5} {'alt hinted':>10} {'zh verdict':>10} {'s':>5}")
    for chapter in chapters:
        start = time.perf_counter()
        rows, alts = coverage(chapter)
        seconds = time.perf_counter() - start
        line = [len(rows), sum(r.own for r in rows), sum(r.unique for r in rows), sum(r.hint_written for r in rows),
                sum(r.zh_written for r in rows), len(alts), sum(alts.values()), sum(r.verdict_zh for r in rows)]
        totals = [a + b for a, b in zip(totals, line)]
        print(f"{chapter:<20} {line[0]:>7} {line[1]:>9} {line[2]:>9} {line[3]:>5} {line[4]:>5} {line[5]:>5} "
              f"{line[6]:>10} {line[7]:>10} {seconds:>5.1f}")
        for r in rows:
            if not r.unique:
                print(f"    {r.grade_id} / {r.mutant!r}: shown {r.shown or 'no known mistake'}")
        out[chapter] = {"mutants": [asdict(r) for r in rows], "alternatives_hinted": alts, "seconds": round(seconds, 1)}
    n = totals[0]
    print(f"{'all':<20} {n:>7} {totals[1]:>9} {totals[2]:>9} {totals[3]:>5} {totals[4]:>5} {totals[5]:>5} "
          f"{totals[6]:>10} {totals[7]:>10}")
    if n:
        print(f"share of the specs' wrong fixtures that receive their own hint: {totals[1]}/{n} = {totals[1] / n:.1%} "
              f"(only their own: {totals[2]}/{n} = {totals[2] / n:.1%}); alternatives given a hint: {totals[6]}/{totals[5]}; "
              f"verdicts whose reason is in Chinese too: {totals[7]}/{n}")
    path = format_path("build") / "hint-coverage.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(f"written: {path}")
    return 0 if totals[1] == n and totals[6] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
