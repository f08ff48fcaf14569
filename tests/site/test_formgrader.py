"""Formgrader after `llmprep grade`, as an instructor's browser gets it (issue 27 item 1): the real Jupyter server
that `llmprep lab` starts, asked over HTTP for the data its Manage Submissions page renders. Every graded
student is listed as autograded with the trusted score (not "needs autograding") and nbgrader's submission
timestamp, and the autograded notebook the submission view shows carries the trusted verdict lines.
(The page itself in headless Chromium stayed at "Loading" on this machine; not yet a browser test.)"""
import shutil
import subprocess

import nbformat
import pytest

from llmprep import cli
from llmprep.grading.batch import grade_assignment
from llmprep.grading.engine import isolation, load_spec
from tests.course.test_start_lab import _free_port, _get, when_up
pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

CH01 = "ch01_training"


@pytest.fixture(scope="module")
def formgrader(root, tmp_path_factory):
    if not isolation().strong:
        pytest.skip("no sandbox on this machine")
    course = tmp_path_factory.mktemp("formgrader") / "course_root"
    shutil.copytree(root / "solutions" / CH01, course / "solutions" / CH01)
    nb_name = load_spec(CH01).notebook
    for student, source, stamp in [("alice", root / "solutions", "2026-12-01 10:00:00.000000 UTC"),
                                   ("bob", root / "course", "2026-12-01 11:30:00.000000 UTC")]:
        folder = course / "submitted" / student / CH01
        folder.mkdir(parents=True)
        nbformat.write(nbformat.read(str(source / CH01 / nb_name), as_version=4), str(folder / nb_name))
        (folder / "timestamp.txt").write_text(stamp)
    assert grade_assignment(CH01, root=course, jobs=2) == 0
    cmd, env = cli.lab_command([], course)
    port, token = _free_port(), "llmprep-formgrader-test"
    server = subprocess.Popen(cmd + [f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--no-browser",
                                     f"--IdentityProvider.token={token}"],
                              cwd=course, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def api(path):
        return _get(port, token, path)

    try:
        when_up(server, lambda: api("/api/status"))
        yield {"api": api, "base": base, "token": token, "max": sum(ex.points for ex in load_spec(CH01).exercises)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_formgrader_lists_trusted_scores_and_timestamps(formgrader):
    subs = {s["student"]: s for s in formgrader["api"](f"/formgrader/api/submissions/{CH01}")}
    assert set(subs) == {"alice", "bob"}
    assert all(s["autograded"] and s["submitted"] for s in subs.values()), subs  # not "needs autograding"
    assert subs["alice"]["score"] == formgrader["max"] and subs["bob"]["score"] == 0
    assert subs["alice"]["timestamp"].startswith("2026-12-01T10:00")
    assert subs["bob"]["timestamp"].startswith("2026-12-01T11:30")
    nb_id = load_spec(CH01).notebook.removesuffix(".ipynb")
    notebooks = {s["student"]: s for s in formgrader["api"](f"/formgrader/api/submitted_notebooks/{CH01}/{nb_id}")}
    assert notebooks["alice"]["score"] == formgrader["max"] and not notebooks["alice"]["needs_manual_grade"]
