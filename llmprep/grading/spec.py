"""The vocabulary of a trusted exercise spec (one module per chapter in ``autograder/``).

A spec describes one graded cell of a notebook, keyed by the ``grade_id`` of its
nbgrader test cell:

* ``points`` — what the cell is worth (must equal the notebook's test-cell points);
* ``cases`` — seeded inputs as plain JSON data, each with a name that feedback may show;
* ``probe`` — a self-contained function ``probe(ns, params) -> dict`` whose *source* is
  shipped to the sandbox; it looks up the student's function in ``ns`` (the notebook's
  namespace), calls it on the case's inputs and returns plain data
  (numbers, arrays, tensors, bools, strings);
* ``judge`` — a trusted callable ``judge(got, want, params) -> None | str`` that compares
  the submission's outputs with the reference outputs (from the solution notebook) and
  returns ``None`` when they agree or a one-line reason when not;
* ``mutants`` — known-wrong versions of the function(s) (source text) that the judge
  must reject; the test suite proves every one of them loses the cell's points;
* ``bans`` — the library callables the exercise asks the student to write themselves, as
  ``(owner dotted path, attribute, label)``; installed as gates before the student's cells run
  (so a name bound at import time is caught too) and in force while this exercise is probed;
* ``alternatives`` — correct versions written in another style (loop vs vectorised, another
  stable formula, float32) that the judge must accept; the suite proves each earns full points;
* ``rules`` — the table of rules the instructions state: each rule quotes the instructions, names
  the case(s) that break when the rule is broken and the mutant(s) that break it, each mutant with
  the word its feedback must contain (tests/test_exercise_rules.py and tests/test_mutants.py read it).
"""
from __future__ import annotations

import inspect
import json
import textwrap
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

Outputs = Mapping[str, np.ndarray]
Judge = Callable[[Outputs, Outputs, dict], "str | None"]


@dataclass(frozen=True)
class Case:
    name: str  # shown in feedback; the params are not
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One rule the instructions state. ``quote`` is copied from the exercise's instructions (the test
    finds it there, whitespace and case aside); ``cases`` name the hidden cases that break when the rule
    is broken; ``mutants`` maps each mutant that breaks it to a word its feedback must contain."""
    quote: str
    cases: tuple[str, ...]
    mutants: Mapping[str, str]


@dataclass(frozen=True)
class Exercise:
    grade_id: str  # the nbgrader test cell's grade_id
    functions: tuple[str, ...]  # names the student defines, the probe looks up and mutants replace (tested)
    points: float
    cases: tuple[Case, ...]
    probe: Callable  # probe(ns, params) -> dict; must be self-contained (imports inside)
    judge: Judge
    mutants: Mapping[str, str] = field(default_factory=dict)  # name -> source redefining `functions`
    alternatives: Mapping[str, str] = field(default_factory=dict)  # name -> correct source in another style
    bans: tuple[tuple[str, str, str], ...] = ()  # (owner dotted path, attribute, label) the exercise must not call
    title: str = ""
    rules: tuple[Rule, ...] = ()  # which stated rule each case and mutant exercises

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
        return textwrap.dedent(self.mutants[name])

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


def tabled(exercises, rules: Mapping[str, tuple[Rule, ...]], alternatives: Mapping[str, Mapping[str, str]] = None):
    """The chapter's exercises with their rule table and alternative-correct fixtures attached
    (each spec keeps both tables at its end, keyed by grade_id)."""
    from dataclasses import replace

    alternatives = alternatives or {}
    return [replace(ex, rules=tuple(rules.get(ex.grade_id, ())),
                    alternatives={**ex.alternatives, **alternatives.get(ex.grade_id, {})}) for ex in exercises]


def json_list(value, what: str, hint: str = "") -> tuple[list | None, str | None]:
    """A list a probe sent JSON-encoded in a 0-d string array: (data, None), or (None, a reason)."""
    try:
        data = json.loads(str(np.asarray(value).reshape(()).item()))
    except Exception:  # noqa: BLE001 - hostile data becomes one line
        return None, f"{what} could not be read back{hint}"
    if not isinstance(data, list):
        return None, f"{what} is not a list"
    return data, None
