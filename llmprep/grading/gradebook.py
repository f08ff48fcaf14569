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


def pick_notebook(folder: Path, spec) -> tuple[Path | None, str]:
    """The submitted notebook to grade: the expected name, else the one sharing most grade ids
    with the chapter (students rename files). Returns (path, note)."""
    from llmprep.grading.engine import read_notebook, test_cells

    expected = folder / spec.NOTEBOOK
    if expected.is_file():
        return expected, ""
    ids = {ex.grade_id for ex in spec.EXERCISES}
    best, overlap = None, 0
    for candidate in sorted(folder.glob("*.ipynb")):
        try:
            n = len(ids & set(test_cells(read_notebook(candidate))))
        except GradingError:
            continue
        if n > overlap:
            best, overlap = candidate, n
    if best is None:
        return None, f"no notebook with this assignment's graded cells in {folder.name}/"
    return best, f"graded {best.name} as {spec.NOTEBOOK} ({overlap} of {len(ids)} graded cells matched)"


def write_autograded(path: Path, out: Path, result: NotebookResult, template: Path) -> None:
    """The notebook formgrader and `nbgrader generate_feedback` display: the released notebook
    (valid nbgrader metadata whatever the submission did to its own), with the student's answer
    in each solution cell (matched by grade id) and the trusted verdict as each test cell's output.
    Nothing the submission printed is copied."""
    import nbformat
    from nbformat.v4 import new_output

    from llmprep.grading.engine import nbgrader_meta, read_notebook

    answers: dict[str, str] = {}
    try:
        for cell in read_notebook(path).cells:
            meta = nbgrader_meta(cell)
            if meta.get("solution") and str(meta.get("grade_id")) not in answers:
                answers[str(meta.get("grade_id"))] = cell.get("source", "")
    except GradingError:
        pass
    nb = read_notebook(template)
    verdicts = {c.grade_id: c for c in result.cells}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        gid = str(meta.get("grade_id"))
        if meta.get("solution") and gid in answers:
            cell.source = answers[gid]
        if cell.get("cell_type") != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        if meta.get("grade") and gid in verdicts:
            v = verdicts[gid]
            text = f"llmprep grader: {v.points:g} / {v.max_points:g} points. {v.message}\n"
            cell.outputs = [new_output("stream", name="stdout", text=text)]
    if result.notes:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            "**Notes from the grader**\n\n" + "\n".join(f"- {n}" for n in result.notes)))
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out))


def grade_assignment(assignment: str, root: Path | None = None, jobs: int = 1, as_json: bool = False,
                     feedback: bool = False) -> int:
    """Grade every submitted/<student>/<assignment>/; gradebook, autograded notebooks and a CSV.

    Returns an exit code: 0 all graded, 1 some submissions could not be graded,
    2 the grader itself failed."""
    import os
    import sys

    from tqdm.auto import tqdm

    root = root or repo_root()
    try:
        spec = load_spec(assignment)
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
    from llmprep.grading.engine import isolation

    print(f"sandbox: {isolation().describe}", file=sys.stderr)
    # Everything under the course root is private to the grader: hide it inside the sandbox too.
    private = os.environ.get("LLMPREP_PRIVATE", "")
    os.environ["LLMPREP_PRIVATE"] = os.pathsep.join(filter(None, [private, str(root.resolve())]))

    def one(student: str):
        folder = submitted / student / assignment
        path, note = pick_notebook(folder, spec)
        if path is None:
            return student, None, None, f"missing: {note}"
        result = check_notebook(path)
        if note:
            result.notes.insert(0, note)
        return student, path, result, ""

    rows, failed = [], 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
                tqdm(total=len(students), desc=f"grading {assignment}", unit="student", file=sys.stderr) as bar:
            futures = [pool.submit(one, s) for s in students]
            for fut in as_completed(futures):
                student, path, result, why = fut.result()
                bar.update(1)
                if result is None:
                    failed += 1
                    rows.append({"student": student, "status": why, "score": "", "max_score": ""})
                    tqdm.write(json.dumps({"student": student, "status": why}) if as_json else f"{student:<20} {why}")
                    continue
                if result.cells:
                    record(gradebook_url(root), assignment, student, notebook_id, result)
                    write_autograded(path, root / "autograded" / student / assignment / spec.NOTEBOOK, result,
                                     repo_root() / "course" / assignment / spec.NOTEBOOK)
                    status = "graded"
                else:
                    failed += 1
                    status = f"failed: {'; '.join(result.notes)[:200]}"
                rows.append({"student": student, "status": status, "score": result.score,
                             "max_score": result.max_score})
                tqdm.write(json.dumps({"student": student, "status": status, **result.to_json()}) if as_json
                           else f"{student:<20} {result.score:g} / {result.max_score:g}  {status}")
    except GradingError as exc:
        print(f"error: the grader itself failed: {exc}")
        return 2
    finally:
        os.environ["LLMPREP_PRIVATE"] = private
    out = root / "build" / "grades" / f"{assignment}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["student", "status", "score", "max_score"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["student"]))
    if feedback:
        from llmprep.course import nbgrader

        nbgrader(["generate_feedback", assignment, "--force"], root)
    if not as_json:
        print(f"grades: {out} ({len(students) - failed} graded, {failed} not)")
    return 1 if failed else 0
