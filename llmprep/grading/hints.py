"""The hint ladder, computed on the trusted side: when an exercise loses its points, which known mistake
(a spec mutant) does the submission behave like?

Every mutant of a spec is a known-wrong variant. Its outputs on the hidden cases are computed once, in the
same sandbox as the reference's and cached beside them (:func:`llmprep.grading.reference.mistakes_run`).
A failing submission **behaves like** mutant *M* when

1. it fails exactly the cases *M* fails (the same pass/fail pattern against the reference, judged by the
   exercise's own judge), and
2. on every one of those failing cases its outcome equals *M*'s: both returned outputs and either the
   exercise's judge accepts the submission's outputs with *M*'s standing in for the expected ones (equal
   within the exercise's own tolerance) or, for judges that check a property rather than compare (a
   distribution against its target, a call count), the outputs are equal key by key (floats within
   rtol 1e-5 / atol 1e-6, the rest exactly); or both raised the same kind of error (the same exception
   type; a banned call naming the same library function; both timed out).

The feedback then climbs two levels: level 1 quotes the rule of the exercise's rule table that *M* breaks
(``Rule.quote``, copied from the instructions), level 2 gives *M*'s ``Hint(zh, en)``, the misconception in
words (a mutant without a ``Hint`` yet: its name, in English, for both languages, marked ``zh_fallback``).
A failure that matches no mutant says so honestly and quotes the rule(s) whose cases fail. A submission
that passes every case gets nothing: correct alternatives never receive a hint.

What a hint can show is fixed by the trusted spec (rule quotes, hint texts, mutant names); the submission
chooses among them only through its outputs. No hidden input, no solution code, no text from the sandbox.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Sequence

from llmprep.grading.collect import SandboxRun, outputs_of
from llmprep.grading.spec import Exercise, compare_arrays

MAX_SHOWN = 2  # mistakes named in one hint when several behave identically on every case


@dataclass
class Mistake:
    """One known mistake a submission behaves like (level 2)."""
    mutant: str
    en: str
    zh: str
    zh_fallback: bool = False  # no Chinese text written yet: ``zh`` repeats the English


@dataclass
class Diagnosis:
    """The hint for one failing exercise. ``matched``: the known mistakes the submission behaves like (empty:
    no known mistake matches, said honestly); ``rules``: level 1, the quoted rule(s) that fail."""
    matched: list[Mistake] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    failing_cases: list[str] = field(default_factory=list)  # case names (feedback already names them)
    available: bool = True  # False: the known mistakes' outputs could not be computed (verdict unaffected)

    def to_json(self) -> dict:
        return asdict(self)


def failing_set(ex: Exercise, got_all: Sequence, want_all: Sequence) -> frozenset[int]:
    """Indices of the cases whose outcome the exercise's judge rejects (an error counts as a failure)."""
    bad = set()
    for i, (case, (g_status, got), (_w, want)) in enumerate(zip(ex.cases, got_all, want_all)):
        if g_status != "ok":
            bad.add(i)
            continue
        try:
            if ex.judge(got, want, case.params):
                bad.add(i)
        except Exception:  # noqa: BLE001 - malformed outputs fail, as in the judge
            bad.add(i)
    return frozenset(bad)


_BANNED = re.compile(r"^RuntimeError: calls (.{1,80}?), which this exercise asks you to write yourself")


def error_kind(message: str) -> str:
    """What kind of error a probe reported, for comparing a submission's with a mutant's: a time-out, a
    banned call (with the library function it names), else the exception type."""
    message = str(message)[:400]
    if message.startswith("timed out"):
        return "timeout"
    banned = _BANNED.match(message)
    if banned:
        return f"banned {banned.group(1)}"
    if message.startswith("variant failed to load"):
        return "load"
    head = message.split(":", 1)[0].strip()
    return head if head.isidentifier() else "error"


def same_outcome(ex: Exercise, index: int, a: tuple, b: tuple) -> bool:
    """Outcome ``a`` (the submission's on case ``index``) equals ``b`` (a mutant's): see the module doc."""
    (sa, oa), (sb, ob) = a, b
    if sa == "ok" and sb == "ok":
        try:
            if ex.judge(oa, ob, ex.cases[index].params) is None:
                return True
        except Exception:  # noqa: BLE001 - a judge that cannot take a mutant's outputs as the expected ones
            pass
        return equal_outputs(oa, ob)
    if sa != "ok" and sb != "ok":
        return error_kind(oa) == error_kind(ob)
    return False


def equal_outputs(a: dict, b: dict, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """The same outputs, key by key: integers, strings and flags exactly, floats within ``rtol``/``atol`` (for
    judges that check a property against the reference rather than compare outputs: a distribution against
    the target, a call count against one)."""
    if set(a) != set(b):
        return False
    try:
        return all(compare_arrays(k, a[k], b[k], rtol, atol) is None for k in a)
    except Exception:  # noqa: BLE001 - hostile outputs are simply not alike
        return False


def mistake_of(ex: Exercise, name: str) -> Mistake:
    hint = ex.mutants[name].hint
    if hint is None or not getattr(hint, "en", ""):
        return Mistake(name, name, name, zh_fallback=True)
    zh = getattr(hint, "zh", "") or ""
    return Mistake(name, hint.en, zh or hint.en, zh_fallback=not zh)


def rules_of_mutant(ex: Exercise, name: str) -> list[str]:
    return [rule.quote for rule in ex.rules if name in rule.mutants]


def rules_of_cases(ex: Exercise, failing: frozenset[int]) -> list[str]:
    """The rules whose cases include a failing case, the rule of the first failing case first."""
    names = [ex.cases[i].name for i in sorted(failing)]
    found = []
    for case in names:
        for rule in ex.rules:
            if case in rule.cases and rule.quote not in found:
                found.append(rule.quote)
    return found


def closest_rules(ex: Exercise, got_all: Sequence, want_all: Sequence, mistakes: SandboxRun,
                  failing: frozenset[int]) -> list[str]:
    """For a failure that matches no known mistake: the rule(s) whose mutants fail most like it. A mutant's
    likeness is the number of cases both fail *in the same way* (both return wrong outputs, or both raise the
    same kind of error) over the number of cases either fails; a rule scores its best mutant. The best-scoring
    rules (at most two); none when no mutant shares a failing case with it in the same way."""
    scores: dict[str, float] = {}
    for rule in ex.rules:
        for name in rule.mutants:
            if name not in ex.mutants:
                continue
            m_all = outputs_of(mistakes, ex.grade_id, f"mutant:{name}", len(ex.cases))
            m_failing = failing_set(ex, m_all, want_all)
            alike = sum(1 for i in failing & m_failing
                        if (got_all[i][0] == "ok") == (m_all[i][0] == "ok")
                        and (got_all[i][0] == "ok" or error_kind(got_all[i][1]) == error_kind(m_all[i][1])))
            score = alike / len(failing | m_failing)
            scores[rule.quote] = max(scores.get(rule.quote, 0.0), score)
    best = max(scores.values(), default=0.0)
    return [quote for quote, score in scores.items() if score == best][:2] if best > 0 else []


def matching_mutants(ex: Exercise, got_all: Sequence, want_all: Sequence, mistakes: SandboxRun,
                     failing: frozenset[int] | None = None) -> list[str]:
    """The mutants (in spec order) the outcomes ``got_all`` behave like (see the module doc)."""
    failing = failing_set(ex, got_all, want_all) if failing is None else failing
    if not failing:
        return []
    found = []
    for name in ex.mutants:
        m_all = outputs_of(mistakes, ex.grade_id, f"mutant:{name}", len(ex.cases))
        if failing_set(ex, m_all, want_all) != failing:
            continue
        if all(same_outcome(ex, i, got_all[i], m_all[i]) for i in failing):
            found.append(name)
    return found


def diagnose(ex: Exercise, got_all: Sequence, want_all: Sequence, mistakes: SandboxRun | None) -> Diagnosis | None:
    """The hint for an exercise whose outcomes are ``got_all`` (per case, as ``outputs_of`` gives them) against
    the reference's ``want_all``; None when it passes every case or is simply not implemented yet.
    ``mistakes``: :func:`~llmprep.grading.reference.mistakes_run`'s run (None: not available; the hint then
    only quotes the failing rule)."""
    failing = failing_set(ex, got_all, want_all)
    if not failing:
        return None
    if all(got_all[i][0] != "ok" and str(got_all[i][1]).startswith("NotImplementedError") for i in failing):
        return None
    names = matching_mutants(ex, got_all, want_all, mistakes, failing) if mistakes is not None else []
    matched, seen = [], set()
    for name in names:
        mistake = mistake_of(ex, name)
        if mistake.en not in seen:
            seen.add(mistake.en)
            matched.append(mistake)
    matched = matched[:MAX_SHOWN]
    rules = []
    for mistake in matched:
        rules += [q for q in rules_of_mutant(ex, mistake.mutant) if q not in rules]
    if not rules and mistakes is not None:
        rules = closest_rules(ex, got_all, want_all, mistakes, failing)
    if not rules:
        rules = rules_of_cases(ex, failing)
    return Diagnosis(matched, rules[:2], [ex.cases[i].name for i in sorted(failing)], available=mistakes is not None)


# --------------------------------------------------------------------------- how well the ladder works
