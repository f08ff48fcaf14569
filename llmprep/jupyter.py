"""llmprep inside Jupyter: the ``%llmprep_check`` and ``%llmprep_progress`` magics and the contents hook `llmprep lab` installs.

``%llmprep_check`` grades the open notebook (its last saved version) with the same trusted engine as
``llmprep check`` and the instructor's ``llmprep grade``, and shows the verdict of every exercise.
Under ``llmprep lab`` it is loaded in every kernel; elsewhere ``%load_ext llmprep.jupyter`` first.
nbgrader's *Validate* button, by contrast, only runs the visible ``assert``s in the notebook.

Kept light: importing this module imports neither torch nor the grading engine.
"""
from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time
from pathlib import Path

USAGE = ("usage: %llmprep_check [--lang zh|en] [NOTEBOOK]   (default: the notebook this kernel belongs to; save it "
         "first; the language: $LLMPREP_LANG, else the locale)")


def _session_notebook(user_ns: dict) -> str | None:
    """The notebook a Jupyter kernel was started for (ipykernel's ``__session__``, from JPY_SESSION_NAME)."""
    path = user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
    return path if isinstance(path, str) and path.endswith(".ipynb") else None


def run_check(path: str | Path, timeout: float = 900, lang: str | None = None) -> tuple[int, dict | None, str]:
    """``llmprep check --json PATH`` in a fresh process: (exit code, the JSON result or None, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "llmprep", "check", "--json", str(path)]
                          + (["--lang", lang] if lang else []),
                          capture_output=True, text=True, timeout=timeout)
    try:
        result = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        result = None
    return proc.returncode, result, proc.stderr.strip()


def render(result: dict, saved_ago: float | None = None, lang: str = "en") -> tuple[str, str]:
    """(plain text, HTML) of one check result in ``lang`` (llmprep.i18n); every string from the result is escaped."""
    from llmprep.i18n import cell_text, hint_lines, note_in, tr

    esc = html.escape
    score, max_score = result.get("score", 0), result.get("max_score", 0)
    head = tr("head", lang, notebook=result.get("notebook"), chapter=result.get("chapter"), score=f"{score:g}",
              max_score=f"{max_score:g}")
    rows_txt, rows_html = [], []
    for cell in result.get("cells", []):
        ok = cell.get("points") == cell.get("max_points")
        mark = tr("pass" if ok else "fail", lang)
        pts = f"{cell.get('points', 0):g}/{cell.get('max_points', 0):g}"
        message = cell_text(cell, lang)
        hints = hint_lines(cell.get("hint"), lang)
        rows_txt.append(f"  {mark}  {cell.get('grade_id', ''):<32} {pts:>7}  {message}")
        rows_txt += [f"        {h}" for h in hints]
        colour = "#1a7f37" if ok else "#cf222e"
        rows_html.append(f"<tr><td style='color:{colour};font-weight:bold'>{mark}</td><td><code>{esc(str(cell.get('grade_id')))}"
                         f"</code></td><td>{pts}</td><td style='white-space:pre-wrap;text-align:left'>"
                         f"{esc(message)}" + "".join(f"<br><i>{esc(h)}</i>" for h in hints) + "</td></tr>")
    notes = [tr("note", lang, text=note_in(str(n), lang)) for n in result.get("notes", [])]
    tail = [tr("graded_in", lang, level=result.get("sandbox", "?"))]
    if saved_ago is not None:
        tail.append(tr("saved_ago", lang, seconds=f"{saved_ago:.0f}"))
    text = "\n".join([head, *rows_txt, *["  " + n for n in notes], *["  " + t for t in tail]])
    page = (f"<div><b>{esc(head)}</b><table><tr><th></th><th>{tr('th_exercise', lang)}</th><th>{tr('th_points', lang)}"
            f"</th><th style='text-align:left'>{tr('th_verdict', lang)}</th></tr>{''.join(rows_html)}</table>"
            + "".join(f"<div style='white-space:pre-wrap'>{esc(n)}</div>" for n in notes)
            + "".join(f"<div><small>{esc(t)}</small></div>" for t in tail) + "</div>")
    return text, page


def parse_line(line: str) -> tuple[str | None, str]:
    """(the language asked for with ``--lang zh|en`` or None, the notebook path or "") of the magic's line;
    ValueError with a one-line reason for an unknown option or language."""
    import shlex

    from llmprep.i18n import check_lang

    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ValueError(f"cannot read the line ({exc}); {USAGE}") from None
    lang, rest = None, []
    while words:
        word = words.pop(0)
        if word == "--lang" or word.startswith("--lang="):
            value = word.split("=", 1)[1] if "=" in word else (words.pop(0) if words else "")
            lang = check_lang(value or "?")
        elif word.startswith("--"):
            raise ValueError(f"unknown option {word}; {USAGE}")
        else:
            rest.append(word)
    if len(rest) > 1:
        raise ValueError(f"one notebook at most; {USAGE}")
    return lang, rest[0] if rest else ""


def llmprep_check(line: str, user_ns: dict | None = None) -> dict | None:
    """The magic's body: returns the result (also displayed), or None after printing why not."""
    from IPython.display import display

    from llmprep.i18n import default_lang, tr

    try:
        lang, given = parse_line(line)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    lang = lang or default_lang()
    path = given or _session_notebook(user_ns or {})
    if not path:
        print(tr("no_notebook", lang, usage=USAGE), file=sys.stderr)
        return None
    path = Path(path).expanduser()
    saved_ago = time.time() - path.stat().st_mtime if path.is_file() else None
    code, result, err = run_check(path)  # the JSON holds both languages
    if result is None:
        print(err or tr("check_exited", lang, code=code), file=sys.stderr)
        return None
    text, page = render(result, saved_ago, lang)
    display({"text/plain": text, "text/html": page}, raw=True)
    return result


def load_ipython_extension(ipython) -> None:
    def magic(line=""):
        llmprep_check(line, ipython.user_ns)

    magic.__doc__ = (__doc__ or "") + "\n" + USAGE
    ipython.register_magic_function(magic, "line", "llmprep_check")
    ipython.register_magic_function(llmprep_progress, "line", "llmprep_progress")


def llmprep_progress(line: str = "") -> str | None:
    """``%llmprep_progress [CHAPTER ...]``: the learner's progress per chapter (``llmprep progress`` in a fresh
    process, like ``%llmprep_check``), then its plot."""
    import tempfile

    from IPython.display import Image, display

    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / "progress.png"
        chapters = ["--chapter", *line.split()] if line.split() else []
        proc = subprocess.run([sys.executable, "-m", "llmprep", "progress", *chapters, "--plot", str(plot)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            print(proc.stderr.strip() or f"error: llmprep progress exited with {proc.returncode}", file=sys.stderr)
            return None
        text = "\n".join(t for t in proc.stdout.splitlines() if not t.startswith("plot written to"))
        print(text)
        if plot.is_file():
            display(Image(filename=str(plot)))
    return text


# --------------------------------------------------------------------------- Jupyter server side

def pre_save(model, path=None, contents_manager=None, **kwargs) -> None:
    """Contents-manager pre-save hook (autograder/jupyter_server_config.py): drop the Python version
    JupyterLab writes into ``language_info`` of the course's notebooks, so that opening and saving a
    notebook leaves the file as it was on every Python version (nbgrader_wiring.LANGUAGE_INFO stores no version)."""
    if not isinstance(model, dict) or model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    from llmprep.nbgrader_wiring import LANGUAGE_INFO

    info = model["content"].get("metadata", {}).get("language_info")
    if isinstance(info, dict) and "version" in info and {k: v for k, v in info.items() if k != "version"} == LANGUAGE_INFO:
        del info["version"]


def kernel_spec_dir(folder: Path) -> Path:
    """Write a ``python3`` kernel spec (the same name, display name and language as ipykernel's, so the
    notebooks' metadata still matches) whose kernels load this extension; `llmprep lab` puts ``folder``
    first on JUPYTER_PATH."""
    from llmprep.nbgrader_wiring import KERNELSPEC

    spec = folder / "kernels" / KERNELSPEC["name"]
    spec.mkdir(parents=True, exist_ok=True)
    body = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--InteractiveShellApp.extensions=llmprep.jupyter"],
            "display_name": KERNELSPEC["display_name"], "language": KERNELSPEC["language"],
            "interrupt_mode": "signal", "metadata": {"debugger": True}}
    (spec / "kernel.json").write_text(json.dumps(body, indent=1))
    return folder


# --------------------------------------------------------------------------- nbconvert pages, offline

# MathJax 3 in place of nbconvert's MathJax 2 from a CDN: the whole tex-svg bundle inlined (an SVG page needs
# no font files), configured as nbconvert configures MathJax 2 ($...$ and \\(...\\) inline), plus the two
# MathJax 2 calls Formgrader's formgrade.js makes (MathJax.Hub.Startup.signal.Interest, MathJax.Hub.Queue).
# Inlined because nbgrader's release_feedback copies only the HTML file: a page must carry its MathJax.
_MATHJAX_MACRO = """{#- llmprep: MathJax inlined (no CDN), written by llmprep.jupyter.offline_templates -#}
{%- macro mathjax(url=None) -%}
<script>
window.MathJax = {
  tex: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
        processEscapes: true, processEnvironments: true, tags: "ams"},
  svg: {fontCache: "global"},
  startup: {typeset: true}
};
</script>
<script>{% raw %}@@MATHJAX@@{% endraw %}</script>
<script>
window.MathJax.Hub = {
  Startup: {signal: {Interest: function (f) { MathJax.startup.promise.then(function () { f("End"); }); }}},
  Queue: function () { return MathJax.startup.promise.then(function () { return MathJax.typesetPromise(); }); },
  Config: function () {}
};
</script>
{%- endmacro %}
"""
TEMPLATES_VERSION = "1"


def offline_templates(folder: Path) -> Path:
    """Write, once, what nbconvert's HTML pages (nbgrader's feedback, Formgrader's submission view, JupyterLab's
    HTML export) need to work offline under ``folder`` and return it, to go first on JUPYTER_PATH:

    * ``nbconvert/templates/base/mathjax.html.j2``: the ``mathjax`` macro, MathJax inlined (no CDN);
    * ``nbgrader_templates/feedback/index.html.j2``: nbgrader's own feedback template, which llmprep's
      (``llmprep/templates/feedback``) extends."""

    from importlib.metadata import version

    from llmprep.book import mathjax_dir

    folder = Path(folder)
    bundle = mathjax_dir() / "tex-svg.js"
    nbgrader_feedback = Path(_nbgrader_templates()) / "feedback"
    stamp_text = f"{TEMPLATES_VERSION} {bundle} {bundle.stat().st_size} {nbgrader_feedback} {version('nbgrader')}"
    stamp = folder / "nbconvert" / "llmprep-templates.txt"
    if stamp.is_file() and stamp.read_text() == stamp_text:
        return folder
    macro = folder / "nbconvert" / "templates" / "base" / "mathjax.html.j2"
    macro.parent.mkdir(parents=True, exist_ok=True)
    script = bundle.read_text(encoding="utf-8")
    if "</script" in script.lower() or "endraw" in script:
        raise RuntimeError(f"{bundle} cannot be inlined in a page")
    _write_atomic(macro, _MATHJAX_MACRO.replace("@@MATHJAX@@", script))
    copy = folder / "nbgrader_templates" / "feedback"
    copy.mkdir(parents=True, exist_ok=True)
    for name in ("index.html.j2", "conf.json"):
        _write_atomic(copy / name, (nbgrader_feedback / name).read_text(encoding="utf-8"))
    _write_atomic(stamp, stamp_text)
    return folder


def _write_atomic(path: Path, text: str) -> None:
    """Several graders may set the folder up at once: each writes a private file and renames it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def feedback_template_dirs() -> list[str]:
    """``HTMLExporter.extra_template_basedirs`` for nbgrader: llmprep's templates first, then nbgrader's own."""
    return [str(Path(__file__).parent / "templates"), _nbgrader_templates()]


def _nbgrader_templates() -> str:
    """nbgrader's template folder, found without importing nbgrader (seconds)."""
    from importlib.util import find_spec

    package = Path(list(find_spec("nbgrader").submodule_search_locations)[0])
    return str(package / "server_extensions" / "formgrader" / "templates")
