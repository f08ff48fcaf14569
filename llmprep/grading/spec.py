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
  stable formula, float32) that the judge must accept; the suite proves each earns full points.
"""
from __future__ import annotations

import inspect
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

    @property
    def probe_source(self) -> str:
        src = textwrap.dedent(inspect.getsource(self.probe))
        return src + f"\nPROBE = {self.probe.__name__}\n"

    def mutant_source(self, name: str) -> str:
        return textwrap.dedent(self.mutants[name])

    def alternative_source(self, name: str) -> str:
        return textwrap.dedent(self.alternatives[name])


# --------------------------------------------------------------------------- judges

def _fmt(x: float) -> str:
    return f"{x:.3g}"


def compare_arrays(key: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str | None:
    """None when ``got`` matches ``want`` within tolerance, else a reason without the data."""
    got = np.asarray(got)
    want = np.asarray(want)
    if want.dtype.kind in "US":
        return None if got.dtype.kind in "US" and np.array_equal(got, want) else f"{key} has the wrong value"
    if got.dtype.kind not in "biuf":
        return f"{key} is not numeric (got dtype {got.dtype})"
    if got.shape != want.shape:
        return f"{key} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if want.dtype.kind == "b":
        return None if np.array_equal(got.astype(bool), want) else f"{key} is wrong"
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
    if np.all(err <= tol):
        return None
    return f"{key} differs from the expected value (max abs error {_fmt(float(err.max()))})"


def allclose(rtol: float = 1e-5, atol: float = 1e-6, keys: tuple[str, ...] | None = None) -> Judge:
    """Judge: every output (or the listed keys) matches the reference within tolerance."""

    def judge(got: Outputs, want: Outputs, params: dict) -> str | None:
        for key in keys or sorted(want):
            if key not in got:
                return f"no value for '{key}'"
            reason = compare_arrays(key, got[key], want[key], rtol, atol)
            if reason:
                return reason
        return None

    judge.__name__ = f"allclose(rtol={rtol}, atol={atol})"
    return judge
