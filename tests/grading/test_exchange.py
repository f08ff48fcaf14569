"""nbgrader's exchange, end to end, with the course's configuration (autograder/nbgrader_config.py):
release -> fetch -> submit -> collect -> `llmprep grade` -> generate_feedback -> release_feedback ->
fetch_feedback -> export.

Two classes of three students: one where each student is a real OS account sharing one exchange folder
(the setup README documents for a shared server; needs root to create the accounts), and one where one OS
user plays all three (a class on one machine as a demonstration). The students use the lab's Assignment List
code (nbgrader's ``AssignmentList``: what its buttons call) or `llmprep nbgrader` as themselves; the
instructor uses Formgrader's API (``NbGraderAPI``) and `llmprep nbgrader`; all in a temporary course root
(LLMPREP_ROOT)."""
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from llmprep.nbgrader_wiring import nbgrader_env
from llmprep.grading.batch import grade_assignment
from llmprep.grading.engine import load_spec

CH = "ch15_agents"  # the exchange is the point, not the chapter: ch15 grades in 0.3 s of CPU (ch01: 3 s)


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
def test_exchange_round_trip_three_students(root, tmp_path, monkeypatch, capsys, reference):
    """One OS user plays three students (a class on one machine, or a demonstration)."""
    if _can_make_accounts():
        pytest.skip("covered by the class of three OS accounts (test_three_os_accounts_share_one_exchange)")
    reference(CH)
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
               "carol": (root / "solutions" / CH / nb_name, "carol_ch15.ipynb")}  # renamed, full marks
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
    assert f"note: graded carol_ch15.ipynb as {nb_name}" in out  # the rename shows in the text output
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


# --------------------------------------------------------------------------- three OS accounts, one exchange

STUDENT_SESSION = r"""
import os, shutil, sys
from nbgrader.server_extensions.assignment_list.handlers import AssignmentList

action, chapter, source, filename = sys.argv[1:5]
lst = AssignmentList()
lst.root_dir = os.environ["HOME"]
work = os.environ["LLMPREP_WORKSPACE"]
if action == "submit":
    courses = lst.list_courses()
    assert courses == {"success": True, "value": ["llmprep"]}, courses
    result = lst.fetch_assignment("llmprep", chapter)
    assert result["success"], result
    nb = os.path.join(work, chapter, sys.argv[5])
    assert os.path.isfile(nb), os.listdir(os.path.join(work, chapter))
    if source != "-":
        os.unlink(nb)
        shutil.copy(source, os.path.join(work, chapter, filename))
    result = lst.submit_assignment("llmprep", chapter)
    assert result["success"], result
    try:  # the other students' submissions: the inbound folder is not listable
        os.listdir(os.path.join(os.environ["LLMPREP_EXCHANGE"], "llmprep", "inbound"))
        print("inbound: listed")
    except PermissionError:
        print("inbound: refused")
elif action == "feedback":
    result = lst.fetch_feedback("llmprep", chapter)
    assert result["success"], result
print("session ok")
"""


def _enter_as(uid: int, gid: int):
    """preexec_fn: become ``uid`` for good. Where the interpreter lives under a folder other users cannot
    search (pyenv under /root, as on the CI machine), a private mount namespace shows it at its own path
    under an empty world-searchable folder, as a system-wide Python would be on a shared server."""
    from llmprep.grading import isolate

    base = os.path.realpath(sys.base_prefix)
    blocked = next((str(Path(*Path(base).parts[:i])) for i in range(2, len(Path(base).parts) + 1)
                    if not isolate._reachable(str(Path(*Path(base).parts[:i])), uid)), None)
    stage = tempfile.mkdtemp(prefix="llmprep-python-") if blocked else None

    def enter():
        if blocked:
            import ctypes

            isolate._unshare_mount_namespace()
            isolate._bind(base, stage)                    # keep the interpreter reachable ...
            libc = isolate._libc()
            if libc.mount(b"tmpfs", blocked.encode(), b"tmpfs", 0, b"mode=0755") != 0:  # ... hide what blocks it
                raise OSError(ctypes.get_errno(), f"tmpfs on {blocked}")
            os.makedirs(base, exist_ok=True)
            isolate._bind(stage, base)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    return enter, stage


def _can_make_accounts() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("useradd")) and bool(shutil.which("userdel"))


@pytest.fixture
def os_students():
    """Three fresh OS accounts (removed afterwards): ``{name: (uid, gid)}``."""
    if not _can_make_accounts():
        pytest.skip("creating the students' OS accounts needs root and useradd")
    import pwd

    names = [f"lp{os.getpid() % 100000}{who}" for who in ("alice", "bob", "carol")]
    made = []
    try:
        for name in names:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
                           check=True, capture_output=True)
            made.append(name)
        yield {n: (pwd.getpwnam(n).pw_uid, pwd.getpwnam(n).pw_gid) for n in names}
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True)


@pytest.mark.sandbox
@pytest.mark.slow
def test_three_os_accounts_share_one_exchange(root, os_students, reference, monkeypatch):
    """README's shared-server setup, as three real OS users: an admin's exchange folder (mode 0777) named by
    LLMPREP_EXCHANGE for everyone, each student's own workspace (LLMPREP_WORKSPACE) and home; nbgrader
    knows each student by their account, collect checks who owns each submission, no student can list
    another's, and each student fetches back their own feedback only."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    reference(CH)
    shared = Path(tempfile.mkdtemp(prefix="llmprep-class-"))
    os.chmod(shared, 0o755)
    stages = []
    try:
        course = shared / "course_root"
        for top in ("solutions", "course"):
            shutil.copytree(root / top / CH, course / top / CH)
        shutil.copytree(root / "autograder", course / "autograder", ignore=shutil.ignore_patterns("__pycache__"))
        exchange = shared / "exchange"
        exchange.mkdir()
        os.chmod(exchange, 0o777)                               # created once by an admin, as nbgrader documents
        nb_name = load_spec(CH).notebook
        answers = dict(zip(os_students, [(shutil.copy(root / "solutions" / CH / nb_name, shared / "a.ipynb"), nb_name),
                                         ("-", nb_name),
                                         (shutil.copy(root / "solutions" / CH / nb_name, shared / "c.ipynb"),
                                          "renamed.ipynb")]))
        for name in ("a.ipynb", "c.ipynb"):
            os.chmod(shared / name, 0o644)
        instructor = dict(nbgrader_env(course), LLMPREP_EXCHANGE=str(exchange))
        for key in ("LLMPREP_WORKSPACE", "LLMPREP_GRADEBOOK"):
            instructor.pop(key, None)
        proc = subprocess.run([sys.executable, "-m", "llmprep", "nbgrader", "release_assignment", CH, "--force"],
                              cwd=course, env=instructor, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr

        def session(name, *args):
            uid, gid = os_students[name]
            home = shared / "home" / name
            if not home.exists():
                home.mkdir(parents=True)
                os.chown(home, uid, gid)
            env = dict(instructor, HOME=str(home), USER=name, LOGNAME=name, LLMPREP_WORKSPACE=str(home / "work"),
                       JUPYTER_DATA_DIR=str(home / ".jupyter-data"))
            enter, stage = _enter_as(uid, gid)
            stages.append(stage)
            proc = subprocess.run([sys.executable, "-c", STUDENT_SESSION, *args], cwd=home, env=env,
                                  preexec_fn=enter, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0 and "session ok" in proc.stdout, (name, proc.stdout + proc.stderr)
            return proc.stdout

        for name, (source, filename) in answers.items():
            assert "inbound: refused" in session(name, "submit", CH, str(source), filename, nb_name)

        # collect, owner checked (nbgrader's default): each submission is owned by the account it names
        config = _config(monkeypatch, instructor, course)
        assert config.CollectApp.check_owner
        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        result = api.collect(CH)
        assert result["success"], result
        assert sorted(p.name for p in (course / "submitted").iterdir()) == sorted(os_students)

        monkeypatch.delenv("LLMPREP_ROOT")     # grading reads this repository's engine, specs and reference cache
        assert grade_assignment(CH, root=course, jobs=2, feedback=True) == 0   # README's step 4
        full = sum(ex.points for ex in load_spec(CH).exercises)
        alice, bob, carol = os_students
        rows = {r["student"]: float(r["score"]) for r in csv.DictReader(open(course / "build" / "grades" / f"{CH}.csv"))}
        assert rows == {alice: full, bob: 0.0, carol: full}

        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        assert api.release_feedback(CH)["success"]
        for name in os_students:
            session(name, "feedback", CH, "-", "-")
            pages = list((shared / "home" / name / "work" / CH / "feedback").rglob("*.html"))
            assert len(pages) == 1, (name, pages)      # their own page, nobody else's
            text = pages[0].read_text()
            assert f"{rows[name]:g} / {full:g}" in text or f"{rows[name]} / {full}" in text, (name, rows[name])

        proc = subprocess.run([sys.executable, "-m", "llmprep", "nbgrader", "export"], cwd=course, env=instructor,
                              capture_output=True, text=True)                   # grades.csv for the LMS
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        grades = {r["student_id"]: float(r["score"]) for r in csv.DictReader(open(course / "grades.csv"))}
        assert grades == rows
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        for stage in stages:
            if stage:
                shutil.rmtree(stage, ignore_errors=True)

