"""Stage 3 of grading one submission: start the sandbox, feed it the job, enforce the budget.

One attempt is :func:`spawn` (stage the folder, start bubblewrap in its cgroup), :func:`supervise` (send
the job, watch the budget and the per-cell limits) and :func:`finish` (kill what is left, drain the
pipes); ``run_sandbox`` is one attempt, validated. For a submission, ``run_attempt`` runs again after a
crash (without the cell or the probed function that killed the process) within **one** wall-clock budget
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
from dataclasses import dataclass
from pathlib import Path

from llmprep.grading import collect, protocol
from llmprep.grading.collect import Attempt, PipeReader, SandboxRun, collect_attempt
from llmprep.grading.isolate import (Cgroup, Launch, Limits, bwrap_command, isolation, sandbox_env,
                                     set_rlimits)
from llmprep.grading.protocol import CELL, PROBE, STARVED, WORK, with_limits

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
    own = into.resolve()  # a folder that holds the staging folder itself (e.g. /tmp) must not copy it into itself
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        rel = Path(dirpath).relative_to(folder)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (Path(dirpath) / d).is_symlink()
                             and not own.is_relative_to((Path(dirpath) / d).resolve()))
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
    STARVED = STARVED  # wall-clock allowance, in multiples of the limit, for a run that got little CPU
    BUSY = 0.5  # share of the wall allowance spent on CPU that counts as "really ran that long"

    def __init__(self, job: dict, limits: Limits, cpu_seconds=lambda: None):
        self.job, self.limits, self.cpu_seconds = job, limits, cpu_seconds
        self.calls = {e["grade_id"]: len(e["cases"]) * len(e["variants"]) for e in job["exercises"]}
        self.order = {(CELL, c["index"]): i for i, c in enumerate(job["cells"])}
        self.order.update({(PROBE, e["grade_id"]): len(job["cells"]) + i for i, e in enumerate(job["exercises"])})
        self.seen, self.since, self.where, self.rank = 0, time.monotonic(), {}, -1
        self.cpu_since = cpu_seconds()

    def furthest(self, frames) -> dict:
        """The furthest valid position any progress frame named (the watchdog's own, once it stopped)."""
        best, rank = dict(self.where), self.rank
        for kind, payload in frames:
            if kind != protocol.PROGRESS:
                continue
            try:
                where = collect.validate_progress(collect._json(payload), self.job)
            except collect.ResultError:
                continue
            if where and self._rank(where) > rank:
                best, rank = where, self._rank(where)
        return best

    def _rank(self, where: dict) -> int:
        key = (CELL, where.get("index")) if where.get("phase") == CELL else (PROBE, where.get("grade_id"))
        return self.order.get(key, -1)

    def check(self, data: bytearray) -> str:
        if len(data) != self.seen and len(data) < 2**20:  # progress frames come before the (large) results
            self.seen = len(data)
            where = collect.last_progress(protocol.parse_frames(bytes(data)), self.job)
            if where and self._rank(where) > self.rank:
                self.where, self.rank, self.since = where, self._rank(where), time.monotonic()
                self.cpu_since = self.cpu_seconds()
        if self.where.get("phase") == CELL:
            allowed, what = self.limits.cell_timeout, "a cell"
        elif self.where.get("phase") == PROBE:
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


@dataclass
class Running:
    """One sandbox between :func:`spawn` and :func:`finish`."""
    job: dict
    limits: Limits
    stage: tempfile.TemporaryDirectory  # the private staging folder (the submission's copy, launch binds)
    results: PipeReader
    log: PipeReader
    cgroup: Cgroup | None = None
    watch: Watchdog | None = None
    proc: subprocess.Popen | None = None  # None: it could not start (``reason`` says why)
    start: float = 0.0
    reason: str = ""  # why it was stopped ("" while it ends by itself)


def spawn(job: dict, limits: Limits, folder: Path | None) -> Running:
    """Stage the submission's folder privately, build the sandbox (bubblewrap where it can start, else
    limits only) and start it in its own session and cgroup, under rlimits; nothing is sent yet."""
    stage = tempfile.TemporaryDirectory(prefix="llmprep-stage-")
    try:
        return _spawn(job, limits, folder, stage)
    except BaseException:
        stage.cleanup()
        raise


def _spawn(job: dict, limits: Limits, folder: Path | None, stage: tempfile.TemporaryDirectory) -> Running:
    iso = isolation()
    os.chmod(stage.name, 0o700)  # staging is private to the grader; the sandbox sees a read-only bind
    staged = Path(stage.name) / "submission"
    stage_folder(folder, staged)
    running = Running(job, limits, stage, PipeReader(limits.results, keep="head"), PipeReader(limits.output, keep="tail"))
    sandbox_cmd = protocol.sandbox_argv(sys.executable, running.results.write_fd)
    launch = None
    if iso.strong:  # a grader running as root drops to the sandbox uid; seccomp; private binds
        launch = Launch(Path(stage.name))
        cmd = [*bwrap_command(iso.bwrap, launch.source(str(staged)), launch), *sandbox_cmd]
        cwd, env = "/", sandbox_env(WORK)
    else:  # limits only: a private folder of the host (NOT a sandbox)
        work = Path(stage.name) / "work"
        shutil.copytree(staged, work)
        cmd = sandbox_cmd
        cwd, env = str(work), sandbox_env(str(work))
    cgroup = running.cgroup = Cgroup(limits)

    def preexec():  # in the child, before exec: session, cgroup and rlimits as root, then the drop
        os.setsid()
        cgroup.enter()
        set_rlimits(limits)
        if launch is not None:
            launch.enter()

    running.start = time.monotonic()
    running.watch = Watchdog(job, limits, cgroup.cpu_seconds)
    try:
        running.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=running.log.write_fd,
                                        stderr=running.log.write_fd, env=env, preexec_fn=preexec,
                                        pass_fds=(running.results.write_fd, *(launch.fds if launch else ())))
    except (OSError, subprocess.SubprocessError) as exc:
        cgroup.remove()
        running.reason = f"the sandbox could not start ({getattr(exc, 'strerror', None) or exc})"
        return running
    finally:
        if launch is not None:
            launch.close()
    running.results.start()
    running.log.start()
    return running


def supervise(running: Running, timeout: float, progress=None) -> None:
    """Send the job, then watch the run until it ends by itself or must be stopped: too many results,
    past ``timeout``, or a cell or exercise past its limit (the :class:`Watchdog`); ``running.reason`` says
    which. ``progress(where, seconds)``, if given, hears where the run is about once a second."""
    proc, results, limits = running.proc, running.results, running.limits
    try:
        proc.stdin.write(json.dumps(running.job).encode())
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    told = start = running.start
    while proc.poll() is None:
        if results.overflow:
            running.reason = "the notebook process sent more results than allowed"
            return
        if time.monotonic() - start > timeout:
            running.reason = f"the notebook ran past its time budget ({limits.wall:.0f} s per submission)"
            return
        running.reason = running.watch.check(results.data)
        if running.reason:
            return
        if progress is not None and time.monotonic() - told > 1.0:
            told = time.monotonic()
            progress(dict(running.watch.where), told - start)
        time.sleep(0.05)


def finish(running: Running) -> Attempt:
    """Kill what is left of the sandbox (its whole pid namespace), remove its cgroup once its processes are
    gone, drain the pipes, remove the staging folder; what it left behind, not yet validated."""
    try:
        if running.proc is None:
            return Attempt([], running.reason)
        try:
            os.killpg(running.proc.pid, signal.SIGKILL)  # bwrap and, with it, the whole pid namespace
        except (ProcessLookupError, PermissionError):
            pass
        running.proc.wait()
        running.cgroup.remove()
        data = running.results.finish()
        tail = running.log.finish().decode("utf-8", "replace")
    finally:
        running.stage.cleanup()
    frames = protocol.parse_frames(data)
    where = running.watch.furthest(frames)  # where it got to: forged frames that point back change nothing
    reason = running.reason
    if not reason and running.results.overflow:
        reason = "the notebook process sent more results than allowed"
    if not reason and running.proc.returncode != 0:
        reason = _died(running.proc.returncode)
    return Attempt(frames, reason, tail, where)


def attempt(job: dict, limits: Limits, folder: Path | None, timeout: float, progress=None) -> Attempt:
    """One run of ``job`` in a fresh sandbox: spawn, supervise, finish (the sandbox is gone afterwards)."""
    running = spawn(job, limits, folder)
    try:
        if running.proc is not None:
            supervise(running, timeout, progress)
    finally:
        result = finish(running)
    return result


def run_sandbox(job: dict, limits: Limits | None = None, folder: Path | None = None,
                timeout: float | None = None, progress=None) -> SandboxRun:
    """One run of a job in a fresh sandbox; the data it sent, validated. ``progress(where, seconds)``,
    if given, hears where the run is (a cell or an exercise, as the job names it) about once a second."""
    limits = limits or Limits()
    timeout = limits.wall if timeout is None else timeout
    job = with_limits(job, limits.cell_timeout, limits.case_timeout)
    return collect_attempt(attempt(job, limits, folder, timeout, progress), job, limits.results)


def run_attempt(sub) -> bool:
    """Stage 3 for a :class:`~llmprep.grading.engine.Submission`, one attempt at a time: False when there is
    nothing (more) to run. After an attempt whose process died part-way (``sub.run``, stage 4), the next
    runs without the cell, or the probed exercise, that killed it; all attempts share one budget
    (``sub.deadline``), so a hostile notebook costs at most ``Limits.wall`` seconds."""
    run = sub.run
    if sub.attempt is not None:
        where = run.progress
        if run.ok or where.get("phase") not in (CELL, PROBE):
            return _ran(sub)
        if where["phase"] == CELL:
            index = where["index"]
            sub.notes.append(f"{run.reason} during {sub.labels.get(index, 'a cell')}; that cell was skipped and the "
                             "rest run again")
            sub.job["cells"] = [dict(c, skip=True) if c["index"] == index else c for c in sub.job["cells"]]
        else:
            gid = where["grade_id"]
            sub.lost[gid] = f"calling it ended the notebook process ({run.reason})"
            sub.job["exercises"] = [e for e in sub.job["exercises"] if e["grade_id"] != gid]
    left = sub.deadline - time.monotonic()
    if left < 1:
        if not run.ok:
            run.reason = f"{run.reason}; no time left of its {sub.limits.wall:.0f} s budget to grade the rest"
        return _ran(sub)
    sub.attempt = (sub.runner or attempt)(sub.job, sub.limits, sub.folder, left, sub.tell if sub.progress else None)
    return True


def _ran(sub) -> bool:
    if sub.run.ok and sub.lost:
        sub.notes += [f"{gid}: {why}" for gid, why in sub.lost.items()]
    return False
