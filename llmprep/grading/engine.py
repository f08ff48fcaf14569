"""The trusted side of grading: the verdict never comes from student code.

``check_notebook(path)`` reads a submitted notebook (as data, never executing
it here), finds the chapter's trusted spec in ``autograder/`` by the grade ids
it holds, runs the submission in a separate limited process
(:mod:`llmprep.grading.sandbox`) that returns plain data only, computes (or
reuses) the reference outputs of the solution notebook the same way, and judges
each graded cell in this process.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np

from llmprep.grading.spec import Exercise

SUBMITTED = "submitted"


class GradingError(RuntimeError):
    """The grader itself cannot go on (broken spec, reference failed): not the student's fault."""


# --------------------------------------------------------------------------- locations

def repo_root() -> Path:
    env = os.environ.get("LLMPREP_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


def autograder_dir() -> Path:
    return repo_root() / "autograder"


def solutions_dir() -> Path:
    return repo_root() / "solutions"


def cache_dir() -> Path:
    return repo_root() / "build" / "grading-cache"


# --------------------------------------------------------------------------- specs

@lru_cache(maxsize=None)
def load_spec(chapter: str) -> ModuleType:
    """Import ``autograder/<chapter>.py`` (module attributes: CHAPTER, NOTEBOOK, EXERCISES)."""
    path = autograder_dir() / f"{chapter}.py"
    if not path.is_file():
        raise GradingError(f"no trusted spec {path}")
    spec = importlib.util.spec_from_file_location(f"llmprep_autograder_{chapter}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ids = [ex.grade_id for ex in module.EXERCISES]
    if len(set(ids)) != len(ids):
        raise GradingError(f"{path.name}: duplicate grade ids")
    return module


def all_chapters() -> list[str]:
    return sorted(p.stem for p in autograder_dir().glob("ch*.py"))


def spec_source_hash(module: ModuleType) -> str:
    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- notebooks

def read_notebook(path: Path):
    """The notebook as an nbformat v4 node; GradingError with a one-line reason if unreadable."""
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise GradingError(f"{path} does not exist")
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the student's file, one line
        raise GradingError(f"{path.name} is not a readable notebook ({type(exc).__name__})") from None
    return nb


def nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def test_cells(nb) -> dict[str, dict]:
    """grade_id -> {points, index} of the graded test cells (grade true, solution false)."""
    found = {}
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if meta.get("grade") and not meta.get("solution") and cell.get("cell_type") == "code":
            found[str(meta.get("grade_id"))] = {"points": float(meta.get("points", 0) or 0), "index": i}
    return found


def match_chapter(nb) -> str:
    """The chapter whose spec shares the most grade ids with the notebook."""
    ids = set(test_cells(nb))
    best, overlap = None, 0
    for chapter in all_chapters():
        n = len(ids & {ex.grade_id for ex in load_spec(chapter).EXERCISES})
        if n > overlap:
            best, overlap = chapter, n
    if best is None:
        raise GradingError("no graded cell of this notebook matches an exercise of the course "
                           "(were the test cells deleted or their ids changed?)")
    return best


def code_cells(nb) -> list[dict]:
    """The cells the sandbox executes; visible test cells are skipped (they do not grade)."""
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = nbgrader_meta(cell)
        skip = bool(meta.get("grade")) and not meta.get("solution")
        cells.append({"index": i, "source": cell.get("source", ""), "grade_id": meta.get("grade_id"),
                      "skip": skip})
    return cells


# --------------------------------------------------------------------------- sandbox

@dataclass
class Limits:
    cell_timeout: float = 180.0  # seconds of wall clock per cell
    case_timeout: float = 60.0  # per probe call
    wall: float = 900.0  # the whole run
    cpu: int = 1800  # CPU seconds
    memory: int = 12 * 2**30  # address space, bytes
    file_size: int = 64 * 2**20  # largest file the process may write (caps output in bytes)
    output: int = 64 * 2**10  # bytes of stdout/stderr kept for diagnostics
    processes: int = 256  # processes + threads (a pids cgroup, where this machine lets us make one)


@dataclass(frozen=True)
class Isolation:
    level: str  # "namespaces" | "network" | "limits"
    prefix: tuple[str, ...]  # command prefix before the python interpreter

    @property
    def describe(self) -> str:
        return {"namespaces": "private mount, network and pid namespaces + resource limits",
                "network": "no network + resource limits (private files NOT hidden: no mount namespace here)",
                "limits": "resource limits only (no namespaces on this OS)"}[self.level]


@lru_cache(maxsize=None)
def isolation() -> Isolation:
    """The strongest isolation this OS grants us, probed once: mount+net+pid namespaces
    (root, or unprivileged user namespaces), else only the network, else resource limits only."""
    exe = shutil.which("unshare")
    if os.environ.get("LLMPREP_SANDBOX") == "limits" or not exe or not sys.platform.startswith("linux"):
        return Isolation("limits", ())
    full = ("--mount", "--net", "--pid", "--fork", "--mount-proc", "--kill-child")
    with tempfile.TemporaryDirectory(prefix="llmprep-probe-") as tmp:
        for extra in ((), ("--map-root-user",)):
            cmd = [exe, *extra, *full, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", tmp]
            try:
                if shutil.which("mount") and subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0:
                    return Isolation("namespaces", (exe, *extra, *full))
            except (OSError, subprocess.SubprocessError):
                pass
    for extra in ((), ("--map-root-user",)):
        try:
            if subprocess.run([exe, *extra, "--net", "true"], capture_output=True, timeout=20).returncode == 0:
                return Isolation("network", (exe, *extra, "--net"))
        except (OSError, subprocess.SubprocessError):
            pass
    return Isolation("limits", ())


def private_paths() -> list[Path]:
    """What the sandbox must not see: the repository (solutions, specs, reference cache, git
    history, gradebook, submissions) and any extra course root named in LLMPREP_PRIVATE."""
    paths = [repo_root()]
    for extra in os.environ.get("LLMPREP_PRIVATE", "").split(os.pathsep):
        if extra:
            paths.append(Path(extra).resolve())
    return paths


def _sandbox_env(workdir: Path) -> dict:
    keep = ("PATH", "LANG", "LC_ALL", "LLMPREP_CACHE", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
            "LLMPREP_DEVICE", "CUDA_VISIBLE_DEVICES")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("LLMPREP_CACHE", str(Path.home() / ".cache" / "llmprep"))
    env.update({
        "HOME": str(workdir), "TMPDIR": str(workdir), "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(workdir),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LLMPREP_NO_FETCH": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false",
        "JUPYTER_PLATFORM_DIRS": "1", "PYTHONWARNINGS": "ignore",
    })
    return env


@dataclass
class SandboxRun:
    ok: bool  # outputs came back
    reason: str = ""  # why not, one line
    cells: list = field(default_factory=list)
    probes: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)
    log_tail: str = ""
    seconds: dict = field(default_factory=dict)
    progress: dict = field(default_factory=dict)  # where the process was when it stopped


def _asset_cache() -> str:
    from llmprep.assets import cache_root

    return str(cache_root() / "assets")


def _work_parent() -> str:
    """A temporary folder outside every private path (they are hidden inside the sandbox)."""
    base = Path(tempfile.gettempdir()).resolve()
    if any(base == p or p in base.parents for p in private_paths()):
        base = Path("/tmp")
    return str(base)


def _pids_cgroup(limit: int) -> Path | None:
    """A fresh cgroup-v1 pids group capped at ``limit`` tasks, where it is writable (Linux as root);
    root ignores RLIMIT_NPROC, so this is what bounds a fork bomb. None elsewhere."""
    base = Path("/sys/fs/cgroup/pids")
    if os.environ.get("LLMPREP_SANDBOX") == "limits" or not (base / "cgroup.procs").exists() \
            or not os.access(base, os.W_OK):
        return None
    try:
        group = Path(tempfile.mkdtemp(prefix="llmprep-", dir=base))
    except OSError:
        return None
    try:
        (group / "pids.max").write_text(str(limit))
        return group
    except OSError:
        _remove_cgroup(group)
        return None


def _remove_cgroup(group: Path | None) -> None:
    if group is not None:
        try:
            group.rmdir()
        except OSError:
            pass


def _died(rc: int | None) -> str:
    sig = -rc if rc is not None and rc < 0 else (rc - 128 if rc is not None and rc > 128 else 0)
    if sig:
        what = {signal.SIGKILL: "was killed (memory or time limit?)", signal.SIGXCPU: "ran out of CPU time",
                signal.SIGSEGV: "crashed (segmentation fault)", signal.SIGXFSZ: "wrote more than its file-size limit",
                signal.SIGABRT: "aborted"}.get(sig, f"died with signal {sig}")
        return f"the notebook process {what}"
    return f"the notebook process exited early (exit code {rc})"


def run_sandbox(job: dict, limits: Limits | None = None) -> SandboxRun:
    """Execute a job in a fresh temporary folder, in its own process group (and namespaces where
    the OS allows), under limits; return the data it wrote."""
    limits = limits or Limits()
    job = dict(job, cell_timeout=limits.cell_timeout, case_timeout=limits.case_timeout)

    cgroup = _pids_cgroup(limits.processes)

    def preexec():  # runs in the child before exec
        os.setsid()
        if cgroup is not None:
            with open(cgroup / "cgroup.procs", "w") as fh:
                fh.write(str(os.getpid()))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu, limits.cpu))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    with tempfile.TemporaryDirectory(prefix="llmprep-sandbox-", dir=_work_parent()) as tmp:
        work = Path(tmp)
        log_path = work / "log.txt"
        iso = isolation()
        if iso.level == "namespaces":
            config = {"hide": [str(p) for p in private_paths()], "staging": str(work / ".keep"),
                      "keep": [str(Path(__file__).resolve().parents[1]), sys.prefix, _asset_cache()]}
            cmd = [*iso.prefix, sys.executable, "-I", "-m", "llmprep.grading.jail", json.dumps(config)]
        else:
            cmd = [*iso.prefix, sys.executable, "-I", "-m", "llmprep.grading.sandbox"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                    env=_sandbox_env(work), preexec_fn=preexec)
            reason = ""
            try:
                proc.communicate(json.dumps(job).encode(), timeout=limits.wall)
            except subprocess.TimeoutExpired:
                reason = f"the notebook ran past its time limit of {limits.wall:.0f} s"
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # and everything it spawned
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
                _remove_cgroup(cgroup)
        size = log_path.stat().st_size
        with open(log_path, "rb") as fh:
            fh.seek(max(0, size - limits.output))
            tail = fh.read().decode("utf-8", "replace")
        progress = {}
        try:
            progress = json.loads((work / "progress.json").read_text()[:10_000])
        except (OSError, ValueError):
            pass
        summary_path, npz_path = work / "summary.json", work / "outputs.npz"
        if not reason and (proc.returncode != 0 or not summary_path.is_file()):
            reason = _died(proc.returncode)
        if reason:
            return SandboxRun(False, reason, log_tail=tail, progress=progress if isinstance(progress, dict) else {})
        try:
            summary = json.loads(summary_path.read_text())
            with np.load(npz_path, allow_pickle=False) as data:
                arrays = {k: np.array(data[k]) for k in data.files}
        except Exception as exc:  # noqa: BLE001 - malformed data from the sandbox
            return SandboxRun(False, f"the notebook process returned unreadable results ({type(exc).__name__})",
                              log_tail=tail)
        return SandboxRun(True, "", summary.get("cells", []), summary.get("probes", []), arrays, tail,
                          summary.get("seconds", {}))


def run_submission(nb, exercises: list[Exercise], limits: Limits | None = None, attempts: int = 4):
    """Run a submission; if its process dies part-way, grade what finished before the cell (or the
    probed function) that killed it. Returns (run, notes, {grade_id: reason} of exercises lost)."""
    job = build_job(nb, exercises)
    notes: list[str] = []
    lost: dict[str, str] = {}
    run = SandboxRun(False, "not run")
    for _ in range(attempts):
        run = run_sandbox(job, limits)
        if run.ok:
            break
        where = run.progress
        if where.get("phase") == "cell" and isinstance(where.get("index"), int):
            index = where["index"]
            notes.append(f"{run.reason} during cell {index}; graded what ran before that cell")
            job["cells"] = [dict(c, skip=True) if c["index"] >= index else c for c in job["cells"]]
        elif where.get("phase") == "probe" and where.get("grade_id") in {e["grade_id"] for e in job["exercises"]}:
            gid = where["grade_id"]
            lost[gid] = f"calling it ended the notebook process ({run.reason})"
            job["exercises"] = [e for e in job["exercises"] if e["grade_id"] != gid]
        else:
            break
    if run.ok and lost:
        notes += [f"{gid}: {why}" for gid, why in lost.items()]
    return run, notes, lost


def build_job(nb, exercises: list[Exercise], mutants: bool = False) -> dict:
    return {
        "cells": code_cells(nb),
        "exercises": [
            {
                "grade_id": ex.grade_id,
                "probe": ex.probe_source,
                "cases": [{"name": c.name, "params": c.params} for c in ex.cases],
                "variants": [{"name": SUBMITTED, "patch": None}] + (
                    [{"name": f"mutant:{m}", "patch": ex.mutant_source(m)} for m in ex.mutants]
                    + [{"name": f"alt:{a}", "patch": ex.alternative_source(a)} for a in ex.alternatives]
                    if mutants else []),
            }
            for ex in exercises
        ],
    }


def outputs_of(run: SandboxRun, grade_id: str, variant: str, n_cases: int) -> list[tuple[str, dict | str]]:
    """Per case: ("ok", {key: array}) or ("error", message)."""
    status = {(p["grade_id"], p["variant"], p["case"]): p for p in run.probes}
    result = []
    for ci in range(n_cases):
        entry = status.get((grade_id, variant, ci))
        if entry is None:
            result.append(("error", "the probe did not run"))
        elif entry["status"] != "ok":
            result.append(("error", entry.get("message", "error")))
        else:
            prefix = f"{grade_id}|{variant}|{ci}|"
            result.append(("ok", {k[len(prefix):]: v for k, v in run.arrays.items() if k.startswith(prefix)}))
    return result


# --------------------------------------------------------------------------- reference

def reference_run(chapter: str, limits: Limits | None = None) -> SandboxRun:
    """The solution notebook's outputs on every case, computed once and cached on disk."""
    spec = load_spec(chapter)
    nb_path = solutions_dir() / chapter / spec.NOTEBOOK
    nb = read_notebook(nb_path)
    job = build_job(nb, list(spec.EXERCISES))
    key = hashlib.sha256((json.dumps(job, sort_keys=True) + spec_source_hash(spec) +
                          Path(__file__).with_name("sandbox.py").read_text()).encode()).hexdigest()[:20]
    folder = cache_dir()
    stem = folder / f"{chapter}-{key}"
    if stem.with_suffix(".json").is_file() and stem.with_suffix(".npz").is_file():
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
                arrays = {k: np.array(data[k]) for k in data.files}
            return SandboxRun(True, "", meta["cells"], meta["probes"], arrays)
        except Exception:  # noqa: BLE001 - a broken cache is recomputed
            pass
    run = run_sandbox(job, limits)
    if not run.ok:
        raise GradingError(f"the solution notebook of {chapter} could not be run: {run.reason}\n{run.log_tail[-2000:]}")
    bad = [p for p in run.probes if p["status"] != "ok"]
    if bad:
        raise GradingError(f"the solution notebook of {chapter} fails its own spec: "
                           f"{bad[0]['grade_id']} case {bad[0]['case']}: {bad[0].get('message')}")
    folder.mkdir(parents=True, exist_ok=True)
    tmp_npz = stem.with_name(stem.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp_npz, **run.arrays)
    os.replace(tmp_npz, stem.with_suffix(".npz"))
    tmp_json = stem.with_name(stem.name + f".{os.getpid()}.tmp.json")
    tmp_json.write_text(json.dumps({"cells": run.cells, "probes": run.probes}))
    os.replace(tmp_json, stem.with_suffix(".json"))
    return run


# --------------------------------------------------------------------------- judging

@dataclass
class CellVerdict:
    grade_id: str
    points: float
    max_points: float
    message: str


@dataclass
class NotebookResult:
    notebook: str
    chapter: str | None
    score: float
    max_score: float
    cells: list[CellVerdict]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "chapter": self.chapter, "score": self.score,
                "max_score": self.max_score, "cells": [asdict(c) for c in self.cells], "notes": self.notes}


def _explain(message: str) -> str:
    if message.startswith("NotImplementedError"):
        return "not implemented yet (the function still raises NotImplementedError)"
    if message.startswith("NameError") or "is not defined" in message:
        return f"{message} (did its solution cell run without errors?)"
    return message


def judge_exercise(ex: Exercise, run: SandboxRun, ref: SandboxRun, variant: str = SUBMITTED) -> CellVerdict:
    got_all = outputs_of(run, ex.grade_id, variant, len(ex.cases))
    want_all = outputs_of(ref, ex.grade_id, SUBMITTED, len(ex.cases))
    failures = []
    for case, (g_status, got), (w_status, want) in zip(ex.cases, got_all, want_all):
        if w_status != "ok":
            raise GradingError(f"reference outputs missing for {ex.grade_id} case '{case.name}'")
        if g_status != "ok":
            failures.append(f"case '{case.name}': {_explain(got)}")
            continue
        try:
            reason = ex.judge(got, want, case.params)
        except Exception as exc:  # noqa: BLE001 - malformed outputs never crash the judge
            reason = f"outputs could not be compared ({type(exc).__name__})"
        if reason:
            failures.append(f"case '{case.name}': {reason}")
    if not failures:
        return CellVerdict(ex.grade_id, float(ex.points), float(ex.points), f"passed all {len(ex.cases)} cases")
    if all("not implemented yet" in f for f in failures):
        return CellVerdict(ex.grade_id, 0.0, float(ex.points),
                           "not implemented yet (the function still raises NotImplementedError)")
    return CellVerdict(ex.grade_id, 0.0, float(ex.points),
                       f"failed {len(failures)} of {len(ex.cases)} cases; first: {failures[0]}")


def _cell_notes(run: SandboxRun) -> list[str]:
    notes = []
    for c in run.cells:
        if c.get("status") == "error" and not c.get("message", "").startswith("NotImplementedError"):
            notes.append(f"cell {c['index']} raised {c['message']}")
    return notes


def check_notebook(path: str | Path, limits: Limits | None = None) -> NotebookResult:
    """Grade one notebook. Problems of the submission become messages, never exceptions;
    GradingError means the grader itself could not work."""
    path = Path(path)
    try:
        nb = read_notebook(path)
        chapter = match_chapter(nb)
    except GradingError as exc:
        return NotebookResult(path.name, None, 0.0, 0.0, [], [str(exc)])
    spec = load_spec(chapter)
    exercises = list(spec.EXERCISES)
    max_score = float(sum(ex.points for ex in exercises))
    ref = reference_run(chapter, limits)
    present = test_cells(nb)
    run, notes, lost = run_submission(nb, exercises, limits)
    if not run.ok:
        notes.append(run.reason)
    notes += _cell_notes(run)
    verdicts = []
    for ex in exercises:
        if ex.grade_id not in present:
            verdicts.append(CellVerdict(ex.grade_id, 0.0, float(ex.points), "its test cell is missing from the notebook"))
        elif ex.grade_id in lost:
            verdicts.append(CellVerdict(ex.grade_id, 0.0, float(ex.points), lost[ex.grade_id]))
        elif not run.ok:
            verdicts.append(CellVerdict(ex.grade_id, 0.0, float(ex.points), f"not graded: {run.reason}"))
        else:
            verdicts.append(judge_exercise(ex, run, ref))
    score = float(sum(v.points for v in verdicts))
    return NotebookResult(path.name, chapter, score, max_score, verdicts, notes)


def check_mutants(chapter: str, notebook: Path | None = None, limits: Limits | None = None):
    """For the test suite: run the solution (or ``notebook``) once with every mutant and every
    alternative-correct fixture swapped in.

    Returns {variant name: {grade_id: CellVerdict}} for the submitted notebook, each mutant
    (``mutant:<name>``) and each alternative (``alt:<name>``); a variant only replaces the
    function(s) of its own exercise."""
    spec = load_spec(chapter)
    nb = read_notebook(notebook or solutions_dir() / chapter / spec.NOTEBOOK)
    ref = reference_run(chapter, limits)
    run = run_sandbox(build_job(nb, list(spec.EXERCISES), mutants=True), limits)
    if not run.ok:
        raise GradingError(f"{chapter}: {run.reason}\n{run.log_tail[-3000:]}")
    result: dict[str, dict[str, CellVerdict]] = {}
    for ex in spec.EXERCISES:
        for variant in [SUBMITTED] + [f"mutant:{m}" for m in ex.mutants] + [f"alt:{a}" for a in ex.alternatives]:
            result.setdefault(variant, {})[ex.grade_id] = judge_exercise(ex, run, ref, variant)
    return result
