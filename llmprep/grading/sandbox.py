"""The untrusted side of grading: executes a submission and the probes, writes data only.

Run by the trusted engine as ``python -I -m llmprep.grading.sandbox`` in a fresh
temporary folder, under OS limits, with the job as JSON on standard input. It

1. reads the whole job from stdin, then closes stdin;
2. executes the notebook's code cells in order in one IPython shell (cells that
   raise are recorded and execution goes on, like ``nbgrader --allow-errors``);
   visible test cells are skipped: they do not decide the grade;
3. for each exercise and each variant (the submission as it is, or with one
   function swapped for a mutant), calls the trusted probe on every case;
4. writes ``outputs.npz`` (numeric / bool / str arrays only: loadable without
   pickle) and ``summary.json`` into the working folder.

Nothing this process writes decides a grade by itself: the trusted engine
compares these data with the reference outputs in its own process.
"""
from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
import traceback

MAX_MESSAGE = 300


def mark(**where) -> None:
    """Record where we are, so the engine can grade what finished if this process dies."""
    with open("progress.json", "w", encoding="utf-8") as fh:
        json.dump(where, fh)


class CellTimeout(BaseException):
    """Raised by the alarm when one cell or probe call exceeds its wall-clock budget."""


def _alarm(signum, frame):  # noqa: ARG001
    raise CellTimeout()


def _short(exc: BaseException) -> str:
    if isinstance(exc, CellTimeout):
        return "timed out"
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
    if arr.dtype.kind not in "biufUS":
        raise TypeError(f"output of type {type(value).__name__} is not plain data")
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    return arr


def run_cells(shell, cells, cell_timeout: float) -> list[dict]:
    records = []
    for cell in cells:
        if cell.get("skip"):
            records.append({"index": cell["index"], "status": "skipped"})
            continue
        mark(phase="cell", index=cell["index"])
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, cell_timeout)
        try:
            result = shell.run_cell(cell["source"], store_history=False, silent=False)
            err = result.error_before_exec or result.error_in_exec
        except CellTimeout as exc:  # raised outside IPython's own handler
            err = exc
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        records.append({"index": cell["index"], "grade_id": cell.get("grade_id"),
                        "status": "error" if err else "ok", "message": _short(err) if err else "",
                        "seconds": round(time.monotonic() - start, 3)})
        sys.stdout.flush()
    return records


def run_probes(user_ns: dict, exercises: list[dict], case_timeout: float):
    import numpy as np

    arrays: dict[str, np.ndarray] = {}
    summary = []
    for ex in exercises:
        mark(phase="probe", grade_id=ex["grade_id"])
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
                key = f"{ex['grade_id']}|{variant['name']}|{ci}"
                entry = {"grade_id": ex["grade_id"], "variant": variant["name"], "case": ci}
                if patch_error:
                    entry.update(status="error", message=f"variant failed to load: {patch_error}")
                    summary.append(entry)
                    continue
                signal.setitimer(signal.ITIMER_REAL, case_timeout)
                try:
                    out = probe(ns, json.loads(json.dumps(case["params"])))
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    if not isinstance(out, dict):
                        raise TypeError("probe returned no outputs")
                    for name, value in out.items():
                        arrays[f"{key}|{name}"] = _to_array(value)
                    entry.update(status="ok", keys=sorted(out))
                except BaseException as exc:  # noqa: BLE001 - anything the student code raised, exit included
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    entry.update(status="error", message=_short(exc))
                summary.append(entry)
    return arrays, summary


def main() -> int:
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    sys.stdin = io.StringIO("")
    workdir = os.getcwd()
    out_npz = os.path.join(workdir, "outputs.npz")
    out_json = os.path.join(workdir, "summary.json")
    signal.signal(signal.SIGALRM, _alarm)

    import matplotlib

    matplotlib.use("Agg")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["__name__"] = "__main__"
    t0 = time.monotonic()
    cells = run_cells(shell, job["cells"], float(job.get("cell_timeout", 120)))
    t1 = time.monotonic()
    arrays, probes = run_probes(shell.user_ns, job["exercises"], float(job.get("case_timeout", 60)))
    t2 = time.monotonic()

    import numpy as np

    # Write with the real builtins even if the submission replaced names in numpy.
    with open(out_npz + ".tmp", "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(out_npz + ".tmp", out_npz)
    with open(out_json + ".tmp", "w", encoding="utf-8") as fh:
        json.dump({"cells": cells, "probes": probes,
                   "seconds": {"cells": round(t1 - t0, 3), "probes": round(t2 - t1, 3)}}, fh)
    os.replace(out_json + ".tmp", out_json)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing the submission registered runs after this


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        os._exit(3)
