"""Late penalties: the course's policy (a percentage per started day, capped) through nbgrader's own
AssignLatePenalties, the same in `llmprep grade`, nbgrader's autograde (Formgrader) and `nbgrader export`."""
import csv
import os
import shutil
import sys
from pathlib import Path

import pytest

from llmprep.grading.engine import load_spec
from llmprep.grading.judge import CellVerdict, NotebookResult
from llmprep.grading.late import DAY, LatePenalties, PercentPerStartedDay, percent_late
from llmprep.grading.record import gradebook_url, record
from llmprep.nbgrader_wiring import nbgrader

CH = "ch15_agents"  # a workflow test: ch15 grades in 0.3 s of CPU (pure Python; ch01 imports torch)
DUE = "2026-12-01 12:00:00 UTC"


def test_policy_percent_per_started_day_capped():
    assert percent_late(0, 10, 50) == 0  # on time
    assert percent_late(-5, 10, 50) == 0
    assert percent_late(1, 10, 50) == 10  # one second late is one started day
    assert percent_late(DAY, 10, 50) == 10
    assert percent_late(DAY + 1, 10, 50) == 20
    assert percent_late(4.5 * DAY, 10, 50) == 50
    assert percent_late(30 * DAY, 10, 50) == 50  # very late: the cap
    plugin = PercentPerStartedDay(percent_per_day=25, max_percent=60)
    assert plugin.late_submission_penalty("s", 8.0, 2 * DAY + 60) == pytest.approx(8.0 * 0.60)
    assert plugin.late_submission_penalty("s", 8.0, 60) == pytest.approx(2.0)
    assert plugin.late_submission_penalty("s", 0.0, 60) == 0.0


def test_the_course_configuration_installs_the_policy(tmp_path):
    late = LatePenalties(tmp_path)
    assert late.preprocessor.plugin_class is PercentPerStartedDay
    assert late.policy == "10 % of the score per started day late, at most 50 %"


def _full_marks(chapter: str) -> NotebookResult:
    spec = load_spec(chapter)
    cells = [CellVerdict(ex.grade_id, ex.points, ex.points, "passed") for ex in spec.exercises]
    total = sum(c.points for c in cells)
    return NotebookResult(spec.notebook, chapter, total, total, cells)


def _gradebook(course, chapter: str, monkeypatch) -> tuple[str, str]:
    """A gradebook that knows the chapter's notebook and graded cells (what `generate_assignment` records)."""
    from nbgrader.api import Gradebook

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])  # for alembic
    course.mkdir(parents=True)
    spec = load_spec(chapter)
    db, notebook = gradebook_url(course), spec.notebook.removesuffix(".ipynb")
    with Gradebook(db) as gb:
        gb.update_or_create_assignment(chapter)
        gb.add_notebook(notebook, chapter)
        for ex in spec.exercises:
            gb.add_grade_cell(ex.grade_id, notebook, chapter, max_score=ex.points, cell_type="code")
            gb.add_source_cell(ex.grade_id, notebook, chapter, cell_type="code", source="", checksum="")
    return db, notebook


def test_penalties_in_the_gradebook_agree_with_nbgrader_export(tmp_path, monkeypatch):
    """No due date: nobody is late. With one (set as an instructor does, `nbgrader db assignment add --duedate`):
    on time 0, 1.5 days late 20 %, 20 days late the 50 % cap, no timestamp 0; `nbgrader export` reads the same."""
    course = tmp_path / "course_root"
    db, notebook = _gradebook(course, CH, monkeypatch)
    result = _full_marks(CH)
    stamps = {"ontime": "2026-12-01 11:00:00.000000 UTC", "late": "2026-12-03 00:00:00.000000 UTC",
              "verylate": "2026-12-21 12:00:00.000000 UTC", "nostamp": None}
    for student, stamp in stamps.items():
        folder = course / "submitted" / student / CH
        folder.mkdir(parents=True)
        if stamp:
            (folder / "timestamp.txt").write_text(stamp)
        record(db, CH, student, notebook, result, folder=folder)
    late = LatePenalties(course)
    assert {s: late.apply(db, CH, s, notebook) for s in stamps} == dict.fromkeys(stamps, 0.0)  # no due date

    nbgrader(["db", "assignment", "add", CH, f"--duedate={DUE}"], course)
    got = {s: late.apply(db, CH, s, notebook) for s in stamps}
    full = result.max_score
    assert got == pytest.approx({"ontime": 0.0, "late": 0.2 * full, "verylate": 0.5 * full, "nostamp": 0.0})

    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    out = course / "grades.csv"
    with Gradebook(db) as gb:  # what `nbgrader export` runs (its default plugin), in this process
        CsvExportPlugin(to=str(out)).export(gb)
    exported = {r["student_id"]: r for r in csv.DictReader(open(out))}
    for student, penalty in got.items():
        assert float(exported[student]["late_submission_penalty"]) == pytest.approx(penalty)
        assert float(exported[student]["score"]) == pytest.approx(full - penalty)


@pytest.mark.sandbox
def test_grade_applies_the_penalty_in_csv_feedback_and_autograde(root, tmp_path, reference):
    """`llmprep grade --feedback` on a late submission: the CSV's late_penalty and final_score, nbgrader's gradebook
    and the feedback page agree, and nbgrader's own autograde (Formgrader's button) assigns the same."""
    from nbgrader.api import Gradebook

    from llmprep.grading.batch import grade_assignment
    from llmprep.grading.engine import isolation

    if not isolation().strong:
        pytest.skip("no sandbox on this machine")
    reference(CH)
    course = tmp_path / "course_root"
    shutil.copytree(root / "solutions" / CH, course / "solutions" / CH)
    nbgrader(["db", "assignment", "add", CH, f"--duedate={DUE}"], course)  # `llmprep grade` adds its notebooks
    nb_name = load_spec(CH).notebook
    folder = course / "submitted" / "late" / CH  # (on time, very late and no due date: the test above)
    folder.mkdir(parents=True)
    shutil.copy(root / "solutions" / CH / nb_name, folder / nb_name)
    (folder / "timestamp.txt").write_text("2026-12-03 13:00:00.000000 UTC")
    assert grade_assignment(CH, root=course, jobs=1, feedback=True) == 0

    full = sum(ex.points for ex in load_spec(CH).exercises)
    rows = {r["student"]: r for r in csv.DictReader(open(course / "build" / "grades" / f"{CH}.csv"))}
    assert float(rows["late"]["score"]) == full  # what the judge gave; 3 started days late: -30 %
    assert float(rows["late"]["late_penalty"]) == pytest.approx(0.3 * full)
    assert float(rows["late"]["final_score"]) == pytest.approx(0.7 * full)
    with Gradebook(gradebook_url(course)) as gb:
        assert gb.find_submission(CH, "late").late_submission_penalty == pytest.approx(0.3 * full)
    page = (course / "feedback" / "late" / CH / nb_name.replace(".ipynb", ".html")).read_text()
    assert "Late submission penalty" in page and f"-{0.3 * full:g}" in page

    with Gradebook(gradebook_url(course)) as gb:  # forget it, then let nbgrader's autograde assign it again
        gb.find_submission_notebook(nb_name.removesuffix(".ipynb"), CH, "late").late_submission_penalty = None
        gb.db.commit()
    nbgrader(["autograde", CH, "--force"], course)
    with Gradebook(gradebook_url(course)) as gb:
        assert gb.find_submission(CH, "late").late_submission_penalty == pytest.approx(0.3 * full)
