"""Stage 3 on a Dask.distributed cluster: ``llmprep grade CHAPTER --cluster tcp://HOST:8786``.

Only the sandboxed run leaves the client. For each attempt, the client (the one trusted process) packs
the submission's folder with the same caps as local staging, and sends the job it built, the limits and
its course/environment fingerprint to a worker; the worker (:func:`remote_attempt`) checks the
fingerprint, runs the same bubblewrap sandbox (:func:`llmprep.grading.run.attempt`) and returns the raw
bytes of the results pipe, the end of the log and why it stopped. The client treats that exactly like a
local sandbox's pipe (:func:`received`): frames re-parsed under the results cap, progress re-validated
against the job, then stage 4 validates the outputs as hostile data. Judging (against the reference the
client computed and cached itself), the gradebook, the autograded notebooks and the CSV stay in the
client; a worker never sees the reference, the solutions' outputs or the gradebook.

Who may join: a ``tcp://`` scheduler is unauthenticated (anyone who reaches its port can join as a worker, and
a worker can answer any job, full marks included). ``tls://`` with ``--tls-ca-file/--tls-cert/--tls-key``
(:func:`security`) admits only peers holding a certificate signed by that CA, the client included.

A worker lost mid-run: the scheduler runs the task again on another worker (Dask reschedules a lost worker's
tasks, up to its ``allowed-failures``; the task itself never raises); the client waits for one answer per
attempt and records each submission once. A worker that never answers costs the submission at most twice its budget plus a minute.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import platform
import sys
import tempfile
from pathlib import Path, PurePosixPath

from llmprep.grading import protocol
from llmprep.grading.collect import Attempt, clean_text
from llmprep.grading.isolate import Limits, isolation
from llmprep.grading.trusted import GradingError, autograder_dir, solutions_dir

MAX_FILES_BYTES = 64 * 2**20  # a submission folder as staged locally (run.STAGE_BYTES)


def fingerprint(chapter: str) -> str:
    """The course and environment a worker grades with: the llmprep package's code, every autograder spec,
    the chapter's solution notebook, and the versions of Python and the libraries a run depends on."""
    import llmprep

    h = hashlib.sha256()
    package = Path(llmprep.__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    for path in sorted(autograder_dir().glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    for path in sorted((solutions_dir() / chapter).glob("*.ipynb")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    versions = [platform.python_version()]
    for dist in ("torch", "numpy", "jax", "transformers", "dask", "distributed"):
        try:
            versions.append(f"{dist}={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist}=none")
    h.update("\n".join(versions).encode())
    return h.hexdigest()[:16]


def worker_status(chapter: str, unsandboxed: bool) -> dict:
    """On a worker: its fingerprint and whether it can start the sandbox (plain data only)."""
    iso = isolation()
    return {"fingerprint": fingerprint(chapter), "strong": iso.strong, "why": iso.why, "host": platform.node()}


def pack_folder(folder: Path | None) -> dict[str, bytes]:
    """The submission's folder as the sandbox would get it locally (the same staging and caps), as data."""
    from llmprep.grading.run import stage_folder

    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="llmprep-pack-") as tmp:
        staged = Path(tmp) / "s"
        stage_folder(folder, staged)
        for path in sorted(staged.rglob("*")):
            if path.is_file():
                files[path.relative_to(staged).as_posix()] = path.read_bytes()
    return files


def _unpack(files: dict, into: Path) -> None:
    into.mkdir()
    total = 0
    for rel, data in files.items():
        parts = PurePosixPath(rel).parts
        if not isinstance(data, bytes) or not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ValueError("a packed file name is not a plain relative path")
        total += len(data)
        if total > MAX_FILES_BYTES:
            raise ValueError("the packed folder is larger than allowed")
        target = into.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def remote_attempt(job: dict, limits: dict, files: dict, timeout: float, expected: str, chapter: str,
                   unsandboxed: bool) -> dict:
    """On a worker: one attempt of ``job`` in a fresh sandbox there. Returns plain data only (never raises):
    {"refused": why} or {"data": the results pipe's bytes, "reason": ..., "log": ...}."""
    try:
        mine = fingerprint(chapter)
        if mine != expected:
            return {"refused": f"worker {platform.node()} has course/environment fingerprint {mine}, the client "
                               f"{expected}: start it from the same course checkout, environment and assets"}
        if not unsandboxed and not isolation().strong:
            return {"refused": f"worker {platform.node()} cannot start the sandbox: {isolation().why}"}
        from llmprep.grading.run import attempt

        with tempfile.TemporaryDirectory(prefix="llmprep-remote-") as tmp:
            folder = Path(tmp) / "submission"
            _unpack(files, folder)
            got = attempt(job, Limits(**limits), folder, timeout)
        data = b"".join(protocol.encode_frame(kind, payload) for kind, payload in got.frames)
        return {"data": data, "reason": got.reason, "log": got.log_tail}
    except Exception as exc:  # noqa: BLE001 - the worker's own failure, as data
        return {"refused": f"worker {platform.node()} failed: {type(exc).__name__}: {exc}"[:300]}


def received(raw, job: dict, limits: Limits) -> Attempt:
    """A worker's answer as untrusted as a sandbox's pipe: the frames re-parsed from at most the results
    cap, progress re-validated against the job by the client's own watchdog logic, the texts cleaned."""
    from llmprep.grading.run import Watchdog

    if not isinstance(raw, dict) or not isinstance(raw.get("data"), bytes):
        return Attempt([], "the grading worker returned no usable answer")
    data = raw["data"]
    reason = clean_text(raw.get("reason")) if raw.get("reason") else ""
    if len(data) > limits.results:
        data, reason = data[: limits.results], reason or "the notebook process sent more results than allowed"
    frames = protocol.parse_frames(data)
    log = raw.get("log") if isinstance(raw.get("log"), str) else ""
    where = Watchdog(job, limits).furthest(frames)
    return Attempt(frames, reason, log[-limits.output:], where)


TLS_FLAGS = "--tls-ca-file, --tls-cert and --tls-key"


def security(address, tls: tuple[str, str, str] | None = None):
    """The Dask ``Security`` to reach ``address`` with: mutual TLS from ``tls`` = (CA file, certificate file,
    key file) for a ``tls://`` scheduler, else None (a cluster object's own, or Dask's configuration).
    GradingError, in one line, for certificates with a ``tcp://`` address or an unreadable file."""
    if tls is None:
        return None
    if not (isinstance(address, str) and address.startswith("tls://")):
        raise GradingError(f"{TLS_FLAGS} secure a tls:// scheduler; the address given is {address!r}")
    return _mutual_tls(tls, ("client",))


def _mutual_tls(tls: tuple[str, str, str], roles: tuple[str, ...]):
    """Dask's ``Security`` with encryption required: the CA file, and the certificate and key for each role."""
    for path in tls:
        if not Path(path).is_file():
            raise GradingError(f"TLS file {path} does not exist (give {TLS_FLAGS})")
    from distributed.security import Security

    ca, cert, key = (str(p) for p in tls)
    return Security(tls_ca_file=ca, require_encryption=True,
                    **{f"tls_{role}_{part}": path for role in roles for part, path in (("cert", cert), ("key", key))})


def unauthenticated(address) -> str | None:
    """A one-line warning for a plain ``tcp://`` scheduler beyond this machine, else None."""
    if not (isinstance(address, str) and address.startswith("tcp://")):
        return None
    host = address.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "127.0.0.1", "::1"):
        return None
    return (f"warning: {address} is unauthenticated: anyone who reaches it can join as a worker and answer any "
            f"submission's run; on a shared network use tls:// with {TLS_FLAGS}")


class ClusterRunner:
    """Stage 3 of every submission of one batch on a Dask cluster (``Submission.runner``)."""

    def __init__(self, address, chapter: str, unsandboxed: bool = False, tls: tuple[str, str, str] | None = None):
        """``address``: a scheduler address (``tcp://HOST:8786``, ``tls://HOST:8786`` with ``tls``) or a cluster
        object (``local_cluster()``, its own security)."""
        from distributed import Client

        self.chapter, self.unsandboxed = chapter, unsandboxed
        self.fingerprint = fingerprint(chapter)
        sec = security(address, tls)
        try:  # what comes back is read as msgpack data only: a worker's pickle is refused, never loaded
            self.client = Client(address, timeout="20s", set_as_default=False, deserializers=["msgpack", "error"],
                                 security=sec)
        except TypeError as exc:  # Dask's words for a tls:// address without certificates
            raise GradingError(f"cannot reach the Dask scheduler at {address}: give {TLS_FLAGS} ({exc})") from None
        except (OSError, TimeoutError, ValueError) as exc:
            raise GradingError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            self.check_workers()
        except BaseException:
            self.client.close()
            raise

    def check_workers(self) -> None:
        """Refuse the batch when any worker's fingerprint differs from the client's, or it has no sandbox."""
        states = self.client.run(worker_status, self.chapter, self.unsandboxed)
        if not states:
            raise GradingError("the Dask cluster has no workers")
        for address, state in sorted(states.items()):
            if state.get("fingerprint") != self.fingerprint:
                raise GradingError(f"worker {address} has course/environment fingerprint {state.get('fingerprint')}, "
                                   f"the client {self.fingerprint}: start it from the same course checkout, "
                                   "environment and assets")
            if not self.unsandboxed and not state.get("strong"):
                raise GradingError(f"worker {address} cannot start the sandbox: {state.get('why')}")

    @property
    def slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def __call__(self, job: dict, limits: Limits, folder: Path | None, timeout: float, progress=None) -> Attempt:
        from distributed import TimeoutError as DaskTimeout
        from distributed.scheduler import KilledWorker

        files = pack_folder(folder)
        future = self.client.submit(remote_attempt, job, dataclasses.asdict(limits), files, timeout, self.fingerprint,
                                    self.chapter, self.unsandboxed, pure=False)
        try:
            raw = future.result(timeout=2 * timeout + 60)
        except (DaskTimeout, TimeoutError):
            future.cancel()
            return Attempt([], f"the grading worker did not answer within {2 * timeout + 60:.0f} s")
        except KilledWorker:
            return Attempt([], "every worker that ran it was lost")
        except Exception as exc:  # noqa: BLE001 - e.g. a pickle from a worker, refused: that worker's failure
            return Attempt([], f"the grading worker's answer was refused ({type(exc).__name__})")
        if isinstance(raw, dict) and isinstance(raw.get("refused"), str):
            raise GradingError(clean_text(raw["refused"]))
        return received(raw, job, limits)

    def close(self) -> None:
        self.client.close()


def local_cluster(workers: int = 2, threads: int = 1, tls: tuple[str, str, str] | None = None):
    """A scheduler and ``workers`` worker processes on this machine (tests, demos, the benchmark); with ``tls``
    (CA, certificate, key files) every connection is mutual TLS and the cluster's address is ``tls://``."""
    from distributed import LocalCluster

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # one certificate for every role, as README's recipe makes it
    sec = _mutual_tls(tls, ("scheduler", "worker", "client")) if tls else None
    return LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None,
                        silence_logs=40, security=sec, protocol="tls://" if tls else None)


def main(argv: list[str] | None = None) -> int:
    """``python -m llmprep.grading.cluster [WORKERS]``: a local cluster until Ctrl-C (its address printed)."""
    import time

    workers = int((argv or sys.argv[1:] or ["2"])[0])
    with local_cluster(workers) as cluster:
        print(f"scheduler: {cluster.scheduler_address} ({workers} workers); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
