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
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from llmprep.grading.engine import Submission, grade_notebook
from llmprep.grading.isolate import Limits, isolation
from llmprep.grading.late import LatePenalties, with_penalty
from llmprep.grading.record import Destination, _one_writer, ensure_assignment, gradebook_url
from llmprep.grading.reference import reference_run
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


def _refusal(assignment: str, jobs: int, unsandboxed: bool) -> str:
    """Why the batch must not start ("" if it may)."""
    if assignment not in all_chapters():
        return f"unknown assignment '{assignment}'; the assignments are: {', '.join(all_chapters())}"
    if jobs < 1:
        return f"--jobs must be at least 1 (got {jobs})"
    iso = isolation()
    if not iso.strong and not unsandboxed:
        return (f"no sandbox can start here: {iso.why}. Grading untrusted notebooks without one lets a "
                "submission read the solutions and change grades; fix the cause, or pass --unsandboxed "
                "if you trust every submission")
    return ""


def _students(submitted: Path, assignment: str) -> list[str]:
    return sorted(p.name for p in submitted.iterdir()
                  if not p.is_symlink() and (p / assignment).is_dir()) if submitted.is_dir() else []


def _grade_one(root: Path, assignment: str, student: str, limits: Limits, runner=None,
               regrade: bool = False) -> tuple[str, Submission | None, str]:
    """One student's job, in a worker thread: (student, the Submission graded and recorded, or None and why not)."""
    try:
        problem = name_problem(student)
        if problem:
            return student, None, f"refused: the student folder name {problem}"
        folder = root / "submitted" / student / assignment
        if folder.is_symlink():
            return student, None, "failed: the submission folder is a symbolic link"
        name = load_spec(assignment).notebook
        sub = Submission(None, folder=folder, expected=assignment, limits=limits,
                         destination=Destination(gradebook_url(root), student, Path(name).stem,
                                                 root / "autograded" / student / assignment / name,
                                                 repo_root() / "course" / assignment / name),
                         runner=runner, regrade=regrade,
                         results_dir=root / "build" / "grading-results" / assignment / student)
        grade_notebook(sub)
        return student, sub, f"missing: {sub.notes[0]}" if sub.missing else ""
    except GradingError:
        raise
    except Exception as exc:  # noqa: BLE001 - one student's problem never stops the batch
        return student, None, f"failed: could not be graded ({type(exc).__name__})"


def _row(student: str, sub: Submission | None, why: str, flag: str) -> dict:
    """The CSV row: written from the same verdicts as the gradebook (a score only where they were recorded)."""
    result = sub.result if sub is not None and not sub.missing else None
    if sub is not None and sub.recorded:
        status = "graded"
    elif sub is not None and sub.record_error is not None:
        status = f"failed: could not be recorded ({type(sub.record_error).__name__})"
    elif result is not None:
        status = f"failed: {'; '.join(result.notes)[:200]}"
    else:
        status = why
    graded = status == "graded"
    return {"student": student, "status": status + flag, "score": result.score if graded else "",
            "max_score": result.max_score if graded else ""}


def _lines(row: dict, sub: Submission | None, as_json: bool) -> list[str]:
    """What the terminal shows for one student (hostile names and notes escaped)."""
    if as_json:
        result = sub.result if sub is not None and not sub.missing and sub.record_error is None else None
        return [json.dumps({**row, **(result.to_json() if result else {})})]
    if row["score"] == "":
        return [f"{shown(row['student']):<20} {shown(row['status'])}"]
    late = f"  late: -{row['late_penalty']:g} -> {row['final_score']:g}" if row.get("late_penalty") else ""
    return [f"{shown(row['student']):<20} {row['score']:g} / {row['max_score']:g}  {row['status']}{late}"] + [
        f"{'':<20} note: {shown(note)}" for note in sub.result.notes]  # e.g. a renamed notebook matched


def _write_csv(root: Path, assignment: str, rows: list[dict]) -> Path:
    out = root / "build" / "grades" / f"{assignment}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["student", "status", "score", "max_score", "late_penalty", "final_score"])
        writer.writeheader()
        writer.writerows(sorted(({k: csv_safe(v) for k, v in r.items()} for r in rows), key=lambda r: r["student"]))
    return out


def _feedback_under_the_names_handed_in(root: Path, assignment: str, handed_in: dict[str, str]) -> None:
    """A notebook handed in under another name ("Copy of ch01_exercises (1).ipynb") is graded as the
    assignment's notebook, and nbgrader writes its feedback page under that name; but a student's
    ``fetch_feedback`` looks for pages by the names in their own submission. A copy of the page under the
    name handed in lets ``release_feedback`` deliver it (tests/grading/test_exchange.py)."""
    expected = Path(load_spec(assignment).notebook).stem
    for student, stem in handed_in.items():
        folder = root / "feedback" / student / assignment
        page = folder / f"{expected}.html"
        if stem != expected and page.is_file():
            shutil.copyfile(page, folder / f"{stem}.html")


def grade_assignment(assignment: str, root: Path | None = None, jobs: int = 1, as_json: bool = False,
                     feedback: bool = False, unsandboxed: bool = False, limits: Limits | None = None,
                     cluster=None, regrade: bool = False, tls: tuple[str, str, str] | None = None) -> int:
    """Grade every submitted/<student>/<assignment>/; gradebook, autograded notebooks and a CSV.
    ``cluster``: a Dask scheduler address (or a cluster object): the sandboxed runs go to its workers,
    ``jobs`` submissions at a time (default: one per worker thread); everything else stays here (cluster.py);
    ``tls``: (CA, certificate, key) files for a ``tls://`` scheduler.
    ``regrade``: judge from each submission's kept results where its job is unchanged (stored.py).

    Returns an exit code: 0 all graded, 1 some submissions could not be graded,
    2 the grader itself failed or refused (no sandbox)."""
    from tqdm.auto import tqdm

    root = root or repo_root()
    refused = _refusal(assignment, jobs, unsandboxed)
    if refused:
        return _error(refused)
    iso = isolation()
    flag = "" if iso.strong else "  [UNSANDBOXED]"
    submitted = root / "submitted"
    students = _students(submitted, assignment)
    if not students:
        print(f"nothing collected yet: no {submitted}/<student>/{assignment}/; run `llmprep nbgrader collect "
              f"{assignment}` first", file=sys.stderr)
        return EXIT_SOME_FAILED
    try:
        ensure_assignment(assignment, root)
    except RuntimeError as exc:
        return _error(str(exc))
    limits = limits or Limits()
    print(f"sandbox: {iso.describe}; budget {limits.wall:.0f} s per submission", file=sys.stderr)
    rows, handed_in, runner = [], {}, None
    late = LatePenalties(root)  # nbgrader's AssignLatePenalties as autograder/nbgrader_config.py sets it
    try:
        reference_run(assignment, limits)  # once, before any student: a broken reference stops the batch here
        if cluster is not None:
            from llmprep.grading.cluster import ClusterRunner

            runner = ClusterRunner(cluster, assignment, unsandboxed, tls)
            jobs = jobs if jobs > 1 else runner.slots
            print(f"cluster: {len(runner.client.nthreads())} workers, {jobs} submissions at a time", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=jobs) as pool, \
                tqdm(total=len(students), desc=f"grading {assignment}", unit="student", file=sys.stderr) as bar:
            for fut in as_completed([pool.submit(_grade_one, root, assignment, s, limits, runner, regrade)
                                     for s in students]):
                student, sub, why = fut.result()
                if sub is not None and sub.recorded and sub.path is not None:
                    handed_in[student] = sub.path.stem
                bar.update(1)
                with _one_writer:
                    rows.append(with_penalty(_row(student, sub, why, flag), late, sub))
                for line in _lines(rows[-1], sub, as_json):
                    tqdm.write(line)
    except GradingError as exc:
        return _error(f"the grader itself failed: {exc}")
    finally:
        out = _write_csv(root, assignment, rows)
        if runner is not None:
            runner.close()
    failed = sum(not r["status"].startswith("graded") for r in rows)
    if feedback:
        nbgrader(["generate_feedback", assignment, "--force"], root)
        _feedback_under_the_names_handed_in(root, assignment, handed_in)
    if not as_json:
        print(f"grades: {out} ({len(students) - failed} graded, {failed} not){flag}")
    return EXIT_SOME_FAILED if failed else EXIT_OK
