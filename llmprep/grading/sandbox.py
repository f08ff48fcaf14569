"""The untrusted side of grading: executes a submission and the probes, sends data only.

Run by the trusted engine as ``python -I -m llmprep.grading.sandbox`` inside the sandbox
(:mod:`llmprep.grading.isolate`), with the job as JSON on standard input and the write end of the
results pipe as the file descriptor named by its one argument. It

1. reads the whole job from stdin, then closes stdin;
2. copies the submission's own folder (helper modules, small data files), if one was given,
   into its working folder;
3. executes the notebook's code cells in order in one IPython shell (cells that raise are
   recorded and execution goes on, like ``nbgrader --allow-errors``); visible test cells are
   skipped: they do not decide the grade;
4. for each exercise and each variant (the submission as it is, or with one function swapped for
   a mutant or an alternative), calls the trusted probe on every case;
5. sends framed messages on that pipe: ``progress`` before each cell and probe, then ``summary``
   (JSON) and ``npz`` (numeric / bool / str arrays only: loadable without pickle).

What it exchanges with the trusted side (paths, frames, caps, the job and summary shapes) is
:mod:`llmprep.grading.protocol`; before student code runs it imports only that and the standard library.

Everything this process sends is treated by the trusted side as hostile data
(:mod:`llmprep.grading.collect`); nothing here decides a grade.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sys
import time
import traceback

from llmprep.grading import protocol
from llmprep.grading.protocol import ARRAY_KINDS, MAX_MESSAGE, STARVED, SUBMISSION

RESULTS_FD = protocol.results_fd(sys.argv)

_channel = None


def send(kind: str, payload: bytes) -> None:
    """One frame on the results pipe (written with the real os.write, captured at import)."""
    global _channel
    if _channel is None:
        _channel = os.fdopen(os.dup(RESULTS_FD), "wb", buffering=0)
    data = protocol.encode_frame(kind, payload)
    view = memoryview(data)
    while view:
        view = view[_channel.write(view):]


def mark(where: protocol.Progress) -> None:
    """Say where we are, so the engine can grade what finished if this process dies."""
    send(protocol.PROGRESS, json.dumps(where).encode())


class CellTimeout(BaseException):
    """Raised by the alarm when one cell or probe call exceeds its budget."""


def _alarm(signum, frame):  # noqa: ARG001
    raise CellTimeout()


def start_alarm(seconds: float) -> None:
    """The limit in this process's CPU time (a busy loop), and ``STARVED`` times it in wall-clock time
    (a wait): a neighbour that takes the CPU cannot make an honest cell time out."""
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds * STARVED)


def stop_alarm() -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)
    signal.setitimer(signal.ITIMER_REAL, 0)


def _short(exc: BaseException, limit: float | None = None) -> str:
    if isinstance(exc, CellTimeout):
        return f"timed out after {limit:g} s" if limit else "timed out"
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    text = f"{type(exc).__name__}: {exc}".strip()
    text = " ".join(text.split())
    return text[:MAX_MESSAGE]


def _to_array(value):
    """Plain data only: tensors / arrays / numbers / bools / strings -> numpy arrays."""
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    elif type(value).__module__.startswith("jax") or hasattr(value, "__jax_array__"):
        value = np.asarray(value)
    arr = np.asarray(value)
    if arr.dtype.kind not in ARRAY_KINDS:
        raise TypeError(f"output of type {type(value).__name__} is not plain data")
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    return arr


def make_shell():
    """An IPython shell in which the magics a notebook uses harmlessly in batch work
    (``%matplotlib inline``, ``%%time``, ``%config``) run without a kernel."""
    from IPython.core.interactiveshell import InteractiveShell

    class BatchShell(InteractiveShell):
        def enable_gui(self, gui=None):  # noqa: ARG002 - no event loop in batch
            return None

        def enable_matplotlib(self, gui=None):  # noqa: ARG002 - plots stay on the Agg backend
            return "agg", "agg"

    shell = BatchShell.instance(colors="nocolor")
    shell.user_ns["__name__"] = "__main__"
    ignore_learner_magics(shell)
    return shell


# Magics a learner's saved notebook may hold that mean nothing in a graded run: the course's own
# (``%llmprep_check`` would grade the notebook again, from inside its own grading) and display-only ones.
# They become no-ops here, so that they never turn into a ``UsageError`` in a later check or in feedback.
IGNORED_LINE_MAGICS = ("llmprep_check", "llmprep_progress", "matplotlib", "gui", "notebook", "qtconsole")
IGNORED_EXTENSIONS = ("llmprep.jupyter",)


def ignore_learner_magics(shell) -> None:
    def nothing(line="", cell=None):  # noqa: ARG001 - a line or cell magic that does nothing
        return None

    for name in IGNORED_LINE_MAGICS:
        shell.register_magic_function(nothing, "line", name)
    # ``%load_ext llmprep.jupyter`` would register the real %llmprep_check over the no-op: mark it loaded
    shell.extension_manager.loaded.update(IGNORED_EXTENSIONS)


def copy_submission_folder() -> None:
    """The submission's own folder, as the trusted side staged it (regular files only)."""
    sys.path.insert(0, os.getcwd())  # as in a Jupyter kernel: modules beside the notebook import
    if not os.path.isdir(SUBMISSION):
        return
    for name in os.listdir(SUBMISSION):
        src = os.path.join(SUBMISSION, name)
        try:
            if os.path.isdir(src):
                shutil.copytree(src, name, dirs_exist_ok=True)
            else:
                shutil.copy(src, name)
        except OSError:
            pass


def run_cells(shell, cells, cell_timeout: float) -> list[dict]:
    records = []
    for cell in cells:
        if cell.get("skip"):
            records.append({"index": cell["index"], "status": "skipped"})
            continue
        mark(protocol.cell_progress(cell["index"]))
        start = time.monotonic()
        start_alarm(cell_timeout)
        try:
            result = shell.run_cell(cell["source"], store_history=False, silent=False)
            err = result.error_before_exec or result.error_in_exec
        except CellTimeout as exc:  # raised outside IPython's own handler
            err = exc
        finally:
            stop_alarm()
        records.append({"index": cell["index"], "status": "error" if err else "ok",
                        "message": _short(err, cell_timeout) if err else "", "seconds": round(time.monotonic() - start, 3)})
        sys.stdout.flush()
    return records


def run_probes(user_ns: dict, exercises: list[dict], case_timeout: float):
    import numpy as np

    from llmprep.grading.probing import bans_in_force

    arrays: dict[str, np.ndarray] = {}
    summary = []
    for ex in exercises:
        mark(protocol.probe_progress(ex["grade_id"]))
        with bans_in_force(ex["grade_id"], user_ns):
            _probe_exercise(user_ns, ex, case_timeout, arrays, summary)
    return arrays, summary


def _probe_exercise(user_ns: dict, ex: dict, case_timeout: float, arrays: dict, summary: list) -> None:
    """Every variant of one exercise on every case; outputs into ``arrays``, statuses into ``summary``."""
    probe_ns: dict = {"__name__": "llmprep_probe"}
    exec(compile(ex["probe"], f"<probe {ex['grade_id']}>", "exec"), probe_ns)  # trusted source
    probe = probe_ns["PROBE"]
    for variant in ex["variants"]:
        ns = dict(user_ns)
        patch_error = ""
        if variant.get("patch"):
            try:
                exec(compile(variant["patch"], f"<variant {variant['name']}>", "exec"), ns)
            except Exception as exc:  # noqa: BLE001
                patch_error = _short(exc)
        for ci, case in enumerate(ex["cases"]):
            prefix = protocol.output_prefix(ex["grade_id"], variant["name"], ci)
            entry = {"grade_id": ex["grade_id"], "variant": variant["name"], "case": ci}
            if patch_error:
                entry.update(status="error", message=f"variant failed to load: {patch_error}")
                summary.append(entry)
                continue
            start_alarm(case_timeout)
            try:
                out = probe(ns, json.loads(json.dumps(case["params"])))
                stop_alarm()
                if not isinstance(out, dict):
                    raise TypeError("probe returned no outputs")
                for name, value in out.items():
                    arrays[f"{prefix}{name}"] = _to_array(value)
                entry.update(status="ok")
            except BaseException as exc:  # noqa: BLE001 - anything the student code raised, exit included
                stop_alarm()
                for name in [k for k in arrays if k.startswith(prefix)]:
                    del arrays[name]
                entry.update(status="error", message=_short(exc, case_timeout))
            summary.append(entry)


def main() -> int:
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    sys.stdin = io.StringIO("")
    send(protocol.PROGRESS, b"{}")  # opens the channel before any student code runs
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGPROF, _alarm)
    copy_submission_folder()

    import matplotlib

    matplotlib.use("Agg")
    if job.get("bans"):  # before any student code: names bound at import time are gated too
        from llmprep.grading.probing import install_bans

        install_bans(job["bans"])
    shell = make_shell()
    t0 = time.monotonic()
    cells = run_cells(shell, job["cells"], float(job.get("cell_timeout", protocol.DEFAULT_CELL_TIMEOUT)))
    t1 = time.monotonic()
    arrays, probes = run_probes(shell.user_ns, job["exercises"], float(job.get("case_timeout", protocol.DEFAULT_CASE_TIMEOUT)))
    t2 = time.monotonic()

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    send(protocol.SUMMARY, json.dumps(protocol.summary(cells, probes, t1 - t0, t2 - t1)).encode())
    send(protocol.NPZ, buffer.getvalue())
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing the submission registered runs after this


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        os._exit(3)
