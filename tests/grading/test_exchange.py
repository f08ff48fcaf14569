"""nbgrader's exchange, end to end, with the course's configuration (autograder/nbgrader_config.py):
release -> fetch -> submit -> collect -> `llmprep grade` -> generate_feedback -> release_feedback ->
fetch_feedback -> export, for three simulated students.

The students use the lab's Assignment List code (nbgrader's ``AssignmentList``: what its buttons call),
the instructor Formgrader's API (``NbGraderAPI``) and, for release and export, the `llmprep nbgrader`
command itself; all in a temporary course root (LLMPREP_ROOT) with its course-local exchange."""
import csv
import shutil
import subprocess
import sys

import pytest

from llmprep.nbgrader_wiring import nbgrader_env
from llmprep.grading.batch import grade_assignment
from llmprep.grading.engine import load_spec

CH = "ch01_training"


def _config(monkeypatch, env: dict, cwd):
    """nbgrader's configuration as a server extension loads it, under ``env``, from ``cwd``."""
    from nbgrader.apps.baseapp import NbGrader

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)
    app = NbGrader()
    app.load_config_file()
    return app.config


def _student(monkeypatch, tmp_path, base_env, name):
    """The lab's Assignment List of one student (own user name, workspace and nbgrader cache)."""
    from nbgrader.server_extensions.assignment_list.handlers import AssignmentList

    home = tmp_path / "home" / name
    home.mkdir(parents=True, exist_ok=True)
    env = dict(base_env, USER=name, LOGNAME=name, LLMPREP_WORKSPACE=str(home / "work"),
               JUPYTER_DATA_DIR=str(home / ".jupyter-data"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(home)
    # each student is their own OS user on a real machine; here one user plays three
    for module in ("submit", "fetch_feedback"):
        monkeypatch.setattr(f"nbgrader.exchange.default.{module}.get_username", lambda: name)
    lst = AssignmentList()
    lst.root_dir = str(home)
    return lst, home / "work"


@pytest.mark.sandbox
@pytest.mark.slow
def test_exchange_round_trip_three_students(root, tmp_path, monkeypatch, capsys, ch01_reference):
    course = tmp_path / "course_root"
    for top in ("solutions", "course"):
        shutil.copytree(root / top / CH, course / top / CH)
    shutil.copytree(root / "autograder", course / "autograder", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in nbgrader_env(course).items() if k in ("JUPYTER_CONFIG_PATH", "LLMPREP_ROOT", "PATH")}
    for key in ("LLMPREP_EXCHANGE", "LLMPREP_WORKSPACE", "LLMPREP_GRADEBOOK"):
        monkeypatch.delenv(key, raising=False)

    def llmprep_nbgrader(*args):
        proc = subprocess.run([sys.executable, "-m", "llmprep", "nbgrader", *args], cwd=course,
                              env=nbgrader_env(course), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        return proc

    # 1. the instructor releases into the course-local exchange (created by the configuration)
    llmprep_nbgrader("release_assignment", CH, "--force")
    assert (course / "exchange" / "llmprep" / "outbound" / CH / load_spec(CH).notebook).is_file()

    # 2. three students list, fetch (into their workspace), answer and submit
    nb_name = load_spec(CH).notebook
    answers = {"alice": (root / "solutions" / CH / nb_name, nb_name),        # full marks
               "bob": (None, nb_name),                                          # submits the stubs
               "carol": (root / "solutions" / CH / nb_name, "carol_ch01.ipynb")}  # renamed, full marks
    for name, (source, filename) in answers.items():
        lst, work = _student(monkeypatch, tmp_path, env, name)
        courses = lst.list_courses()
        assert courses == {"success": True, "value": ["llmprep"]}, courses  # not "Error fetching courses!"
        assert lst.fetch_assignment("llmprep", CH)["success"]
        assert (work / CH / nb_name).is_file()
        if source is not None:
            (work / CH / nb_name).unlink()
            shutil.copy(source, work / CH / filename)
        result = lst.submit_assignment("llmprep", CH)
        assert result["success"], result

    # 3. collect (Formgrader's API); the simulated students share one OS user, hence no owner check
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = _config(monkeypatch, env, course)
    config.CollectApp.check_owner = False
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    assert api.exchange_is_functional
    assert api.collect(CH)["success"]
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["alice", "bob", "carol"]

    # 4. trusted grading (by this repository's engine, specs and reference cache)
    monkeypatch.delenv("LLMPREP_ROOT")
    assert grade_assignment(CH, root=course, jobs=2) == 0
    out = capsys.readouterr().out
    assert f"note: graded carol_ch01.ipynb as {nb_name}" in out  # the rename shows in the text output
    rows = {r["student"]: r for r in csv.DictReader(open(course / "build" / "grades" / f"{CH}.csv"))}
    full = sum(ex.points for ex in load_spec(CH).exercises)
    assert {s: float(r["score"]) for s, r in rows.items()} == {"alice": full, "bob": 0.0, "carol": full}

    # 5. feedback: generated, released, fetched by a student
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    result = api.generate_feedback(CH)
    assert result["success"], result.get("log")
    result = api.release_feedback(CH)
    assert result["success"], result
    for student in ("alice", "bob", "carol"):
        page = (course / "feedback" / student / CH / nb_name.replace(".ipynb", ".html")).read_text()
        assert 'white-space: pre-wrap; overflow-wrap: anywhere">llmprep grader:' in page  # verdicts wrap
    lst, work = _student(monkeypatch, tmp_path, env, "alice")
    assert lst.fetch_feedback("llmprep", CH)["success"]
    assert list((work / CH / "feedback").rglob("*.html"))

    # 6. export for the LMS
    llmprep_nbgrader("export")
    grades = {r["student_id"]: float(r["score"]) for r in csv.DictReader(open(course / "grades.csv"))}
    assert grades == {"alice": full, "bob": 0.0, "carol": full}
