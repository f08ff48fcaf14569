"""Stage 5 of grading one submission: compare its outputs with the reference, in the trusted
process, and put the verdict into words. Text that came from the sandbox (exception messages)
is capped, and withheld when it would show hidden material (case inputs, probe code)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from llmprep.grading.collect import SandboxRun, clean_text, outputs_of
from llmprep.grading.protocol import SUBMITTED
from llmprep.grading.reference import reference_run
from llmprep.grading.spec import Exercise
from llmprep.grading.trusted import GradingError
from llmprep.i18n import reason_in, tr


@dataclass
class CellVerdict:
    grade_id: str
    points: float
    max_points: float
    message: str  # English: what the gradebook's feedback, the CSV's tools and scripts read
    message_zh: str = ""  # the same verdict in Chinese (llmprep.i18n; "" : as ``message``)
    hint: dict | None = None  # when the points were lost: llmprep.grading.hints.Diagnosis.to_json()
    rules: list | None = None  # credit="rules": [{"rule": i (from 1), "quote", "passed", "points", "max_points"}]

    def text(self, lang: str = "en") -> str:
        return self.message_zh or self.message if lang == "zh" else self.message


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


class Hidden(list):
    """The fragments of :func:`hidden_fragments` (a list), and the hidden texts themselves (probe sources,
    case inputs) for a word-level check: a long word of a message that is not in the hidden texts but is
    in them after a letter shift (rot13 or any other Caesar shift) or reversal is hidden material smuggled
    out in a word-like disguise (the opaque-token check catches base64, hex and URL quoting)."""

    def __init__(self, fragments, texts):
        import string

        super().__init__(fragments)
        self.raw = "\n".join(texts)
        lower, upper = string.ascii_lowercase, string.ascii_uppercase
        variants = [self.raw[::-1]]
        for shift in range(1, 26):
            table = str.maketrans(lower + upper, lower[shift:] + lower[:shift] + upper[shift:] + upper[:shift])
            shifted = self.raw.translate(table)
            variants += [shifted, shifted[::-1]]
        self.disguised = "\n".join(variants)

    def leaks(self, text: str) -> bool:
        """One disguised word of 8 characters or more, or two of 6 or more (chance pairs of real words
        under a shift, such as rot13's "abjurer"/"nowhere", are rare and never come two at a time)."""
        found = [w for w in set(_WORDS.findall(text)) if w not in self.raw and w in self.disguised]
        return any(len(w) >= 8 for w in found) or len(found) >= 2


_WORDS = re.compile(r"[A-Za-z0-9_.]{6,}")


def hidden_fragments(exercises: list[Exercise]) -> Hidden:
    """Pieces of text that would give hidden material away if a message contained them, each also in
    the encodings a submission could use to smuggle it out (see :func:`encodings`)."""
    frags = {"PROBE", "llmprep_probe", "'params'", '"params"'}
    texts = []
    for ex in exercises:
        texts.append(ex.probe_source)
        texts += [json.dumps(case.params) + "\n" + repr(case.params) for case in ex.cases]
    for ex in exercises:
        frags.add(ex.probe.__name__)
        for case in ex.cases:
            for key, value in case.params.items():
                frags.update({f"'{key}':", f'"{key}":'})
                for text in (json.dumps(value), repr(value)):
                    if len(text) >= 12:
                        frags.add(text[:40])
        for line in ex.probe_source.splitlines():  # the probe's own code, line by line
            if len(line.strip()) >= 16:
                frags.add(line.strip()[:40])
    return Hidden(sorted({e for f in frags for e in encodings(f)}), texts)


def encodings(fragment: str) -> set[str]:
    """``fragment`` as it would appear raw, reversed, in hex, base64 (any alignment), base32, URL
    quoting or rot13; parts shorter than 8 characters are dropped (they would match by chance)."""
    import base64
    import codecs
    from urllib.parse import quote

    raw = fragment.encode("utf-8", "replace")
    out = {fragment, fragment[::-1], raw.hex(), quote(fragment), codecs.encode(fragment, "rot13")}
    for pad in (b"", b"\0", b"\0\0"):  # base64 of the fragment at any offset in a longer stream: its core
        for enc in (base64.b64encode(pad + raw).decode(), base64.urlsafe_b64encode(pad + raw).decode()):
            out.add(enc[4:-4] if pad else enc[:-4])
        out.add(base64.b32encode(pad + raw).decode()[8:-8])
    return {e for e in out if len(e) >= 8} | ({fragment} if len(fragment) < 8 else set())


MAX_NOTE = 160  # characters of one message from the sandbox that may reach feedback
MAX_CELL_NOTES = 5  # erroring cells named in the notes; the rest are counted
_URL = re.compile(r"\b(?:[a-z][a-z0-9+.-]*://|www\.)\S*", re.IGNORECASE)
_TOKENS = re.compile(r"[^\s'\"`()\[\]{}<>,;:]+")
_WORDLIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _opaque(token: str) -> bool:
    """A long token that reads as encoded data (base64, hex, ...) rather than a word or a name."""
    if len(token) < 16:
        return False
    if len(token) >= 48 or re.fullmatch(r"[0-9a-fA-F]+", token):
        return True
    digits = sum(ch.isdigit() for ch in token)
    return not (_WORDLIKE.fullmatch(token) and digits <= 3)


def safe_message(text: str, fragments: list[str]) -> str:
    """One line from the sandbox, fit to show: a fixed form (exception type, short message), capped,
    printable, no links; withheld when it quotes hidden material in any common encoding or carries
    long opaque tokens (encoded data)."""
    text = clean_text(text, limit=MAX_NOTE * 4)
    head = text.split(":", 1)[0]
    kind = head if head.isidentifier() and len(head) <= 40 else "an error"
    lowered = text.lower()
    bare = text.replace("\\", "")  # hidden material quoted in escaped text (JSON, a repr) is still quoted
    if any(f in text or f in bare or (f.isalnum() and f.lower() in lowered) for f in fragments) \
            or (isinstance(fragments, Hidden) and (fragments.leaks(text) or fragments.leaks(bare))):
        return f"{kind} (message withheld: it quotes hidden test material)"
    text = _URL.sub("[link removed]", text)
    if any(_opaque(t) for t in _TOKENS.findall(text)):
        return f"{kind} (message withheld: it carries encoded data)"
    return text[:MAX_NOTE] + ("…" if len(text) > MAX_NOTE else "")


def explain(message: str, functions: tuple[str, ...] = ()) -> str:
    """A probe's error in words; ``functions``: the names the probe looks up in the notebook."""
    if message.startswith("NotImplementedError"):
        return "not implemented yet (the function still raises NotImplementedError)"
    if message.startswith("timed out after "):
        return (f"your function did not return within {message[len('timed out after '):]} on this case "
                "(an endless loop, or far too slow?)")
    if message.startswith("KeyError: '") and message.endswith("'") and message[len("KeyError: '"):-1] in functions:
        name = message[len("KeyError: '"):-1]
        return f"{name} is not defined (did its answer cell run without errors?)"
    if message.startswith("NameError") or "is not defined" in message:
        return f"{message} (did its answer cell run without errors?)"
    return message


def case_outcomes(ex: Exercise, run: SandboxRun, ref: SandboxRun, variant: str = SUBMITTED):
    """(the variant's outcomes, the reference's) per case, as :func:`outputs_of` gives them."""
    got_all = outputs_of(run, ex.grade_id, variant, len(ex.cases))
    want_all = outputs_of(ref, ex.grade_id, SUBMITTED, len(ex.cases))
    for case, (w_status, _w) in zip(ex.cases, want_all):
        if w_status != "ok":
            raise GradingError(f"reference outputs missing for {ex.grade_id} case '{case.name}'")
    return got_all, want_all


def judge_exercise(ex: Exercise, run: SandboxRun, ref: SandboxRun, variant: str = SUBMITTED,
                   fragments: list[str] | None = None) -> CellVerdict:
    fragments = hidden_fragments([ex]) if fragments is None else fragments
    got_all, want_all = case_outcomes(ex, run, ref, variant)
    failures = []  # (case name, reason in English)
    for case, (g_status, got), (_w_status, want) in zip(ex.cases, got_all, want_all):
        if g_status != "ok":
            failures.append((case.name, explain(safe_message(got, fragments), ex.functions)))
            continue
        try:
            reason = ex.judge(got, want, case.params)
        except Exception as exc:  # noqa: BLE001 - malformed outputs never crash the judge
            reason = f"outputs could not be compared ({type(exc).__name__})"
        if reason:
            failures.append((case.name, reason))
    n = len(ex.cases)
    if not failures:
        return _verdict(ex, float(ex.points), "passed", n=n)
    if all("not implemented yet" in reason for _c, reason in failures):
        return _verdict(ex, 0.0, "not_implemented")
    case, reason = failures[0]
    failed = {lang: tr("failed", lang, k=len(failures), n=n,
                       first=tr("case", lang, case=case, reason=reason_in(reason, lang))) for lang in ("en", "zh")}
    if ex.credit == "rules":
        return _rule_verdict(ex, failures, failed)
    return CellVerdict(ex.grade_id, 0.0, float(ex.points), failed["en"], failed["zh"])


_BANNED_CALL = "which this exercise asks you to write yourself"  # llmprep.grading.probing's words for a banned call
_QUOTE = 60  # characters of a rule's quote shown in a verdict


def _rule_verdict(ex: Exercise, failures: list[tuple[str, str]], failed: dict[str, str]) -> CellVerdict:
    """Partial credit by rule (``Exercise.credit == "rules"``): each rule earns its share when none of the cases
    it names failed. A failing case no rule names, or a banned library call, costs the whole exercise."""
    bad = {case for case, _reason in failures}
    shares = ex.rule_points()
    rows = []
    for i, (rule, share) in enumerate(zip(ex.rules, shares), start=1):
        passed = not bad & set(rule.cases)
        quote = " ".join(rule.quote.split())
        rows.append({"rule": i, "quote": quote[:_QUOTE] + ("…" if len(quote) > _QUOTE else ""),
                     "passed": passed, "points": round(share if passed else 0.0, 6), "max_points": round(share, 6)})
    named = {c for rule in ex.rules for c in rule.cases}
    unnamed = next((case for case, _reason in failures if case not in named), None)
    banned = any(_BANNED_CALL in reason for _case, reason in failures)
    if banned or unnamed is not None:
        for row in rows:
            row["points"] = 0.0
    points = round(sum(row["points"] for row in rows), 6)
    text = {}
    for lang in ("en", "zh"):
        listed = ("；" if lang == "zh" else "; ").join(tr("rule_passed" if row["passed"] else "rule_failed", lang, i=row["rule"],
                              quote=row["quote"], share=f"{row['max_points']:g}") for row in rows)
        if banned:
            head = tr("rules_banned", lang)
        elif unnamed is not None:
            head = tr("rules_unnamed", lang, case=unnamed)
        else:
            head = tr("rules_credit", lang, points=f"{points:g}", max_points=f"{float(ex.points):g}",
                      k=sum(row["passed"] for row in rows), m=len(rows))
        text[lang] = tr("rules_verdict", lang, head=head, rules=listed, failed=failed[lang])
    return CellVerdict(ex.grade_id, points, float(ex.points), text["en"], text["zh"], rules=rows)


def _verdict(ex: Exercise, points: float, key: str, **fields) -> CellVerdict:
    """A verdict whose words are one message of the catalogue (llmprep.i18n), in both languages."""
    zh_fields = {k: reason_in(v, "zh") if isinstance(v, str) else v for k, v in fields.items()}
    return CellVerdict(ex.grade_id, points, float(ex.points), tr(key, "en", **fields), tr(key, "zh", **zh_fields))


def add_hints(sub, verdicts: list[CellVerdict], ref: SandboxRun) -> None:
    """Level 1 and 2 hints for every exercise that lost its points (llmprep.grading.hints): the known mistakes'
    outputs are computed only when one is needed, once per chapter (cached beside the reference)."""
    from llmprep.grading.hints import diagnose
    from llmprep.grading.reference import mistakes_run

    mistakes, tried = None, False
    for ex, verdict in zip(sub.exercises, verdicts):
        if verdict.points >= verdict.max_points or ex.grade_id not in sub.present or ex.grade_id in sub.lost:
            continue
        got_all, want_all = case_outcomes(ex, sub.run, ref)
        if not tried and _needs_mistakes(ex, got_all):
            tried = True
            try:
                mistakes = mistakes_run(sub.chapter, sub.limits)
            except Exception:  # noqa: BLE001 - hints are a help: the verdict stands without them
                mistakes = None
        diagnosis = diagnose(ex, got_all, want_all, mistakes if tried else None)
        if diagnosis is not None:
            verdict.hint = diagnosis.to_json()


def _needs_mistakes(ex: Exercise, got_all) -> bool:
    return not all(s != "ok" and str(o).startswith("NotImplementedError") for s, o in got_all)


def cell_notes(run: SandboxRun, fragments: list[str]) -> list[str]:
    """Cells that raised, named as the learner sees them (position from 1, the exercise); at most
    ``MAX_CELL_NOTES`` of them, the rest counted."""
    notes = []
    failed = [c for c in run.cells if c.get("status") == "error"
              and not c.get("message", "").startswith("NotImplementedError")]
    for c in failed[:MAX_CELL_NOTES]:
        if c["message"].startswith("timed out after "):
            notes.append(tr("cell_timeout", "en", label=c["label"], limit=c["message"][len("timed out after "):]))
        else:
            notes.append(tr("cell_raised", "en", label=c["label"], error=safe_message(c["message"], fragments)))
    if len(failed) > MAX_CELL_NOTES:
        notes.append(f"{len(failed) - MAX_CELL_NOTES} more cells raised errors")
    return notes


def judge_submission(sub) -> None:
    """Stage 5 for a :class:`~llmprep.grading.engine.Submission`: every exercise judged against the reference
    outputs (the solution run the same way, cached), in words; notes from the sandbox filtered. A submission
    that stage 1 could not match is its one-line failure (``sub.result``)."""
    if not sub.matched:
        sub.result = NotebookResult(sub.path.name if sub.path else "", sub.chapter, 0.0, 0.0, [], sub.notes)
        return
    fragments = hidden_fragments(sub.exercises)
    ref = reference_run(sub.chapter, sub.limits)
    run = sub.run
    if not run.ok:
        sub.notes.append(run.reason)
    sub.notes += cell_notes(run, fragments)
    verdicts = []
    for ex in sub.exercises:
        if ex.grade_id not in sub.present:
            verdicts.append(_verdict(ex, 0.0, "cell_missing"))
        elif ex.grade_id in sub.lost:
            lost = sub.lost[ex.grade_id]
            verdicts.append(CellVerdict(ex.grade_id, 0.0, float(ex.points), lost, reason_in(lost, "zh")))
        elif not run.ok:
            verdicts.append(_verdict(ex, 0.0, "not_graded", reason=run.reason))
        else:
            verdicts.append(judge_exercise(ex, run, ref, fragments=fragments))
    if run.ok:
        add_hints(sub, verdicts, ref)
    sub.result = NotebookResult(sub.path.name, sub.chapter, float(sum(v.points for v in verdicts)),
                                float(sum(ex.points for ex in sub.exercises)), verdicts, sub.notes)
