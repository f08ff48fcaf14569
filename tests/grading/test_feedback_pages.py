"""Issue 27 item 7: the instructor's and the learner's HTML pages keep their math offline and read well.

* nbgrader's feedback page and Formgrader's view of a submission carry MathJax inlined (nbconvert's
  template loads MathJax 2 from a CDN: raw TeX offline, and "MathJax is not defined" in Formgrader);
* the feedback's contents list names each exercise instead of "Test cell" eight times;
* the grader's verdict lines wrap in both pages.
Checked on the HTML itself; no browser."""
import re
import shutil

import pytest

from llmprep.grading.batch import grade_assignment
from llmprep.grading.engine import load_spec

pytestmark = [pytest.mark.sandbox, pytest.mark.browser]

CH01 = "ch01_training"
CDN = re.compile(r"<script[^>]+src=[\"']https?://", re.I)


@pytest.fixture(scope="module")
def graded_class(root, tmp_path_factory):
    """A one-student class (the solution) graded with feedback pages."""
    course = tmp_path_factory.mktemp("feedback") / "course_root"
    shutil.copytree(root / "solutions" / CH01, course / "solutions" / CH01)
    nb_name = load_spec(CH01).notebook
    (course / "submitted" / "alice" / CH01).mkdir(parents=True)
    shutil.copy(root / "solutions" / CH01 / nb_name, course / "submitted" / "alice" / CH01 / nb_name)
    assert grade_assignment(CH01, root=course, jobs=1, feedback=True) == 0
    return course


def _offline_mathjax(page: str) -> None:
    assert not CDN.search(page), CDN.search(page).group(0)
    assert "cdnjs" not in page and "mathjax/2.7" not in page.lower()
    assert "window.MathJax = {" in page and "MathJax.startup" in page  # the bundle itself, inlined
    assert "window.MathJax.Hub = {" in page  # what Formgrader's formgrade.js calls


def test_feedback_page_has_inline_mathjax_exercise_names_and_wrapping_verdicts(graded_class):
    page = (graded_class / "feedback" / "alice" / CH01 / "ch01_exercises.html").read_text(encoding="utf-8")
    _offline_mathjax(page)
    toc = page[page.index('<div id="toc">'):page.index("</ol>", page.index('<div id="toc">'))]
    assert "Test cell" not in toc, toc
    import html

    from llmprep.feedback import exercise_titles

    titles = exercise_titles()  # from the solution notebook's "## Exercise N — title" headings
    for n, ex in enumerate(load_spec(CH01).exercises, 1):
        assert titles[ex.grade_id].startswith(f"Exercise {n}: "), titles[ex.grade_id]
        assert f'<a href="#{ex.grade_id}">{html.escape(titles[ex.grade_id], quote=False)}</a>' in toc, (ex.grade_id, toc)
    assert "white-space: pre-wrap" in page and "llmprep grader:" in page
    assert r"\log p_{i,y_i}" in page or "\\mathcal{L}" in page  # the chapter's math is there for MathJax


def _formgrade_page(graded_class, root, monkeypatch) -> str:
    """The autograded notebook rendered as Formgrader renders it: its exporter and template, the server
    configuration and the JUPYTER_PATH `llmprep lab` gives."""
    from nbconvert.exporters import HTMLExporter
    from traitlets.config import Config, PyFileConfigLoader

    from llmprep import cli
    from llmprep.jupyter import feedback_template_dirs

    _, env = cli.lab_command([], graded_class, uid=1000)
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])
    config = PyFileConfigLoader("jupyter_server_config.py", path=str(root / "autograder")).load_config()
    extra = Config()
    extra.HTMLExporter.template_name = "formgrade"  # what FormgradeExtension.build_extra_config sets
    extra.HTMLExporter.extra_template_basedirs = [feedback_template_dirs()[1]]
    config.merge(extra)
    resources = {"assignment_id": CH01, "notebook_id": "ch01_exercises", "submission_id": "x", "index": 0,
                 "total": 1, "base_url": "", "student": "alice", "last_name": "", "first_name": "",
                 "notebook_path": "autograded/alice/ch01_training/ch01_exercises.ipynb"}
    page, _ = HTMLExporter(config=config).from_filename(
        str(graded_class / "autograded" / "alice" / CH01 / "ch01_exercises.ipynb"), resources=resources)
    return page


def test_formgrader_view_has_inline_mathjax_and_wrapping_verdicts(graded_class, root, monkeypatch):
    page = _formgrade_page(graded_class, root, monkeypatch)
    _offline_mathjax(page)
    assert "white-space: pre-wrap" in page and "llmprep grader:" in page


def test_formgrader_view_typesets_and_answers_formgrade_js_in_a_browser(graded_class, root, monkeypatch,
                                                                        tmp_path_factory):
    """The MathJax 2 call formgrade.js makes at start-up (MathJax.Hub.Startup.signal.Interest, which threw
    "MathJax is not defined") is answered with "End" once the page is typeset."""
    from tests.site.test_book import _need_browser, _open, _wait

    _need_browser()
    page = tmp_path_factory.mktemp("formgrade") / "submission.html"
    page.write_text(_formgrade_page(graded_class, root, monkeypatch), encoding="utf-8")
    browser = _browser(tmp_path_factory)
    try:
        _open(browser, page.as_uri())
        browser.execute_script("window.llmprepEnd = null; "
                               "MathJax.Hub.Startup.signal.Interest(function (m) { window.llmprepEnd = m; });")
        assert _wait(browser, "return window.llmprepEnd", 60) == "End"
        assert browser.execute_script("return document.querySelectorAll('mjx-container').length") >= 5
    finally:
        browser.quit()


def test_fetch_feedback_does_not_warn_about_the_ungraded_reference_notebook():
    import io

    from llmprep import cli

    stamp = "2026-12-06 08:00:00.000000 UTC"
    log = (f"[FetchFeedbackApp | WARNING] Could not find feedback for 'llmprep/ch01_training/ch01_reference' "
           f"submitted at {stamp}\n"
           f"[FetchFeedbackApp | INFO] Found feedback for 'llmprep/ch01_training/ch01_exercises' submitted at {stamp}\n"
           f"[FetchFeedbackApp | WARNING] Could not find feedback for 'llmprep/ch01_training/ch01_exercises' "
           f"submitted at {stamp}\n")
    out = io.StringIO()
    cli.filter_tracebacks(io.StringIO(log), out)
    assert "ch01_reference" not in out.getvalue()
    assert out.getvalue().count("ch01_exercises") == 2  # a missing page of a graded notebook is still said


def test_feedback_page_typesets_its_math_offline_in_a_browser(graded_class, tmp_path_factory):
    """Opened from disk (file://, as a learner opens fetched feedback), the page typesets its TeX with the
    inlined MathJax: no request leaves the machine, no console error."""
    from tests.site.test_book import _console_errors, _need_browser, _open, _wait

    _need_browser()
    browser = _browser(tmp_path_factory)
    try:
        page = graded_class / "feedback" / "alice" / CH01 / "ch01_exercises.html"
        _open(browser, page.as_uri())
        typeset = _wait(browser, "return document.querySelectorAll('mjx-container').length", 60)
        assert typeset >= 5, typeset
        body = browser.find_element("tag name", "body").text
        assert "\\mathcal{L}" not in body and "$$" not in body  # no raw TeX left on the page
        assert not _console_errors(browser)
    finally:
        browser.quit()


def _browser(tmp_path_factory):
    from tests.site.test_book import make_driver

    return make_driver(tmp_path_factory.mktemp("chromium-profile"))
