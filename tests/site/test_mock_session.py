"""Issue 35 item 5: the website's timed mock interview in headless Chromium. A session of two questions from
one chapter: the timer runs and runs out, the answer is revealed (by the timer, then by a click), both are
rated, the summary is shown; after a reload the ratings are still there (localStorage), on the questions and
as the last session's line. A site of one chapter, not run (fast)."""
import time

import pytest

from tests.site.test_book import _console_errors, _open, _wait
from tests.site.test_book import browser, server  # noqa: F401 - the fixtures (server serves this module's site)

pytestmark = pytest.mark.browser

CHAPTERS = ["ch02_imbalance", "ch09_transformer"]
PICKED = "ch09_transformer"


@pytest.fixture(scope="module")
def site(root, tmp_path_factory):
    from llmprep.book import build_book

    tmp = tmp_path_factory.mktemp("book-mock")
    result = build_book(CHAPTERS, root, executed=tmp / "executed", staging=tmp / "src", out=tmp / "book",
                        doctrees=tmp / "doctrees", results=tmp / "results.jsonl")
    assert not result.warnings, result.warnings
    return result


def _click(driver, element) -> None:
    """Click as a reader does: the element in the middle of the window (not under the theme's sticky header)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _shown(driver, element_id: str) -> bool:
    return driver.find_element("id", element_id).is_displayed()


def test_timed_session_rates_summarises_and_remembers(site, server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    _open(browser, f"{server}/mock-interview.html")
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    _wait(browser, "return document.readyState === 'complete'")
    assert not browser.find_element(By.ID, "mock-history").text, "a fresh browser has no history"
    assert not browser.find_elements(By.CSS_SELECTOR, ".mock-last")

    for box in browser.find_elements(By.CSS_SELECTOR, ".mock-session-chapter"):
        if (box.get_attribute("value") == PICKED) != box.is_selected():
            _click(browser, box)
    for field, value in (("mock-n", "2"), ("mock-seconds", "3")):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    _click(browser, browser.find_element(By.ID, "mock-start"))
    assert _shown(browser, "mock-stage") and not _shown(browser, "mock-answer-box")
    assert browser.find_element(By.ID, "mock-progress").text == "Question 1 / 2"
    first = browser.find_element(By.ID, "mock-question").text
    assert first.startswith("Q") and first in {e.get_attribute("textContent").strip() for e in
                                               browser.find_elements(By.CSS_SELECTOR,
                                                                     f'details.mock-q[data-chapter="{PICKED}"] summary')}
    timer = browser.find_element(By.ID, "mock-timer")
    before = timer.text
    time.sleep(1.3)
    assert timer.text != before and "time left" in before, (before, timer.text)  # the timer runs

    _wait(browser, "return document.getElementById('mock-timer').textContent.includes('time is up')", 10)
    assert _shown(browser, "mock-answer-box") and _shown(browser, "mock-rate"), "the answer comes when time is up"
    assert len(browser.find_element(By.ID, "mock-answer-box").text) > 200
    _click(browser, browser.find_element(By.CSS_SELECTOR, 'button.mock-rate[data-rating="3"]'))

    assert browser.find_element(By.ID, "mock-progress").text == "Question 2 / 2"
    assert not _shown(browser, "mock-answer-box")
    _click(browser, browser.find_element(By.ID, "mock-reveal"))
    assert _shown(browser, "mock-answer-box") and "used" in browser.find_element(By.ID, "mock-timer").text
    _click(browser, browser.find_element(By.CSS_SELECTOR, 'button.mock-rate[data-rating="1"]'))

    summary = browser.find_element(By.ID, "mock-summary")
    assert summary.is_displayed() and "2 question(s), mean rating 2.0 of 4, 1 over time" in summary.text
    rows = summary.find_elements(By.CSS_SELECTOR, "table.mock-summary-table tr")
    assert len(rows) == 3 and "Good" in rows[1].text and "(over)" in rows[1].text and "Again" in rows[2].text

    browser.refresh()
    _wait(browser, "return document.readyState === 'complete'")
    history = _wait(browser, "return document.getElementById('mock-history').textContent")
    assert "Last session" in history and "2 question(s), mean rating 2.0 of 4, 1 over time" in history
    marks = [e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, ".mock-last")]
    assert len(marks) == 2 and any("Good" in m for m in marks) and any("Again" in m for m in marks), marks
    assert not _console_errors(browser)
