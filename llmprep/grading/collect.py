"""Stage 4 of grading one submission: read back what the sandbox sent, as hostile data.

The sandbox writes framed messages (:mod:`llmprep.grading.protocol`) to a pipe whose read end
only the trusted process holds: ``progress`` (JSON: where it is, so a crash can be graded up to
that point), ``summary`` (JSON: per cell and per probe call, a status and a short message) and
``npz`` (the probe outputs, plain arrays). Nothing is read from the sandbox's filesystem.

Everything is checked before use: the pipe is read with a byte cap and a deadline; frames, JSON
and every field are validated against the job the trusted side sent (grade ids, variants, case
numbers, cell indices); the npz must be an uncompressed zip of plain ``.npy`` arrays whose
declared shapes match their sizes, within a total cap, loaded without pickle. Any problem is a
``ResultError`` with a one-line reason: that submission's failure, never the grader's.
"""
from __future__ import annotations

import io
import json
import math
import os
import select
import threading
import zipfile
from dataclasses import dataclass, field

import numpy as np

from llmprep.grading import protocol
from llmprep.grading.protocol import (ARRAY_KINDS, CELL_STATUSES, MAX_JSON, MAX_MESSAGE, PROBE_STATUSES,
                                      output_prefix, parse_frames)

__all__ = ["ARRAY_KINDS", "MAX_JSON", "MAX_MESSAGE", "Attempt", "PipeReader", "ResultError", "SandboxRun",
           "clean_text", "collect", "collect_attempt", "collect_submission", "last_progress", "load_npz", "outputs_of",
           "parse_frames", "validate_progress", "validate_summary"]


class ResultError(ValueError):
    """The sandbox's results are unusable; the message is one line, safe to show."""


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


# --------------------------------------------------------------------------- pipes

class PipeReader:
    """Drains a pipe in a thread: keeps at most ``cap`` bytes (``keep='head'``: the first ones,
    and notes the overflow; ``keep='tail'``: the last ones). Never blocks the grader."""

    def __init__(self, cap: int, keep: str = "head"):
        self.read_fd, self.write_fd = os.pipe()
        self.cap, self.keep = cap, keep
        self.data = bytearray()
        self.overflow = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        os.close(self.write_fd)  # the child holds its copy; EOF comes when every holder is gone
        self.write_fd = -1
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.read_fd], [], [], 0.2)
                if not ready:
                    continue
                chunk = os.read(self.read_fd, 1 << 16)
                if not chunk:
                    return
                self.data += chunk
                if len(self.data) > self.cap:
                    if self.keep == "tail":
                        del self.data[: len(self.data) - self.cap]
                    else:
                        del self.data[self.cap:]
                        self.overflow = True
                        return
        except OSError:
            return

    def finish(self, timeout: float = 5.0) -> bytes:
        """Wait for EOF up to ``timeout`` seconds (a leftover process may hold the pipe open)."""
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(1.0)
        try:
            os.close(self.read_fd)
        except OSError:
            pass
        return bytes(self.data)


# --------------------------------------------------------------------------- validation

def _json(payload: bytes):
    if len(payload) > MAX_JSON:
        raise ResultError("its results are larger than allowed")
    try:
        return json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise ResultError("its results are not valid JSON") from None


def clean_text(value, limit: int = MAX_MESSAGE) -> str:
    """A message from the sandbox: a string, one line, printable, capped."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch if ch.isprintable() else " " for ch in value[: limit * 4])
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return float(value)


def validate_progress(value, job: dict) -> dict:
    """Where the sandbox said it was: {"phase": "cell", "index": i} or {"phase": "probe", "grade_id": g}."""
    if not isinstance(value, dict):
        return {}
    if value.get("phase") == protocol.CELL and type(value.get("index")) is int \
            and value["index"] in {c["index"] for c in job["cells"]}:
        return protocol.cell_progress(value["index"])
    if value.get("phase") == protocol.PROBE and isinstance(value.get("grade_id"), str) \
            and value["grade_id"] in {e["grade_id"] for e in job["exercises"]}:
        return protocol.probe_progress(value["grade_id"])
    return {}


def validate_summary(value, job: dict) -> tuple[list, list, dict]:
    """(cells, probes, seconds), rebuilt field by field from what the job allows."""
    if not isinstance(value, dict) or not isinstance(value.get("cells"), list) \
            or not isinstance(value.get("probes"), list):
        raise ResultError("its results do not have the expected form")
    known_cells = {c["index"]: c for c in job["cells"]}
    cells, seen = [], set()
    for rec in value["cells"][: len(known_cells)]:
        if not isinstance(rec, dict) or type(rec.get("index")) is not int or rec["index"] not in known_cells \
                or rec["index"] in seen or rec.get("status") not in CELL_STATUSES:
            raise ResultError("its results name a cell the notebook does not have")
        seen.add(rec["index"])
        cell = known_cells[rec["index"]]
        cells.append({"index": rec["index"], "label": cell["label"], "grade_id": cell["grade_id"],
                      "status": rec["status"], "message": clean_text(rec.get("message", "")),
                      "seconds": _number(rec.get("seconds"))})
    variants = {e["grade_id"]: ({v["name"] for v in e["variants"]}, len(e["cases"])) for e in job["exercises"]}
    probes, seen_p = [], set()
    limit = sum(len(v[0]) * v[1] for v in variants.values())
    for rec in value["probes"][: limit]:
        if not isinstance(rec, dict):
            raise ResultError("its results do not have the expected form")
        gid, var, case = rec.get("grade_id"), rec.get("variant"), rec.get("case")
        if not isinstance(gid, str) or gid not in variants or not isinstance(var, str) \
                or var not in variants[gid][0] or type(case) is not int or not 0 <= case < variants[gid][1] \
                or (gid, var, case) in seen_p or rec.get("status") not in PROBE_STATUSES:
            raise ResultError("its results name an exercise, variant or case the job does not have")
        seen_p.add((gid, var, case))
        entry = {"grade_id": gid, "variant": var, "case": case, "status": rec["status"]}
        if rec["status"] == "error":
            entry["message"] = clean_text(rec.get("message", "")) or "error"
        probes.append(entry)
    seconds = value.get("seconds") if isinstance(value.get("seconds"), dict) else {}
    return cells, probes, {k: _number(seconds.get(k)) for k in ("cells", "probes")}


def load_npz(payload: bytes, cap: int) -> dict[str, np.ndarray]:
    """Plain arrays from an npz, checking every member's declared size before reading it."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(payload))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise ResultError("its outputs are not a readable npz archive") from None
    if len(infos) > 100_000 or sum(i.file_size for i in infos) > cap:
        raise ResultError("its outputs are larger than allowed")
    arrays = {}
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size \
                or not info.filename.endswith(".npy"):
            raise ResultError("its outputs are not plain arrays")
        try:
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}[version]
                shape, fortran, dtype = reader(fh, max_header_size=10_000)
                header_len = fh.tell()
                if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.hasobject:
                    raise ResultError("its outputs are not plain arrays")
                if any(type(n) is not int or n < 0 for n in shape):
                    raise ResultError("its outputs are not plain arrays")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes != info.file_size - header_len:
                    raise ResultError("its outputs declare a size they do not have")
                data = fh.read(nbytes)
            arr = np.frombuffer(data, dtype=dtype)
            arr = arr.reshape(shape, order="F" if fortran else "C").copy()
        except ResultError:
            raise
        except Exception:  # noqa: BLE001 - anything malformed in a member
            raise ResultError("its outputs are not plain arrays") from None
        arrays[info.filename[:-4]] = arr
    return arrays


def collect(frames: list[tuple[str, bytes]], job: dict, cap: int) -> SandboxRun:
    """A SandboxRun from the frames of a run that ended normally; ResultError if unusable."""
    summary = [p for k, p in frames if k == protocol.SUMMARY]
    npz = [p for k, p in frames if k == protocol.NPZ]
    if not summary or not npz:
        raise ResultError("the notebook process sent no results")
    cells, probes, seconds = validate_summary(_json(summary[-1]), job)
    arrays = load_npz(npz[-1], cap)
    ok_prefixes = [output_prefix(p["grade_id"], p["variant"], p["case"]) for p in probes if p["status"] == "ok"]
    for key in arrays:  # (names may contain "|": match whole prefixes, never split)
        if not any(key.startswith(prefix) for prefix in ok_prefixes):
            raise ResultError("its outputs name a probe call that did not succeed")
    return SandboxRun(True, "", cells, probes, arrays, seconds=seconds)


@dataclass
class Attempt:
    """What one run in a fresh sandbox left behind, not yet validated (:func:`llmprep.grading.run.finish`)."""
    frames: list  # the well-formed frames it sent, in order
    reason: str = ""  # why it did not end by itself with exit code 0 ("" if it did)
    log_tail: str = ""  # the end of its stdout and stderr, for diagnostics only
    where: dict = field(default_factory=dict)  # the furthest valid position its progress frames named


def collect_attempt(attempt: Attempt, job: dict, cap: int) -> SandboxRun:
    """The SandboxRun of one attempt: its outputs validated against ``job`` (the job that attempt ran),
    or why there are none, with where it got to."""
    if attempt.reason:
        return SandboxRun(False, attempt.reason, log_tail=attempt.log_tail, progress=attempt.where)
    try:
        run = collect(attempt.frames, job, cap)
    except ResultError as exc:
        return SandboxRun(False, f"the notebook process returned unusable results: {exc}", log_tail=attempt.log_tail,
                          progress=attempt.where)
    run.log_tail = attempt.log_tail
    return run


def collect_submission(sub) -> None:
    """Stage 4 for a :class:`~llmprep.grading.engine.Submission`: its latest attempt, validated (``sub.run``)."""
    sub.run = collect_attempt(sub.attempt, sub.job, sub.limits.results)


def last_progress(frames: list[tuple[str, bytes]], job: dict) -> dict:
    """The last valid progress message (invalid ones, forged or cut, are skipped)."""
    for kind, payload in reversed(frames):
        if kind == protocol.PROGRESS:
            try:
                where = validate_progress(_json(payload), job)
            except ResultError:
                continue
            if where:
                return where
    return {}


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
            prefix = output_prefix(grade_id, variant, ci)
            result.append(("ok", {k[len(prefix):]: v for k, v in run.arrays.items() if k.startswith(prefix)}))
    return result

