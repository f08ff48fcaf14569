"""The vocabulary of a trusted exercise spec (one module per chapter in ``autograder/``).

A spec module ends with one ``CHAPTER = Chapter(name, notebook, exercises, rules=..., alternatives=...,
oracles=...)``; ``load_spec(name)`` returns that object. Its words:

* ``Chapter`` — the chapter's folder name, its graded notebook, its exercises, the rule table and the
  alternative-correct fixtures (both keyed by grade_id, joined to the exercises here) and the oracles the test
  suite compares the solution with. Building it resolves every mutant (below) and fails loudly on a bad spec.
* ``Exercise`` — one graded cell, keyed by the ``grade_id`` of its nbgrader test cell:

  - ``functions`` — the names the student defines, the probe looks up and the mutants redefine;
  - ``points`` — what the cell is worth (must equal the notebook's test-cell points);
  - ``cases`` — seeded inputs as plain JSON data, each a ``Case(name, params, edge="")``; feedback may show the
    name; ``edge`` says which boundary of a stated domain the case sits on (a shape, a magnitude, a tie, a
    promised error), so that a rule can name its edge cases and an edge mutant (``mutate(">", ">=")``) its case;
  - ``probe`` — a self-contained function ``probe(ns, params) -> dict`` whose *source* is shipped to the
    sandbox; it looks up the student's function in ``ns``, calls it on the case's inputs and returns plain data;
  - ``judge`` — a trusted callable ``judge(got, want, params) -> None | str``: None when the submission's
    outputs agree with the reference's (the solution run the same way), else one line in words, the returned
    value first. Shared judges live below: ``allclose``, ``ordered`` (labelled keys, each its own tolerance),
    ``sequence_diff`` (token sequences), ``json_list`` / ``json_lists`` (traces sent as JSON), ``first_difference``
    and ``text_diff`` (where two sequences or texts part); ``oracle_from_source`` makes an oracle of a trusted
    reference written as text, ``with_defaults`` cases that share most parameters, ``ranking`` judges a list
    ranked by score (ties by id), ``banned`` writes ``bans`` from dotted paths;
  - ``mutants`` — known-wrong variants the judge must reject, ``name -> Mutant`` (or a plain source string);
  - ``bans`` — the library calls the exercise asks the student to write themselves, ``(owner dotted path,
    attribute, label)``, each public equivalent listed too (``torch.log_softmax`` and ``torch.special.log_softmax``
    are different objects). The only ban mechanism: gates installed before the student's first cell runs
    (modules not imported yet are gated by the import that loads them, before it binds any name), raising
    while this exercise is probed; a banned *class* is swapped out of its module and out of the notebook's
    globals while the probe runs. A learning aid, not security (see autograder/README.md);
  - ``base`` — optional: the text the mutants of this exercise edit, when it is not the solution's own code;
  - ``credit`` — how the points are earned: ``"all"`` (the default: every case must pass, else 0) or
    ``"rules"`` (partial credit by rule, below). The exercise's instructions say which applies.
* ``Mutant`` — a known-wrong variant, written as a small edit of a base::

      "takes a new block one token early": mutate("if n % self.block_size == 0:",
                                                  "if (n + 1) % self.block_size == 0:"),

  - ``mutate("old", "new")`` or ``mutate({"old": "new", "old 2": "new 2"})`` (made in order) edits the base: by
    default the solution's own definitions of ``functions``, pulled by name from the answer cells of
    ``solutions/<chapter>/<notebook>`` (nbgrader's ``### BEGIN/END SOLUTION`` lines dropped), else
    ``Exercise.base`` or ``mutate(..., base=TEXT)``. Every ``old`` must occur exactly once in the base
    (``count=2``: a snippet the base holds twice, both replaced) and every edit must change it, or building the
    Chapter raises ``SpecError`` naming the mutant and the snippet;
  - ``whole(source)`` (or a plain string) — a full-text mutant, where the idea really differs from the solution;
  - ``hint=Hint(zh=..., en=...)`` — optional words on the misconception, for the coming hints.

  Mutant sources reach a sandbox only in the test suite's mutant runs (``build_job(..., mutants=True)``),
  never in a student's grading job.
* ``Rule(quote, cases, mutants)`` — one rule the instructions state: ``quote`` is copied from the instructions,
  ``cases`` name the hidden cases that break when it is broken, ``mutants`` map each mutant that breaks it to a
  word its feedback must contain (tests/test_exercise_rules.py and tests/test_mutants.py read them).
  ``points`` — only for an exercise with ``credit="rules"``: the rule's share of the exercise's points.

  **Partial credit by rule** (``credit="rules"``): the exercise's points are split over its rules, in equal
  shares, or by each rule's ``points`` (then every rule gives one, and they sum to the exercise's points; else
  building the Chapter raises ``SpecError``). A rule earns its share when every case it names passes, so a case
  that several rules name costs each of them; a failing case that no rule names costs the whole exercise, and so
  does a banned library call; a crash (the process dying, a function that is not defined) fails every case and
  earns 0 as before. Passing every case earns the full points, as under ``"all"``.
* alternatives — correct versions in another style (``name -> source``) that must earn full points.
"""
from __future__ import annotations

import ast
import inspect
import json
import textwrap
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from llmprep.grading.trusted import GradingError, solutions_dir

Outputs = Mapping[str, np.ndarray]
Judge = Callable[[Outputs, Outputs, dict], "str | None"]


@dataclass(frozen=True)
class Case:
    name: str  # shown in feedback; the params are not
    params: dict = field(default_factory=dict)
    edge: str = ""  # the edge of a stated domain this case sits on ("v exactly on a cumulative value"), if any


@dataclass(frozen=True)
class Rule:
    """One rule the instructions state. ``quote`` is copied from the exercise's instructions (the test
    finds it there, whitespace and case aside); ``cases`` name the hidden cases that break when the rule
    is broken; ``mutants`` maps each mutant that breaks it to a word its feedback must contain."""
    quote: str
    cases: tuple[str, ...]
    mutants: Mapping[str, str]
    points: float | None = None  # this rule's share under credit="rules" (None: an equal share)


CREDIT = ("all", "rules")  # Exercise.credit: all-or-nothing, or partial credit by rule


class SpecError(GradingError):
    """A spec that cannot be built as written (a mutant's snippet not found exactly once, ...)."""


@dataclass(frozen=True)
class Hint:
    """Words on the misconception a mutant stands for, in both languages (for feedback hints)."""
    zh: str
    en: str


@dataclass(frozen=True)
class Mutant:
    """A known-wrong variant: ``edits`` of a base (``mutate``), or a whole ``source`` (``whole``).
    ``base``: the text to edit when it is neither the exercise's ``base`` nor the solution's code."""
    edits: tuple[tuple[str, str], ...] = ()
    source: str = ""  # filled in by Chapter for an edit
    base: str | None = None
    hint: Hint | None = None
    count: int = 1  # how many times each ``old`` occurs (and is replaced) in the base

    def applied_to(self, base: str, where: str) -> "Mutant":
        """This mutant with ``source`` set: the base with every edit made (SpecError unless each ``old``
        occurs exactly once and changes something)."""
        if not self.edits:
            return self
        text = textwrap.dedent(self.base) if self.base is not None else base
        for old, new in self.edits:
            count = text.count(old)
            if count != self.count:
                said = "exactly once" if self.count == 1 else f"exactly {self.count} times"
                raise SpecError(f"{where}: the snippet {old!r} occurs {count} times in its base, not {said}")
            if old == new:
                raise SpecError(f"{where}: the edit of {old!r} changes nothing")
            text = text.replace(old, new)
        return replace(self, source=text)


def mutate(old: str | Mapping[str, str], new: str | None = None, *, base: str | None = None,
           hint: Hint | None = None, count: int = 1) -> Mutant:
    """A mutant as an edit of the base: ``mutate("old", "new")`` or ``mutate({"old": "new", ...})`` (edits made
    in order); each ``old`` must occur exactly once (``count`` times, every one replaced, when given)."""
    if isinstance(old, Mapping):
        if new is not None:
            raise TypeError("mutate({old: new, ...}) takes no second argument")
        edits = tuple(old.items())
    else:
        if new is None:
            raise TypeError("mutate(old, new): the replacement is missing")
        edits = ((old, new),)
    if not edits:
        raise TypeError("mutate: no edit")
    return Mutant(edits=edits, base=base, hint=hint, count=count)


def whole(source: str, hint: Hint | None = None) -> Mutant:
    """A full-text mutant (the idea really differs from the solution's)."""
    return Mutant(source=source, hint=hint)


@dataclass(frozen=True)
class Exercise:
    grade_id: str  # the nbgrader test cell's grade_id
    functions: tuple[str, ...]  # names the student defines, the probe looks up and mutants replace (tested)
    points: float
    cases: tuple[Case, ...]
    probe: Callable  # probe(ns, params) -> dict; must be self-contained (imports inside)
    judge: Judge
    mutants: Mapping[str, Mutant | str] = field(default_factory=dict)  # name -> Mutant (or source) redefining `functions`
    alternatives: Mapping[str, str] = field(default_factory=dict)  # name -> correct source in another style
    bans: tuple[tuple[str, str, str], ...] = ()  # (owner dotted path, attribute, label) the exercise must not call
    rules: tuple[Rule, ...] = ()  # which stated rule each case and mutant exercises
    base: str | None = None  # what the mutants edit, when not the solution's definitions of `functions`
    credit: str = "all"  # "all": all-or-nothing; "rules": the points split over the rules (see the module doc)

    def __post_init__(self):
        mutants = {name: m if isinstance(m, Mutant) else Mutant(source=m) for name, m in self.mutants.items()}
        object.__setattr__(self, "mutants", mutants)
        if self.credit not in CREDIT:
            raise SpecError(f"{self.grade_id}: credit={self.credit!r}; choose one of {', '.join(CREDIT)}")
        if self.rules:
            self.rule_points()  # a bad split fails when the rules are joined (Chapter), not when graded

    def rule_points(self) -> tuple[float, ...]:
        """Each rule's share of the points under ``credit="rules"`` (equal shares, or the rules' own ``points``,
        which must all be given and sum to the exercise's points); SpecError for a split that does not add up."""
        given = [r.points for r in self.rules]
        if self.credit != "rules":
            if any(p is not None for p in given):
                raise SpecError(f"{self.grade_id}: rules give points, but the exercise's credit is {self.credit!r}")
            return ()
        if not self.rules:
            raise SpecError(f"{self.grade_id}: credit='rules' but the exercise has no rules")
        names = {c.name for c in self.cases}
        unknown = sorted({c for r in self.rules for c in r.cases} - names)
        if unknown:
            raise SpecError(f"{self.grade_id}: rules name cases the exercise does not have: {unknown}")
        if all(p is None for p in given):
            return tuple(float(self.points) / len(self.rules) for _ in self.rules)
        if any(p is None or p < 0 for p in given):
            raise SpecError(f"{self.grade_id}: give every rule a share (points >= 0), or none for equal shares")
        if abs(sum(given) - float(self.points)) > 1e-9:
            raise SpecError(f"{self.grade_id}: the rules' shares sum to {sum(given):g}, "
                            f"not the exercise's {float(self.points):g} points")
        return tuple(float(p) for p in given)

    def mentions(self, mutant: str) -> str | None:
        """The word the feedback on ``mutant`` must contain (from the rule table)."""
        for rule in self.rules:
            if mutant in rule.mutants:
                return rule.mutants[mutant]
        return None

    @property
    def probe_source(self) -> str:
        src = textwrap.dedent(inspect.getsource(self.probe))
        return src + f"\nPROBE = {self.probe.__name__}\n"

    def mutant_source(self, name: str) -> str:
        mutant = self.mutants[name]
        if not mutant.source:
            raise SpecError(f"{self.grade_id}: mutant {name!r} is an edit not yet applied (build the Chapter)")
        return textwrap.dedent(mutant.source)

    def alternative_source(self, name: str) -> str:
        return textwrap.dedent(self.alternatives[name])


# --------------------------------------------------------------------------- judges

# What a boolean flag returned by a probe means when the submission's differs from the solution's, in
# words a learner can act on: one sentence, or a pair (said when the expected value is True, when False).
# Probes name their flags with these keys; a judge may add more (``allclose(messages=...)``).
FLAG_MESSAGES = {
    "raised": ("no ValueError was raised, but this input must raise one",
               "a ValueError was raised, but this input is valid"),
    "raised_value_error": ("no ValueError was raised, but this input must raise one",
                           "a ValueError was raised, but this input is valid"),
    "one_weight_per_example": "your function must return one weight per example (a tensor shaped like labels)",
    "non_negative": "some weights are negative",
    "priors_untouched": "your function modified class_priors in place",
    "padded_is_long": "padded must have dtype torch.long",
    "lengths_is_long": "lengths must have dtype torch.long",
    "labels_is_float32": "labels must have dtype torch.float32",
    "ids_untouched": "your function modified the input ids in place",
    "embedded_untouched": "your function modified its input embeddings in place",
    "input_untouched": "your function modified its input in place",
    "inputs_untouched": "your function modified its inputs in place",
    "state_unchanged": "the model's parameters or buffers changed (evaluation must leave them bit-identical)",
    "grads_untouched": "gradients were computed (run the forward pass under torch.no_grad())",
    "rng_unchanged": "the random-number generator advanced (dropout was on: call model.eval())",
    "training_after": "the model was not left in the train/eval mode it had before",
    "grad_enabled_in_forward": "autograd was recording during the forward pass (use torch.no_grad())",
}

# Keys judged after the returned value: gradients, flags about side effects, structure counters.
_AUX_WORDS = ("untouched", "unchanged", "calls", "traces", "training_after", "grad_enabled")


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _position(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(tuple(int(i) for i in index))


def _is_aux(key: str) -> bool:
    gradient = key == "grad" or key.startswith("grad_") and key != "grad_norm"
    return gradient or any(w in key for w in _AUX_WORDS)


def judging_order(keys) -> list[str]:
    """The returned value(s) first, in the probe's order; gradients and side-effect flags after."""
    keys = list(keys)
    return [k for k in keys if not _is_aux(k)] + [k for k in keys if _is_aux(k)]


def compare_arrays(key: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float,
                   message: str | tuple[str, str] | None = None) -> str | None:
    """None when ``got`` matches ``want`` within tolerance, else a reason in words, without the data.

    ``message`` replaces the reason for a boolean flag (``FLAG_MESSAGES`` gives the default)."""
    got = np.asarray(got)
    want = np.asarray(want)
    if want.dtype.kind in "US":
        if got.dtype.kind in "US" and np.array_equal(got, want):
            return None
        if isinstance(message, str):
            return message
        if got.dtype.kind in "US" and got.shape == want.shape and want.ndim > 0:
            bad = got != want
            first = _position(np.unravel_index(int(np.argmax(bad)), bad.shape))
            return f"{key}: {int(bad.sum())} of {bad.size} values differ (first at position {first})"
        if got.dtype.kind in "US" and want.ndim == 1 and got.ndim == 1:
            return f"{key} has {got.size} entries, expected {want.size}"
        return f"{key} has the wrong value"
    if want.dtype.kind == "b" and want.ndim == 0:
        if got.dtype.kind in "biuf" and got.size == 1 and bool(got.reshape(())) == bool(want):
            return None
        said = message or FLAG_MESSAGES.get(key) or f"{key} should be {bool(want)}"
        return said if isinstance(said, str) else said[0 if bool(want) else 1]
    if got.dtype.kind not in "biuf":
        return f"{key} is not numeric (got dtype {got.dtype})"
    if got.shape != want.shape:
        return f"{key} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if want.dtype.kind in "biu" and (got.dtype.kind in "biu" or rtol == atol == 0):
        bad = got.astype(np.float64) != want.astype(np.float64)
        if not bad.any():
            return None
        if isinstance(message, str):
            return message
        if want.ndim == 0:
            return f"{key} is {got.item()!r}, which is not the expected value"
        first = _position(np.unravel_index(int(np.argmax(bad)), bad.shape))
        return f"{key}: {int(bad.sum())} of {bad.size} values differ (first at position {first})"
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    if not np.array_equal(nan_g, nan_w):
        return f"{key} has NaN where a number is expected" if nan_g.any() else f"{key} should contain NaN"
    inf_g, inf_w = np.isinf(g), np.isinf(w)
    if not np.array_equal(inf_g & (g > 0), inf_w & (w > 0)) or not np.array_equal(inf_g & (g < 0), inf_w & (w < 0)):
        return f"{key} has infinities where finite values are expected" if (inf_g & ~inf_w).any() \
            else f"{key} should contain infinities"
    finite = ~(nan_w | inf_w)
    if not finite.any():
        return None
    err = np.abs(g[finite] - w[finite])
    tol = atol + rtol * np.abs(w[finite])
    bad = err > tol
    if not bad.any():
        return None
    if isinstance(message, str):
        return message
    if w.ndim == 0:
        return f"{key} differs from the expected value (abs error {_fmt(float(err.max()))})"
    first = _position(np.unravel_index(int(np.flatnonzero(finite)[np.argmax(bad)]), w.shape))
    return (f"{key}: {int(bad.sum())} of {int(finite.sum())} values differ from the expected ones "
            f"(first at position {first}, max abs error {_fmt(float(err.max()))})")


def allclose(rtol: float = 1e-5, atol: float = 1e-6, keys: tuple[str, ...] | None = None,
             tolerances: Mapping[str, tuple[float, float]] | None = None,
             messages: Mapping[str, str | tuple[str, str]] | None = None) -> Judge:
    """Judge: every output (or the listed keys, in that order) matches the reference within tolerance.

    Without ``keys`` the returned value is judged first, then gradients and side-effect flags
    (``judging_order``), so the first reason names what is wrong first. ``tolerances`` gives
    some keys their own ``(rtol, atol)``; ``messages`` gives a key its own reason in words."""
    tolerances = dict(tolerances or {})
    messages = dict(messages or {})

    def judge(got: Outputs, want: Outputs, params: dict) -> str | None:
        for key in keys or judging_order(want):
            if key not in got:
                return f"no value for '{key}'"
            r, a = tolerances.get(key, (rtol, atol))
            reason = compare_arrays(key, got[key], want[key], r, a, messages.get(key))
            if reason:
                return reason
        return None

    judge.__name__ = f"allclose(rtol={rtol}, atol={atol})"
    return judge


def ordered(*items) -> Judge:
    """Judge: keys in the given order (the returned value first, then auxiliary outputs), each with a
    label in words and its own tolerance. ``items`` are ``(key, label, rtol, atol)``; ``rtol=None``
    marks an integer output compared exactly ("N of M differ (first at position i)"), and
    ``atol="dtype"`` a string output naming a dtype."""

    def judge(got, want, params):
        for key, label, rtol, atol in items:
            if key not in got:
                return f"no value for {label}"
            g, w = np.asarray(got[key]), np.asarray(want[key])
            if atol == "dtype":
                if str(g) != str(w):
                    return f"{label} is {g} for a {params.get('dtype', str(w))} input; return the input's dtype ({w})"
                continue
            if rtol is None:
                if g.shape != w.shape:
                    return f"{label} has shape {tuple(g.shape)}, expected {tuple(w.shape)}"
                if g.dtype.kind not in "biu":
                    return f"{label} should hold integers (got dtype {g.dtype})"
                wrong = np.argwhere(g != w)
                if len(wrong):
                    return (f"{label}: {len(wrong)} of {w.size} entries differ "
                            f"(first at position {tuple(int(i) for i in wrong[0])})")
                continue
            reason = compare_arrays(label, g, w, rtol, atol)
            if reason:
                return reason
        return None

    judge.__name__ = "ordered(" + ", ".join(i[0] for i in items) + ")"
    return judge


def sequence_diff(got, want, what: str = "tokens", label: str = "", integers: bool = False) -> str | None:
    """None when two sequences (token ids, token strings) are equal, else "N of M <what> differ, first at
    position i" or the length mismatch, after ``label: `` when given. ``integers``: ``got`` must hold integers."""
    prefix = f"{label}: " if label else ""
    if integers:
        kind = np.asarray(got).dtype.kind
        if kind not in "biu":
            return f"{prefix}should be integer token ids (got dtype {np.asarray(got).dtype})"
        got, want = np.asarray(got).reshape(-1).tolist(), np.asarray(want).reshape(-1).tolist()
    got, want = list(got), list(want)
    n = max(len(got), len(want))
    first = next((i for i in range(n) if i >= len(got) or i >= len(want) or got[i] != want[i]), None)
    if first is None:
        return None
    if len(got) != len(want):
        return f"{prefix}you returned {len(got)} {what}, expected {len(want)}; the first difference is at position {first}"
    bad = sum(g != w for g, w in zip(got, want))
    return f"{prefix}{bad} of {len(want)} {what} differ, first at position {first}"


@dataclass(frozen=True)
class Chapter:
    """One chapter's spec: ``load_spec(name)`` returns the ``CHAPTER`` object of ``autograder/<name>.py``.

    ``rules`` and ``alternatives`` are keyed by grade_id and joined to the exercises; every mutant written as
    an edit is applied to its base here (the solution's definitions, read from the solution notebook), so a
    snippet that is not found exactly once fails when the spec is loaded."""
    name: str  # the folder under solutions/ and course/
    notebook: str  # the graded notebook's file name
    exercises: Sequence[Exercise]
    rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    alternatives: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    oracles: Mapping[str, Callable[[], dict]] = field(default_factory=dict)  # grade_id -> () -> {name: callable}

    def __post_init__(self):
        ids = [ex.grade_id for ex in self.exercises]
        if len(set(ids)) != len(ids):
            raise SpecError(f"{self.name}: duplicate grade ids")
        for table in (self.rules, self.alternatives, self.oracles):
            unknown = set(table) - set(ids)
            if unknown:
                raise SpecError(f"{self.name}: tables name unknown grade ids {sorted(unknown)}")
        exercises = []
        for ex in self.exercises:
            mutants = {}
            for name, mutant in ex.mutants.items():
                if mutant.edits:
                    base = textwrap.dedent(ex.base) if ex.base is not None else \
                        solution_source(self.name, self.notebook, ex.functions) if mutant.base is None else ""
                    mutant = mutant.applied_to(base, f"{ex.grade_id}: mutant {name!r}")
                mutants[name] = mutant
            exercises.append(replace(ex, mutants=mutants, rules=tuple(self.rules.get(ex.grade_id, ())),
                                     alternatives={**ex.alternatives, **self.alternatives.get(ex.grade_id, {})}))
        for ex in exercises:
            if ex.credit == "rules":
                ex.rule_points()  # refused here too when the chapter's table gives the exercise no rule
        object.__setattr__(self, "exercises", tuple(exercises))

    def exercise(self, grade_id: str) -> Exercise:
        return next(ex for ex in self.exercises if ex.grade_id == grade_id)


_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


@lru_cache(maxsize=None)
def _answer_definitions(chapter: str, notebook: str) -> dict[str, str]:
    """name -> source of every top-level def/class in the answer cells of the solution notebook
    (nbgrader's solution markers dropped; trusted side only: it reads ``solutions/``)."""
    path = solutions_dir() / chapter / notebook
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    found: dict[str, str] = {}
    for cell in cells:
        if cell.get("cell_type") != "code" or not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = [line for line in src.splitlines() if line.strip() not in _MARKERS]
        for node in ast.parse("\n".join(lines)).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                found[node.name] = "\n".join(lines[first - 1:node.end_lineno]) + "\n"
    return found


def solution_source(chapter: str, notebook: str, names: Sequence[str]) -> str:
    """The solution's own definitions of ``names``, in that order: the default base of a mutant."""
    defs = _answer_definitions(chapter, notebook)
    missing = [n for n in names if n not in defs]
    if missing:
        raise SpecError(f"{chapter}: no answer cell of {notebook} defines {', '.join(missing)}")
    return "\n\n".join(defs[n] for n in names)


def json_list(value, what: str, hint: str = "") -> tuple[list | None, str | None]:
    """A list a probe sent JSON-encoded in a 0-d string array: (data, None), or (None, a reason)."""
    try:
        data = json.loads(str(np.asarray(value).reshape(()).item()))
    except Exception:  # noqa: BLE001 - hostile data becomes one line
        return None, f"{what} could not be read back{hint}"
    if not isinstance(data, list):
        return None, f"{what} is not a list"
    return data, None


# ---- shared helpers for judges, oracles and cases

def first_difference(got: Sequence, want: Sequence) -> int | None:
    """The index of the first element (or character) at which two sequences differ, a missing one counting as
    different: the common length when one is a prefix of the other; None when they are equal."""
    n = max(len(got), len(want))
    return next((i for i in range(n) if i >= len(got) or i >= len(want) or got[i] != want[i]), None)


def text_diff(got: str, want: str, what: str) -> str | None:
    """None when two texts are equal, else "<what> at character j (N characters, expected M)", j being the first
    character that differs (``what`` names the text and says that it differs)."""
    j = first_difference(got, want)
    if j is None:
        return None
    return f"{what} at character {j} ({len(got)} characters, expected {len(want)})"


def json_lists(got: Outputs, want: Outputs, key: str, what: str, hint: str = "") -> tuple[list, list, str | None]:
    """The submission's and the reference's lists that a probe sent JSON-encoded under ``key`` (``json_list``):
    (mine, expected, None), or ([], [], a reason) when the submission's cannot be read back as a list."""
    mine, why = json_list(got[key], what, hint)
    if why:
        return [], [], why
    expected, _ = json_list(want[key], "expected")
    return mine, expected, None


def oracle_from_source(source: str, *names: str) -> Callable[[], dict]:
    """An oracle made of a trusted reference written as source text in the spec (the same text may serve as an
    alternative-correct fixture): ``() -> {name: what the text defines}``, the text run with ``torch`` bound, as a
    notebook cell would see it. Trusted side only."""

    def oracle() -> dict:
        import torch

        scope = {"torch": torch}
        exec(textwrap.dedent(source), scope)  # noqa: S102 - trusted reference source of a spec
        return {name: scope[name] for name in names}

    oracle.__name__ = f"oracle_from_source({', '.join(names)})"
    return oracle


def with_defaults(defaults: Mapping, *cases: Case) -> tuple[Case, ...]:
    """Cases that share most of their parameters: each case's own ``params`` laid over ``defaults`` (its name and
    edge kept), so that a case lists only what makes it the case it is."""
    return tuple(replace(case, params={**defaults, **case.params}) for case in cases)


def ranking(what: str, items: str, score: str, rtol: float = 1e-9, atol: float = 1e-12, tie: float = 1e-12,
            ids: str = "ids", scores: str = "scores") -> Judge:
    """Judge: ``ids`` ranked by descending score, equal scores (within ``tie``) by ascending id, each with its score
    in ``scores``; then any other output (side-effect flags) exactly. Two ids whose expected scores differ by
    rounding only may come in either order (a float sum in another order may swap them), so near-ties are judged
    on the scores, not on one summation order. ``what`` names the ranking in feedback ("the fused ranking (ids)"),
    ``items`` its entries ("documents") and ``score`` one score ("fused score")."""

    def judge(got, want, params):
        if ids not in got or scores not in got:
            return f"no value for '{ids}' or '{scores}'"
        g_ids, w_ids = list(got[ids]), list(want[ids])
        if len(g_ids) != len(w_ids):
            return f"{what} has {len(g_ids)} {items}, expected {len(w_ids)}"
        if len(got[scores]) != len(g_ids):
            return f"{ids} and {scores} must have the same length"
        expected = list(want[scores])
        if g_ids != w_ids:
            want_score = dict(zip(w_ids, want[scores]))
            if set(g_ids) != set(w_ids):
                return f"{what} holds different {items} than expected"
            for a, b in zip(g_ids, g_ids[1:]):
                sa, sb = want_score[a], want_score[b]
                if not (sa > sb + tie or (abs(sa - sb) <= tie and a < b)):
                    bad = sum(x != y for x, y in zip(g_ids, w_ids))
                    return (f"{what} is not in the expected order: {bad} of {len(w_ids)} positions differ "
                            f"(highest {score} first, equal scores by ascending id)")
            expected = [want_score[d] for d in g_ids]
        reason = compare_arrays(f"{score}s", np.asarray(got[scores], dtype=np.float64), np.asarray(expected), rtol, atol)
        for key in [k for k in want if k not in (ids, scores)]:
            if reason:
                break
            reason = f"no value for '{key}'" if key not in got else compare_arrays(key, got[key], want[key], 0, 0)
        return reason

    judge.__name__ = f"ranking({ids}, {scores})"
    return judge


def banned(*dotted: str) -> tuple[tuple[str, str, str], ...]:
    """``Exercise.bans`` for library calls named by their dotted path, each its own label:
    ``banned("torch.quantize_per_channel")`` is ``(("torch", "quantize_per_channel", "torch.quantize_per_channel"),)``."""
    bans = []
    for path in dotted:
        owner, dot, attribute = path.rpartition(".")
        if not dot or not owner or not attribute:
            raise SpecError(f"banned({path!r}): give the owner's dotted path and the attribute, e.g. 'torch.topk'")
        bans.append((owner, attribute, path))
    return tuple(bans)
