"""Stage 3 of grading one submission: start the sandbox, feed it the job, enforce the budget.

``run_sandbox`` is one run; ``run_submission`` retries after a crash (without the cell or the
probed function that killed the process) within **one** wall-clock budget
for the whole submission, so a hostile notebook costs at most ``Limits.wall`` seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmprep.grading import collect
from llmprep.grading.collect import PipeReader, ResultError, SandboxRun
from llmprep.grading.isolate import WORK, Cgroup, Launch, Limits, bwrap_command, isolation, sandbox_env, set_rlimits
from llmprep.grading.notebook import build_job
from llmprep.grading.spec import Exercise

STAGE_BYTES = 64 * 2**20  # what of a submission's folder is copied in
STAGE_FILES = 500


def stage_folder(folder: Path | None, into: Path) -> None:
    """Copy a submission's folder for the sandbox: regular files and folders only (no symlinks,
    FIFOs or devices), at most STAGE_FILES files and STAGE_BYTES bytes, no other notebooks'
    checkpoints. The copy is read-only inside the sandbox; the sandbox copies it to its work folder."""
    into.mkdir(mode=0o755)
    if folder is None or not folder.is_dir():
        return
    budget, count = STAGE_BYTES, 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        rel = Path(dirpath).relative_to(folder)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (Path(dirpath) / d).is_symlink())
        (into / rel).mkdir(exist_ok=True, mode=0o755)
        for name in sorted(filenames):
            src = Path(dirpath) / name
            try:
                st = os.lstat(src)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_size > budget or count >= STAGE_FILES:
                continue
            try:
                fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as fh, open(into / rel / name, "wb") as out:
                shutil.copyfileobj(fh, out, length=1 << 20)
            os.chmod(into / rel / name, 0o644)
            budget -= st.st_size
            count += 1


def _died(rc: int | None) -> str:
    sig = -rc if rc is not None and rc < 0 else (rc - 128 if rc is not None and rc > 128 else 0)
    if sig:
        what = {signal.SIGKILL: "was killed (memory or time limit?)", signal.SIGXCPU: "ran out of CPU time",
                signal.SIGSEGV: "crashed (segmentation fault)", signal.SIGXFSZ: "wrote more than its file-size limit",
                signal.SIGABRT: "aborted"}.get(sig, f"died with signal {sig}")
        return f"the notebook process {what}"
    return f"the notebook process exited early (exit code {rc})"


class Watchdog:
    """Enforces the per-cell and per-exercise time limits from outside, for a submission that
    blocks the in-process alarm.

    Progress only counts when it moves *forward* through the job (cells in order, then exercises in
    order), so forged frames cannot keep a cell alive by going back and forth; each position gets its
    allowance once. A limit is judged in the run's own CPU time as well as wall time (where a cgroup
    measures it): a run starved by a neighbour is given up to ``STARVED`` times the wall allowance,
    never blamed for the neighbour, and still bounded by the submission's budget."""

    GRACE = 10.0
    STARVED = 3.0  # wall-clock allowance, in multiples of the limit, for a run that got little CPU
    BUSY = 0.5  # share of the wall allowance spent on CPU that counts as "really ran that long"

    def __init__(self, job: dict, limits: Limits, cpu_seconds=lambda: None):
        self.job, self.limits, self.cpu_seconds = job, limits, cpu_seconds
        self.calls = {e["grade_id"]: len(e["cases"]) * len(e["variants"]) for e in job["exercises"]}
        self.order = {("cell", c["index"]): i for i, c in enumerate(job["cells"])}
        self.order.update({("probe", e["grade_id"]): len(job["cells"]) + i for i, e in enumerate(job["exercises"])})
        self.seen, self.since, self.where, self.rank = 0, time.monotonic(), {}, -1
        self.cpu_since = cpu_seconds()

    def furthest(self, frames) -> dict:
        """The furthest valid position any progress frame named (the watchdog's own, once it stopped)."""
        best, rank = dict(self.where), self.rank
        for kind, payload in frames:
            if kind != "progress":
                continue
            try:
                where = collect.validate_progress(collect._json(payload), self.job)
            except collect.ResultError:
                continue
            if where and self._rank(where) > rank:
                best, rank = where, self._rank(where)
        return best

    def _rank(self, where: dict) -> int:
        key = ("cell", where.get("index")) if where.get("phase") == "cell" else ("probe", where.get("grade_id"))
        return self.order.get(key, -1)

    def check(self, data: bytearray) -> str:
        if len(data) != self.seen and len(data) < 2**20:  # progress frames come before the (large) results
            self.seen = len(data)
            where = collect.last_progress(collect.parse_frames(bytes(data)), self.job)
            if where and self._rank(where) > self.rank:
                self.where, self.rank, self.since = where, self._rank(where), time.monotonic()
                self.cpu_since = self.cpu_seconds()
        if self.where.get("phase") == "cell":
            allowed, what = self.limits.cell_timeout, "a cell"
        elif self.where.get("phase") == "probe":
            allowed = self.limits.case_timeout * self.calls[self.where["grade_id"]]
            what = "the tests of one exercise"
        else:
            return ""
        wall = time.monotonic() - self.since
        if wall <= allowed + self.GRACE:
            return ""
        cpu_now = self.cpu_seconds()
        if cpu_now is not None and self.cpu_since is not None and wall <= self.STARVED * allowed + self.GRACE \
                and cpu_now - self.cpu_since < self.BUSY * allowed:
            return ""  # it got little CPU: starved by a neighbour, or waiting; give it more wall time
        return f"{what} ran past its time limit ({allowed:.0f} s) and ignored the alarm"


def run_sandbox(job: dict, limits: Limits | None = None, folder: Path | None = None,
                timeout: float | None = None, progress=None) -> SandboxRun:
    """One run of a job in a fresh sandbox; the data it sent, validated. ``progress(where, seconds)``,
    if given, hears where the run is (a cell or an exercise, as the job names it) about once a second."""
    limits = limits or Limits()
    timeout = limits.wall if timeout is None else timeout
    job = dict(job, cell_timeout=limits.cell_timeout, case_timeout=limits.case_timeout)
    iso = isolation()
    with tempfile.TemporaryDirectory(prefix="llmprep-stage-") as stage_tmp:
        os.chmod(stage_tmp, 0o700)  # staging is private to the grader; the sandbox sees a read-only bind
        staged = Path(stage_tmp) / "submission"
        stage_folder(folder, staged)
        results = PipeReader(limits.results, keep="head")
        log = PipeReader(limits.output, keep="tail")
        sandbox_cmd = [sys.executable, "-I", "-m", "llmprep.grading.sandbox", str(results.write_fd)]
        launch = None
        if iso.strong:  # a grader running as root drops to the sandbox uid; seccomp; private binds
            launch = Launch(Path(stage_tmp))
            cmd = [*bwrap_command(iso.bwrap, launch.source(str(staged)), launch), *sandbox_cmd]
            cwd, env = "/", sandbox_env(WORK)
        else:  # limits only: a private folder of the host (NOT a sandbox)
            work = Path(stage_tmp) / "work"
            shutil.copytree(staged, work)
            cmd = sandbox_cmd
            cwd, env = str(work), sandbox_env(str(work))
        cgroup = Cgroup(limits)

        def preexec():  # in the child, before exec: session, cgroup and rlimits as root, then the drop
            os.setsid()
            cgroup.enter()
            set_rlimits(limits)
            if launch is not None:
                launch.enter()

        reason = ""
        start = time.monotonic()
        watch = Watchdog(job, limits, cgroup.cpu_seconds)
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=log.write_fd, stderr=log.write_fd,
                                    env=env, preexec_fn=preexec,
                                    pass_fds=(results.write_fd, *(launch.fds if launch else ())))
        except (OSError, subprocess.SubprocessError) as exc:
            cgroup.remove()
            return SandboxRun(False, f"the sandbox could not start ({getattr(exc, 'strerror', None) or exc})")
        finally:
            if launch is not None:
                launch.close()
        results.start()
        log.start()
        try:
            try:
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            told = start
            while proc.poll() is None:
                if results.overflow:
                    reason = "the notebook process sent more results than allowed"
                    break
                if time.monotonic() - start > timeout:
                    reason = f"the notebook ran past its time budget ({limits.wall:.0f} s per submission)"
                    break
                reason = watch.check(results.data)
                if reason:
                    break
                if progress is not None and time.monotonic() - told > 1.0:
                    told = time.monotonic()
                    progress(dict(watch.where), told - start)
                time.sleep(0.05)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # bwrap and, with it, the whole pid namespace
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            cgroup.remove()
        data = results.finish()
        tail = log.finish().decode("utf-8", "replace")
    frames = collect.parse_frames(data)
    where = watch.furthest(frames)  # where it got to: forged frames that point back change nothing
    if not reason and results.overflow:
        reason = "the notebook process sent more results than allowed"
    if not reason and proc.returncode != 0:
        reason = _died(proc.returncode)
    if reason:
        return SandboxRun(False, reason, log_tail=tail, progress=where)
    try:
        run = collect.collect(frames, job, limits.results)
    except ResultError as exc:
        return SandboxRun(False, f"the notebook process returned unusable results: {exc}", log_tail=tail,
                          progress=where)
    run.log_tail = tail
    return run


def run_submission(nb, exercises: list[Exercise], limits: Limits | None = None, folder: Path | None = None,
                   progress=None):
    """Run a submission; if its process dies part-way, run it again without the cell (or the probed
    function) that killed it, all within one time budget.
    Returns (run, notes, {grade_id: reason} of exercises lost)."""
    limits = limits or Limits()
    job = build_job(nb, exercises)
    labels = {c["index"]: c["label"] for c in job["cells"]}
    notes: list[str] = []
    lost: dict[str, str] = {}
    deadline = time.monotonic() + limits.wall
    run = SandboxRun(False, "not run")
    while True:
        left = deadline - time.monotonic()
        if left < 1:
            if not run.ok:
                run.reason = f"{run.reason}; no time left of its {limits.wall:.0f} s budget to grade the rest"
            break
        run = run_sandbox(job, limits, folder, timeout=left, progress=progress)
        if run.ok:
            break
        where = run.progress
        if where.get("phase") == "cell":
            index = where["index"]
            notes.append(f"{run.reason} during {labels.get(index, 'a cell')}; that cell was skipped and the rest "
                         "run again")
            job["cells"] = [dict(c, skip=True) if c["index"] == index else c for c in job["cells"]]
        elif where.get("phase") == "probe":
            gid = where["grade_id"]
            lost[gid] = f"calling it ended the notebook process ({run.reason})"
            job["exercises"] = [e for e in job["exercises"] if e["grade_id"] != gid]
        else:
            break
    if run.ok and lost:
        notes += [f"{gid}: {why}" for gid, why in lost.items()]
    return run, notes, lost
