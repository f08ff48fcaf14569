"""The results protocol: the key figures a notebook reports, one :class:`Result` per line of a JSON-lines
file (ground floor: imports only :mod:`llmprep.paths`, so a notebook's import costs nothing).

A notebook calls :func:`record` for each headline figure. The value is printed beside its anchor; when
``LLMPREP_RESULTS`` names a file (set by `llmprep run` for each notebook), the record is also appended
there. `llmprep run` gathers them into ``build/results.jsonl`` (:func:`merge_results`), and the run table
and the course website read them back (:func:`read_results`).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from llmprep.paths import chapter_prefix
from llmprep.runtime import CPU_CHAPTERS

RESULTS_ENV = "LLMPREP_RESULTS"


@dataclass(frozen=True)
class Result:
    """One reported figure: ``value`` is already formatted (as printed), ``anchor`` what it is compared with;
    ``device`` (``cpu``, ``cuda``, ...) and ``dtype`` (``float32``, ``bfloat16``, ...) what computed it."""
    chapter: str
    name: str
    value: str
    anchor: str = ""
    device: str = ""
    dtype: str = ""

    @property
    def prefix(self) -> str:
        """``ch06`` for ``ch06_generation``: the chapter as results of several runs are merged."""
        return chapter_prefix(self.chapter)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data) -> Result | None:
        """A Result from one parsed line, or None when it is not one (not an object, no name)."""
        if not isinstance(data, dict) or "name" not in data:
            return None
        result = cls(**{f.name: str(data.get(f.name, "")) for f in fields(cls)})
        # Files written before a result named its device: every one of those figures was measured on a CPU
        # (no GPU run had been made), in the notebook's default float32 unless the result's name says otherwise.
        return result if result.device else replace(result, device=LEGACY_DEVICE)

    @property
    def where(self) -> str:
        """``cpu, float32``: device and dtype in one cell of a table."""
        return ", ".join(x for x in (self.device, self.dtype) if x)


LEGACY_DEVICE = "cpu"


def mean_se(values) -> tuple[float, float]:
    """(mean, standard error of the mean) of a 1-D sequence of numbers (0/1 outcomes, paired differences, ...);
    the error is NaN for a single value (unknown, not zero). ValueError for none."""
    import math

    v = [float(x) for x in values]
    if not v:
        raise ValueError("mean_se of no values")
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))


def current_device(chapter: str = "") -> str:
    """The device a result recorded now was computed on: ``cpu`` for a chapter that computes on the CPU on every
    machine (:data:`llmprep.runtime.CPU_CHAPTERS`); else the choice of :func:`llmprep.runtime.pick_device` in
    this process; else ``LLMPREP_DEVICE``; else JAX's default backend when JAX (and not torch) is in use; else
    CUDA when torch is imported and sees one; else ``cpu``. Never imports torch or JAX itself."""
    if chapter and chapter_prefix(chapter) in CPU_CHAPTERS:
        return "cpu"
    runtime = sys.modules.get("llmprep.runtime")
    chosen = runtime.chosen_device() if runtime is not None else None
    if chosen:
        return chosen
    forced = os.environ.get("LLMPREP_DEVICE", "").strip()
    if forced:
        return forced.split(":")[0]
    if "jax" in sys.modules and "torch" not in sys.modules:
        try:
            return str(sys.modules["jax"].default_backend())
        except Exception:  # noqa: BLE001 - a half-imported JAX: say cpu rather than fail a notebook
            return "cpu"
    torch = sys.modules.get("torch")
    if torch is not None and getattr(getattr(torch, "cuda", None), "is_available", lambda: False)():
        return "cuda"
    return "cpu"


def current_dtype() -> str:
    """torch's default dtype (``float32``) when torch is imported; JAX's default float when only JAX is; else
    empty (a result that is no tensor computation: a token count, a tokenizer comparison)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_default_dtype"):
        return str(torch.get_default_dtype()).removeprefix("torch.")
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            return "float64" if jax.config.read("jax_enable_x64") else "float32"
        except Exception:  # noqa: BLE001
            return "float32"
    return ""


def record(chapter: str, name: str, value, anchor: str | None = None, fmt: str = "{:.4g}",
           device: str | None = None, dtype: str | None = None) -> None:
    """Print and (under `llmprep run`) store one result: ``value`` beside ``anchor``, tagged with the device
    and dtype that computed it (default: :func:`current_device`, :func:`current_dtype`; a notebook passes
    ``dtype="bfloat16"`` for a figure measured under autocast, ``device="cpu"`` for a CPU-only step)."""
    device = str(device or current_device(chapter))
    dtype = str(dtype if dtype is not None else current_dtype()).removeprefix("torch.")
    shown = fmt.format(value) if isinstance(value, (int, float)) else str(value)
    line = f"[{chapter}] {name}: {shown}"
    if anchor:
        line += f"   (anchor: {anchor})"
    if device != "cpu":  # the CPU is the course's reference machine: name any other device on the line itself
        line += f"   [{device}{', ' + dtype if dtype else ''}]"
    print(line)
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(Result(chapter, name, shown, anchor or "", device, dtype).to_json() + "\n")


def read_results(path: Path) -> list[Result]:
    """The results of a results file; unreadable lines are skipped, a missing file has none."""
    results = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            result = Result.from_dict(json.loads(line))
        except (ValueError, TypeError):
            continue
        if result is not None:
            results.append(result)
    return results


def write_results(path: Path, results: list[Result]) -> None:
    """Replace ``path`` with ``results`` (atomically: a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(r.to_json() + "\n" for r in results), encoding="utf-8")
    tmp.replace(path)


def merge_results(path: Path, results: list[Result | dict], ran: list[str], known: list[str]) -> None:
    """Write ``results`` (from the chapters in ``ran``) into ``path``, keeping every earlier result of a
    chapter that did not run; chapters in course order (``known``)."""
    results = [r if isinstance(r, Result) else Result.from_dict(r) for r in results]
    done = {chapter_prefix(ch) for ch in ran}
    kept = [r for r in read_results(path) if r.prefix not in done]
    rank = {chapter_prefix(ch): i for i, ch in enumerate(known)}
    write_results(path, sorted(kept + results, key=lambda r: rank.get(r.prefix, len(rank))))
