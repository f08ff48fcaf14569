"""Run one untrusted Python program (a model-written completion plus its test) in the grading sandbox.

A top-floor module (it uses the grading wing's isolation, and notebooks import it instead of the grading engine).

The course executes code a model wrote (HumanEval completions, an agent's Python tool) only here: each
program gets a fresh sandbox of the same bubblewrap profile the grader uses (:func:`~llmprep.grading.isolate.
bwrap_command`: no network, allow-list read-only filesystem, private in-memory work folder, seccomp filter,
unprivileged uid), under its own rlimits (CPU seconds, address space, file size) and, where this machine allows
it, its own cgroup (memory, processes). The program reaches the sandbox on standard input; nothing of it is
ever executed in the caller's process.

The verdict is the exit status: ``passed`` (0), ``failed`` (an exception, a failed assert, a non-zero exit),
``timeout`` (past ``timeout`` seconds of wall clock or CPU). As in the HumanEval harness, a program that calls
``os._exit(0)`` before its test runs would read as passed: the sandbox protects the machine, not the score.

Where no strong sandbox can start (:func:`available` is False), :func:`run_untrusted` refuses with
:class:`SandboxUnavailable` rather than run anything without one.

:func:`run_many` runs a batch from a small launcher process (``python -m llmprep.untrusted``), so that a
large caller (a notebook holding a language model) is not forked once per program.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from llmprep.grading.collect import PipeReader
from llmprep.grading.isolate import (Cgroup, Launch, Limits, bwrap_command, isolation, sandbox_env,
                                     set_rlimits)
from llmprep.grading.protocol import WORK
from llmprep.grading.trusted import GradingError

OUTPUT_CAP = 4096  # bytes of the program's stdout + stderr kept (the tail)
VERDICTS = ("passed", "failed", "timeout")


class SandboxUnavailable(GradingError):
    """No bubblewrap sandbox can start on this machine: untrusted code is not run at all."""


@dataclass(frozen=True)
class Outcome:
    verdict: str  # "passed" | "failed" | "timeout"
    seconds: float  # wall clock
    output: str = ""  # the tail of stdout + stderr (capped), for diagnostics only

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


def available() -> bool:
    """Whether the strong (bubblewrap) sandbox can start here."""
    return isolation().strong


def describe() -> str:
    """The isolation model-written code runs under here, in words."""
    return isolation().describe


def unavailable_reason() -> str:
    """Why untrusted code cannot run here (empty when it can)."""
    iso = isolation()
    return "" if iso.strong else iso.why


def _check(program, timeout, memory) -> None:
    if not isinstance(program, str):
        raise TypeError(f"program must be Python source text (str), got {type(program).__name__}")
    if not timeout > 0 or memory < 64 * 2**20:
        raise ValueError("timeout must be > 0 seconds and memory at least 64 MiB")


def run_untrusted(program: str, timeout: float = 3.0, memory: int = 512 * 2**20) -> Outcome:
    """Execute ``program`` (Python source) in a fresh sandbox; its verdict, wall time and output tail.

    ``timeout``: seconds of wall clock (and, rounded up, of CPU) before the program is killed; ``memory``:
    bytes of address space (and of resident memory, where a memory cgroup is available)."""
    _check(program, timeout, memory)
    iso = isolation()
    if not iso.strong:
        raise SandboxUnavailable(f"no sandbox for untrusted code on this machine: {iso.why}")
    cpu = max(1, int(timeout + 0.999))
    limits = Limits(cpu=cpu, memory=memory, resident=memory, file_size=2**20, processes=16)
    with tempfile.TemporaryDirectory(prefix="llmprep-untrusted-") as stage:
        os.chmod(stage, 0o700)
        launch = Launch(Path(stage))
        cmd = [*bwrap_command(iso.bwrap, None, launch), sys.executable, "-I", "-"]
        log = PipeReader(OUTPUT_CAP, keep="tail")
        cgroup = Cgroup(limits)

        def preexec():
            os.setsid()
            cgroup.enter()
            set_rlimits(limits)
            launch.enter()

        start = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, cwd="/", stdin=subprocess.PIPE, stdout=log.write_fd, stderr=log.write_fd,
                                    env=sandbox_env(WORK), preexec_fn=preexec, pass_fds=launch.fds)
        except (OSError, subprocess.SubprocessError) as exc:
            cgroup.remove()
            log.start()
            log.finish(0.1)
            raise SandboxUnavailable(f"the sandbox could not start ({exc})") from exc
        finally:
            launch.close()
        log.start()
        timed_out = False
        try:
            proc.stdin.write(program.encode("utf-8", "replace"))
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            rc = proc.wait(timeout=timeout + 0.5)  # + the sandbox's own start-up
        except subprocess.TimeoutExpired:
            timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap and its whole pid namespace
        except (ProcessLookupError, PermissionError):
            pass
        rc = proc.wait()
        seconds = time.monotonic() - start
        cgroup.remove()
        output = log.finish(1.0).decode("utf-8", "replace")
    killed = {-signal.SIGXCPU, 128 + signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGKILL}
    if timed_out or (rc in killed and seconds >= 0.9 * timeout):  # the CPU rlimit's SIGXCPU, then SIGKILL
        verdict = "timeout"
    else:
        verdict = "passed" if rc == 0 else "failed"
    return Outcome(verdict, seconds, output)


def run_many(programs, timeout: float = 3.0, memory: int = 512 * 2**20) -> list[Outcome]:
    """:func:`run_untrusted` for each program, one fresh sandbox each, started from one small launcher process
    (the caller is not forked per program). Outcomes in the order of ``programs``."""
    programs = list(programs)
    for program in programs:
        _check(program, timeout, memory)
    iso = isolation()
    if not iso.strong:
        raise SandboxUnavailable(f"no sandbox for untrusted code on this machine: {iso.why}")
    if not programs:
        return []
    job = json.dumps({"programs": programs, "timeout": timeout, "memory": memory})
    budget = len(programs) * (timeout + 10) + 60
    proc = subprocess.run([sys.executable, "-I", "-m", "llmprep.untrusted"], input=job, capture_output=True,
                          text=True, timeout=budget)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split())[-300:]
        raise GradingError(f"the sandbox launcher failed (exit code {proc.returncode}): {tail}")
    return [Outcome(**row) for row in json.loads(proc.stdout)]


def _launcher() -> None:
    """``python -m llmprep.untrusted``: the job (JSON) on stdin, the outcomes (JSON) on stdout."""
    job = json.loads(sys.stdin.read())
    outcomes = [asdict(run_untrusted(p, job["timeout"], job["memory"])) for p in job["programs"]]
    sys.stdout.write(json.dumps(outcomes))


def humaneval_program(problem: dict, completion: str) -> str:
    """The program HumanEval's harness checks: the prompt, the completion, the problem's test and
    ``check(entry_point)``."""
    return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n"
            + f"check({problem['entry_point']})\n")


if __name__ == "__main__":
    _launcher()
