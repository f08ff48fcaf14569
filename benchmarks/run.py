"""`llmprep bench`: the measured figures behind README's results table.

Executes every chapter headless on this machine, the reference notebook with the default thread count
and the graded notebook on ONE thread, and measures wall time and the kernel's peak resident memory;
times the trusted grader on each chapter's solution and released stub; collects every result the
notebooks record (value beside its anchor). Checks the budgets (reported, never asserted in unit tests):

* the notebooks one after another (what `llmprep run --jobs 1` executes; `make run` runs them several at a
  time, so its wall time is shorter: README gives it) under 10 minutes on 2 cores;
* each reference notebook under 90 s (the chapter budget of shared/COURSE.md);
* each graded notebook under 60 s on one thread;
* peak memory of any notebook under 4 GB.

Writes build/bench.json and build/bench.md (the markdown table README shows).
`--grading N` also runs benchmarks/grading_throughput.py on N generated submissions; `--no-grading` skips timing
the grader per chapter (benchmarks/gpu_check). The device (and GPU name, torch version) heads the output and the
table, and every recorded result carries the device and dtype that produced it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

from llmprep.course import chapters, notebooks
from llmprep.grading import engine
from llmprep.headless import execute_notebook, is_graded
from llmprep.paths import format_path, repo_root
from llmprep.results import read_results
from llmprep.runtime import usable_cores

RUN_BUDGET_S = 600.0
GRADED_BUDGET_S = 60.0
REFERENCE_BUDGET_S = 90.0
MEMORY_BUDGET_MB = 4096.0


def main() -> int:
    ap = argparse.ArgumentParser(prog="llmprep bench")
    ap.add_argument("chapters", nargs="*")
    ap.add_argument("--grading", type=int, default=0, help="also measure grading throughput on N submissions")
    ap.add_argument("--no-grading", action="store_true",
                    help="skip timing the trusted grader per chapter (benchmarks/gpu_check: the sandbox is CPU-only)")
    args = ap.parse_args()
    root = repo_root()
    build = format_path("build", root=root)
    build.mkdir(exist_ok=True)
    results_file = format_path("bench-results", root=root)
    results_file.write_text("")
    device = os.environ.get("LLMPREP_DEVICE") or ("cuda" if _cuda() else "cpu")
    print(f"llmprep bench: device {_describe(device)}, {usable_cores()} CPU cores, "
          f"LLMPREP_FULL={os.environ.get('LLMPREP_FULL', '') or '0'}", flush=True)
    rows, problems = [], []
    t_all = time.perf_counter()
    for chapter in args.chapters or chapters(root):
        for nb in notebooks(chapter, root):
            graded = is_graded(nb)
            try:
                stats = execute_notebook(nb, format_path("bench-executed", chapter, root) / nb.name, results_file,
                                         threads=1 if graded else None)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{chapter}/{nb.name} failed: {type(exc).__name__}")
                continue
            row = {"chapter": chapter, "notebook": nb.name, "graded": graded, "threads": 1 if graded else "default",
                   "seconds": round(stats["seconds"], 1), "peak_mb": round(stats["peak_mb"])}
            if graded and stats["seconds"] > GRADED_BUDGET_S:
                problems.append(f"{chapter}/{nb.name}: {stats['seconds']:.0f} s > {GRADED_BUDGET_S:.0f} s on one thread")
            if not graded and stats["seconds"] > REFERENCE_BUDGET_S:
                problems.append(f"{chapter}/{nb.name}: {stats['seconds']:.0f} s > {REFERENCE_BUDGET_S:.0f} s")
            if stats["peak_mb"] > MEMORY_BUDGET_MB:
                problems.append(f"{chapter}/{nb.name}: peak {stats['peak_mb']:.0f} MB > {MEMORY_BUDGET_MB:.0f} MB")
            if graded and not args.no_grading and chapter in engine.all_chapters():
                engine.reference_run(chapter)
                t0 = time.perf_counter()
                solved = engine.check_notebook(nb)
                t1 = time.perf_counter()
                stub = engine.check_notebook(format_path("course", chapter, root) / nb.name)
                row.update(grade_solution_s=round(t1 - t0, 1), grade_stub_s=round(time.perf_counter() - t1, 1),
                           scores=f"{solved.score:g}/{solved.max_score:g} and {stub.score:g}/{stub.max_score:g}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    total = time.perf_counter() - t_all
    notebook_total = sum(r["seconds"] for r in rows)
    if notebook_total > RUN_BUDGET_S:
        problems.append(f"notebooks one after another take {notebook_total:.0f} s > {RUN_BUDGET_S:.0f} s")
    records = [asdict(r) for r in read_results(results_file)]
    grading = {}
    if args.grading:
        subprocess.run([sys.executable, str(format_path("benchmarks", root=root) / "grading_throughput.py"),
                        "--n", str(args.grading)],
                       check=False)
        path = format_path("bench-grading", root=root)
        grading = json.loads(path.read_text()) if path.exists() else {}
    md = render(rows, records, grading, device, notebook_total)
    format_path("bench-table", root=root).write_text(md)
    format_path("bench", root=root).write_text(json.dumps({"device": device, "rows": rows, "results": records,
                                                  "grading": grading, "notebook_seconds": notebook_total,
                                                  "wall_seconds": total, "problems": problems}, indent=1))
    print(md)
    for p in problems:
        print("BUDGET:", p)
    return 1 if problems else 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _describe(device: str) -> str:
    """``cuda (NVIDIA H100 80GB HBM3, torch 2.x+cu12x)`` or ``cpu (torch 2.x)``: the device the figures come from."""
    try:
        import torch
    except ImportError:
        return device
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else ""
    return f"{device} ({name + ', ' if name else ''}torch {torch.__version__})"


def render(rows, records, grading, device, notebook_total) -> str:
    out = [f"Device: {_describe(device)}, {usable_cores()} CPU cores, "
           f"LLMPREP_FULL={os.environ.get('LLMPREP_FULL', '') or '0'}. Notebooks in total: {notebook_total:.0f} s "
           f"(budget {RUN_BUDGET_S:.0f} s).", "",
           "| chapter | notebook | threads | time | peak memory | grading (solution / stub) |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        grading_cell = (f"{r['grade_solution_s']} s / {r['grade_stub_s']} s ({r['scores']})"
                        if "grade_solution_s" in r else "")
        out.append(f"| {r['chapter']} | {r['notebook']} | {r['threads']} | {r['seconds']} s | {r['peak_mb']} MB | "
                   f"{grading_cell} |")
    out += ["", "| chapter | result | value | anchor | device, dtype |", "| --- | --- | --- | --- | --- |"]
    for rec in records:
        where = ", ".join(x for x in (rec.get("device", ""), rec.get("dtype", "")) if x)
        out.append(f"| {rec['chapter']} | {rec['name']} | {rec['value']} | {rec['anchor']} | {where} |")
    if grading:
        n = grading["n"]
        out += ["", f"Grading {n} generated submissions of {grading['chapter']}:", "",
                "| grader | seconds | submissions/min |", "| --- | --- | --- |"]
        for key, label in (("llmprep_jobs1_s", "llmprep grade --jobs 1"), ("llmprep_jobs2_s", "llmprep grade --jobs 2"),
                           ("nbgrader_autograde_s", "nbgrader autograde (stock, untrusted)")):
            if key in grading:
                out.append(f"| {label} | {grading[key]} | {60 * n / grading[key]:.1f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
