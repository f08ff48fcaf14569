"""Headless execution of the course's notebooks: one notebook in a kernel of its own (time, peak memory,
an inactivity watchdog), the schedule of a run (longest expected first), and `llmprep run`'s table.

Chapters and notebooks come from :mod:`llmprep.course`; what notebooks report goes through
:mod:`llmprep.results`; executed copies and timings go where :mod:`llmprep.paths` says (``build/``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from llmprep.course import UsageError, chapters, notebooks, resolve_chapters
from llmprep.paths import LAYOUT, format_path, repo_root
from llmprep.results import RESULTS_ENV, Result, merge_results, read_results
from llmprep.runtime import usable_cores

IDLE_ENV = "LLMPREP_CELL_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 5.0  # no output and no CPU use for this long: the kernel is stuck, not busy
CPU_BUSY = 0.05  # a kernel that used this share of one core in a sampling interval is working


class CellInactivityError(RuntimeError):
    """A cell's kernel showed no sign of life (no message, no CPU) for the inactivity timeout."""


def idle_timeout_default() -> float:
    """Seconds a cell may stay idle: ``LLMPREP_CELL_IDLE_MINUTES`` (0: never time out), else 5 minutes."""
    try:
        return 60 * float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_MINUTES)
    except ValueError:
        return 60 * DEFAULT_IDLE_MINUTES


class _KernelMonitor:
    """Samples, in a thread, one kernel: the process ``pid()`` names (None until it has started) and its
    children; other kernels running beside it are never counted. Keeps the peak resident memory, and
    kills the kernel when it shows no sign of life for ``idle`` seconds: no message from it (``touch``)
    and no CPU use. ``stalled`` then names the cell that was running."""

    def __init__(self, pid, idle: float | None = None, interval: float = 0.25):
        import threading

        self.peak = 0
        self.idle = idle
        self.cell: tuple[int, str] | None = None  # (index, source) of the cell running now
        self.stalled: str | None = None
        self._pid = pid
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)

    def touch(self, cell: tuple[int, str] | None = None) -> None:
        """A sign of life: a message from the kernel, or a new cell (``cell``) starting."""
        self._last = time.monotonic()
        if cell is not None:
            self.cell = cell

    def _loop(self, interval: float) -> None:
        import psutil

        cpu_before = None
        while not self._stop.wait(interval):
            total, cpu = 0, 0.0
            pid = self._pid()
            if pid is None:  # not started yet (psutil.Process(None) would be this process and every kernel)
                continue
            try:
                kernel = psutil.Process(pid)
                procs = [kernel] + kernel.children(recursive=True)
            except (psutil.Error, TypeError, ValueError):  # already gone
                continue
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            if cpu_before is not None and cpu - cpu_before >= CPU_BUSY * interval:
                self.touch()
            cpu_before = cpu
            if self.idle and self.cell is not None and time.monotonic() - self._last > self.idle:
                self._kill(procs)

    def _kill(self, procs) -> None:
        import psutil

        index, source = self.cell
        first = next((line.strip() for line in source.splitlines() if line.strip()), "")
        self.stalled = (f"cell {index} ({first[:60]!r}) showed no output and no CPU use for "
                        f"{self.idle / 60:.3g} min: the kernel was stopped")
        for proc in reversed(procs):  # children first
            try:
                proc.kill()
            except psutil.Error:
                pass
        self._stop.set()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def execute_notebook(path: Path, out_path: Path, results_file: Path, timeout: int = 900, progress=None,
                     threads: int | None = None, idle_timeout: float | None = None) -> dict:
    """Execute one notebook headless in its own folder; save the executed copy. Safe to call from
    several threads at once (each kernel gets its own environment).

    Returns {"seconds", "peak_mb"}; ``threads`` pins the kernel's thread count (graded notebooks: 1).
    ``timeout``: seconds one cell may run; ``idle_timeout`` (default :func:`idle_timeout_default`; 0: none):
    seconds a cell may show no sign of life (no output, no CPU), after which the kernel is stopped and
    CellInactivityError names the cell."""
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(str(path), as_version=4)
    env = dict(os.environ, **{RESULTS_ENV: str(results_file)})
    if threads:
        env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                    "LLMPREP_THREADS": str(threads)})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            # CurveZMQ keys for the kernel's sockets (and no plain-TCP warning from every kernel)
                            config=Config({"KernelManager": {"transport_encryption": "auto"}}))

    def kernel_pid():
        return getattr(getattr(client.km, "provisioner", None), "pid", None) if client.km else None

    monitor = _KernelMonitor(kernel_pid, idle=idle_timeout_default() if idle_timeout is None else idle_timeout)
    process_message = client.process_message

    def on_message(msg, cell, cell_index):  # every message of the running cell is a sign of life
        monitor.touch()
        return process_message(msg, cell, cell_index)

    client.process_message = on_message
    client.on_cell_start = lambda cell, cell_index, **kw: monitor.touch((cell_index, cell.source))
    if progress is not None:
        client.on_cell_executed = lambda **kw: progress.update(1)

    start = time.perf_counter()
    try:
        with monitor:
            client.execute(env=env)
    except Exception as exc:
        if monitor.stalled:
            raise CellInactivityError(monitor.stalled) from exc
        raise
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out_path))
    return {"seconds": time.perf_counter() - start, "peak_mb": monitor.peak / 2**20}


def is_graded(path: Path) -> bool:
    return "reference" not in path.stem


SECONDS_FILE = Path(LAYOUT["seconds"]).name  # in build/ (this machine's last run) or benchmarks/ (the reference machine)
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
    for path in (format_path("seconds", root=root), format_path("reference-seconds", root=root)):
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
    build = format_path("build", root=root)
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
            stats = execute_notebook(nb, format_path("executed", chapter, root) / nb.name, results_of(item), progress=bar,
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
        records = [r for item in todo for r in read_results(results_of(item))]
        merge_results(format_path("results", root=root), records, chapter_ids, chapters(root))
        timed = seconds | {notebook_key(ch, name): round(secs, 1) for ch, name, secs, _, status
                           in rows.values() if status == "ok"}
        format_path("seconds", root=root).write_text(json.dumps(dict(sorted(timed.items())), indent=1) + "\n")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    table = [rows[item] for item in todo]
    print_table(table, records)
    threads = "one thread each" if ref_threads == 1 else f"references on {ref_threads or 'every'} thread(s)"
    print(f"\ntotal {time.perf_counter() - start:.0f} s ({jobs} notebook(s) at a time, {threads}); "
          f"executed notebooks in {format_path('executed', root=root)}")
    return 1 if any(r[4] != "ok" for r in table) else 0


def print_table(rows, records: list[Result]) -> None:
    print()
    print(f"{'chapter':<18} {'notebook':<28} {'time':>8} {'peak mem':>9}  status")
    print("-" * 80)
    for chapter, name, secs, peak, status in rows:
        shown = f"{secs:7.1f}s" if secs == secs else "      -"
        mem = f"{peak:6.0f} MB" if peak == peak else "        -"
        print(f"{chapter:<18} {name:<28} {shown} {mem}  {status}")
    if records:
        print()
        print(f"{'chapter':<18} {'result':<44} {'device, dtype':<22} {'value':>10}  anchor")
        print("-" * 124)
        for r in records:
            print(f"{r.chapter:<18} {r.name:<44} {r.where:<22} {r.value:>10}  {r.anchor}")
