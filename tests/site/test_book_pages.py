"""Issue 27 item 8: the website as a reader uses it. Every chapter page offers its notebooks for download and
says where they open in a local install; search snippets start at the page's text, not at the theme's
buttons; long pages have an in-page contents list; the left navigation marks the chapter being read; README
says which CJK fonts a reader needs. A site of two chapters, not run (fast); pages in headless Chromium."""
import re
import urllib.parse

import pytest

from llmprep.paths import chapter_prefix
from tests.site.test_book import _console_errors, _open, _wait
from tests.site.test_book import browser, server  # noqa: F401 - the fixtures (server serves this module's site)

pytestmark = pytest.mark.browser

CHAPTERS = ["ch02_imbalance", "ch09_transformer"]


@pytest.fixture(scope="module")
def site(root, tmp_path_factory):
    from llmprep.book import build_book

    tmp = tmp_path_factory.mktemp("book-pages")
    result = build_book(CHAPTERS, root, executed=tmp / "executed", staging=tmp / "src", out=tmp / "book",
                        doctrees=tmp / "doctrees", results=tmp / "results.jsonl")
    assert not result.warnings, result.warnings
    return result


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_page_offers_its_notebooks_and_the_local_path(site, root, chapter):
    pre = chapter_prefix(chapter)
    for page in ("index", f"{pre}_reference", f"{pre}_exercises"):
        text = (site.out / chapter / f"{page}.html").read_text(encoding="utf-8")
        for name in (f"{pre}_reference.ipynb", f"{pre}_exercises.ipynb"):
            hrefs = re.findall(rf'href="([^"]*_downloads/[^"]*/{re.escape(name)})"', text)
            assert hrefs, (page, name)
            target = (site.out / chapter / hrefs[0]).resolve()
            assert target.read_bytes() == (root / "course" / chapter / name).read_bytes(), (page, name)
        words = " ".join(re.sub(r"<[^>]+>", " ", text).split())  # as the reader sees it
        assert f"llmprep start {chapter}" in words and f"work/{chapter}/{pre}_exercises.ipynb" in words, page


def test_search_snippets_start_at_the_pages_text(site, server, browser):  # noqa: F811
    _open(browser, f"{server}/search.html?q={urllib.parse.quote('imbalance')}")
    snippets = _wait(browser, """
        const done = document.querySelector('#search-results .search-summary');
        const items = Array.from(document.querySelectorAll('#search-results ul.search li'));
        const texts = items.map(li => (li.querySelector('p.context') || {}).textContent);
        return done && done.textContent.trim() && texts.length && texts.every(t => t) ? texts : null;""", 30)
    assert snippets, snippets
    for text in snippets:
        words = " ".join(text.split())
        assert not re.search(r"Settings Light|Light Dark|^(\.\.\.)?\s*Contents", words), words  # theme chrome
    assert any("imbalance" in t.lower() for t in snippets), snippets
    assert not _console_errors(browser)


def test_long_page_has_contents_and_the_navigation_marks_the_chapter(site, server, browser):  # noqa: F811
    chapter = CHAPTERS[0]
    _open(browser, f"{server}/{chapter}/{chapter_prefix(chapter)}_reference.html")
    entries = browser.find_elements("css selector", ".bd-sidebar-secondary .toc-entry a")
    shown = [e.text for e in entries if e.is_displayed()]
    assert any("Interview" in t for t in shown) and len(shown) >= 8, shown  # the parts and their questions
    marked = browser.find_element("css selector", ".bd-sidenav li.toctree-l1.current > a")
    assert chapter_prefix(chapter) in marked.text
    weight = browser.execute_script("return getComputedStyle(arguments[0]).fontWeight", marked)
    border = browser.execute_script("return getComputedStyle(arguments[0]).borderLeftStyle", marked)
    assert int(weight) >= 700 and border == "solid", (weight, border)
    others = browser.find_elements("css selector", ".bd-sidenav li.toctree-l1:not(.current) > a")
    assert others and all(int(browser.execute_script("return getComputedStyle(arguments[0]).fontWeight", a)) < 700
                          for a in others)
    assert not _console_errors(browser)


def test_readme_names_the_cjk_fonts_a_reader_needs(root):
    from llmprep.book import CSS

    readme = (root / "README.md").read_text(encoding="utf-8")
    fonts = sorted(set(re.findall(r'"([^"]*(?:CJK|PingFang|YaHei)[^"]*)"', CSS)))
    assert fonts and all(font in readme for font in fonts), fonts
    assert "fonts-noto-cjk" in readme  # what to install where no CJK font comes with the system
