"""The course on disk: chapters, release (solutions/ -> course/ via nbgrader), headless runs."""
from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmprep.grading.engine import repo_root
from llmprep.runtime import usable_cores


def chapters(root: Path | None = None) -> list[str]:
    root = root or repo_root()
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and p.name.startswith("ch"))


def chapter_prefix(chapter: str) -> str:
    """``ch06`` for ``ch06_generation``: the start of the chapter's notebook names."""
    return chapter.split("_")[0]


def notebooks(chapter: str, root: Path | None = None) -> list[Path]:
    """A chapter's notebooks, the reference first, then the exercises."""
    folder = (root or repo_root()) / "solutions" / chapter
    found = sorted(p for p in folder.glob("*.ipynb"))
    return sorted(found, key=lambda p: (0 if "reference" in p.stem else 1, p.name))


class UsageError(ValueError):
    """Bad input from the command line: reported as one ``error: ...`` line, before any work."""


def resolve_chapters(names: list[str] | None, root: Path | None = None) -> list[str]:
    """Chapter ids from what a user typed: ``ch01_training``, ``ch01``, or a path to a chapter folder
    (``course/ch01_training``, ``solutions/ch01_training/``). UsageError names the valid chapters."""
    known = chapters(root)
    if not names:
        return known
    picked = []
    for name in names:
        stem = Path(name.rstrip("/\\")).name if name.strip() else ""
        hits = [stem] if stem in known else [ch for ch in known if stem and chapter_prefix(ch) == stem]
        if len(hits) != 1:
            raise UsageError(f"unknown chapter '{name}'; the chapters are: {', '.join(known)}")
        if hits[0] not in picked:
            picked.append(hits[0])
    return picked


def nbgrader_env(root: Path | None = None) -> dict:
    """Environment for nbgrader commands: the course's config (autograder/) and this venv's tools."""
    root = root or repo_root()
    env = dict(os.environ)
    env["JUPYTER_CONFIG_PATH"] = str(repo_root() / "autograder")
    env["LLMPREP_ROOT"] = str(root)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def nbgrader(args: list[str], root: Path | None = None, quiet: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root or repo_root(),
                          env=nbgrader_env(root), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{tail}")
    if not quiet:
        print(proc.stdout + proc.stderr)
    return proc


# What the course's kernel (ipykernel's ``python3``) reports, stored in every released notebook so that
# opening one in JupyterLab changes nothing: JupyterLab rewrites ``kernelspec`` with the kernel's spec and
# ``language_info`` with its kernel_info reply, and marks the notebook modified when either differs. The
# Python version is left out (it depends on the machine); autograder/jupyter_server_config.py drops it
# again on save, so a saved notebook stays byte-identical.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3"}


def normalise_metadata(path: Path) -> None:
    """Store the course kernel's spec and language info in one notebook (only rewritten if they differ)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    if nb.metadata.get("kernelspec") == KERNELSPEC and nb.metadata.get("language_info") == LANGUAGE_INFO:
        return
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = json.loads(json.dumps(LANGUAGE_INFO))
    nbformat.write(nb, str(path))


def release(chapter_ids: list[str] | None = None, root: Path | None = None, db: bool = True) -> None:
    """Regenerate course/<chapter>/ from solutions/<chapter>/ with nbgrader generate_assignment."""
    root = root or repo_root()
    for chapter in chapter_ids or chapters(root):
        nbgrader(["generate_assignment", chapter, "--force"] + ([] if db else ["--no-db"]), root)
        for path in sorted((root / "course" / chapter).glob("*.ipynb")):
            normalise_metadata(path)


def workspace(root: Path | None = None) -> Path:
    """The learner's workspace: ``$LLMPREP_WORKSPACE`` if set (where nbgrader's fetch puts assignments too),
    else ``work/`` in the course root (ignored by git); `llmprep start` copies into it, `llmprep lab` opens on it."""
    chosen = os.environ.get("LLMPREP_WORKSPACE")
    return Path(chosen).expanduser().resolve() if chosen else (root or repo_root()) / "work"


def start(chapter: str, dest: Path | None = None, root: Path | None = None) -> Path:
    """Copy course/<chapter>/ into the learner's workspace (default ``work/<chapter>``) so that course/
    stays pristine. Never overwrites: an existing destination is a UsageError."""
    root = root or repo_root()
    (chapter,) = resolve_chapters([chapter], root)
    source = root / "course" / chapter
    if not source.is_dir():
        raise UsageError(f"course/{chapter} does not exist; run `llmprep release {chapter}` first")
    dest = Path(dest) if dest is not None else workspace(root) / chapter
    if dest.exists():
        raise UsageError(f"{dest} already exists; your work there is kept (choose another folder, "
                         "or remove it to start over)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return dest


def release_diff(root: Path | None = None) -> list[str]:
    """Differences between course/ and what `llmprep release` would generate now (empty: in sync)."""
    root = root or repo_root()
    with tempfile.TemporaryDirectory(prefix="llmprep-release-") as tmp:
        shadow = Path(tmp)
        shutil.copytree(root / "solutions", shadow / "solutions",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        release(chapters(root), shadow, db=False)
        expected, actual = shadow / "course", root / "course"
        problems = []
        exp_files = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()} if expected.exists() else set()
        act_files = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file()
                     and ".ipynb_checkpoints" not in p.parts} if actual.exists() else set()
        for rel in sorted(exp_files - act_files):
            problems.append(f"course/{rel} is missing")
        for rel in sorted(act_files - exp_files):
            problems.append(f"course/{rel} is not generated from solutions/")
        for rel in sorted(exp_files & act_files):
            if not filecmp.cmp(expected / rel, actual / rel, shallow=False):
                problems.append(f"course/{rel} differs from what solutions/ generates")
        return problems


# --------------------------------------------------------------------------- headless runs

class _PeakMemory:
    """Samples, in a thread, the resident memory of one kernel: the process ``pid()`` names (None until it
    has started) and its children. Other kernels running beside it are never counted."""

    def __init__(self, pid, interval: float = 0.25):
        import threading

        self.peak = 0
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)

    def _loop(self, interval: float) -> None:
        import psutil

        while not self._stop.wait(interval):
            total = 0
            try:
                kernel = psutil.Process(self._pid())
                procs = [kernel] + kernel.children(recursive=True)
            except (psutil.Error, TypeError, ValueError):  # not started yet, or already gone
                continue
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def execute_notebook(path: Path, out_path: Path, results_file: Path, timeout: int = 900, progress=None,
                     threads: int | None = None) -> dict:
    """Execute one notebook headless in its own folder; save the executed copy. Safe to call from
    several threads at once (each kernel gets its own environment).

    Returns {"seconds", "peak_mb"}; ``threads`` pins the kernel's thread count (graded notebooks: 1)."""
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(str(path), as_version=4)
    env = dict(os.environ, LLMPREP_RESULTS=str(results_file))
    if threads:
        env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                    "LLMPREP_THREADS": str(threads)})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            # CurveZMQ keys for the kernel's sockets (and no plain-TCP warning from every kernel)
                            config=Config({"KernelManager": {"transport_encryption": "auto"}}))
    if progress is not None:
        client.on_cell_executed = lambda **kw: progress.update(1)

    def kernel_pid():
        return getattr(getattr(client.km, "provisioner", None), "pid", None) if client.km else None

    start = time.perf_counter()
    try:
        with _PeakMemory(kernel_pid) as mem:
            client.execute(env=env)
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out_path))
    return {"seconds": time.perf_counter() - start, "peak_mb": mem.peak / 2**20}


def is_graded(path: Path) -> bool:
    return "reference" not in path.stem


SECONDS_FILE = "notebook-seconds.json"  # build/ (this machine's last run) or benchmarks/ (the reference machine)
MEMORY_PER_JOB = 2.5 * 2**30  # a notebook's peak is <= 2 GB (the chapter budget), plus headroom


def default_jobs() -> int:
    """Notebooks run at once by `llmprep run`: one per core, as many as the free memory allows."""
    try:
        import psutil

        by_memory = int(psutil.virtual_memory().available // MEMORY_PER_JOB)
    except Exception:  # noqa: BLE001 - no memory figure: cores only
        by_memory = usable_cores()
    return max(1, min(usable_cores(), by_memory))


def notebook_key(chapter: str, notebook: Path | str) -> str:
    """How a notebook is named in the timing files: ``chapter/notebook.ipynb``."""
    return f"{chapter}/{Path(notebook).name}"


def expected_seconds(root: Path) -> dict[str, float]:
    """Seconds each notebook ("chapter/notebook.ipynb") took in the last run on this machine
    (build/notebook-seconds.json), else on the reference machine (benchmarks/notebook-seconds.json); {} if neither
    is readable. `run` starts the longest first."""
    for path in (root / "build" / SECONDS_FILE, root / "benchmarks" / SECONDS_FILE):
        try:
            data = json.loads(path.read_text())
            return {str(k): float(v) for k, v in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return {}


def schedule(todo: list[tuple[str, Path]], seconds: dict[str, float]) -> list[tuple[str, Path]]:
    """Longest expected first (a greedy list schedule on N workers then ends close together); a notebook
    never timed counts as long when it is a reference notebook, short when it is graded."""
    def key(item):
        chapter, nb = item
        return -seconds.get(notebook_key(chapter, nb), 3600.0 if not is_graded(nb) else 0.0)
    return sorted(todo, key=key)  # stable: course order among equals


def expected_wall(order: list[tuple[str, Path]], seconds: dict[str, float], jobs: int) -> float | None:
    """Wall time of ``order`` on ``jobs`` workers, each notebook taking its expected seconds (None: one untimed)."""
    import heapq

    keys = [notebook_key(ch, nb) for ch, nb in order]
    if any(k not in seconds for k in keys):
        return None
    ends = [0.0] * jobs
    for k in keys:
        heapq.heappush(ends, heapq.heappop(ends) + seconds[k])
    return max(ends)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run(chapter_ids: list[str] | None = None, root: Path | None = None, jobs: int | None = None) -> int:
    """Execute every chapter's notebooks headless and print the table.

    ``jobs`` notebooks run at once (default: one per core, within the free memory), longest expected first.
    Graded notebooks run on one thread; a reference notebook gets the cores divided by ``jobs`` (all of them
    with ``jobs=1``)."""
    import nbformat
    from concurrent.futures import ThreadPoolExecutor
    from tqdm.auto import tqdm

    root = root or repo_root()
    chapter_ids = resolve_chapters(chapter_ids, root)
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {jobs})")
    todo = [(ch, nb) for ch in chapter_ids for nb in notebooks(ch, root)]
    if not todo:
        raise UsageError(f"no notebooks to run in solutions/{{{','.join(chapter_ids)}}}")
    build = root / "build"
    build.mkdir(exist_ok=True)
    # Each notebook's records go to a file of their own (gathered in course order at the end);
    # build/results.jsonl gets them at the end, replacing only the chapters that ran (an interrupted
    # or partial run never erases earlier results).
    partial = build / f"results.{os.getpid()}.partial"
    partial.mkdir(exist_ok=True)
    jobs = min(jobs or default_jobs(), len(todo))
    ref_threads = None if jobs == 1 else max(1, usable_cores() // jobs)
    total_cells = sum(sum(c.cell_type == "code" for c in nbformat.read(str(nb), as_version=4).cells) for _, nb in todo)
    rows = {}
    start = time.perf_counter()

    def results_of(item):
        return partial / f"{todo.index(item):03d}.jsonl"

    running: list[str] = []

    def one(item):
        chapter, nb = item
        running.append(nb.stem)
        bar.set_postfix_str(f"running {', '.join(running)}")
        try:
            stats = execute_notebook(nb, build / "executed" / chapter / nb.name, results_of(item), progress=bar,
                                     threads=1 if is_graded(nb) else ref_threads)
            rows[item] = (chapter, nb.name, stats["seconds"], stats["peak_mb"], "ok")
        except Exception as exc:  # noqa: BLE001 - report and go on with the next notebook
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()  # no terminal colours
            rows[item] = (chapter, nb.name, float("nan"), float("nan"),
                          f"FAILED: {type(exc).__name__}: {first[-1][:120] if first else ''}")
        finally:
            running.remove(nb.stem)

    seconds = expected_seconds(root)
    order = schedule(todo, seconds)
    expected = expected_wall(order, seconds, jobs)
    print(f"{len(todo)} notebook(s), {jobs} at a time" +
          (f"; about {_duration(expected)} expected from the last timed run" if expected else ""))
    try:
        # no remaining-time estimate: cells differ by minutes, so a count of cells would mislead
        with tqdm(total=total_cells, desc="llmprep run", unit="cell",
                  bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} cells [{elapsed}{postfix}]") as bar:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(one, order))
        records = [r for item in todo for r in read_records(results_of(item))]
        merge_results(build / "results.jsonl", records, chapter_ids, chapters(root))
        timed = seconds | {notebook_key(ch, name): round(secs, 1) for ch, name, secs, _, status
                           in rows.values() if status == "ok"}
        (build / SECONDS_FILE).write_text(json.dumps(dict(sorted(timed.items())), indent=1) + "\n")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    table = [rows[item] for item in todo]
    print_table(table, records)
    threads = "one thread each" if ref_threads == 1 else f"references on {ref_threads or 'every'} thread(s)"
    print(f"\ntotal {time.perf_counter() - start:.0f} s ({jobs} notebook(s) at a time, {threads}); "
          f"executed notebooks in {build / 'executed'}")
    return 1 if any(r[4] != "ok" for r in table) else 0


def read_records(path: Path) -> list[dict]:
    """The records of a results file (JSON lines); unreadable lines are skipped, a missing file has none."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _chapter_of(record: dict) -> str:
    return chapter_prefix(str(record.get("chapter", "")))


def merge_results(path: Path, records: list[dict], ran: list[str], known: list[str]) -> None:
    """Write ``records`` (from the chapters in ``ran``) into ``path``, keeping every earlier record of a
    chapter that did not run; chapters in course order."""
    done = {chapter_prefix(ch) for ch in ran}
    kept = [r for r in read_records(path) if _chapter_of(r) not in done]
    rank = {chapter_prefix(ch): i for i, ch in enumerate(known)}
    merged = sorted(kept + records, key=lambda r: rank.get(_chapter_of(r), len(rank)))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged), encoding="utf-8")
    tmp.replace(path)


def print_table(rows, records) -> None:
    print()
    print(f"{'chapter':<18} {'notebook':<28} {'time':>8} {'peak mem':>9}  status")
    print("-" * 80)
    for chapter, name, secs, peak, status in rows:
        shown = f"{secs:7.1f}s" if secs == secs else "      -"
        mem = f"{peak:6.0f} MB" if peak == peak else "        -"
        print(f"{chapter:<18} {name:<28} {shown} {mem}  {status}")
    if records:
        print()
        print(f"{'chapter':<18} {'result':<44} {'value':>10}  anchor")
        print("-" * 100)
        for r in records:
            print(f"{r['chapter']:<18} {r['name']:<44} {r['value']:>10}  {r['anchor']}")
