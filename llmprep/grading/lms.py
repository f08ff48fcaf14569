"""Grades for a learning-management system: Canvas's gradebook import CSV (``llmprep grade ... --canvas FILE``).

The layout is the one Canvas's Gradebook exports and its *Import* accepts (Canvas guide "How do I import
grades in the Gradebook?"):

- a header row whose first five columns are ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``,
  ``Section``, then one column per assignment;
- a second row, ``Points Possible`` under ``Student``, the identity cells empty and each assignment's
  points possible under it (Canvas reads it as the points row, not as a student);
- then one row per student. Canvas matches a row to an enrolled student by ``ID`` (Canvas's user id),
  ``SIS User ID`` or ``SIS Login ID``; an assignment column titled ``Name (Canvas assignment id)`` updates that
  assignment, a new title creates one; an empty grade cell changes nothing.

What goes in, from nbgrader's gradebook (the same numbers ``nbgrader export`` writes): ``Student`` is
"last, first" where the gradebook has names (``nbgrader db student add ID --last-name=... --first-name=...``),
else the id; ``ID`` is the student's ``lms_user_id`` (``--lms-user-id``) where set; ``SIS Login ID`` is
nbgrader's student id (a class's login names); ``SIS User ID`` and ``Section`` are left empty. The grade is
the final score: the trusted score minus nbgrader's late penalty; a student without a graded submission
gets an empty cell. Every text cell is made formula-safe (student ids are hostile text).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

CANVAS_IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "Points Possible"


@dataclass
class StudentGrade:
    student_id: str
    first_name: str | None = None
    last_name: str | None = None
    lms_user_id: str | None = None
    score: float | None = None  # final score (after the late penalty); None: nothing graded


def _number(x: float) -> str:
    return f"{round(float(x), 4):g}"


def canvas_table(column: str, points_possible: float, grades: list[StudentGrade]) -> list[list[str]]:
    """The rows of Canvas's gradebook import CSV for one assignment column."""
    from llmprep.grading.batch import csv_safe

    rows = [CANVAS_IDENTITY + [column], [POINTS_POSSIBLE, "", "", "", "", _number(points_possible)]]
    for g in sorted(grades, key=lambda g: g.student_id):
        name = f"{g.last_name}, {g.first_name}" if g.last_name and g.first_name else g.student_id
        rows.append([csv_safe(name), csv_safe(g.lms_user_id or ""), "", csv_safe(g.student_id), "",
                     "" if g.score is None else _number(g.score)])
    return rows


def gradebook_grades(db_url: str, assignment: str) -> tuple[float, list[StudentGrade]]:
    """(points possible, one StudentGrade per student in the gradebook) for ``assignment``, as nbgrader export
    computes them."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        points = float(gb.find_assignment(assignment).max_score)
        grades = []
        for student in gb.students:
            try:
                sub = gb.find_submission(assignment, student.id)
                score = max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0.0))
            except MissingEntry:
                score = None
            grades.append(StudentGrade(student.id, student.first_name, student.last_name, student.lms_user_id, score))
    return points, grades


def write_canvas(db_url: str, assignment: str, out: Path, column: str | None = None) -> Path:
    """Canvas's gradebook import CSV of ``assignment`` at ``out`` (the column titled ``column``, default the id)."""
    points, grades = gradebook_grades(db_url, assignment)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(canvas_table(column or assignment, points, grades))
    return out
