"""`llmprep` command line: data, run, lab, release, check, grade, bench."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def cmd_data(args) -> int:
    from llmprep import assets

    bad = 0
    for name, asset in assets.ASSETS.items():
        try:
            folder = assets.verify(name) if args.check else _fetch_or_repair(name)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            print(f"ok       {name:<18} {asset.requirement:<28} {size / 2**20:8.1f} MB  {folder}")
        except assets.AssetError as exc:
            bad += 1
            print(f"MISSING  {name:<18} {exc}")
    if not bad:
        print(f"all {len(assets.ASSETS)} assets verified in {assets.cache_root() / 'assets'}")
    return 1 if bad else 0


def _fetch_or_repair(name: str):
    from llmprep import assets

    try:
        return assets.verify(name)
    except assets.AssetError:
        return assets.fetch(name, force=True)


def cmd_run(args) -> int:
    from llmprep.course import run

    return run(args.chapters or None, jobs=args.jobs)


def cmd_lab(args) -> int:
    from llmprep.course import nbgrader_env
    from llmprep.grading.engine import repo_root

    root = repo_root()
    env = nbgrader_env(root)
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root / 'course'}"] + args.extra
    return subprocess.call(cmd, cwd=root / "course", env=env)


def cmd_release(args) -> int:
    from llmprep.course import release, release_diff

    if args.check:
        problems = release_diff()
        for p in problems:
            print(p)
        print("course/ is in sync with solutions/" if not problems else
              f"{len(problems)} difference(s): run `llmprep release` and commit course/")
        return 1 if problems else 0
    release(args.chapters or None)
    print("course/ regenerated from solutions/")
    return 0


def cmd_check(args) -> int:
    from llmprep.grading.engine import GradingError, check_notebook, isolation

    iso = isolation()
    try:
        result = check_notebook(Path(args.notebook))
    except GradingError as exc:
        print(f"error: the grader itself failed: {exc}", file=sys.stderr)
        return 2
    if result.chapter is None:  # not a gradable notebook at all: a usage error, before any work
        print(f"error: {'; '.join(result.notes)}", file=sys.stderr)
        return 2
    level = iso.describe
    if args.json:
        print(json.dumps({**result.to_json(), "sandbox": level}, ensure_ascii=False, indent=1))
    else:
        print(f"{result.notebook} ({result.chapter}): {result.score:g} / {result.max_score:g} points")
        for c in result.cells:
            mark = "PASS" if c.points == c.max_points else "FAIL"
            print(f"  {mark}  {c.grade_id:<32} {c.points:g}/{c.max_points:g}  {c.message}")
        for note in result.notes:
            print(f"  note: {note}")
        print(f"  (ran in: {level})")
    return 1 if args.strict and result.score < result.max_score else 0


def cmd_grade(args) -> int:
    from llmprep.grading.batch import grade_assignment
    from llmprep.runtime import usable_cores

    jobs = usable_cores() if args.jobs is None else args.jobs
    return grade_assignment(args.assignment, jobs=jobs, as_json=args.json, feedback=args.feedback,
                            unsandboxed=args.unsandboxed)


def cmd_nbgrader(args) -> int:
    from llmprep.course import nbgrader_env
    from llmprep.grading.engine import repo_root

    return subprocess.call([sys.executable, "-m", "nbgrader", *args.extra], cwd=repo_root(), env=nbgrader_env())


def cmd_bench(args) -> int:
    from llmprep.grading.engine import repo_root

    script = repo_root() / "benchmarks" / "run.py"
    return subprocess.call([sys.executable, str(script)] + args.extra)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmprep", description="LLM interview-prep course: data, notebooks, grading")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("data", help="fetch and verify every offline asset into the cache")
    s.add_argument("--check", action="store_true", help="verify only; exit 1 if any asset is missing or wrong")
    s.set_defaults(func=cmd_data)

    s = sub.add_parser("run", help="execute reference and solution notebooks headless; results table")
    s.add_argument("chapters", nargs="*")
    s.add_argument("--jobs", type=int, default=None,
                   help="graded notebooks run this many at a time, one thread each (default: one per core)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("lab", help="JupyterLab on course/ (other options go to jupyter lab)")
    s.set_defaults(func=cmd_lab, passthrough=True)

    s = sub.add_parser("release", help="regenerate course/ from solutions/")
    s.add_argument("--check", action="store_true", help="exit 1 if course/ differs from what would be generated")
    s.add_argument("chapters", nargs="*")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("check", help="grade one notebook with the trusted engine",
                       description="Exit codes: 0 graded; 1 with --strict when below full marks; "
                                   "2 the file is not a gradable notebook, or the grader failed.")
    s.add_argument("notebook")
    s.add_argument("--json", action="store_true")
    s.add_argument("--strict", action="store_true", help="exit 1 unless the notebook earns full marks")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("grade", help="grade every submitted/<student>/<ASSIGNMENT>/ into the gradebook and a CSV")
    s.add_argument("assignment")
    s.add_argument("--jobs", type=int, default=None, help="parallel submissions (default: one per core)")
    s.add_argument("--unsandboxed", action="store_true",
                   help="grade even where no sandbox can start (only if you trust every submission)")
    s.add_argument("--json", action="store_true", help="one JSON object per student")
    s.add_argument("--feedback", action="store_true", help="also run nbgrader generate_feedback")
    s.set_defaults(func=cmd_grade)

    s = sub.add_parser("nbgrader", help="run an nbgrader command with the course's configuration")
    s.set_defaults(func=cmd_nbgrader, passthrough=True)

    s = sub.add_parser("bench", help="the benchmarks behind README's results table")
    s.set_defaults(func=cmd_bench, passthrough=True)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - no traceback is the user interface
        from llmprep.assets import AssetError

        if isinstance(exc, AssetError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if os.environ.get("LLMPREP_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc} (set LLMPREP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
