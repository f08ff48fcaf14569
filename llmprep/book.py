"""The course website: ``build/book/`` from the executed notebooks, with Sphinx + MyST-NB, offline.

Sources, staged into ``build/book-src/`` (a file is rewritten only when its content changed, so that
Sphinx's own incremental build redoes only what changed):

- ``<chapter>/<chNN>_reference.ipynb``: the notebook ``llmprep run`` executed into ``build/executed/``
  (outputs, plots, printed results); a chapter not run yet gets its source notebook without outputs and a
  warning that says which command runs it;
- ``<chapter>/<chNN>_exercises.ipynb``: the released stub from ``course/`` (never ``solutions/``; the
  build refuses a staged page that holds a solution or hidden-test marker), not executed;
- ``index.md``: the course map (:mod:`llmprep.course_map`, the table README also shows) and the results
  (``build/results.jsonl`` and README's measured table); ``mock-interview.md``: every interview question of
  every chapter, from the reference notebooks' cells tagged ``interview`` (one question per ``###``
  heading), answer revealed on click, filterable by chapter, and a timed session on top of them
  (:mod:`llmprep.mock_session`: timer, reveal, self-rating, summary; ratings in the browser's localStorage).

No network at build time or in the browser: no intersphinx, widget JavaScript off, MathJax served from
the site (MathJax 3.2.2, which the ``sphinx-mathjax-offline`` package ships).
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmprep.course import chapter_prefix, chapters, resolve_chapters
from llmprep.course_map import by_id, markdown_table
from llmprep.mock_session import CSS as SESSION_CSS, JS as SESSION_JS, session_block
from llmprep.paths import format_path, repo_root
from llmprep.results import read_results

# lines that must never reach the website (nbgrader's markers of solution code and hidden tests)
FORBIDDEN_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
NOTE_CELL_ID = "llmprep-book-note"


class BookError(RuntimeError):
    """The site could not be built (Sphinx failed, or a page would have published solution code)."""


@dataclass
class BookResult:
    out: Path
    chapters: list[str]
    not_run: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)   # staged files whose content changed this time
    removed: list[str] = field(default_factory=list)
    questions: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- staging helpers

def write_if_changed(path: Path, data: str | bytes) -> bool:
    """Write ``data`` to ``path`` unless it already holds exactly that; True when written."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_file() and path.read_bytes() == raw:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(raw)
    tmp.replace(path)
    return True


def copy_tree_if_changed(src: Path, dest: Path) -> list[Path]:
    """Mirror ``src`` into ``dest`` (files copied with their times when size or time differ)."""
    written = []
    for path in sorted(src.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        target = dest / path.relative_to(src)
        st = path.stat()
        if target.is_file():
            tt = target.stat()
            if tt.st_size == st.st_size and int(tt.st_mtime) == int(st.st_mtime):
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        written.append(target)
    return written


# --------------------------------------------------------------------------- the home page: course map, results

def _section(text: str, title: str) -> str:
    """The body of README's ``## title`` section (up to the next ``## `` heading)."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    return m.group(1).strip() if m else ""


def _results_table(results: Path) -> str:
    records = read_results(results)
    if not records:
        return ("No `llmprep run` has recorded results on this machine yet (`build/results.jsonl` is missing): "
                "`make run` executes every chapter and records them.\n")

    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| chapter | result | value | anchor | device, dtype |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {cell(r.chapter)} | {cell(r.name)} | {cell(r.value)} | {cell(r.anchor)} | {cell(r.where)} |"
              for r in records]
    return "\n".join(lines) + "\n"


def _demote(markdown: str, levels: int = 1) -> str:
    """Headings one level down (README's ``###`` inside a page section)."""
    out, fence = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and re.match(r"#{1,5} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def home_page(readme: str, chapters: list[str], built: list[str], results: Path) -> str:
    intro = readme.split("\n## ", 1)[0].split("\n", 1)[-1].strip()  # README's opening paragraphs, no title
    lines = ["# llmprep — 大模型面试题 / LLM interview prep", "", intro, "",
             "This website is built from the notebooks that `llmprep run` executed (`make run && make book`): "
             "each chapter has its **reference notebook** with every output, plot and printed result, and its "
             "**exercises** as released to learners (stubs with instructions and visible self-checks, never "
             "the solutions). Practise the interview questions on the [mock interview](mock-interview.md) page.",
             "", "## Course map / 课程地图", "",
             markdown_table(chapters, lambda ch: f"[`{ch}`]({ch}/index.md)" if ch in built else f"`{ch}`").rstrip()]
    lines += ["", "## Results / 结果", "",
              "### Latest `llmprep run` on the machine that built this site", "",
              "From `build/results.jsonl` (a run replaces only the chapters it ran).", "",
              _results_table(results), "",
              "### Measured figures (README)", "",
              _demote(_section(readme, "Results"), 2), "",
              "```{toctree}", ":hidden:", ":maxdepth: 2", ""]
    lines += [f"{ch}/index" for ch in built] + ["mock-interview", "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- interview questions

INTERVIEW_TAG = "interview"  # the reference notebooks' markdown cells that hold the interview questions
QUESTION = re.compile(r"^###\s+(?:Q\s*)?(\d+)\s*[.、:：]\s*(.+?)\s*$")
SHORT = re.compile(r"^\s*\*\*\s*30\s*(?:秒|-?\s*second)")
FOLLOW = re.compile(r"^\s*(?:#{2,6}\s+.*(?:追问|[Ff]ollow-?ups?)|\*{1,2}\s*(?:追问|[Ff]ollow-?ups?))")


@dataclass
class Question:
    chapter: str
    number: str
    title: str
    answer: str
    short: str
    followups: str


def _paragraphs(markdown: str) -> list[str]:
    """Blank-line separated blocks; a fenced code block stays whole."""
    blocks, current, fence = [], [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        if not line.strip() and not fence:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _flatten_headings(block: str) -> str:
    """Headings inside an answer become bold lines (a heading would open a section inside <details>)."""
    return re.sub(r"^#{1,6}\s+(.+?)\s*#*\s*$", r"**\1**", block, flags=re.M)


def interview_part(nb) -> str:
    """The markdown of the notebook's cells tagged ``interview`` (Part 1), without its ``## `` section heading."""
    cells = [c.source for c in nb.cells
             if c.cell_type == "markdown" and INTERVIEW_TAG in c.get("metadata", {}).get("tags", [])]
    return "\n".join(line for line in "\n\n".join(cells).splitlines() if not re.match(r"##\s", line))


def parse_questions(chapter: str, notebook: Path) -> list[Question]:
    """Every ``### N. 中文 / English`` question in the cells tagged ``interview``, its answer, 30-second
    version and follow-ups (tolerant: ``Q1.`` or ``1.``, one cell per question or all in one, follow-ups as
    a heading or a bold line; a question without a 30-second version or follow-ups keeps those parts empty)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    part = interview_part(nb)
    questions: list[tuple[str, str, list[str]]] = []
    for line in part.splitlines():
        m = QUESTION.match(line)
        if m:
            questions.append((m.group(1), m.group(2), []))
        elif questions:
            questions[-1][2].append(line)
    found = []
    for number, title, body in questions:
        answer, short, follow, in_follow = [], [], [], False
        for block in _paragraphs("\n".join(body)):
            if FOLLOW.match(block):
                in_follow = True
            if in_follow:
                follow.append(block)
            elif SHORT.match(block):
                short.append(block)
            else:
                answer.append(block)
        if follow and re.fullmatch(r"#{2,6}\s+.*", follow[0].strip()):
            follow = follow[1:]  # the "Follow-up questions" heading itself: the page has its own label
        answer, short, follow = ("\n\n".join(_flatten_headings(b) for b in blocks) for blocks in (answer, short, follow))
        found.append(Question(chapter, number, title, answer, short, follow))
    return found


def _inline_html(markdown: str) -> str:
    """A question title as HTML for <summary>: code spans and emphasis, $math$ as MathJax's \\( \\)."""
    from markdown_it import MarkdownIt

    text = re.sub(r"(?<![\\$])\$([^$\n]+?)\$", lambda m: "\\(" + m.group(1) + "\\)", markdown)
    rendered = MarkdownIt("commonmark").renderInline(text)
    return rendered.replace("\n", " ")


def mock_interview_page(questions: list[Question], titles: dict[str, str]) -> str:
    chapters = list(dict.fromkeys(q.chapter for q in questions))
    options = "".join(f'<option value="{c}">{html.escape(c)} · {html.escape(titles.get(c, ""))}</option>'
                      for c in chapters)
    lines = ["# Mock interview / 模拟面试", "",
             f"{len(questions)} questions from the {len(chapters)} chapters' reference notebooks. Read the "
             "question, answer it aloud (about two minutes), then click it to compare with the model answer; "
             "the **30-second version** and the interviewer's **follow-ups** are inside. "
             "先自己回答，再点开对照参考答案、30 秒版本和追问。", "",
             '<div class="mock-controls">',
             '<label for="mock-filter">Chapter / 章节</label> '
             f'<select id="mock-filter"><option value="">All chapters / 全部</option>{options}</select> '
             '<button type="button" id="mock-random">Random question / 随机一题</button> '
             '<span id="mock-count"></span>',
             "</div>", "", session_block(chapters, titles)]
    for ch in chapters:
        lines += [f"## {chapter_prefix(ch)} · {titles.get(ch, ch)}", "",
                  f'<span class="mock-chapter" data-chapter="{ch}"></span>', ""]
        for q in (q for q in questions if q.chapter == ch):
            lines += [f'<details class="mock-q" data-chapter="{ch}" id="{chapter_prefix(ch)}-q{q.number}">',
                      f"<summary>Q{q.number}. {_inline_html(q.title)}</summary>", "",
                      '<div class="mock-answer">', "",
                      "**Model answer / 参考答案**", "", q.answer or "*(no written answer)*", ""]
            if q.short:
                lines += ['<div class="mock-short">', "", "**30-second version / 30 秒版**", "", q.short, "",
                          "</div>", ""]
            if q.followups:
                lines += ['<div class="mock-follow">', "", "**Follow-ups / 追问**", "", q.followups, "",
                          "</div>", ""]
            lines += ["</div>", "", "</details>", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- notebooks

def _with_note(nb, note: str):
    """The notebook with a markdown note after its first cell (the title)."""
    import nbformat

    cell = nbformat.v4.new_markdown_cell(note)
    cell["id"] = NOTE_CELL_ID
    nb.cells.insert(1 if nb.cells else 0, cell)
    return nb


def _notebook_text(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def stage_reference(chapter: str, root: Path, executed: Path, downloads: list[str] | None = None) -> tuple[str, bool]:
    """(notebook JSON for the site, whether it was run)."""
    import nbformat

    name = f"{chapter_prefix(chapter)}_reference.ipynb"
    run_copy = executed / chapter / name
    if run_copy.is_file():
        nb = nbformat.read(str(run_copy), as_version=4)
        if any(c.cell_type == "code" and c.get("outputs") for c in nb.cells):
            if downloads:
                nb = _with_note(nb, "```{tip}\n" + downloads_note(chapter, downloads) + "\n```")
            return _notebook_text(nb), True
    nb = nbformat.read(str(format_path("solutions", chapter, root) / name), as_version=4)
    note = ("```{warning}\nThis chapter has not been run on the machine that built this site, so this page shows "
            f"the notebook **without its outputs, plots and results**. Run `llmprep run {chapter}` (or `make run` "
            "for every chapter), then `llmprep book` (or `make book`).\n```")
    if downloads:
        note += "\n\n```{tip}\n" + downloads_note(chapter, downloads) + "\n```"
    return _notebook_text(_with_note(nb, note)), False


def stage_exercises(chapter: str, root: Path, downloads: list[str] | None = None) -> str | None:
    import nbformat

    name = f"{chapter_prefix(chapter)}_exercises.ipynb"
    released = format_path("course", chapter, root) / name
    if not released.is_file():
        return None
    nb = nbformat.read(str(released), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    note = ("```{note}\nThe graded exercises as released to learners: instructions, stubs and the visible "
            "self-checks (the solutions and hidden cases stay with the instructor). To solve them: "
            f"`llmprep start {chapter}`, then `make lab`; grade yourself with `%llmprep_check` in the notebook "
            f"or `llmprep check work/{chapter}/{name}`.\n\n{downloads_note(chapter, downloads or [name])}\n```")
    return _notebook_text(_with_note(nb, note))


def downloads_note(chapter: str, downloads: list[str], depth: str = "") -> str:
    """Markdown: download links to the chapter's released notebooks, and where they open in a local install.
    ``depth``: the path from the page to the chapter's folder ("" from the chapter's own pages)."""
    pre = chapter_prefix(chapter)
    links = ", ".join(f"{{download}}`{name} <{depth}{DOWNLOADS}/{name}>`" for name in downloads)
    exercises = f"work/{chapter}/{pre}_exercises.ipynb"
    return (f"**Download** the notebooks as released: {links}. **In a local install** "
            f"(`make setup`): `llmprep start {chapter}`, then `llmprep lab`, and open `{exercises}` "
            f"(JupyterLab: `http://localhost:8888/lab/tree/{exercises}`); grade yourself with `%llmprep_check`.")


def chapter_page(chapter: str, topic: str, exercises: str, has_exercises: bool, ran: bool,
                 downloads: list[str] | None = None) -> str:
    title = f"{chapter_prefix(chapter)} · {topic}" if topic else chapter
    lines = [f"# {title}", "", f"Chapter `{chapter}`.", ""]
    if downloads:
        lines += [downloads_note(chapter, downloads), ""]
    if exercises:
        lines += [f"**Graded exercises (each compared with its library oracle):** {exercises}", ""]
    if not ran:
        lines += ["```{warning}", f"Not run yet: the reference page has no outputs. Run `llmprep run {chapter}` "
                  "(or `make run`), then `llmprep book`.", "```", ""]
    lines += ["```{toctree}", ":maxdepth: 1", "", f"{chapter_prefix(chapter)}_reference"]
    if has_exercises:
        lines.append(f"{chapter_prefix(chapter)}_exercises")
    lines += ["```", ""]
    if not has_exercises:
        lines += [f"The released exercises are missing: run `llmprep release {chapter}`.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- Sphinx configuration and assets

CONF = '''# Generated by llmprep.book: edit llmprep/book.py, not this file.
project = "llmprep"
author = "llmprep contributors"
copyright = "llmprep contributors, MIT licence"
extensions = ["myst_nb", "sphinx.ext.githubpages"]  # githubpages: a .nojekyll file, for a gh-pages branch
language = "en"
html_search_language = "zh"  # English words stemmed as in English, Chinese words cut by jieba
html_search_options = {"dict": ""}  # jieba's own dictionary, not loaded a second time as a "user" one (3 s)
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "*/downloads"]  # downloads: files offered, not pages
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]

# notebooks are shown as `llmprep run` executed them; nothing runs at build time
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {}  # the widget manager would come from a CDN: widgets show their text form instead
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]
myst_enable_extensions = ["dollarmath"]
myst_update_mathjax = False
myst_heading_anchors = 3

# MathJax 3.2.2 served from the site itself (copied from the sphinx-mathjax-offline package): no CDN
mathjax_path = "mathjax/tex-chtml.js"

html_context = {"default_mode": "auto"}  # light or dark as the reader's system prefers (empty: a console error)
html_favicon = "favicon.svg"  # browsers ask for /favicon.ico otherwise (a 404 in the console)
html_theme = "sphinx_book_theme"
html_title = "llmprep · 大模型面试题"
html_static_path = ["_static"]
html_css_files = ["llmprep.css"]
html_js_files = ["mock_interview.js", "search_snippets.js", "mock_session.js"]
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None


def setup(app):
    """Sphinx 9.0's Chinese search names its JavaScript stemmer after the language ("ChineseStemmer") although
    it ships the English one, so the search page fails with "ChineseStemmer is not defined" and finds nothing
    (sphinx-doc/sphinx#14229, fixed after 9.0.4, in releases that need Python 3.12): same language, the
    stemmer's real name."""
    from sphinx.search.zh import SearchChinese

    class SearchChineseEnglishStemmer(SearchChinese):
        language_name = "English"

    app.add_search_language(SearchChineseEnglishStemmer)


html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,  # a long page's contents list its parts and, inside them, each question
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
}
'''

CSS = '''/* llmprep website: bilingual text. Chinese falls back to a CJK font the reader has. */
:root {
  --pst-font-family-base: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif;
  --pst-font-family-heading: var(--pst-font-family-base);
  --pst-font-family-monospace: "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace,
    "Noto Sans Mono CJK SC", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei";
}
body, .bd-article { font-family: var(--pst-font-family-base); }
:lang(zh), .mock-q summary { font-family: var(--pst-font-family-base); }

/* mock interview */
.mock-controls { display: flex; flex-wrap: wrap; gap: .5em; align-items: center; margin: 1em 0; }
.mock-controls select, .mock-controls button { padding: .2em .5em; width: auto; max-width: 100%; }
details.mock-q { border: 1px solid var(--pst-color-border, #ccc); border-radius: 6px; margin: .6em 0;
  padding: .4em .8em; }
details.mock-q > summary { cursor: pointer; font-weight: 600; }
details.mock-q[open] > summary { margin-bottom: .6em; }
.mock-short, .mock-follow { border-left: 3px solid var(--pst-color-primary, #4a8); padding-left: .8em;
  margin: .8em 0; }
details.mock-q.mock-picked { box-shadow: 0 0 0 3px var(--pst-color-primary, #4a8); }

/* the left navigation marks the chapter being read, not only the page */
.bd-sidenav li.toctree-l1.current > a { font-weight: 700; color: var(--pst-color-primary);
  border-left: 3px solid var(--pst-color-primary); padding-left: .5em; }
'''

JS = '''// llmprep website: the mock-interview page's chapter filter and random question (no network, no library).
document.addEventListener("DOMContentLoaded", function () {
  var select = document.getElementById("mock-filter");
  if (!select) return;
  var questions = Array.prototype.slice.call(document.querySelectorAll("details.mock-q"));
  var markers = Array.prototype.slice.call(document.querySelectorAll("span.mock-chapter"));
  var count = document.getElementById("mock-count");
  function shown() { return questions.filter(function (q) { return !q.closest("section").hidden; }); }
  function apply() {
    var chapter = select.value;
    markers.forEach(function (m) {
      var section = m.closest("section");
      if (section) section.hidden = !!chapter && m.dataset.chapter !== chapter;
    });
    if (count) count.textContent = shown().length + " questions";
  }
  select.addEventListener("change", apply);
  var random = document.getElementById("mock-random");
  if (random) random.addEventListener("click", function () {
    var pool = shown();
    if (!pool.length) return;
    questions.forEach(function (q) { q.classList.remove("mock-picked"); q.open = false; });
    var q = pool[Math.floor(Math.random() * pool.length)];
    q.classList.add("mock-picked");
    q.scrollIntoView({block: "center"});
  });
  var hash = (location.hash || "").slice(1);
  if (hash) { var target = document.getElementById(hash); if (target && target.tagName === "DETAILS") target.open = true; }
  apply();
});
'''


SEARCH_JS = '''// llmprep website: search result snippets start at the page's own text. Sphinx takes a page's text from
// [role=main], which in sphinx-book-theme also holds the article header's buttons ("System Settings Light Dark")
// and the print-only contents: keep the article alone.
document.addEventListener("DOMContentLoaded", function () {
  if (typeof Search === "undefined" || !Search.htmlToText) return;
  var original = Search.htmlToText;
  Search.htmlToText = function (htmlString, anchor) {
    var doc = new DOMParser().parseFromString(htmlString, "text/html");
    var article = doc.querySelector("article.bd-article");
    if (article) htmlString = '<div role="main">' + article.innerHTML + "</div>";
    return original(htmlString, anchor);
  };
});
'''


FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" '
           'fill="#2a6f97"/><text x="32" y="44" font-size="34" text-anchor="middle" fill="#fff" '
           'font-family="sans-serif">L</text></svg>\n')


DOWNLOADS = "downloads"  # <chapter>/downloads/: the released notebooks, offered as files


def mathjax_dir() -> Path:
    """MathJax 3.2.2 as the ``sphinx-mathjax-offline`` package ships it (its folder name is not importable)."""
    from importlib.metadata import distribution

    return Path(distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static/mathjax"))


# --------------------------------------------------------------------------- the build

def _scan_staged(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for marker in FORBIDDEN_MARKERS:
        if marker in text:
            raise BookError(f"{path} contains '{marker}': refusing to publish solution code "
                            "(exercise pages come from course/, generated by `llmprep release`)")


def build_book(chapter_ids: list[str] | None = None, root: Path | None = None, *, executed: Path | None = None,
               staging: Path | None = None, out: Path | None = None, doctrees: Path | None = None,
               results: Path | None = None, clean: bool = False, jobs: int = 1) -> BookResult:
    """Stage the sources and run Sphinx; returns what was built. BookError when Sphinx fails."""
    root = root or repo_root()
    executed = executed or format_path("executed", root=root)
    staging = staging or format_path("book-src", root=root)
    out = out or format_path("book", root=root)
    doctrees = doctrees or format_path("book-doctrees", root=root)
    results = results or format_path("results", root=root)
    every = chapters(root)
    picked = resolve_chapters(chapter_ids, root)
    start = time.perf_counter()
    if clean:
        for folder in (staging, out, doctrees):
            shutil.rmtree(folder, ignore_errors=True)
    staging.mkdir(parents=True, exist_ok=True)

    readme_path = format_path("readme", root=root)
    readme = readme_path.read_text(encoding="utf-8") if readme_path.is_file() else ""
    rows = by_id()
    result = BookResult(out=out, chapters=picked)
    keep: set[Path] = set()

    def put(rel: str, data: str | bytes) -> None:
        path = staging / rel
        keep.add(path)
        if write_if_changed(path, data):
            result.written.append(rel)

    questions: list[Question] = []
    titles = {}
    for ch in picked:
        topic, exercises = (rows[ch].topic, rows[ch].summary) if ch in rows else ("", "")
        titles[ch] = topic or ch
        pre = chapter_prefix(ch)
        downloads = []
        for name in (f"{pre}_reference.ipynb", f"{pre}_exercises.ipynb"):  # as released: no solution, no output
            released = root / "course" / ch / name
            if released.is_file():
                put(f"{ch}/{DOWNLOADS}/{name}", released.read_bytes())
                downloads.append(name)
        ref_text, ran = stage_reference(ch, root, executed, downloads)
        if not ran:
            result.not_run.append(ch)
        put(f"{ch}/{pre}_reference.ipynb", ref_text)
        ex_text = stage_exercises(ch, root, downloads)
        if ex_text is not None:
            put(f"{ch}/{pre}_exercises.ipynb", ex_text)
        put(f"{ch}/index.md", chapter_page(ch, topic, exercises, ex_text is not None, ran, downloads))
        questions += parse_questions(ch, format_path("solutions", ch, root) / f"{pre}_reference.ipynb")
    result.questions = len(questions)
    put("index.md", home_page(readme, every, picked, results))
    put("mock-interview.md", mock_interview_page(questions, titles))
    put("conf.py", CONF)
    put("_static/llmprep.css", CSS + SESSION_CSS)
    put("_static/mock_session.js", SESSION_JS)  # the timed session (llmprep.mock_session)
    put("_static/mock_interview.js", JS)
    put("_static/search_snippets.js", SEARCH_JS)
    put("favicon.svg", FAVICON)
    source = mathjax_dir()
    for path in copy_tree_if_changed(source, staging / "_static" / "mathjax"):
        result.written.append(str(path.relative_to(staging)))
    keep.update(staging / "_static" / "mathjax" / p.relative_to(source) for p in source.rglob("*") if p.is_file())

    for path in sorted(staging.rglob("*")):  # pages of chapters no longer built, and strays
        if path.is_file() and path not in keep:
            path.unlink()
            result.removed.append(str(path.relative_to(staging)))
    for path in sorted(staging.rglob("*.ipynb")) + sorted(staging.rglob("*.md")):
        _scan_staged(path)
    if result.removed:  # Sphinx never deletes an output file: pages or assets gone from the sources go with a fresh build
        for folder in (out, doctrees):
            shutil.rmtree(folder, ignore_errors=True)

    warnings_file = (format_path("book-warnings", root=root) if out == format_path("book", root=root)
                     else out.parent / format_path("book-warnings").name)
    warnings_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(doctrees), "-j", str(jobs),
           "-w", str(warnings_file), str(staging), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result.warnings = [w for w in warnings_file.read_text(encoding="utf-8", errors="replace").splitlines()
                       if w.strip()] if warnings_file.is_file() else []
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise BookError(f"sphinx-build failed (exit {proc.returncode}): {tail}")
    result.seconds = time.perf_counter() - start
    return result
