"""Partial credit by rule (issue 36, item 4; ``Exercise(credit="rules")``): the points of ch01's gradient-accumulation
exercise are split over its five rules, 0.6 each. The outcomes here come from the exercise's own probe called in this
process on the solution, the stub, each mutant and the alternative (no sandbox: a few seconds), then judged by
``judge_exercise`` exactly as a graded submission is; tests/chapters/test_mutants.py runs the same variants through
the sandbox. Cheap and static: no sandbox marker."""
import math
import textwrap

import numpy as np
import pytest

from llmprep.grading.collect import SandboxRun
from llmprep.grading.engine import load_spec
from llmprep.grading.judge import judge_exercise
from llmprep.grading.protocol import SUBMITTED, output_prefix
from llmprep.grading.spec import Case, Chapter, Exercise, Rule, SpecError, allclose, solution_source

CHAPTER, GRADE_ID = "ch01_training", "ch01_accumulated_step_test"
STUB = "def accumulated_step(model, loss_fn, optimizer, micro_batches, max_norm=None):\n    raise NotImplementedError\n"


def _outcomes(ex, source):
    """Per case: ("ok", {key: array}) or ("error", message), the probe called here on ``source``."""
    import torch

    ns = {"torch": torch, "nn": torch.nn, "math": math, "np": np}
    exec(compile(textwrap.dedent(source), "<variant>", "exec"), ns)  # noqa: S102 - trusted spec and solution code
    out = []
    for case in ex.cases:
        try:
            got = ex.probe(ns, case.params)
            out.append(("ok", {k: np.asarray(v.detach() if hasattr(v, "detach") else v) for k, v in got.items()}))
        except Exception as exc:  # noqa: BLE001 - as the sandbox reports it
            out.append(("error", f"{type(exc).__name__}: {exc}"))
    return out


def _run(ex, variants: dict) -> SandboxRun:
    """A SandboxRun as stage 4 would validate it, holding ``{variant: outcomes}``."""
    run = SandboxRun(True)
    for variant, outcomes in variants.items():
        for ci, (status, value) in enumerate(outcomes):
            run.probes.append({"grade_id": ex.grade_id, "variant": variant, "case": ci, "status": status,
                               **({} if status == "ok" else {"message": value})})
            if status == "ok":
                run.arrays.update({output_prefix(ex.grade_id, variant, ci) + k: v for k, v in value.items()})
    return run


@pytest.fixture(scope="module")
def graded():
    """(the exercise, the reference run, a run of every variant): solution, stub, mutants, alternatives."""
    spec = load_spec(CHAPTER)
    ex = spec.exercise(GRADE_ID)
    solution = _outcomes(ex, solution_source(CHAPTER, spec.notebook, ex.functions))
    variants = {SUBMITTED: solution, "stub": _outcomes(ex, STUB)}
    variants.update({f"mutant:{m}": _outcomes(ex, ex.mutant_source(m)) for m in ex.mutants})
    variants.update({f"alt:{a}": _outcomes(ex, ex.alternative_source(a)) for a in ex.alternatives})
    return ex, _run(ex, {SUBMITTED: solution}), _run(ex, variants)


def _failed_cases(ex, run, ref, variant) -> set[str]:
    """The cases the judge rejects, found without the credit code."""
    from llmprep.grading.judge import case_outcomes

    got_all, want_all = case_outcomes(ex, run, ref, variant)
    return {case.name for case, (gs, g), (_ws, w) in zip(ex.cases, got_all, want_all)
            if gs != "ok" or ex.judge(g, w, case.params)}


def test_the_exercise_is_graded_by_rule_in_equal_shares_and_its_instructions_say_so(root):
    ex = load_spec(CHAPTER).exercise(GRADE_ID)
    assert ex.credit == "rules" and ex.rule_points() == (0.6,) * 5 and ex.points == 3
    text = (root / "course" / CHAPTER / load_spec(CHAPTER).notebook).read_text()
    assert "partial credit by rule" in text and "0.6 each" in text
    others = [e for e in load_spec(CHAPTER).exercises if e.grade_id != GRADE_ID]
    assert all(e.credit == "all" for e in others)


def test_solution_full_stub_zero_alternatives_full(graded):
    ex, ref, run = graded
    solution = judge_exercise(ex, run, ref)
    assert solution.points == 3.0 and solution.message.startswith("passed all")
    stub = judge_exercise(ex, run, ref, "stub")
    assert stub.points == 0.0 and "not implemented" in stub.message
    for alt in ex.alternatives:
        assert judge_exercise(ex, run, ref, f"alt:{alt}").points == 3.0, alt


def test_each_mutant_loses_its_rules_share_and_keeps_the_rules_it_does_not_break(graded):
    ex, ref, run = graded
    shares = ex.rule_points()
    for name in ex.mutants:
        verdict = judge_exercise(ex, run, ref, f"mutant:{name}")
        failed = _failed_cases(ex, run, ref, f"mutant:{name}")
        own = [i for i, rule in enumerate(ex.rules) if name in rule.mutants]
        assert own and verdict.points <= 3.0 - sum(shares[i] for i in own) + 1e-9, (name, verdict.points)
        kept = [i for i, rule in enumerate(ex.rules) if not failed & set(rule.cases)]
        assert math.isclose(verdict.points, sum(shares[i] for i in kept), abs_tol=1e-9), (name, verdict.message)
        assert [row["passed"] for row in verdict.rules] == [i in kept for i in range(len(ex.rules))]
        word = ex.mentions(name)
        assert word.lower() in verdict.message.lower(), verdict.message  # the failing case's reason is still there


@pytest.mark.parametrize("mutant, points, lost", [
    ("never clears old gradients", 2.4, [1]),  # only the stale-gradient case fails: rule 1's 0.6 lost
    ("clips every micro-batch", 1.8, [3, 5]),  # the clipping cases are rule 3's and rule 5's: 1.2 lost
    ("loss not divided by the number of micro-batches", 0.0, [1, 2, 3, 4, 5]),  # every named case fails
])
def test_the_arithmetic_on_three_mutants(graded, mutant, points, lost):
    ex, ref, run = graded
    verdict = judge_exercise(ex, run, ref, f"mutant:{mutant}")
    assert math.isclose(verdict.points, points, abs_tol=1e-9) and verdict.max_points == 3.0
    assert [row["rule"] for row in verdict.rules if not row["passed"]] == lost
    assert verdict.message.startswith(f"{points:g} of 3 points by rule ({5 - len(lost)} of 5 rules passed)")
    assert "failed (0 of 0.6 points)" in verdict.message
    assert verdict.message_zh.startswith(f"按规则计分：3 分中得 {points:g} 分") and "（英文原文）" not in verdict.message_zh


# --------------------------------------------------------------------------- a toy exercise: bans, unnamed cases, specs

def _probe(ns, params):
    return {"y": ns["f"](params["x"])}


def _toy(credit="rules", points=2, rules=None, cases=("a", "b", "c")):
    rules = rules if rules is not None else (Rule("rule A", ("a",), {}), Rule("rule B", ("b",), {}))
    ex = Exercise("toy_test", ("f",), points, tuple(Case(c, {"x": i}) for i, c in enumerate(cases)), probe=_probe,
                  judge=allclose(), credit=credit)
    return Chapter("ch00_none", "none.ipynb", [ex], rules={"toy_test": rules}).exercises[0]


def _judge(ex, outcomes):
    want = [("ok", {"y": np.asarray(float(i))}) for i in range(len(ex.cases))]
    return judge_exercise(ex, _run(ex, {SUBMITTED: outcomes}), _run(ex, {SUBMITTED: want}), fragments=[])


def test_a_failing_case_no_rule_names_costs_the_whole_exercise():
    ex = _toy()
    ok = [("ok", {"y": np.asarray(float(i))}) for i in range(3)]
    assert _judge(ex, ok[:2] + [("ok", {"y": np.asarray(9.0)})]).points == 0.0  # case c: no rule names it
    verdict = _judge(ex, ok[:2] + [("ok", {"y": np.asarray(9.0)})])
    assert verdict.message.startswith("0 points: case 'c' belongs to no rule")
    half = _judge(ex, [ok[0], ("ok", {"y": np.asarray(9.0)}), ok[2]])
    assert half.points == 1.0 and [r["passed"] for r in half.rules] == [True, False]


def test_a_banned_call_earns_zero_even_where_other_rules_pass():
    ex = _toy()
    ok = [("ok", {"y": np.asarray(float(i))}) for i in range(3)]
    banned = ("error", "RuntimeError: calls torch.optim.AdamW, which this exercise asks you to write yourself")
    verdict = _judge(ex, [ok[0], banned, ok[2]])
    assert verdict.points == 0.0 and verdict.message.startswith("0 points: a banned library call")
    assert "调用了被禁用的库函数" in verdict.message_zh


def test_per_rule_points_are_used_when_they_sum():
    ex = _toy(rules=(Rule("rule A", ("a",), {}, points=1.5), Rule("rule B", ("b",), {}, points=0.5)),
              cases=("a", "b"))
    ok = [("ok", {"y": np.asarray(0.0)}), ("ok", {"y": np.asarray(1.0)})]
    assert _judge(ex, [ok[0], ("ok", {"y": np.asarray(7.0)})]).points == 1.5
    assert _judge(ex, ok).points == 2.0


@pytest.mark.parametrize("rules, credit, said", [
    ((Rule("A", ("a",), {}, points=1.5), Rule("B", ("b",), {}, points=1.0)), "rules", "sum to 2.5, not the exercise's 2"),
    ((Rule("A", ("a",), {}, points=2.0), Rule("B", ("b",), {})), "rules", "give every rule a share"),
    ((), "rules", "credit='rules' but the exercise has no rules"),
    ((Rule("A", ("nope",), {}),), "rules", "rules name cases the exercise does not have"),
    ((Rule("A", ("a",), {}, points=2.0),), "all", "rules give points, but the exercise's credit is 'all'"),
    ((), "most", "credit='most'; choose one of all, rules"),
])
def test_a_spec_whose_shares_do_not_add_up_is_refused_at_load(rules, credit, said):
    with pytest.raises(SpecError, match="toy_test") as info:
        _toy(credit=credit, rules=rules)
    assert said in str(info.value)
