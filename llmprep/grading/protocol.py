"""Everything the sandbox and the trusted side exchange, written once (standard library only).

:mod:`llmprep.grading.sandbox` imports this module before any student code runs, so it imports nothing
but the standard library. The trusted side (:mod:`~llmprep.grading.isolate`, :mod:`~llmprep.grading.run`,
:mod:`~llmprep.grading.collect`, :mod:`~llmprep.grading.notebook`) imports the same names: a cap, a path
or a frame kind is never written twice.

* **Start:** ``python -I -m llmprep.grading.sandbox <fd>`` (:func:`sandbox_argv`), the job as JSON on
  standard input (:class:`Job`), the results pipe's write end as file descriptor ``<fd>``.
* **Paths inside:** the working folder :data:`WORK` (cwd, HOME) and the read-only copy of the
  submission's own folder :data:`SUBMISSION`.
* **Frames on the pipe:** ``b"<kind> <length>\\n" + payload`` (:func:`encode_frame`, :func:`parse_frames`),
  kinds :data:`PROGRESS` (JSON :class:`Progress`), :data:`SUMMARY` (JSON :class:`Summary`) and
  :data:`NPZ` (the probe outputs, arrays of :data:`ARRAY_KINDS` only, named by :func:`output_prefix`).
* **Caps:** :data:`MAX_MESSAGE` characters of a message, :data:`MAX_JSON` bytes of a JSON frame,
  :data:`MAX_HEADER` bytes of a frame header; time limits in CPU seconds, :data:`STARVED` times that
  in wall-clock seconds.

Everything the sandbox sends is hostile data: the trusted side validates it field by field against the job
it sent (:mod:`llmprep.grading.collect`); these shapes say what a well-formed message is, nothing more.
"""
from __future__ import annotations

import json
from typing import TypedDict

# --------------------------------------------------------------------------- start and paths

SANDBOX_MODULE = "llmprep.grading.sandbox"  # the only code that runs inside
DEFAULT_RESULTS_FD = 3
WORK = "/sandbox/work"  # the submission's working folder inside the sandbox (cwd, HOME)
SUBMISSION = "/sandbox/submission"  # read-only copy of the submission's own folder


def sandbox_argv(python: str, results_fd: int) -> list[str]:
    """The command that starts the sandbox's side (isolated mode: no user site, no PYTHON* variables)."""
    return [python, "-I", "-m", SANDBOX_MODULE, str(results_fd)]


def results_fd(argv: list[str]) -> int:
    """Inside: the results pipe's file descriptor, as :func:`sandbox_argv` passed it."""
    return int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else DEFAULT_RESULTS_FD


# --------------------------------------------------------------------------- caps and limits

MAX_MESSAGE = 300  # characters of one message (an exception, a status) the sandbox sends
MAX_JSON = 8 * 2**20  # bytes of one JSON frame the trusted side parses
MAX_HEADER = 64  # bytes of a frame header, newline included
STARVED = 3.0  # wall-clock allowance, in multiples of a CPU-time limit, for a run that got little CPU
DEFAULT_CELL_TIMEOUT = 120.0  # CPU seconds, when a job names none
DEFAULT_CASE_TIMEOUT = 60.0
ARRAY_KINDS = "biufUS"  # numpy dtype kinds an output array may have: loadable without pickle

# --------------------------------------------------------------------------- the job (trusted -> sandbox)

SUBMITTED = "submitted"  # the variant name of the submission as it is (vs mutants and alternatives)


class JobCell(TypedDict):
    index: int  # counts every cell from 0, as nbformat does
    source: str
    grade_id: str | None  # the exercise whose answer the cell holds
    label: str  # the cell as the learner sees it ("cell 4 (your answer for ...)")
    skip: bool  # visible test cells (and, on a retry, a cell that killed the process)


class JobCase(TypedDict):
    name: str
    params: dict


class JobVariant(TypedDict):
    name: str  # SUBMITTED, "mutant:<name>" or "alt:<name>"
    patch: str | None  # source executed over the notebook's namespace before probing


class JobExercise(TypedDict):
    grade_id: str
    probe: str  # trusted source defining PROBE(namespace, params) -> {name: output}
    cases: list[JobCase]
    variants: list[JobVariant]


class Job(TypedDict, total=False):
    cells: list[JobCell]
    bans: dict[str, list[list[str]]]  # grade_id -> library functions banned while it is probed
    exercises: list[JobExercise]
    cell_timeout: float  # CPU seconds per cell (STARVED times that in wall-clock time)
    case_timeout: float  # CPU seconds per probe call


def job(cells: list[JobCell], bans: dict, exercises: list[JobExercise]) -> Job:
    return {"cells": cells, "bans": bans, "exercises": exercises}


def with_limits(job: Job, cell_timeout: float, case_timeout: float) -> Job:
    """The job with the time limits the sandbox enforces itself (the watchdog enforces them from outside)."""
    return {**job, "cell_timeout": cell_timeout, "case_timeout": case_timeout}


# --------------------------------------------------------------------------- frames (sandbox -> trusted)

PROGRESS, SUMMARY, NPZ = "progress", "summary", "npz"
KINDS = (PROGRESS, SUMMARY, NPZ)
_KINDS = {k.encode() for k in KINDS}


CELL, PROBE = "cell", "probe"  # the phases a progress frame names


class Progress(TypedDict, total=False):
    phase: str  # CELL or PROBE; {} before any cell
    index: int  # phase "cell": the cell's index
    grade_id: str  # phase "probe": the exercise probed


def cell_progress(index: int) -> Progress:
    return {"phase": CELL, "index": index}


def probe_progress(grade_id: str) -> Progress:
    return {"phase": PROBE, "grade_id": grade_id}


CELL_STATUSES = ("ok", "error", "skipped")
PROBE_STATUSES = ("ok", "error")


class CellRecord(TypedDict, total=False):
    index: int
    status: str  # one of CELL_STATUSES
    message: str  # at most MAX_MESSAGE characters
    seconds: float


class ProbeRecord(TypedDict, total=False):
    grade_id: str
    variant: str
    case: int  # the case's position in the job
    status: str  # one of PROBE_STATUSES
    message: str  # for "error"


class Summary(TypedDict):
    cells: list[CellRecord]
    probes: list[ProbeRecord]
    seconds: dict[str, float]  # {"cells": ..., "probes": ...}


def summary(cells: list[CellRecord], probes: list[ProbeRecord], cells_seconds: float,
            probes_seconds: float) -> Summary:
    return {"cells": cells, "probes": probes,
            "seconds": {"cells": round(cells_seconds, 3), "probes": round(probes_seconds, 3)}}


def output_prefix(grade_id: str, variant: str, case: int) -> str:
    """How the outputs of one probe call are named in the npz: ``<prefix><output name>``."""
    return f"{grade_id}|{variant}|{case}|"


def encode_frame(kind: str, payload: bytes) -> bytes:
    return f"{kind} {len(payload)}\n".encode() + payload


def encode_json(kind: str, value) -> bytes:
    return encode_frame(kind, json.dumps(value).encode())


def parse_frames(data: bytes) -> list[tuple[str, bytes]]:
    """The well-formed frames, in order; parsing stops at the first malformed or cut one."""
    frames, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", pos, pos + MAX_HEADER)
        if end < 0:
            break
        head = data[pos:end].split(b" ")
        if len(head) != 2 or head[0] not in _KINDS or not head[1].isdigit():
            break
        size = int(head[1])
        if end + 1 + size > len(data):
            break
        frames.append((head[0].decode(), data[end + 1: end + 1 + size]))
        pos = end + 1 + size
    return frames
