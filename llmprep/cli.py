"""`llmprep` command line: data, run, start, lab, release, readme, check, grade, nbgrader, bench, book, drill, mock, progress.

Bad input is refused before any work with one line ``error: ...`` on stderr and exit code 2; paths are
resolved from the folder the command is run in.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

EXIT_USAGE = 2


class UsageFailure(Exception):
    """Raised by a command for bad input: ``error: <message>`` on stderr, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, then where to find help) instead of a usage block."""

    def error(self, message):  # noqa: D401 - argparse's hook
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got '{text}')") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _usage(exc) -> None:
    raise UsageFailure(str(exc))


# --------------------------------------------------------------------------- commands

def cmd_data(args) -> int:
    from llmprep import assets

    bad = 0
    for name, asset in assets.ASSETS.items():
        try:
            folder = assets.verify(name) if args.check else _fetch_or_repair(name)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            print(f"ok       {name:<18} {asset.requirement:<28} {size / 2**20:8.1f} MB  {folder}")
        except assets.AssetError as exc:
            bad += 1
            print(f"{asset_state(exc):<8} {name:<18} {exc}")
    if not bad:
        print(f"all {len(assets.ASSETS)} assets verified in {assets.cache_root() / 'assets'}")
    return 1 if bad else 0


def asset_state(exc) -> str:
    """The status column of `llmprep data` for a failed asset: CORRUPTED when a cached copy exists but
    differs from its manifest (``corrupted: checksum differs``, a file gone, an unreadable manifest),
    MISSING when nothing is cached, FAILED when a fetch failed."""
    text = str(exc)
    if "corrupted" in text or "unreadable manifest" in text:
        return "CORRUPTED"
    return "MISSING" if "is not in the cache" in text else "FAILED"


def _fetch_or_repair(name: str):
    from llmprep import assets

    try:
        folder = assets.verify(name)
    except assets.AssetError:
        return assets.fetch(name, force=True)
    assets.readable_by_all(folder)  # a cache written by an older release kept mkdtemp's 0700 folders
    return folder


def cmd_run(args) -> int:
    from llmprep.course import UsageError, resolve_chapters
    from llmprep.headless import run

    try:
        chapters = resolve_chapters(args.chapters)
    except UsageError as exc:
        _usage(exc)
    return run(chapters, jobs=args.jobs)


def cmd_start(args) -> int:
    from llmprep.course import UsageError, resolve_chapters, start

    dest = Path(args.dir).expanduser().resolve() if args.dir else None
    try:
        (chapter,) = resolve_chapters([args.chapter])
        folder = start(chapter, dest)
    except UsageError as exc:
        _usage(exc)
    notebooks = sorted(p.name for p in folder.glob("*.ipynb"))
    graded = [n for n in notebooks if "_exercises" in n] or notebooks
    print(f"copied {chapter} (course/{chapter}/) to {folder}: {', '.join(notebooks)}")
    print(f"open it with {start_lab_hint(folder)}; inside the exercises notebook, `%llmprep_check` grades it with "
          f"the trusted engine; on the command line: llmprep check {folder / graded[0] if graded else folder}")
    return 0


def start_lab_hint(folder: Path) -> str:
    """How to open ``folder`` in JupyterLab: plain `llmprep lab` opens the workspace (or the course root
    it lies in); any other folder is named."""
    from llmprep.course import workspace
    from llmprep.paths import repo_root

    root = repo_root().resolve()
    if folder.parent == workspace(root) or folder.is_relative_to(root):
        return "`llmprep lab` (or `make lab`)"
    return f"`llmprep lab {folder}`"


def _lab_target(extra: list[str], root: Path) -> tuple[Path, str, list[str]]:
    """(root_dir, path to open in it, the remaining jupyter options) of `llmprep lab [FOLDER|NOTEBOOK]`.

    Without a path: the learner's workspace once something was started there, else course/. A folder
    or notebook outside the course root becomes JupyterLab's root itself (the server shows nothing above
    its root), one inside keeps the course root and opens on it."""
    from llmprep.course import workspace

    root = root.resolve()
    rest = list(extra)
    target: Path | None = None
    if rest and not rest[0].startswith("-"):
        given = Path(rest[0]).expanduser()
        given = (Path.cwd() / given).resolve() if not given.is_absolute() else given.resolve()
        if not given.exists():
            _usage(f"{rest[0]} does not exist (paths are relative to {Path.cwd()})")
        target = given
        rest = rest[1:]
    if target is None:
        work = workspace(root)
        target = work if work.is_dir() and any(work.iterdir()) else root / "course"
    if target.is_relative_to(root):
        return root, target.relative_to(root).as_posix(), rest
    if target.is_file():
        return target.parent, target.name, rest
    return target, "", rest


def lab_command(extra: list[str], root: Path, uid: int | None = None) -> tuple[list[str], dict]:
    """The `jupyter lab` command line and environment of `llmprep lab` (for the tests)."""
    from llmprep.jupyter import kernel_spec_dir, offline_templates
    from llmprep.nbgrader_wiring import nbgrader_env
    from llmprep.paths import format_path

    env = nbgrader_env(root)
    kernels = kernel_spec_dir(format_path("jupyter", root=root))  # kernels that load %llmprep_check
    offline_templates(kernels)  # HTML pages (Formgrader's too) with MathJax inlined, no CDN
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(kernels), env.get("JUPYTER_PATH", "")) if p)
    root_dir, opens, extra = _lab_target(extra, root)
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root_dir}",
           f"--LabApp.default_url=/lab/tree/{opens}" if opens else "--LabApp.default_url=/lab"]
    uid = os.getuid() if uid is None and hasattr(os, "getuid") else uid
    if uid == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")  # jupyter refuses to start as root without it (containers, `make lab` as root)
    return cmd + list(extra), env


def cmd_lab(args) -> int:
    from llmprep.paths import repo_root

    root = repo_root()
    cmd, env = lab_command(args.extra, root)
    return subprocess.call(cmd, cwd=root, env=env)


def cmd_release(args) -> int:
    from llmprep.course import UsageError, release, release_diff, resolve_chapters

    if args.check:
        if args.chapters:
            _usage("--check compares all of course/ and takes no chapters")
        problems = release_diff()
        for p in problems:
            print(p)
        print("course/ is in sync with solutions/" if not problems else
              f"{len(problems)} difference(s): run `llmprep release` and commit course/")
        return 1 if problems else 0
    try:
        chapters = resolve_chapters(args.chapters)
    except UsageError as exc:
        _usage(exc)
    release(chapters)
    print("course/ regenerated from solutions/")
    return 0


def cmd_readme(args) -> int:
    from llmprep.course_map import readme_with_map
    from llmprep.paths import format_path

    path = format_path("readme")
    text = path.read_text(encoding="utf-8")
    wanted = readme_with_map(text)
    if args.check:
        print("README's course map is in sync with llmprep/course_map.py" if wanted == text else
              "README's course map differs from llmprep/course_map.py: run `llmprep readme` and commit README.md")
        return 0 if wanted == text else 1
    if wanted != text:
        path.write_text(wanted, encoding="utf-8")
    print(f"{path}: course map {'rewritten' if wanted != text else 'already in sync'}")
    return 0


def usable_notebook(path: Path, lang: str = "en") -> str | None:
    """Why ``path`` cannot be a notebook, in words (None: worth reading)."""
    from llmprep.i18n import tr

    if path.is_dir():
        return tr("is_folder", lang, path=path)
    if not path.exists():
        return tr("not_exist", lang, path=path)
    if not path.is_file():
        return tr("not_regular", lang, path=path)
    if path.stat().st_size == 0:
        return tr("empty", lang, path=path)
    return None


def cmd_check(args) -> int:
    from llmprep.i18n import default_lang, hint_lines, note_in, tr

    lang = getattr(args, "lang", None) or default_lang()
    path = Path(args.notebook).expanduser()
    why = usable_notebook(path, lang)
    if why:
        _usage(why)
    from llmprep.grading.engine import GradingError, check_notebook, isolation

    iso = isolation()
    tty = sys.stderr.isatty()
    last = [""]

    def progress(where: str, seconds: float) -> None:  # where the check is, while it runs
        said = tr("checking", lang, where=where)
        if tty:
            print(f"\r  {said[:80]:<80} {seconds:4.0f} s", end="", file=sys.stderr, flush=True)
        elif where != last[0]:
            print(f"  {said} ({seconds:.0f} s)", file=sys.stderr, flush=True)
        last[0] = where

    try:
        result = check_notebook(path, progress=None if args.json else progress)
        if tty and last[0]:
            print("\r" + " " * 90 + "\r", end="", file=sys.stderr, flush=True)
    except GradingError as exc:
        print(tr("grader_failed", lang, reason=_one_line(str(exc))), file=sys.stderr)
        return 2
    if result.chapter is None:  # not a gradable notebook at all: a usage error, before any work
        _usage("; ".join(note_in(n, lang) for n in result.notes))
    level = iso.describe
    from llmprep.coach.progress import record_check_quietly

    record_check_quietly(result.to_json())  # the learner's progress file (work/progress.sqlite)
    if args.json:
        print(json.dumps({**result.to_json(), "sandbox": level, "lang": lang}, ensure_ascii=False, indent=1))
    else:
        print(tr("head", lang, notebook=result.notebook, chapter=result.chapter, score=f"{result.score:g}",
                 max_score=f"{result.max_score:g}"))
        for c in result.cells:
            mark = tr("pass" if c.points == c.max_points else "fail", lang)
            print(f"  {mark}  {c.grade_id:<32} {c.points:g}/{c.max_points:g}  {c.text(lang)}")
            for line in hint_lines(c.hint, lang):
                print(f"        {line}")
        for note in result.notes:
            print("  " + tr("note", lang, text=note_in(note, lang)))
        print("  " + tr("ran_in", lang, level=level))
    return 1 if args.strict and result.score < result.max_score else 0


def cmd_grade(args) -> int:
    from llmprep.grading.batch import grade_assignment
    from llmprep.grading.trusted import all_chapters
    from llmprep.runtime import usable_cores

    if args.assignment not in all_chapters():
        _usage(f"unknown assignment '{args.assignment}'; the assignments are: {', '.join(all_chapters())}")
    jobs = (1 if args.cluster else usable_cores()) if args.jobs is None else args.jobs
    tls = (args.tls_ca_file, args.tls_cert, args.tls_key)
    if any(tls) and not all(tls):
        _usage("give all three of --tls-ca-file, --tls-cert and --tls-key")
    if any(tls) and not args.cluster:
        _usage("--tls-ca-file, --tls-cert and --tls-key go with --cluster tls://HOST:8786")
    if args.cluster:
        from llmprep.grading.cluster import unauthenticated

        warning = unauthenticated(args.cluster)
        if warning:
            print(warning, file=sys.stderr)
    code = grade_assignment(args.assignment, jobs=jobs, as_json=args.json, feedback=args.feedback,
                            unsandboxed=args.unsandboxed, cluster=args.cluster, regrade=args.regrade,
                            tls=tls if all(tls) else None)
    if args.canvas and code != 2:
        code = max(code, canvas_export(args))
    return code


def canvas_export(args) -> int:
    """``llmprep grade --canvas FILE``: the gradebook's grades of the assignment in Canvas's import CSV."""
    from llmprep.grading.lms import write_canvas
    from llmprep.grading.record import gradebook_url

    try:
        out = write_canvas(gradebook_url(), args.assignment, Path(args.canvas).expanduser(), args.canvas_column)
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        print(f"error: the Canvas CSV could not be written: {_one_line(str(exc)) or type(exc).__name__}",
              file=sys.stderr)
        return 2
    print(f"canvas: {out} (Canvas gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, "
          f"{args.canvas_column or args.assignment}; points possible in row 2)")
    return 0


def cmd_similarity(args) -> int:
    from llmprep.grading.similarity import similarity_report

    return similarity_report(args.chapter, top=args.top)


# nbgrader commands whose positional arguments are notebook paths (the others take assignment names)
_PATH_COMMANDS = {"validate"}
_TRACEBACK = "Traceback (most recent call last):"
_EXC_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|[\w.]+\.\w+): ")
# Warnings that say nothing wrong: a chapter's reference notebook is ungraded, so it never has feedback, and
# fetch_feedback warned about it for every submission.
_EXPECTED_WARNING = re.compile(r"Could not find feedback for '[^'/]+/[^'/]+/ch\d+[a-z]?_reference' ")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def nbgrader_paths(extra: list[str], cwd: Path) -> None:
    """Refuse, before nbgrader runs, a path command (``validate``) whose notebooks do not exist or cannot
    be read; paths are relative to ``cwd`` (the user's folder)."""
    from llmprep.grading.notebook import read_notebook
    from llmprep.grading.trusted import GradingError

    words = [w for w in extra if not w.startswith("-")]
    if not words or words[0] not in _PATH_COMMANDS or {"-h", "--help", "--help-all"} & set(extra):
        return
    paths = words[1:]
    if not paths:
        _usage(f"nbgrader {words[0]} needs a notebook path")
    for pattern in paths:
        full = pattern if os.path.isabs(pattern) else os.path.join(cwd, pattern)
        hits = sorted(glob.glob(os.path.expanduser(full)))
        if not hits:
            _usage(f"no notebook matches '{pattern}' (paths are relative to {cwd})")
        for hit in hits:
            why = usable_notebook(Path(hit))
            if why:
                _usage(why)
            try:
                read_notebook(Path(hit))
            except GradingError as exc:
                _usage(str(exc))


def filter_tracebacks(lines, out) -> None:
    """Copy nbgrader's stderr to ``out``, each Python traceback in it replaced by its last line, without the
    warnings that say nothing wrong (no feedback for an ungraded reference notebook)."""
    in_tb, last = False, ""
    prefix = ""
    for line in lines:
        if not in_tb and _EXPECTED_WARNING.search(line):
            continue
        if _TRACEBACK in line:
            if not in_tb:  # a chained traceback inside one keeps the first one's log prefix
                prefix = line[: line.index(_TRACEBACK)]
            in_tb, last = True, ""
            continue
        if in_tb:
            if not line.strip() or line[:1].isspace() or line.startswith("During handling") \
                    or line.startswith("The above exception"):
                if _EXC_LINE.match(line) and not line.strip().startswith("File "):
                    last = line.strip()
                continue
            if _EXC_LINE.match(line):  # an unindented traceback ends with its exception line
                last = line.strip()
                line = ""
            out.write(f"{prefix}{_one_line(last or 'an exception')} (LLMPREP_DEBUG=1 shows the traceback)\n")
            in_tb = False
            if not line:
                continue
        out.write(line)
    if in_tb:
        out.write(f"{prefix}{_one_line(last or 'an exception')} (LLMPREP_DEBUG=1 shows the traceback)\n")
    out.flush()


def nbgrader_subcommand(extra: list[str]) -> None:
    """Refuse an nbgrader command that does not exist (nbgrader itself prints its help and exits 0)."""
    words = [w for w in extra if not w.startswith("-")]
    if not words:
        return
    from nbgrader.apps import NbGraderApp

    if words[0] not in NbGraderApp.subcommands:
        _usage(f"unknown nbgrader command '{words[0]}'; the commands are: {', '.join(sorted(NbGraderApp.subcommands))}")


def cmd_nbgrader(args) -> int:
    from llmprep.nbgrader_wiring import nbgrader_env

    cwd = Path.cwd()
    nbgrader_subcommand(args.extra)
    nbgrader_paths(args.extra, cwd)
    cmd = [sys.executable, "-m", "nbgrader", *args.extra]
    if os.environ.get("LLMPREP_DEBUG"):
        return subprocess.call(cmd, cwd=cwd, env=nbgrader_env())
    proc = subprocess.Popen(cmd, cwd=cwd, env=nbgrader_env(), stderr=subprocess.PIPE, text=True,
                            errors="replace")
    filter_tracebacks(proc.stderr, sys.stderr)
    return proc.wait()


def cmd_bench(args) -> int:
    from llmprep.course import UsageError, resolve_chapters
    from llmprep.paths import format_path

    script = format_path("benchmarks") / "run.py"
    try:
        chapters = resolve_chapters(args.chapters) if args.chapters else []
    except UsageError as exc:
        _usage(exc)
    argv = chapters + (["--grading", str(args.grading)] if args.grading else [])
    return subprocess.call([sys.executable, str(script), *argv])


def cmd_book(args) -> int:
    from llmprep.book import BookError, build_book
    from llmprep.course import UsageError, resolve_chapters

    try:
        chapters = resolve_chapters(args.chapters)
    except UsageError as exc:
        _usage(exc)
    try:
        result = build_book(chapters, clean=args.clean)
    except BookError as exc:
        print(f"error: {_one_line(str(exc), 600)}", file=sys.stderr)
        return 1
    ran = [ch for ch in result.chapters if ch not in result.not_run]
    print(f"built {result.out} in {result.seconds:.1f} s: {len(result.chapters)} chapter(s), "
          f"{result.questions} mock-interview questions, {len(result.written)} source file(s) changed, "
          f"{len(result.warnings)} Sphinx warning(s) (build/book-warnings.txt)")
    print(f"  with outputs: {', '.join(ran) or 'none'}")
    if result.not_run:
        print(f"  not run yet (pages without outputs): {', '.join(result.not_run)}; run `llmprep run CHAPTER` "
              "(or `make run`) first, then `llmprep book` again")
    print(f"serve it: python -m http.server -d {result.out}   (then open http://127.0.0.1:8000)")
    return 0


def _coach_usage(fn):
    """Run a coach command: a CoachError (bad input, an unusable progress file) is one `error:` line, exit 2."""
    from llmprep.coach import CoachError

    try:
        return fn()
    except CoachError as exc:
        _usage(exc)


def cmd_drill(args) -> int:
    from llmprep.coach.cards import build_deck
    from llmprep.coach.drill import export_anki, run_drill
    from llmprep.i18n import default_lang

    lang = args.lang or default_lang()

    def go() -> int:
        if args.export and args.export[0] != "anki":
            _usage(f"unknown export format '{args.export[0]}'; the formats are: anki")
        cards = build_deck(args.chapter, lang, tuple(args.kinds.split(",")))
        if args.export:
            path = Path(args.export[1]).expanduser().resolve()
            n = export_anki(cards, path, lang)
            print(f"wrote {path}: an Anki deck of {n} card(s) ({lang}); in Anki: File > Import")
            return 0
        run_drill(cards, lang, args.limit, similarity=args.similarity)
        return 0

    return _coach_usage(go)


def cmd_mock(args) -> int:
    from llmprep.coach.cards import build_deck
    from llmprep.i18n import default_lang
    from llmprep.coach.mock import run_mock
    from llmprep.course import resolve_chapters

    lang = args.lang or default_lang()

    def go() -> int:
        from llmprep.coach.mock import plan_coding

        cards = build_deck(args.chapter, lang, ("questions",))
        coding = None
        if args.exercise:
            path = Path(args.exercise).expanduser()
            why = usable_notebook(path)
            if why:
                _usage(why)
            coding = plan_coding(path, args.exercise_id, args.exercise_minutes)
        elif args.exercise_id:
            _usage("--exercise-id needs --exercise NOTEBOOK")
        run_mock(cards, resolve_chapters(args.chapter), lang, n=args.questions, seconds=args.seconds, seed=args.seed,
                 coding=coding)
        return 0

    return _coach_usage(go)


def cmd_progress(args) -> int:
    from llmprep.coach.progress import show_progress

    plot = Path(args.plot).expanduser().resolve() if args.plot else None
    return _coach_usage(lambda: print(show_progress(args.chapter, plot)) or 0)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (got '{text}')") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {text})")
    return value


def add_coach_commands(sub) -> None:
    """`llmprep drill`, `llmprep mock`, `llmprep progress` (llmprep.coach)."""
    chapter_help = "chapter id or number (repeatable; default: every chapter)"
    lang_help = "language of the cards: zh or en (default: $LLMPREP_LANG, else the locale)"
    s = sub.add_parser("drill", help="spaced-repetition review of interview questions and known mistakes", **_doc(
        "Review flash cards in the terminal: every chapter's interview questions (question, then the 30-second "
        "version and the full answer) and the graders' known mistakes (\"what is wrong with this code?\", the "
        "diff and the misconception as the answer). Rate each card 1 Again, 2 Hard, 3 Good, 4 Easy; the fsrs "
        "library schedules its next review. Due cards come first, then new ones. Everything is kept in your "
        "progress file (work/progress.sqlite). Mistake cards show lines of the exercises' solutions: "
        "--kinds questions until you have solved a chapter.",
        "llmprep drill --chapter ch09 --lang zh --limit 10\nllmprep drill --kinds questions --similarity\n"
        "llmprep drill --export anki llmprep.apkg",
        f"0  done (or deck written)\n{USAGE_CODE}: unknown chapter or kind, a filter with no card, an unreadable "
        "progress file"))
    s.add_argument("--chapter", action="extend", nargs="+", default=None, metavar="CHAPTER", help=chapter_help)
    s.add_argument("--lang", choices=("zh", "en"), default=None, help=lang_help)
    s.add_argument("--limit", type=positive_int, default=20, metavar="N", help="at most N cards (default 20)")
    s.add_argument("--kinds", default="questions,mistakes", metavar="KINDS",
                   help="questions, mistakes or both, comma-separated (default: both)")
    s.add_argument("--similarity", action="store_true",
                   help="compare a typed English answer with the model answer (offline MiniLM): a hint, not a grade")
    s.add_argument("--export", nargs=2, metavar=("FORMAT", "FILE"),
                   help="write the chosen cards as a deck instead of a session: anki FILE.apkg")
    s.set_defaults(func=cmd_drill)

    s = sub.add_parser("mock", help="a timed mock interview in the terminal", **_doc(
        "A mock interview: N questions drawn from the chosen chapters, a timer per question (default 120 s), "
        "then the model answer and your own rating 1-4, and a summary. Ratings are kept in your progress file "
        "(work/progress.sqlite) and move each card's review schedule. With --exercise NOTEBOOK the session ends "
        "with one graded exercise: write it in the notebook within the time, save, press Enter; the trusted "
        "engine checks it as `llmprep check` does (recorded like any check). The course website has the same "
        "question session in the browser (its mock-interview page).",
        "llmprep mock --chapter ch09 ch12 -n 3 --seconds 90 --lang en\n"
        "llmprep mock --chapter ch01 -n 2 --exercise work/ch01_training/ch01_exercises.ipynb",
        f"0  done\n{USAGE_CODE}: unknown chapter, a bad number, an unreadable progress file"))
    s.add_argument("--chapter", action="extend", nargs="+", default=None, metavar="CHAPTER", help=chapter_help)
    s.add_argument("--lang", choices=("zh", "en"), default=None, help=lang_help)
    s.add_argument("-n", "--questions", type=positive_int, default=5, metavar="N", help="questions (default 5)")
    s.add_argument("--seconds", type=positive_seconds, default=120.0, metavar="S",
                   help="time per question in seconds (default 120)")
    s.add_argument("--seed", type=int, default=None, help="draw the same questions again")
    s.add_argument("--exercise", metavar="NOTEBOOK",
                   help="end with one graded exercise of this notebook, timed, then checked by the trusted engine")
    s.add_argument("--exercise-id", metavar="GRADE_ID", default=None,
                   help="which exercise (default: the first one not yet solved in your progress)")
    s.add_argument("--exercise-minutes", type=positive_seconds, default=15.0, metavar="M",
                   help="time for the exercise in minutes (default 15)")
    s.set_defaults(func=cmd_mock)

    s = sub.add_parser("progress", help="your self-checks and reviews per chapter", **_doc(
        "Your progress per chapter, from work/progress.sqlite (written by `llmprep check`, %llmprep_check, "
        "`llmprep drill` and `llmprep mock`; nothing is sent anywhere): best score and exercises solved, "
        "self-checks, when first solved, interview questions reviewed, cards known (last rating Good or Easy) "
        "and cards due now.",
        "llmprep progress\nllmprep progress --chapter ch01 --plot build/progress.png",
        f"0  shown\n{USAGE_CODE}: unknown chapter, an unreadable progress file (kept as it is)"))
    s.add_argument("--chapter", action="extend", nargs="+", default=None, metavar="CHAPTER", help=chapter_help)
    s.add_argument("--plot", metavar="FILE.png", help="also draw the table as a bar chart into FILE.png")
    s.set_defaults(func=cmd_progress)


# --------------------------------------------------------------------------- parser

def _doc(description: str, example: str, codes: str) -> dict:
    epilog = f"example:\n{textwrap.indent(example.strip(), '  ')}\n\nexit codes:\n{textwrap.indent(codes.strip(), '  ')}"
    return {"description": description, "epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}


USAGE_CODE = "2  bad input (one line `error: ...` on stderr, nothing done)"


def build_parser() -> argparse.ArgumentParser:
    from llmprep import __version__

    p = Parser(prog="llmprep", **_doc(
        "LLM interview-prep course: offline data, headless notebook runs, a learner workspace, JupyterLab, "
        "release of the course, and trusted grading.",
        "llmprep start ch01_training && llmprep lab\nllmprep check work/ch01_training/ch01_exercises.ipynb",
        f"0  success\n1  the command ran and found problems (see each command's --help)\n{USAGE_CODE}"))
    p.add_argument("--version", action="version", version=f"llmprep {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("data", help="fetch and verify every offline asset into the cache", **_doc(
        "Fetch (or repair) every offline asset into the cache and verify its checksum.",
        "llmprep data\nllmprep data --check", f"0  every asset verified\n1  an asset is missing or wrong\n{USAGE_CODE}"))
    s.add_argument("--check", action="store_true", help="verify only; exit 1 if any asset is missing or wrong")
    s.set_defaults(func=cmd_data)

    s = sub.add_parser("run", help="execute reference and solution notebooks headless; results table", **_doc(
        "Execute the chapters' notebooks from solutions/ headless, several at a time (one per core, as the free "
        "memory allows), the longest expected first (build/notebook-seconds.json from the last run, else "
        "benchmarks/notebook-seconds.json); graded notebooks on one thread, reference notebooks on the cores "
        "divided by the number at a time (all of them with --jobs 1). Prints the time, peak "
        "memory and status of each notebook and the recorded results; build/results.jsonl keeps the latest "
        "results of every chapter (a run replaces only the chapters it ran).",
        "llmprep run                      # every chapter\nllmprep run ch06_generation ch09 --jobs 2",
        f"0  every notebook ran\n1  a notebook failed (its row says why)\n{USAGE_CODE}"))
    s.add_argument("chapters", nargs="*", metavar="CHAPTER",
                   help="chapter id (ch06_generation), its number (ch06) or its folder; default: all")
    s.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="notebooks run N at a time (default: one per core, within the free memory; "
                        "--jobs 1: one after another, each reference notebook on every core)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("start", help="copy a chapter into your workspace (work/) to solve it there", **_doc(
        "Copy course/CHAPTER/ into a learner workspace (default work/CHAPTER/, or $LLMPREP_WORKSPACE/CHAPTER/ "
        "when LLMPREP_WORKSPACE is set; `llmprep lab` opens on the workspace) so that course/ stays pristine. "
        "Never overwrites an existing folder.",
        "llmprep start ch01_training && llmprep lab\n"
        "llmprep start ch02 ~/llm-practice/ch02 && llmprep lab ~/llm-practice/ch02",
        f"0  copied\n{USAGE_CODE}: unknown chapter, or the destination exists"))
    s.add_argument("chapter", metavar="CHAPTER", help="chapter id (ch01_training) or number (ch01)")
    s.add_argument("dir", nargs="?", metavar="DIR", help="destination folder (default: work/CHAPTER)")
    s.set_defaults(func=cmd_start)

    s = sub.add_parser("lab", add_help=False, help="JupyterLab with nbgrader on the course, or `llmprep lab FOLDER` "
                                                   "on a folder of yours (`llmprep lab --help`: jupyter lab's own "
                                                   "options, all passed through)")
    s.set_defaults(func=cmd_lab, passthrough=True)

    s = sub.add_parser("release", help="regenerate course/ from solutions/", **_doc(
        "Regenerate course/CHAPTER/ from solutions/CHAPTER/ with nbgrader generate_assignment (solutions "
        "become stubs; the kernel metadata the installed kernel reports is stored).",
        "llmprep release\nllmprep release ch01_training\nllmprep release --check",
        f"0  done / in sync\n1  with --check: course/ differs from what solutions/ generates\n{USAGE_CODE}"))
    s.add_argument("--check", action="store_true", help="exit 1 if course/ differs from what would be generated")
    s.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapters to release (default: all)")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("readme", help="write README's course map from llmprep/course_map.py", **_doc(
        "Write the table of README's \"Course map\" section from llmprep/course_map.py, the map's one source "
        "(the course website renders the same data).",
        "llmprep readme\nllmprep readme --check",
        f"0  written / in sync\n1  with --check: README's map differs\n{USAGE_CODE}"))
    s.add_argument("--check", action="store_true", help="exit 1 if README's course map is not in sync")
    s.set_defaults(func=cmd_readme)

    s = sub.add_parser("check", help="grade one notebook with the trusted engine", **_doc(
        "Grade one notebook with the trusted engine the instructor uses (in a sandbox): points and a reason "
        "per exercise. The chapter is found from the notebook's graded cells, whatever the file is called. "
        "Inside Jupyter, `%llmprep_check` does the same for the open notebook. (nbgrader's Validate button "
        "only runs the visible asserts.)",
        "llmprep check work/ch01_training/ch01_exercises.ipynb\nllmprep check my.ipynb --json --strict",
        "0  graded (whatever the score)\n1  with --strict: graded, below full marks\n"
        "2  unusable input: missing, a folder, empty, not a notebook, no graded cell of the course;\n"
        "   or the grader itself failed"))
    s.add_argument("notebook", metavar="NOTEBOOK", help="path of the .ipynb file (relative to this folder)")
    s.add_argument("--json", action="store_true",
                   help='print {"score", "max_score", "cells": [...], "notes"} as JSON (each cell: '
                        '"message" in English, "message_zh", "hint")')
    s.add_argument("--strict", action="store_true", help="exit 1 unless the notebook earns full marks")
    s.add_argument("--lang", choices=("zh", "en"), default=None,
                   help="language of the verdicts and hints: zh (中文) or en (default: $LLMPREP_LANG, else the locale)")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("grade", help="grade every submitted/<student>/<ASSIGNMENT>/ into the gradebook and a CSV", **_doc(
        "Grade every submitted/<student>/ASSIGNMENT/ with the trusted engine, one sandbox per submission: "
        "scores into the gradebook, autograded/<student>/ASSIGNMENT/, and build/grades/ASSIGNMENT.csv.",
        "llmprep grade ch01_training --jobs 2 --feedback",
        "0  every submission graded\n1  some submissions could not be graded, or none were found\n"
        "2  unknown assignment or bad option; the grader failed; no sandbox (without --unsandboxed)"))
    s.add_argument("assignment", metavar="ASSIGNMENT", help="a chapter id, e.g. ch01_training")
    s.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="grade N submissions at a time (default: one per core)")
    s.add_argument("--unsandboxed", action="store_true",
                   help="grade even where no sandbox can start (only if you trust every submission)")
    s.add_argument("--json", action="store_true", help="one JSON object per student")
    s.add_argument("--feedback", action="store_true", help="also run nbgrader generate_feedback")
    s.add_argument("--canvas", metavar="FILE", help="also write the gradebook's grades in Canvas's gradebook import CSV")
    s.add_argument("--canvas-column", metavar="TITLE", help="the Canvas assignment column, e.g. 'Chapter 1 (12345)' "
                   "to update Canvas assignment 12345 (default: the assignment id, a new Canvas assignment)")
    s.add_argument("--cluster", metavar="tls://HOST:8786", default=None,
                   help="run the sandboxes on this Dask scheduler's workers (judging and writes stay here); "
                        "--jobs then defaults to one per worker thread. tcp:// is unauthenticated: on a shared "
                        "network use tls:// with the three --tls-* files")
    s.add_argument("--tls-ca-file", metavar="CA.pem", help="with --cluster tls://: the CA every peer's certificate is "
                   "signed by (the scheduler and workers started with the same --tls-ca-file)")
    s.add_argument("--tls-cert", metavar="CERT.pem", help="with --cluster tls://: this client's certificate")
    s.add_argument("--tls-key", metavar="KEY.pem", help="with --cluster tls://: this client's private key")
    s.add_argument("--regrade", action="store_true",
                   help="judge from each submission's kept results (build/grading-results) where its job is "
                        "unchanged; run the others")
    s.set_defaults(func=cmd_grade)

    s = sub.add_parser("similarity", help="which submissions' answer cells look alike (HTML report + CSV)", **_doc(
        "Compare the answer cells of every pair of submitted/<student>/CHAPTER/ notebooks with copydetect "
        "(winnowed fingerprints; the released stub's code ignored) and write build/similarity/CHAPTER.html and "
        "build/similarity/CHAPTER.csv, the most similar pairs first. A signal for a person to read: it never "
        "changes a grade.",
        "llmprep similarity ch01_training --top 20",
        "0  report written\n1  fewer than two readable submissions\n2  unknown chapter or bad option"))
    s.add_argument("chapter", metavar="CHAPTER", help="a chapter id, e.g. ch01_training")
    s.add_argument("--top", type=positive_int, default=50, metavar="N", help="pairs in the CSV and report (default 50)")
    s.set_defaults(func=cmd_similarity)

    s = sub.add_parser("book", help="build the course website into build/book/ from the executed notebooks", **_doc(
        "Build the course website (Sphinx + MyST-NB, offline) into build/book/: the course map and results "
        "as the home page, each chapter's reference notebook as `llmprep run` executed it (outputs, plots, "
        "printed results; a chapter not run yet is shown without outputs and says so), its released "
        "exercises (stubs, never solutions), and a mock-interview page with every interview question. "
        "Sources are staged in build/book-src/ and rewritten only when they change, so a second build "
        "takes seconds.",
        "make run && llmprep book          # every chapter\nllmprep book ch02 ch09 --clean\n"
        "python -m http.server -d build/book",
        f"0  built\n1  the build failed (Sphinx's error, or a page that would publish solution code)\n{USAGE_CODE}"))
    s.add_argument("chapters", nargs="*", metavar="CHAPTER",
                   help="chapters to include (id, number or folder; default: all)")
    s.add_argument("--clean", action="store_true", help="remove build/book, build/book-src and Sphinx's cache first")
    s.set_defaults(func=cmd_book)

    s = sub.add_parser("nbgrader", add_help=False, help="an nbgrader command with the course's configuration "
                                                        "(`llmprep nbgrader CMD --help`: nbgrader's own help)")
    s.set_defaults(func=cmd_nbgrader, passthrough=True)

    s = sub.add_parser("bench", help="the benchmarks behind README's results table", **_doc(
        "Measure the figures behind README's results table on this machine: every chapter's notebooks one "
        "after another (reference notebooks on the default threads, graded notebooks on one thread), wall time "
        "and peak memory of each, the trusted grader's time on each solution and released stub, and every result "
        "the notebooks record beside its anchor. Checks the budgets (10 min in all, 90 s per reference notebook, "
        "60 s per graded notebook, 4 GB) and writes build/bench.json and build/bench.md. Takes as long as "
        "`llmprep run --jobs 1` and more.",
        "llmprep bench                    # every chapter\nllmprep bench ch09 ch12\nllmprep bench --grading 40",
        f"0  measured, every budget held\n1  a notebook failed or a budget was exceeded\n{USAGE_CODE}"))
    s.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter ids to measure (default: all)")
    s.add_argument("--grading", type=positive_int, default=0, metavar="N",
                   help="also measure grading throughput on N generated submissions")
    s.set_defaults(func=cmd_bench)
    add_coach_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.exit(EXIT_USAGE, f"error: unrecognized arguments: {' '.join(extra)} (see `llmprep {args.command} --help`)\n")
    args.extra = extra
    try:
        return args.func(args)
    except UsageFailure as exc:
        print(f"error: {_one_line(str(exc), 600)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - no traceback is the user interface
        from llmprep.assets import AssetError
        from llmprep.course import UsageError

        if isinstance(exc, UsageError):
            print(f"error: {_one_line(str(exc), 600)}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, AssetError):
            print(f"error: {_one_line(str(exc), 600)}", file=sys.stderr)
            return 1
        if os.environ.get("LLMPREP_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {_one_line(str(exc), 600)} (set LLMPREP_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
