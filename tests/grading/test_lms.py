"""Canvas's gradebook import CSV: five identity columns, the assignment column, points possible in row 2."""
import csv

from llmprep.grading.lms import CANVAS_IDENTITY, StudentGrade, canvas_table, write_canvas


def test_canvas_layout():
    rows = canvas_table("Chapter 1 (12345)", 16.0, [
        StudentGrade("zoe", "Zoe", "Li", "9001", 12.5),
        StudentGrade("amir", score=16.0),
        StudentGrade("=HYPERLINK(1)", score=None),  # hostile id, nothing graded
    ])
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Chapter 1 (12345)"]
    assert rows[0][:5] == CANVAS_IDENTITY
    assert rows[1] == ["Points Possible", "", "", "", "", "16"]
    assert rows[2] == ["'=HYPERLINK(1)", "", "", "'=HYPERLINK(1)", "", ""]  # formula-safe; empty cell: no change
    assert rows[3] == ["amir", "", "", "amir", "", "16"]
    assert rows[4] == ["Li, Zoe", "9001", "", "zoe", "", "12.5"]


def test_canvas_csv_from_a_gradebook(tmp_path, monkeypatch):
    """Read back from a real nbgrader gradebook: names, the LMS user id, the final score after the late penalty."""
    import datetime
    import os
    import sys
    from pathlib import Path

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))  # alembic

    from nbgrader.api import Gradebook

    db = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(db) as gb:
        gb.update_or_create_assignment("ch01_training", duedate=datetime.datetime(2026, 12, 1, 12))
        gb.add_notebook("ch01_exercises", "ch01_training")
        gb.add_grade_cell("ex1", "ch01_exercises", "ch01_training", max_score=10, cell_type="code")
        gb.add_source_cell("ex1", "ch01_exercises", "ch01_training", cell_type="code", source="", checksum="")
        gb.add_student("ana", first_name="Ana", last_name="Ruiz", lms_user_id="777")
        gb.add_student("ben")
        gb.add_student("cy")  # enrolled, never submitted
        for student, stamp in [("ana", datetime.datetime(2026, 12, 1, 11)), ("ben", datetime.datetime(2026, 12, 2, 13))]:
            gb.add_submission("ch01_training", student, timestamp=stamp)
            grade = gb.find_grade("ex1", "ch01_exercises", "ch01_training", student)
            grade.auto_score = 8
            if student == "ben":
                gb.find_submission_notebook("ch01_exercises", "ch01_training", student).late_submission_penalty = 1.6
        gb.db.commit()
    out = write_canvas(db, "ch01_training", tmp_path / "canvas.csv")
    rows = list(csv.reader(open(out)))
    assert rows[0] == CANVAS_IDENTITY + ["ch01_training"] and rows[1][0] == "Points Possible" and rows[1][5] == "10"
    assert rows[2:] == [["Ruiz, Ana", "777", "", "ana", "", "8"], ["ben", "", "", "ben", "", "6.4"],
                        ["cy", "", "", "cy", "", ""]]

    # the command line's --canvas FILE --canvas-column TITLE writes the same from the course's gradebook
    import argparse

    from llmprep import cli
    from llmprep.grading import record

    monkeypatch.setattr(record, "gradebook_url", lambda root=None: db)
    args = argparse.Namespace(assignment="ch01_training", canvas=str(tmp_path / "cli.csv"), canvas_column="Ch 1 (42)")
    assert cli.canvas_export(args) == 0
    assert list(csv.reader(open(tmp_path / "cli.csv"))) == [CANVAS_IDENTITY + ["Ch 1 (42)"], rows[1]] + rows[2:]
    args.assignment = "ch02_imbalance"  # not in this gradebook: one line, exit 2
    assert cli.canvas_export(args) == 2
