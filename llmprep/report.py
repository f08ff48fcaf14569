"""Key results a notebook reports for the `llmprep run` table.

A notebook calls :func:`record` for each headline figure. The value is printed
beside its anchor; when ``LLMPREP_RESULTS`` names a file (set by
``llmprep run``), the record is also appended there as one JSON line.
"""
from __future__ import annotations

import json
import os


def record(chapter: str, name: str, value, anchor: str | None = None, fmt: str = "{:.4g}") -> None:
    """Print and (under `llmprep run`) store one result: ``value`` beside ``anchor``."""
    shown = fmt.format(value) if isinstance(value, (int, float)) else str(value)
    line = f"[{chapter}] {name}: {shown}"
    if anchor:
        line += f"   (anchor: {anchor})"
    print(line)
    path = os.environ.get("LLMPREP_RESULTS")
    if path:
        entry = {"chapter": chapter, "name": name, "value": shown, "anchor": anchor or ""}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
