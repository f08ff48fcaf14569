"""Record trusted verdicts in the nbgrader gradebook and grade a class (v1: serial or threaded).

The gradebook is written only here, by the trusted process, after the student's
sandbox process is gone: one transaction per student.
"""
from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from llmprep.grading.engine import GradingError, NotebookResult, check_notebook, load_spec, repo_root


def gradebook_url(root: Path | None = None) -> str:
    return "sqlite:///" + str((root or repo_root()) / "gradebook.db")


def ensure_assignment(assignment: str, root: Path | None = None) -> None:
    """Make sure the gradebook knows the assignment's notebooks and grade cells (from solutions/)."""
    import tempfile

    from llmprep.course import nbgrader

    root = root or repo_root()
    with tempfile.TemporaryDirectory(prefix="llmprep-db-") as tmp:
        nbgrader(["generate_assignment", assignment, "--force", f"--CourseDirectory.release_directory={tmp}"], root)


def record(db_url: str, assignment: str, student: str, notebook: str, result: NotebookResult) -> None:
    """Write one student's auto scores for one notebook (one transaction)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        try:
            gb.find_submission(assignment, student)
        except Exception:  # noqa: BLE001 - nbgrader raises MissingEntry
            gb.add_submission(assignment, student)
        by_id = {c.grade_id: c for c in result.cells}
        for grade_id, verdict in by_id.items():
            try:
                grade = gb.find_grade(grade_id, notebook, assignment, student)
            except Exception:  # noqa: BLE001 - a grade cell the gradebook does not know
                continue
            grade.auto_score = verdict.points
            grade.needs_manual_grade = False
        gb.db.commit()


def grade_assignment(assignment: str, root: Path | None = None, jobs: int = 1, as_json: bool = False) -> int:
    """Grade every submitted/<student>/<assignment>/; gradebook + CSV; returns an exit code:
    0 all graded, 1 some submissions could not be graded, 2 the grader itself failed."""
    root = root or repo_root()
    chapter = assignment
    try:
        spec = load_spec(chapter)
    except GradingError as exc:
        print(f"error: {exc}")
        return 2
    submitted = root / "submitted"
    students = sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir()) if submitted.is_dir() else []
    if not students:
        print(f"no submissions in {submitted}/<student>/{assignment}/")
        return 1
    try:
        ensure_assignment(assignment, root)
    except RuntimeError as exc:
        print(f"error: {exc}")
        return 2
    notebook_id = Path(spec.NOTEBOOK).stem

    def one(student: str):
        folder = submitted / student / assignment
        path = folder / spec.NOTEBOOK
        if not path.is_file():
            candidates = sorted(folder.glob("*.ipynb"))
            path = next((c for c in candidates if "reference" not in c.stem), None)
            if path is None:
                return student, None, "missing: no notebook submitted"
        return student, check_notebook(path), ""

    rows, failed = [], 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, s) for s in students]
        for fut in as_completed(futures):
            try:
                student, result, why = fut.result()
            except GradingError as exc:
                print(f"error: the grader failed: {exc}")
                return 2
            if result is None:
                failed += 1
                rows.append({"student": student, "status": why, "score": "", "max_score": ""})
                print(f"{student:<20} {why}")
                continue
            record(gradebook_url(root), assignment, student, notebook_id, result)
            status = "graded" if result.cells else f"failed: {'; '.join(result.notes)[:200]}"
            failed += 0 if result.cells else 1
            rows.append({"student": student, "status": status, "score": result.score, "max_score": result.max_score})
            if as_json:
                print(json.dumps({"student": student, **result.to_json()}))
            else:
                print(f"{student:<20} {result.score:g} / {result.max_score:g}  {status}")
    out = root / "build" / "grades" / f"{assignment}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["student", "status", "score", "max_score"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["student"]))
    print(f"grades: {out}")
    return 1 if failed else 0
