"""Stage 5 of grading one submission: compare its outputs with the reference, in the trusted
process, and put the verdict into words. Text that came from the sandbox (exception messages)
is capped, and withheld when it would show hidden material (case inputs, probe code)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from llmprep.grading.collect import SandboxRun, clean_text, outputs_of
from llmprep.grading.notebook import SUBMITTED
from llmprep.grading.spec import Exercise
from llmprep.grading.trusted import GradingError


@dataclass
class CellVerdict:
    grade_id: str
    points: float
    max_points: float
    message: str


@dataclass
class NotebookResult:
    notebook: str
    chapter: str | None
    score: float
    max_score: float
    cells: list[CellVerdict]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "chapter": self.chapter, "score": self.score,
                "max_score": self.max_score, "cells": [asdict(c) for c in self.cells], "notes": self.notes}


def hidden_fragments(exercises: list[Exercise]) -> list[str]:
    """Pieces of text that would give hidden material away if a message contained them."""
    frags = {"PROBE", "llmprep_probe", "'params'", '"params"'}
    for ex in exercises:
        frags.add(ex.probe.__name__)
        for case in ex.cases:
            for key, value in case.params.items():
                frags.update({f"'{key}':", f'"{key}":'})
                for text in (json.dumps(value), repr(value)):
                    if len(text) >= 12:
                        frags.add(text[:40])
    return sorted(frags)


def safe_message(text: str, fragments: list[str]) -> str:
    """One line from the sandbox, fit to show: capped, printable, hidden material withheld."""
    text = clean_text(text)
    if any(f in text for f in fragments):
        head = text.split(":", 1)[0]
        return f"{head if head.isidentifier() else 'an error'} (message withheld: it quotes hidden test material)"
    return text


def explain(message: str, functions: tuple[str, ...] = ()) -> str:
    """A probe's error in words; ``functions``: the names the probe looks up in the notebook."""
    if message.startswith("NotImplementedError"):
        return "not implemented yet (the function still raises NotImplementedError)"
    if message.startswith("KeyError: '") and message.endswith("'") and message[len("KeyError: '"):-1] in functions:
        name = message[len("KeyError: '"):-1]
        return f"{name} is not defined (did its answer cell run without errors?)"
    if message.startswith("NameError") or "is not defined" in message:
        return f"{message} (did its answer cell run without errors?)"
    return message


def judge_exercise(ex: Exercise, run: SandboxRun, ref: SandboxRun, variant: str = SUBMITTED,
                   fragments: list[str] | None = None) -> CellVerdict:
    fragments = hidden_fragments([ex]) if fragments is None else fragments
    got_all = outputs_of(run, ex.grade_id, variant, len(ex.cases))
    want_all = outputs_of(ref, ex.grade_id, SUBMITTED, len(ex.cases))
    failures = []
    for case, (g_status, got), (w_status, want) in zip(ex.cases, got_all, want_all):
        if w_status != "ok":
            raise GradingError(f"reference outputs missing for {ex.grade_id} case '{case.name}'")
        if g_status != "ok":
            failures.append(f"case '{case.name}': {explain(safe_message(got, fragments), ex.functions)}")
            continue
        try:
            reason = ex.judge(got, want, case.params)
        except Exception as exc:  # noqa: BLE001 - malformed outputs never crash the judge
            reason = f"outputs could not be compared ({type(exc).__name__})"
        if reason:
            failures.append(f"case '{case.name}': {reason}")
    if not failures:
        return CellVerdict(ex.grade_id, float(ex.points), float(ex.points), f"passed all {len(ex.cases)} cases")
    if all("not implemented yet" in f for f in failures):
        return CellVerdict(ex.grade_id, 0.0, float(ex.points),
                           "not implemented yet (the function still raises NotImplementedError)")
    return CellVerdict(ex.grade_id, 0.0, float(ex.points),
                       f"failed {len(failures)} of {len(ex.cases)} cases; first: {failures[0]}")


def cell_notes(run: SandboxRun, fragments: list[str]) -> list[str]:
    """Cells that raised, named as the learner sees them (position from 1, the exercise)."""
    notes = []
    for c in run.cells:
        if c.get("status") == "error" and not c.get("message", "").startswith("NotImplementedError"):
            notes.append(f"{c['label']} raised {safe_message(c['message'], fragments)}")
    return notes
