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
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from llmprep.paths import chapter_prefix

RESULTS_ENV = "LLMPREP_RESULTS"


@dataclass(frozen=True)
class Result:
    """One reported figure: ``value`` is already formatted (as printed), ``anchor`` what it is compared with."""
    chapter: str
    name: str
    value: str
    anchor: str = ""

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
        return cls(**{f.name: str(data.get(f.name, "")) for f in fields(cls)})


def record(chapter: str, name: str, value, anchor: str | None = None, fmt: str = "{:.4g}") -> None:
    """Print and (under `llmprep run`) store one result: ``value`` beside ``anchor``."""
    shown = fmt.format(value) if isinstance(value, (int, float)) else str(value)
    line = f"[{chapter}] {name}: {shown}"
    if anchor:
        line += f"   (anchor: {anchor})"
    print(line)
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(Result(chapter, name, shown, anchor or "").to_json() + "\n")


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
