"""Shared test set-up: one thread per process, offline, non-interactive plots; the fixtures every folder uses.

Markers (registered in pyproject.toml): ``sandbox`` (starts the bubblewrap sandbox), ``browser`` (drives Chromium),
``slow`` (executes real notebooks or a Jupyter server, or reads what `llmprep run` executed). The inner loop is
``pytest -m "not sandbox and not browser and not slow"``.

Executed notebooks: `make test` runs `llmprep run` first (every notebook once, in parallel, payoffs asserted,
copies in ``build/executed/``), and the ``executed`` fixture reads those copies; a copy that is missing or stale (its
cells differ from ``solutions/``, or it is older than the notebook or a file of the ``llmprep`` package) is executed
here instead, the way `llmprep run` would.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("LLMPREP_PROGRESS", "off")  # a test's `llmprep check` never writes the learner's progress file

import threading  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


# The heaviest test files first, then the rest in their own order (per-file seconds summed from a whole run
# with --durations=0): `make test` runs `--dist loadfile --no-loadscope-reorder`, so xdist hands out whole files in
# this order; the longest start first and the short ones fill the end (longest processing time first), instead
# of a 35-second file starting last while the other worker has nothing left. A new heavy file belongs here.
HEAVY_FIRST = [
    "grading/test_grading.py", "chapters/test_mutants.py", "grading/test_hostile.py", "chapters/test_selfchecks.py",
    "grading/test_exchange.py", "grading/test_cluster.py", "grading/test_late.py", "grading/test_gradebook.py",
    "grading/test_feedback_pages.py", "grading/test_sandbox.py", "site/test_formgrader.py", "site/test_book.py",
    "course/test_coach.py", "site/test_mock_session.py", "course/test_assets.py", "grading/test_hints.py",
    "course/test_headless.py", "chapters/test_ch16_evaluation.py",
]


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}

    def file_rank(item):
        try:
            return rank.get(Path(item.path).relative_to(here).as_posix(), len(rank))
        except ValueError:
            return len(rank)

    items.sort(key=file_rank)  # stable: the order inside a file, and of the other files, is kept


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    _absl_handler_writes_to_the_real_stderr()


def _absl_handler_writes_to_the_real_stderr():
    """absl's log handler (imported by JAX's libraries) keeps the ``sys.stderr`` of its import time and, when
    closed, closes that stream unless it is the *current* ``sys.stderr``. Any traitlets application (nbgrader)
    closes every handler through ``logging.config.dictConfig``; inside a ``capsys`` test this closed pytest's
    own capture file, and every later test of that worker failed with "I/O operation on closed file"."""
    import sys

    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_handler().python_handler.setStream(sys.__stderr__)


# --------------------------------------------------------------------------- the repository, specs, solutions

@pytest.fixture(scope="session")
def root():
    from llmprep.grading.engine import repo_root

    return repo_root()


@pytest.fixture(scope="session")
def spec():
    """``spec(chapter)``: the chapter's trusted spec module (``autograder/<chapter>.py``), loaded once."""
    from llmprep.grading.engine import load_spec

    return load_spec


@pytest.fixture(scope="session")
def solution_path(root, spec):
    """``solution_path(chapter)``: the chapter's graded solution notebook in ``solutions/``."""
    return lambda chapter: root / "solutions" / chapter / spec(chapter).notebook


@pytest.fixture(scope="session")
def released_path(root, spec):
    """``released_path(chapter)``: the chapter's released (stub) notebook in ``course/``."""
    return lambda chapter: root / "course" / chapter / spec(chapter).notebook


@pytest.fixture(scope="session")
def solution_nb(solution_path):
    """``solution_nb(chapter)``: a fresh nbformat copy of the graded solution notebook (edit it freely)."""
    import copy

    from llmprep.grading.engine import read_notebook

    cache = {}

    def load(chapter):
        if chapter not in cache:
            cache[chapter] = read_notebook(solution_path(chapter))
        return copy.deepcopy(cache[chapter])

    return load


@pytest.fixture(scope="session")
def reference():
    """``reference(chapter)``: the solution's outputs on every hidden case (``engine.reference_run``), read once per
    test session. Computed in the sandbox once per change of notebook, spec or sandbox code and cached on disk
    (build/grading-cache); a file lock makes the other xdist worker wait for that one computation instead of
    running the same sandbox beside it. Call it before ``engine.check_notebook`` or ``mutant_run``, which then
    find the cache warm."""
    import fcntl

    from llmprep.grading import engine
    from llmprep.grading.trusted import cache_dir

    cache = {}

    def get(chapter):
        if chapter not in cache:
            cache_dir().mkdir(parents=True, exist_ok=True)
            with open(cache_dir() / f".{chapter}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    cache[chapter] = engine.reference_run(chapter)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        return cache[chapter]

    return get


# --------------------------------------------------------------------------- executed notebooks

@dataclass
class Executed:
    """One solution notebook executed headless: by `llmprep run` before the tests (``by == "llmprep run"``,
    the copy in build/executed/) or by this test session (``by == "this session"``)."""
    chapter: str
    source: Path
    path: Path
    nb: object
    by: str
    records: list = field(default_factory=list)  # the chapter's results (build/results.jsonl), as report.record wrote them


def stale_reason(copy: Path, source: Path, root: Path) -> str | None:
    """Why the executed ``copy`` cannot stand for a run of ``source`` now (None: it can)."""
    import nbformat

    if not copy.is_file():
        return f"no executed copy {copy}"
    try:
        executed = nbformat.read(str(copy), as_version=4)
    except Exception as exc:  # noqa: BLE001 - an unreadable copy is re-executed
        return f"{copy} is unreadable ({exc})"
    current = nbformat.read(str(source), as_version=4)
    if [(c.cell_type, c.source) for c in executed.cells] != [(c.cell_type, c.source) for c in current.cells]:
        return f"{source.name} changed since {copy} was executed"
    newest = max([source.stat().st_mtime] + [p.stat().st_mtime for p in (root / "llmprep").rglob("*.py")])
    if copy.stat().st_mtime < newest:
        return f"{copy} is older than {source.name} or the llmprep package"
    return None


def read_records(path: Path) -> list[dict]:
    """The results of a results file as plain dicts (``llmprep.results.Result`` fields)."""
    from dataclasses import asdict

    from llmprep.results import read_results

    return [asdict(r) for r in read_results(path)]


def _execute_here(chapter: str, source: Path, folder: Path) -> tuple[Path, list]:
    """Execute ``source`` as `llmprep run` does (own kernel, one thread, the kernel's inline plots)."""
    from llmprep.headless import execute_notebook

    out = folder / "executed" / chapter / source.name
    results = folder / "results" / f"{chapter}-{source.stem}.jsonl"
    results.parent.mkdir(parents=True, exist_ok=True)
    saved = os.environ.pop("MPLBACKEND", None)  # as under `llmprep run`: plots become PNG outputs
    try:
        try:
            execute_notebook(source, out, results, threads=1)
        except Exception:  # noqa: BLE001 - the executed copy holds the error; the test reads it from there
            pass
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved
    return out, read_records(results)


@pytest.fixture(scope="session")
def executed(root, tmp_path_factory):
    """``executed(chapter, notebook_name)`` -> :class:`Executed`, each notebook executed at most once per session."""
    import nbformat

    from llmprep.paths import chapter_prefix

    cache: dict = {}
    lock = threading.Lock()

    def get(chapter: str, name: str) -> Executed:
        with lock:
            if (chapter, name) in cache:
                return cache[chapter, name]
            source = root / "solutions" / chapter / name
            copy = root / "build" / "executed" / chapter / name
            reason = stale_reason(copy, source, root)
            if reason is None:
                records = [r for r in read_records(root / "build" / "results.jsonl")
                           if chapter_prefix(str(r.get("chapter", ""))) == chapter_prefix(chapter)]
                by = "llmprep run"
            else:
                print(f"\nexecuting {chapter}/{name} here: {reason} (`llmprep run` first saves this)")
                copy, records = _execute_here(chapter, source, tmp_path_factory.mktemp("executed"))
                by = "this session"
            nb = nbformat.read(str(copy), as_version=4) if copy.is_file() else None
            cache[chapter, name] = Executed(chapter, source, copy, nb, by, records)
            return cache[chapter, name]

    return get

