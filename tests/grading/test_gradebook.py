"""A class round trip: submissions graded by the trusted engine, verdicts in nbgrader's gradebook and a CSV."""
import csv
import shutil

import pytest

from llmprep.grading.engine import load_spec
from llmprep.grading.batch import grade_assignment
from llmprep.grading.record import gradebook_url

CH01 = "ch01_training"


@pytest.mark.sandbox
def test_grade_a_small_class(root, tmp_path, ch01_reference):
    course = tmp_path / "course_root"
    shutil.copytree(root / "solutions" / CH01, course / "solutions" / CH01)
    nb_name = load_spec(CH01).NOTEBOOK
    for student, source in [("alice", root / "solutions" / CH01 / nb_name),
                            ("bob", root / "course" / CH01 / nb_name)]:
        (course / "submitted" / student / CH01).mkdir(parents=True)
        shutil.copy(source, course / "submitted" / student / CH01 / nb_name)
    (course / "submitted" / "carol" / CH01).mkdir(parents=True)
    (course / "submitted" / "carol" / CH01 / nb_name).write_text("{broken")
    (course / "submitted" / "dave" / CH01).mkdir(parents=True)  # submitted nothing

    code = grade_assignment(CH01, root=course, jobs=2)
    assert code == 1  # some submissions could not be graded

    from nbgrader.api import Gradebook

    max_score = sum(ex.points for ex in load_spec(CH01).EXERCISES)
    with Gradebook(gradebook_url(course)) as gb:
        alice = gb.find_submission(CH01, "alice")
        bob = gb.find_submission(CH01, "bob")
        assert alice.score == max_score
        assert bob.score == 0
        grade = gb.find_grade("ch01_adamw_test", "ch01_exercises", CH01, "alice")
        assert grade.auto_score == 3 and grade.max_score == 3
    rows = {r["student"]: r for r in csv.DictReader(open(course / "build" / "grades" / f"{CH01}.csv"))}
    assert rows["alice"]["status"] == "graded" and float(rows["alice"]["score"]) == max_score
    assert rows["carol"]["status"].startswith("failed") and "not a readable notebook" in rows["carol"]["status"]
    assert rows["dave"]["status"].startswith("missing")
