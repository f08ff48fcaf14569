"""Stage 6 of grading one submission: record the trusted verdict (gradebook, the autograded
notebook formgrader shows, what ``nbgrader generate_feedback`` renders). Written only by the
trusted process, after the sandbox is gone; nothing the submission printed is copied, and every
note is escaped so that it renders as text, never as HTML."""
from __future__ import annotations

import html
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmprep.grading.judge import NotebookResult
from llmprep.grading.notebook import nbgrader_meta, read_notebook
from llmprep.grading.trusted import GradingError, repo_root
from llmprep.nbgrader_wiring import nbgrader


def gradebook_url(root: Path | None = None) -> str:
    return "sqlite:///" + str((root or repo_root()) / "gradebook.db")


def ensure_assignment(assignment: str, root: Path | None = None) -> None:
    """Make sure the gradebook knows the assignment's notebooks and grade cells (from solutions/)."""
    root = root or repo_root()
    with tempfile.TemporaryDirectory(prefix="llmprep-db-") as tmp:
        nbgrader(["generate_assignment", assignment, "--force", f"--CourseDirectory.release_directory={tmp}"], root)


def submitted_timestamp(folder: Path | None):
    """The submission time nbgrader's exchange left beside a submission (``timestamp.txt``), parsed as
    nbgrader parses it; ``None`` when there is none or it is not a time (it is student-side text)."""
    if folder is None:
        return None
    stamp = Path(folder) / "timestamp.txt"
    try:
        if stamp.is_symlink() or not stamp.is_file() or stamp.stat().st_size > 4096:
            return None
        text = stamp.read_text(errors="replace").strip()
        if not text:
            return None
        from nbgrader.utils import parse_utc

        return parse_utc(text)
    except Exception:  # noqa: BLE001 - unreadable or not a time: no timestamp
        return None


def record(db_url: str, assignment: str, student: str, notebook: str, result: NotebookResult,
           folder: Path | None = None) -> None:
    """Write one student's auto scores for one notebook (one transaction), with the submission's
    timestamp as ``nbgrader autograde`` records it (``folder``: the submitted folder holding
    ``timestamp.txt``): Formgrader compares it with the submitted one to tell graded from "needs
    autograding", and late penalties and ``nbgrader export`` read it."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        known = {c.name for c in gb.find_notebook(notebook, assignment).grade_cells}
        unknown = sorted({v.grade_id for v in result.cells} - known)
        if unknown or result.chapter != assignment:  # never a score the gradebook cannot show (CSV = gradebook)
            raise GradingError(f"verdicts for grade cells the gradebook's {assignment} does not have: {unknown}")
        gb.update_or_create_student(student)
        timestamp = submitted_timestamp(folder)
        if timestamp is not None:
            gb.update_or_create_submission(assignment, student, timestamp=timestamp)
        else:
            gb.update_or_create_submission(assignment, student)
        for verdict in result.cells:
            grade = gb.find_grade(verdict.grade_id, notebook, assignment, student)
            grade.auto_score = verdict.points
            grade.needs_manual_grade = False
        gb.db.commit()


_MARKDOWN = re.compile(r"([\\`*\[\]|~])")


def as_markdown_text(text: str) -> str:
    """Literal text inside a markdown cell: HTML escaped and markdown syntax neutralised."""
    return _MARKDOWN.sub(r"\\\1", html.escape(text, quote=True))


def write_autograded(path, out: Path, result: NotebookResult, template: Path) -> None:
    """The notebook formgrader and `nbgrader generate_feedback` display: the released notebook
    (valid nbgrader metadata whatever the submission did to its own), with the student's answer
    in each solution cell (matched by grade id) and the trusted verdict as each test cell's output.
    ``path``: the submitted notebook, or the notebook node already read from it."""
    import nbformat

    answers: dict[str, str] = {}
    try:
        submitted = read_notebook(path) if isinstance(path, (str, Path)) else path
        for cell in submitted.cells:
            meta = nbgrader_meta(cell)
            if meta.get("solution") and str(meta.get("grade_id")) not in answers:
                src = cell.get("source", "")
                answers[str(meta.get("grade_id"))] = "".join(src) if isinstance(src, list) else str(src)
    except GradingError:
        pass
    nb = read_notebook(template)
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        gid = str(meta.get("grade_id"))
        if meta.get("solution") and gid in answers:
            cell.source = answers[gid]
    annotate(nb, result)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out))


def annotate(nb, result: NotebookResult) -> None:
    """The trusted verdict as each graded test cell's only output (every other output cleared), and the
    notes, escaped, in a markdown cell at the top."""
    import nbformat
    from nbformat.v4 import new_output

    verdicts = {c.grade_id: c for c in result.cells}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        meta = nbgrader_meta(cell)
        gid = str(meta.get("grade_id"))
        cell.outputs = []
        cell.execution_count = None
        if meta.get("grade") and gid in verdicts:
            v = verdicts[gid]
            text = f"llmprep grader: {v.points:g} / {v.max_points:g} points. {v.message}\n"
            if v.points < v.max_points:  # the learner reads this page: the verdict and hints in both languages
                from llmprep.i18n import hint_lines

                zh = [f"评分：{v.points:g} / {v.max_points:g} 分。{v.message_zh}"] if v.message_zh else []
                text += "".join(f"{line}\n" for line in hint_lines(v.hint, "en") + zh + hint_lines(v.hint, "zh"))
            cell.outputs = [new_output("stream", name="stdout", text=text)]
    if result.notes:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            "**Notes from the grader**\n\n" + "\n".join(f"- {as_markdown_text(n)}" for n in result.notes)))


def copy_timestamp(folder: Path, out: Path) -> None:
    """nbgrader's exchange leaves timestamp.txt and submission_secret.txt beside a submission;
    generate_feedback and release_feedback need them in the autograded folder (as nbgrader autograde
    leaves them)."""
    for name in ("timestamp.txt", "submission_secret.txt"):
        stamp = folder / name
        if stamp.is_file() and not stamp.is_symlink() and stamp.stat().st_size < 4096:
            (out / name).write_text(stamp.read_text(errors="replace"))


@dataclass
class Destination:
    """Where stage 6 writes one student's verdicts: the gradebook, and the notebook formgrader and feedback show,
    either written to ``autograded`` (from the released ``template``, with the timestamp files beside it:
    ``llmprep grade``) or ``annotate``: nbgrader's own notebook node, annotated in place (nbgrader autograde)."""
    db_url: str
    student: str
    notebook: str  # nbgrader's notebook id (the file name without .ipynb)
    autograded: Path | None = None
    template: Path | None = None
    annotate: Any = None


_one_writer = threading.Lock()  # the batch grades in threads; one gradebook transaction at a time


def record_submission(sub) -> None:
    """Stage 6 for a :class:`~llmprep.grading.engine.Submission` with a ``destination``: the verdicts in the
    gradebook (under the assignment asked for, ``sub.expected``), then the autograded notebook. Only a
    submission with verdicts is recorded; a failure to record is that submission's (``sub.record_error``),
    never the batch's. Without a destination (``llmprep check``, the tests) nothing is written."""
    dest, result = sub.destination, sub.result
    if dest is None or not result.cells:
        return
    try:
        with _one_writer:
            record(dest.db_url, sub.expected, dest.student, dest.notebook, result, folder=sub.folder)
        if dest.autograded is not None:
            write_autograded(sub.nb, dest.autograded, result, dest.template)
            if sub.folder is not None:
                copy_timestamp(sub.folder, dest.autograded.parent)
        if dest.annotate is not None:
            annotate(dest.annotate, result)
        sub.recorded = True
    except Exception as exc:  # noqa: BLE001 - recorded as this student's failure
        sub.record_error = exc
