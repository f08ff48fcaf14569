"""Grade a class: every ``submitted/<student>/<ASSIGNMENT>/`` in parallel, one sandbox each.

One student's broken, hostile or hanging submission is that student's one-line result; the batch
goes on, the CSV is always written, and the batch takes at most about
students x ``Limits.wall`` / jobs. Where no strong sandbox can start, the batch refuses to grade
untrusted work unless the instructor passes ``unsandboxed=True`` (``--unsandboxed``), and then
every report line says so.
"""
from __future__ import annotations

import csv
import json
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from llmprep.grading.engine import check_notebook
from llmprep.grading.isolate import Limits, isolation
from llmprep.grading.notebook import pick_notebook
from llmprep.grading.record import ensure_assignment, gradebook_url, record, write_autograded
from llmprep.grading.trusted import GradingError, all_chapters, load_spec, repo_root
from llmprep.nbgrader_wiring import nbgrader

EXIT_OK, EXIT_SOME_FAILED, EXIT_GRADER = 0, 1, 2


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_GRADER


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula


def name_problem(name: str) -> str:
    """Why a student folder name cannot be used as an id ("" if it can): names are hostile text."""
    if any(not ch.isprintable() for ch in name):
        return "contains control characters or line breaks"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "contains a path separator"
    if name.startswith(FORMULA_START):
        return "begins with a character a spreadsheet reads as a formula (= + - @)"
    if len(name) > 100:
        return "is longer than 100 characters"
    return ""


def shown(text: str) -> str:
    """Hostile text made safe for a terminal line: non-printable characters escaped, capped."""
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return out[:120] + ("…" if len(out) > 120 else "")


def csv_safe(value):
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if not isinstance(value, str):
        return value
    value = shown(value)
    return "'" + value if value.startswith(FORMULA_START) else value


def _copy_timestamp(folder: Path, out: Path) -> None:
    """nbgrader's exchange leaves timestamp.txt and submission_secret.txt beside a submission;
    generate_feedback and release_feedback need them in the autograded folder (as nbgrader autograde
    leaves them)."""
    for name in ("timestamp.txt", "submission_secret.txt"):
        stamp = folder / name
        if stamp.is_file() and not stamp.is_symlink() and stamp.stat().st_size < 4096:
            (out / name).write_text(stamp.read_text(errors="replace"))


def grade_assignment(assignment: str, root: Path | None = None, jobs: int = 1, as_json: bool = False,
                     feedback: bool = False, unsandboxed: bool = False, limits: Limits | None = None) -> int:
    """Grade every submitted/<student>/<assignment>/; gradebook, autograded notebooks and a CSV.

    Returns an exit code: 0 all graded, 1 some submissions could not be graded,
    2 the grader itself failed or refused (no sandbox)."""
    from tqdm.auto import tqdm

    root = root or repo_root()
    if assignment not in all_chapters():
        return _error(f"unknown assignment '{assignment}'; the assignments are: {', '.join(all_chapters())}")
    if jobs < 1:
        return _error(f"--jobs must be at least 1 (got {jobs})")
    iso = isolation()
    if not iso.strong and not unsandboxed:
        return _error(f"no sandbox can start here: {iso.why}. Grading untrusted notebooks without one lets a "
                      "submission read the solutions and change grades; fix the cause, or pass --unsandboxed "
                      "if you trust every submission")
    flag = "" if iso.strong else "  [UNSANDBOXED]"
    spec = load_spec(assignment)
    submitted = root / "submitted"
    students = sorted(p.name for p in submitted.iterdir()
                      if not p.is_symlink() and (p / assignment).is_dir()) if submitted.is_dir() else []
    if not students:
        print(f"nothing collected yet: no {submitted}/<student>/{assignment}/; run `llmprep nbgrader collect "
              f"{assignment}` first", file=sys.stderr)
        return EXIT_SOME_FAILED
    try:
        ensure_assignment(assignment, root)
    except RuntimeError as exc:
        return _error(str(exc))
    notebook_id = Path(spec.notebook).stem
    limits = limits or Limits()
    print(f"sandbox: {iso.describe}; budget {limits.wall:.0f} s per submission", file=sys.stderr)

    def one(student: str):
        try:
            problem = name_problem(student)
            if problem:
                return student, None, None, f"refused: the student folder name {problem}"
            folder = submitted / student / assignment
            if folder.is_symlink():
                return student, None, None, "failed: the submission folder is a symbolic link"
            path, note = pick_notebook(folder, spec)
            if path is None:
                return student, None, None, f"missing: {note}"
            result = check_notebook(path, limits, folder=folder, expected=assignment)
            if note:
                result.notes.insert(0, note)
            return student, path, result, ""
        except GradingError:
            raise
        except Exception as exc:  # noqa: BLE001 - one student's problem never stops the batch
            return student, None, None, f"failed: could not be graded ({type(exc).__name__})"

    rows, failed = [], 0
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool, \
                tqdm(total=len(students), desc=f"grading {assignment}", unit="student", file=sys.stderr) as bar:
            futures = [pool.submit(one, s) for s in students]
            for fut in as_completed(futures):
                student, path, result, why = fut.result()
                bar.update(1)
                if result is not None and result.cells:
                    try:
                        record(gradebook_url(root), assignment, student, notebook_id, result,
                               folder=submitted / student / assignment)
                        write_autograded(path, root / "autograded" / student / assignment / spec.notebook, result,
                                         repo_root() / "course" / assignment / spec.notebook)
                        _copy_timestamp(submitted / student / assignment, root / "autograded" / student / assignment)
                        status = "graded"
                    except Exception as exc:  # noqa: BLE001 - recorded as this student's failure
                        result, status = None, f"failed: could not be recorded ({type(exc).__name__})"
                elif result is not None:
                    status = f"failed: {'; '.join(result.notes)[:200]}"
                else:
                    status = why
                if status != "graded":
                    failed += 1
                status += flag
                row = {"student": student, "status": status,
                       "score": result.score if result and status.startswith("graded") else "",
                       "max_score": result.max_score if result and status.startswith("graded") else ""}
                rows.append(row)
                if as_json:
                    tqdm.write(json.dumps({**row, **(result.to_json() if result else {})}))
                elif row["score"] != "":
                    tqdm.write(f"{shown(student):<20} {row['score']:g} / {row['max_score']:g}  {status}")
                    for note in result.notes:  # e.g. a renamed notebook matched by its graded cells
                        tqdm.write(f"{'':<20} note: {shown(note)}")
                else:
                    tqdm.write(f"{shown(student):<20} {shown(status)}")
    except GradingError as exc:
        return _error(f"the grader itself failed: {exc}")
    finally:
        out = root / "build" / "grades" / f"{assignment}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["student", "status", "score", "max_score"])
            writer.writeheader()
            writer.writerows(sorted(({k: csv_safe(v) for k, v in r.items()} for r in rows), key=lambda r: r["student"]))
    if feedback:
        nbgrader(["generate_feedback", assignment, "--force"], root)
    if not as_json:
        print(f"grades: {out} ({len(students) - failed} graded, {failed} not){flag}")
    return EXIT_SOME_FAILED if failed else EXIT_OK
