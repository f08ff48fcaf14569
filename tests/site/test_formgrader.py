"""Formgrader after `llmprep grade`, as an instructor's browser gets it (issue 27 item 1): the real Jupyter server
that `llmprep lab` starts, asked over HTTP for the data its Manage Submissions page renders. Every graded
student is listed as autograded with the trusted score (not "needs autograding") and nbgrader's submission
timestamp, and the autograded notebook the submission view shows carries the trusted verdict lines. Then the
same pages in headless Chromium, reached as an instructor reaches them: JupyterLab first (the login cookie for
the whole server), then Formgrader. (Opened directly with ``?token=``, a Formgrader page gets a login cookie
scoped to its own folder, nbgrader's handlers having an empty base URL, and its table stays at "Loading".)"""
import shutil
import subprocess

import nbformat
import pytest

from llmprep import cli
from llmprep.grading.batch import grade_assignment
from llmprep.grading.engine import isolation, load_spec
from tests.course.test_start_lab import _free_port, _get, when_up
from tests.site.test_book import _need_browser, _open, _wait, make_driver
pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

CH = "ch15_agents"  # Formgrader is the point, not the chapter: ch15 grades in 0.3 s of CPU (ch01: 3 s)


@pytest.fixture(scope="module")
def formgrader(root, tmp_path_factory):
    if not isolation().strong:
        pytest.skip("no sandbox on this machine")
    course = tmp_path_factory.mktemp("formgrader") / "course_root"
    shutil.copytree(root / "solutions" / CH, course / "solutions" / CH)
    nb_name = load_spec(CH).notebook
    for student, source, stamp in [("alice", root / "solutions", "2026-12-01 10:00:00.000000 UTC"),
                                   ("bob", root / "course", "2026-12-01 11:30:00.000000 UTC")]:
        folder = course / "submitted" / student / CH
        folder.mkdir(parents=True)
        nbformat.write(nbformat.read(str(source / CH / nb_name), as_version=4), str(folder / nb_name))
        (folder / "timestamp.txt").write_text(stamp)
    assert grade_assignment(CH, root=course, jobs=2) == 0
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
        yield {"api": api, "base": base, "token": token, "max": sum(ex.points for ex in load_spec(CH).exercises)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_formgrader_lists_trusted_scores_and_timestamps(formgrader):
    subs = {s["student"]: s for s in formgrader["api"](f"/formgrader/api/submissions/{CH}")}
    assert set(subs) == {"alice", "bob"}
    assert all(s["autograded"] and s["submitted"] for s in subs.values()), subs  # not "needs autograding"
    assert subs["alice"]["score"] == formgrader["max"] and subs["bob"]["score"] == 0
    assert subs["alice"]["timestamp"].startswith("2026-12-01T10:00")
    assert subs["bob"]["timestamp"].startswith("2026-12-01T11:30")
    nb_id = load_spec(CH).notebook.removesuffix(".ipynb")
    notebooks = {s["student"]: s for s in formgrader["api"](f"/formgrader/api/submitted_notebooks/{CH}/{nb_id}")}
    assert notebooks["alice"]["score"] == formgrader["max"] and not notebooks["alice"]["needs_manual_grade"]


@pytest.mark.browser
def test_formgrader_pages_show_the_trusted_scores_and_verdicts_in_a_browser(formgrader, tmp_path):
    _need_browser()
    base, full = formgrader["base"], formgrader["max"]
    nb_id = load_spec(CH).notebook.removesuffix(".ipynb")
    notebooks = {s["student"]: s for s in formgrader["api"](f"/formgrader/api/submitted_notebooks/{CH}/{nb_id}")}
    browser = make_driver(tmp_path / "profile")
    try:
        _open(browser, f"{base}/lab?token={formgrader['token']}")
        _open(browser, f"{base}/formgrader/manage_submissions/{CH}")
        rows = _wait(browser, "var rows = Array.from(document.querySelectorAll('tbody tr'), r => r.innerText);"
                              "return rows.some(r => r.includes('alice')) && rows;", 60)
        alice = next(r for r in rows if "alice" in r)
        bob = next(r for r in rows if "bob" in r)
        assert "graded" in alice and f"{full:g} / {full:g}" in alice, rows   # not "needs autograding"
        assert "graded" in bob and f"0 / {full:g}" in bob, rows
        assert "2026-12-01 10:00:00" in alice and "2026-12-01 11:30:00" in bob, rows
        _open(browser, f"{base}/formgrader/submissions/{notebooks['bob']['id']}/")
        text = _wait(browser, "var t = document.body.innerText; return t.includes('llmprep grader') && t;", 60)
        assert "llmprep grader: 0 /" in text and "not implemented yet" in text, text[:2000]
    finally:
        browser.quit()
