"""The course website (`llmprep book`) checked in a real browser.

The site is built from ONE chapter really executed (ch02, a reference notebook with a plot: the copy `llmprep run`
executed before the tests in `make test`, else executed here by the ``executed`` fixture, ~40 s) plus one chapter
that was not run (ch09: the "not run yet" page, and a second chapter for the mock-interview filter), served by
``http.server`` on 127.0.0.1 and driven in Debian's headless Chromium through Selenium and Debian's chromedriver.
Nothing is fetched from the network.

Outside ``make test`` a machine without Chromium skips these tests with the command that installs it;
``make test`` installs it (``make browser``) and sets LLMPREP_REQUIRE_BROWSER=1, which turns the skip into a
failure.
"""
from __future__ import annotations

import ast
import functools
import html
import html.parser
import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmprep.paths import chapter_prefix

CHAPTER = "ch02_imbalance"       # executed for real: outputs, a plot, printed results
OTHER = "ch09_transformer"       # not run: its page says how to run it
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]
CJK = re.compile(r"[\u4e00-\u9fff]")


# --------------------------------------------------------------------------- the site, a server, a browser

@pytest.fixture(scope="module")
def site(root, tmp_path_factory, executed):
    from llmprep.book import build_book

    tmp = tmp_path_factory.mktemp("book")
    name = f"{chapter_prefix(CHAPTER)}_reference.ipynb"
    run = executed(CHAPTER, name)  # `llmprep run`'s copy in build/executed/, or executed here (tests/conftest.py)
    (tmp / "executed" / CHAPTER).mkdir(parents=True)
    shutil.copyfile(run.path, tmp / "executed" / CHAPTER / name)
    (tmp / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in run.records),
                                       encoding="utf-8")
    result = build_book([CHAPTER, OTHER], root, executed=tmp / "executed", staging=tmp / "book-src",
                        out=tmp / "book", doctrees=tmp / "doctrees", results=tmp / "results.jsonl")
    print(f"\n{name} executed by {run.by}; built the site in {result.seconds:.1f} s")
    assert result.not_run == [OTHER]
    return result


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the browser dropped a request it no longer needed: not an error of the site
        super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(site):
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site.out)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _need_browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        msg = (f"{' and '.join(missing)} missing: apt-get install -y --no-install-recommends chromium chromium-driver "
               "(`make browser`; `make test` does it)")
        if os.environ.get("LLMPREP_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)


def make_driver(profile: Path):
    """Debian's headless Chromium through its chromedriver, with a fresh profile folder and the console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _need_browser()
    driver = make_driver(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def _open(browser, url: str) -> None:
    browser.get(url)
    _wait(browser, "return document.readyState === 'complete'")


def _wait(browser, script: str, timeout: float = 20.0, *args):
    deadline = time.monotonic() + timeout
    while True:
        value = browser.execute_script(script, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.1)


def _console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


# --------------------------------------------------------------------------- pages in the browser

@pytest.mark.browser
def test_reference_page_renders_with_outputs_plot_and_chinese(site, server, browser):
    _open(browser, f"{server}/{CHAPTER}/{chapter_prefix(CHAPTER)}_reference.html")
    assert "Class imbalance" in browser.title
    cells = browser.find_elements("css selector", "div.cell")
    code_inputs = browser.find_elements("css selector", "div.cell div.cell_input")
    outputs = browser.find_elements("css selector", "div.cell div.cell_output")
    assert len(code_inputs) >= 5 and len(outputs) >= 3, (len(cells), len(code_inputs), len(outputs))
    printed = " ".join(o.text for o in outputs)
    records = [json.loads(line) for line in (site.out.parent / "results.jsonl").read_text().splitlines()]
    assert records and all(f"[{CHAPTER}] {r['name']}: {r['value']}" in printed for r in records), \
        "every result the notebook records is printed on the page"
    images = _wait(browser, """
        const imgs = Array.from(document.querySelectorAll('div.cell_output img'));
        return imgs.length && imgs.every(i => i.complete) ? imgs.map(i => [i.src, i.naturalWidth]) : null;""")
    assert images and all(width > 0 for _, width in images), images
    body = browser.find_element("tag name", "body").text
    assert len(CJK.findall(body)) > 200, "the bilingual answers are on the page"
    assert "面试题" in body
    assert not _console_errors(browser)


@pytest.mark.browser
def test_home_exercises_and_not_run_pages(site, server, browser):
    _open(browser, f"{server}/index.html")
    body = browser.find_element("tag name", "body").text
    assert "Course map" in body and "数据倾斜" in body and "Results" in body
    links = [a.get_attribute("href") for a in browser.find_elements("css selector", "article a")]
    assert any(h.endswith(f"{CHAPTER}/index.html") for h in links)
    assert not _console_errors(browser)

    _open(browser, f"{server}/{CHAPTER}/{chapter_prefix(CHAPTER)}_exercises.html")
    body = browser.find_element("tag name", "body").text
    assert "NotImplementedError" in body and "llmprep start" in body
    assert not _console_errors(browser)

    _open(browser, f"{server}/{OTHER}/{chapter_prefix(OTHER)}_reference.html")
    body = browser.find_element("tag name", "body").text
    assert f"llmprep run {OTHER}" in body and "without its outputs" in body
    assert not browser.find_elements("css selector", "div.cell_output"), "a chapter not run has no outputs"
    assert _wait(browser, "return document.querySelectorAll('.MathJax, .MathJax_Display').length", 30), \
        "math is typeset by the MathJax the site serves itself"
    assert not _console_errors(browser)


@pytest.mark.browser
def test_mock_interview_reveals_answers_and_filters_by_chapter(site, server, browser):
    _open(browser, f"{server}/mock-interview.html")
    questions = browser.find_elements("css selector", "details.mock-q")
    per_chapter = {ch: len([q for q in questions if q.get_attribute("data-chapter") == ch]) for ch in (CHAPTER, OTHER)}
    assert per_chapter[CHAPTER] >= 1 and per_chapter[OTHER] >= 6, per_chapter
    first = questions[0]
    answer = first.find_element("css selector", ".mock-answer")
    assert first.get_attribute("open") is None and not answer.is_displayed(), "the question comes first"
    first.find_element("tag name", "summary").click()
    _wait(browser, "return arguments[0].open", 5, first)
    assert answer.is_displayed() and len(answer.text) > 200
    assert first.find_element("css selector", ".mock-short").is_displayed(), "the 30-second version is inside"
    assert first.find_element("css selector", ".mock-follow").is_displayed(), "the follow-ups are inside"
    assert "30" in answer.text and CJK.search(answer.text)

    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "mock-filter")).select_by_value(OTHER)
    visible = {ch: [q.is_displayed() for q in questions if q.get_attribute("data-chapter") == ch] for ch in per_chapter}
    assert not any(visible[CHAPTER]) and all(visible[OTHER]), visible
    assert browser.find_element("id", "mock-count").text.startswith(str(per_chapter[OTHER]))
    Select(browser.find_element("id", "mock-filter")).select_by_value("")
    assert all(q.is_displayed() for q in questions)
    assert not _console_errors(browser)


@pytest.mark.parametrize("word, page", [("imbalance", f"{CHAPTER}/{chapter_prefix(CHAPTER)}_reference"),
                                        ("倾斜", f"{CHAPTER}/{chapter_prefix(CHAPTER)}_reference")])
@pytest.mark.browser
def test_search_finds_english_and_chinese_words(site, server, browser, word, page):
    _open(browser, f"{server}/search.html?q={urllib.parse.quote(word)}")
    hits = _wait(browser, """
        const items = document.querySelectorAll('#search-results ul.search li a');
        const done = document.querySelector('#search-results .search-summary');
        return done && done.textContent.trim() ? Array.from(items).map(a => a.getAttribute('href')) : null;""", 30)
    assert any(page in h for h in hits), (word, hits)
    assert not _console_errors(browser)


# --------------------------------------------------------------------------- links and assets, served

class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.assets, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        for key in ("src", "href"):
            if tag in ("img", "script", "link", "iframe", "source") and a.get(key):
                self.assets.append(a[key])


@pytest.mark.slow
def test_every_internal_link_and_asset_resolves_and_nothing_comes_from_outside(site, server):
    pages, todo, missing, external_assets = {}, ["/index.html"], [], []
    anchors = []
    while todo:
        path = todo.pop()
        if path in pages:
            continue
        try:
            with urllib.request.urlopen(server + path, timeout=10) as resp:
                assert resp.status == 200
                text = resp.read().decode("utf-8", errors="replace") if path.endswith(".html") else ""
        except urllib.error.HTTPError as exc:
            missing.append(f"{path}: HTTP {exc.code}")
            pages[path] = None
            continue
        parser = _Links()
        parser.feed(text)
        pages[path] = parser.ids
        for ref, is_asset in [(r, False) for r in parser.links] + [(r, True) for r in parser.assets]:
            url = urllib.parse.urlsplit(urllib.parse.urljoin(server + path, ref))
            if url.scheme in ("mailto", "javascript", "data"):
                continue
            if f"{url.scheme}://{url.netloc}" != server:
                if is_asset:
                    external_assets.append(f"{path}: {ref}")
                continue
            target = urllib.parse.unquote(url.path)
            if target.endswith("/"):
                target += "index.html"
            if url.fragment and target.endswith(".html"):
                anchors.append((path, target, urllib.parse.unquote(url.fragment)))
            if target not in pages:
                todo.append(target)
    html_pages = [p for p in pages if p.endswith(".html")]
    assert len(html_pages) >= 8, html_pages
    for want in (f"/{CHAPTER}/{chapter_prefix(CHAPTER)}_reference.html", f"/{CHAPTER}/{chapter_prefix(CHAPTER)}_exercises.html",
                 f"/{OTHER}/{chapter_prefix(OTHER)}_reference.html", "/mock-interview.html", "/search.html"):
        assert want in pages, f"{want} is not reachable from the home page"
    assert not missing, missing
    broken = sorted({f"{src} -> {target}#{frag}" for src, target, frag in anchors
                     if pages.get(target) is not None and frag not in pages[target]})
    assert not broken, broken
    assert not external_assets, f"assets from outside the site (no network when it is read offline): {external_assets}"


# --------------------------------------------------------------------------- no solutions, no hidden material

def _norm(text: str) -> str:
    return " ".join(text.split())


def _notebook_text(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"])


def hidden_needles(root: Path, chapter: str) -> dict[str, str]:
    """What must never be on the site, {text: where it comes from}: nbgrader's solution and hidden-test markers,
    the solution lines the release removes from ``chapter``'s exercises, and the trusted spec's function names,
    case labels and source lines. Text the published pages contain by design (the released exercises, the
    reference notebook) is not a secret and is left out; so is the released notebook's metadata (its grade
    ids), which every learner's copy has and the chapter page offers for download."""
    from llmprep.book import FORBIDDEN_MARKERS

    pre = chapter_prefix(chapter)
    released = root / "course" / chapter / f"{pre}_exercises.ipynb"
    public = _norm(_notebook_text(released) + "\n" + released.read_text(encoding="utf-8") + "\n"
                   + _notebook_text(root / "solutions" / chapter / f"{pre}_reference.ipynb"))
    needles = {m: "nbgrader marker" for m in FORBIDDEN_MARKERS}
    for cell in json.loads((root / "solutions" / chapter / f"{pre}_exercises.ipynb").read_text())["cells"]:
        inside = False
        for line in ("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]).splitlines():
            if "### BEGIN SOLUTION" in line or "### END SOLUTION" in line:
                inside = "BEGIN" in line
                continue
            text = _norm(line)
            if inside and len(text) >= 16 and text not in public:
                needles.setdefault(text, "solution line")
    spec = (root / "autograder" / f"{chapter}.py").read_text(encoding="utf-8")
    tree = ast.parse(spec)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and "_" in node.name and len(node.name) >= 8 and node.name not in public:
            needles.setdefault(node.name, "spec function")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = _norm(node.value)
            if len(text) >= 16 and text not in public:
                needles.setdefault(text, "spec string (case label or message)")
    for line in spec.splitlines():
        text = _norm(line)
        if len(text) >= 40 and text not in public:
            needles.setdefault(text, "spec source line")
    return needles


class _Text(html.parser.HTMLParser):
    """The text of a page as a reader sees it (``parts``), and its attribute values apart (``attrs``)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.attrs = [], []

    def handle_data(self, data):
        self.parts.append(data)

    def handle_starttag(self, tag, attrs):
        self.attrs.extend(v for _, v in attrs if v)


def site_texts(out: Path):
    """(file, text) for every text file of the built site: HTML as the reader sees it (tags dropped, entities
    decoded, so highlighted code reads as code) and as written; notebooks by their cells; the search index
    decoded."""
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images, fonts
        texts = [raw]
        if path.suffix == ".html":
            parser = _Text()
            parser.feed(raw)
            parser.close()
            texts += ["".join(parser.parts), "\n".join(parser.attrs)]
        elif path.suffix == ".ipynb":
            texts.append(_notebook_text(path))
        elif path.name == "searchindex.js":
            texts.append(json.dumps(json.loads(raw[raw.index("(") + 1: raw.rindex(")")]), ensure_ascii=False))
        yield path, _norm(html.unescape("\n".join(texts)))


_WORD = re.compile(r"\w+")


def _anchors(needle: str) -> set[str]:
    """The whole words inside ``needle``: maximal runs of word characters with a non-word character on each side
    within the needle. Wherever the needle occurs, each of them occurs as a whole word too, so a text whose words
    lack one cannot contain the needle: an exact pre-filter, not a heuristic."""
    return {m.group() for m in _WORD.finditer(needle) if m.start() > 0 and m.end() < len(needle)}


def leaks(out: Path, *needle_sets: dict[str, str]) -> list[str]:
    """Every (file, kind, needle) of ``needle_sets`` found in the site's texts: one pass over the files; a needle is
    searched for only in a file whose words include all of its whole words (MathJax's 30 MB make the difference)."""
    needles = {n: kind for one in needle_sets for n, kind in one.items()}
    anchors = {n: _anchors(n) for n in needles}
    found = []
    for path, text in site_texts(out):
        words = set(_WORD.findall(text))
        found += [f"{path.relative_to(out)}: {kind}: {needle[:80]}" for needle, kind in needles.items()
                  if anchors[needle] <= words and needle in text]
    return found


@pytest.mark.slow
def test_no_solution_code_or_hidden_grading_material_anywhere(site, root):
    needles = hidden_needles(root, CHAPTER)
    kinds = {k: sum(1 for v in needles.values() if v == k) for k in set(needles.values())}
    assert kinds.get("solution line", 0) >= 20 and kinds.get("spec function", 0) >= 10, kinds
    assert not leaks(site.out, needles, hidden_needles(root, OTHER))


@pytest.mark.slow
def test_the_leak_scanner_catches_an_injected_solution(site, root, tmp_path):
    needles = hidden_needles(root, CHAPTER)
    solution = next(n for n, kind in needles.items() if kind == "solution line")
    spec_name = next(n for n, kind in needles.items() if kind == "spec function")
    copy = tmp_path / "book"
    shutil.copytree(site.out, copy, ignore=shutil.ignore_patterns("mathjax"))
    page = copy / CHAPTER / f"{chapter_prefix(CHAPTER)}_exercises.html"
    highlighted = "".join(f'<span class="n">{html.escape(ch)}</span>' for ch in solution)  # as Pygments would
    page.write_text(page.read_text(encoding="utf-8").replace(
        "</article>", f'<div class="highlight"><pre>{highlighted}</pre></div></article>', 1), encoding="utf-8")
    (copy / "_static" / "leak.js").write_text(f"// {spec_name}\n", encoding="utf-8")
    found = leaks(copy, needles)
    assert any(f"{CHAPTER}/{chapter_prefix(CHAPTER)}_exercises.html: solution line" in f for f in found), found
    assert any("leak.js: spec function" in f for f in found), found


def test_the_build_refuses_a_solution_in_a_staged_page(root, tmp_path):
    from llmprep.book import BookError, _scan_staged

    page = tmp_path / "ch99_exercises.ipynb"
    page.write_text(json.dumps({"cells": [{"source": "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"}]}))
    with pytest.raises(BookError, match="refusing to publish"):
        _scan_staged(page)
