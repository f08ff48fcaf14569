"""A class round trip: submissions graded by the trusted engine, verdicts in nbgrader's gradebook and a CSV."""
import csv
import shutil

import pytest

from llmprep.grading.engine import load_spec
from llmprep.grading.batch import grade_assignment
from llmprep.grading.record import gradebook_url

# A workflow test, not a chapter's: it grades ch15, whose answers are pure Python (0.3 s of CPU a notebook in the
# sandbox; ch01 imports torch and transformers and took ten times that)
CH = "ch15_agents"


@pytest.mark.sandbox
def test_grade_a_small_class(root, tmp_path, reference):
    reference(CH)
    course = tmp_path / "course_root"
    shutil.copytree(root / "solutions" / CH, course / "solutions" / CH)
    nb_name = load_spec(CH).notebook
    for student, source in [("alice", root / "solutions" / CH / nb_name),
                            ("bob", root / "course" / CH / nb_name)]:
        (course / "submitted" / student / CH).mkdir(parents=True)
        shutil.copy(source, course / "submitted" / student / CH / nb_name)
    (course / "submitted" / "carol" / CH).mkdir(parents=True)
    (course / "submitted" / "carol" / CH / nb_name).write_text("{broken")
    (course / "submitted" / "dave" / CH).mkdir(parents=True)  # submitted nothing

    code = grade_assignment(CH, root=course, jobs=2)
    assert code == 1  # some submissions could not be graded

    from nbgrader.api import Gradebook

    max_score = sum(ex.points for ex in load_spec(CH).exercises)
    with Gradebook(gradebook_url(course)) as gb:
        alice = gb.find_submission(CH, "alice")
        bob = gb.find_submission(CH, "bob")
        assert alice.score == max_score
        assert bob.score == 0
        grade = gb.find_grade("ch15_loop_test", "ch15_exercises", CH, "alice")
        assert grade.auto_score == 3 and grade.max_score == 3
    rows = {r["student"]: r for r in csv.DictReader(open(course / "build" / "grades" / f"{CH}.csv"))}
    assert rows["alice"]["status"] == "graded" and float(rows["alice"]["score"]) == max_score
    assert rows["carol"]["status"].startswith("failed") and "not a readable notebook" in rows["carol"]["status"]
    assert rows["dave"]["status"].startswith("missing")


def test_formgrader_sees_trusted_grades_and_its_autograde_runs_the_trusted_engine(root, tmp_path):
    """After ``llmprep grade``, nbgrader's own API (what Formgrader shows) lists every graded student as
    autograded, with the score and nbgrader's timestamp; Formgrader's ⚡ Autograde (``nbgrader autograde``
    with the course's config) grades through the trusted engine: the same score, verdict lines in the
    autograded notebook, and a submission that cheats inside its kernel gains nothing."""
    import json

    import nbformat
    import pytest

    from llmprep.nbgrader_wiring import nbgrader, nbgrader_env
    from llmprep.grading.engine import isolation

    if not isolation().strong:
        pytest.skip("no sandbox on this machine")
    course = tmp_path / "course_root"
    shutil.copytree(root / "solutions" / CH, course / "solutions" / CH)
    nb_name = load_spec(CH).notebook
    cheat = nbformat.read(str(root / "course" / CH / nb_name), as_version=4)  # the stub: 0 points honestly
    cheat.cells.append(nbformat.v4.new_code_cell(  # stock nbgrader would run this in the grading kernel
        "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"))
    for student, stamp in [("alice", "2026-12-01 10:00:00.000000 UTC"), ("mallory", "2026-12-01 11:00:00.000000 UTC")]:
        folder = course / "submitted" / student / CH
        folder.mkdir(parents=True)
        if student == "alice":
            shutil.copy(root / "solutions" / CH / nb_name, folder / nb_name)
        else:
            nbformat.write(cheat, str(folder / nb_name))
        (folder / "timestamp.txt").write_text(stamp)
    assert grade_assignment(CH, root=course, jobs=1) == 0
    max_score = sum(ex.points for ex in load_spec(CH).exercises)

    import os

    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    old = os.getcwd()
    os.chdir(course)
    try:
        coursedir = CourseDirectory(root=str(course), db_url=gradebook_url(course), course_id="llmprep",
                                    source_directory="solutions", release_directory="course")
        api = NbGraderAPI(coursedir=coursedir)
        subs = {s["student"]: s for s in api.get_submissions(CH)}
        assert api.get_autograded_students(CH) == {"alice", "mallory"}  # not "needs autograding"
    finally:
        os.chdir(old)
    assert subs["alice"]["autograded"] and subs["alice"]["score"] == max_score
    assert subs["mallory"]["score"] == 0
    assert subs["alice"]["timestamp"] is not None and subs["alice"]["timestamp"].startswith("2026-12-01")

    # ⚡ Autograde: nbgrader's own autograde with the course's configuration
    (course / "autograded").rename(course / "autograded-by-llmprep")
    nbgrader(["autograde", CH, "--force"], course)
    autograded = course / "autograded" / "mallory" / CH / nb_name
    text = autograded.read_text()
    assert "llmprep grader: 0 / 2 points" in text and "not implemented yet" in text
    alice = json.loads((course / "autograded" / "alice" / CH / nb_name).read_text())
    texts = ["".join(o.get("text", "")) for c in alice["cells"] for o in c.get("outputs", [])]
    verdicts = [t for t in texts if "llmprep grader" in t]
    assert len(verdicts) == len(load_spec(CH).exercises) and all("passed all" in v for v in verdicts)
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(course)) as gb:
        assert gb.find_submission(CH, "alice").score == max_score
        assert gb.find_submission(CH, "mallory").score == 0
    assert "JUPYTER_CONFIG_PATH" in nbgrader_env(course)
