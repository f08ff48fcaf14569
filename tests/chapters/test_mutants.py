"""The solution earns full points with no cell raising, every mutant of every exercise loses its points with
feedback that names what it broke, every alternative-correct fixture earns full points, every rule has a mutant
that loses on one of the rule's edge cases, and the cases are deterministic (the fresh run's outputs of the
solution equal the reference run's, bit for bit): one sandbox run per chapter serves them all.
(A file of its own, so that `pytest -n 2 --dist loadfile` spreads the heaviest tests over both workers.)"""
import numpy as np
import pytest

from llmprep.grading import engine
from llmprep.grading.collect import outputs_of
from llmprep.grading.engine import all_chapters, load_spec

CHAPTERS = all_chapters()


@pytest.mark.sandbox
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_mutant_loses_points(reference, chapter):
    reference(chapter)  # computed once per session (and cached on disk), not beside the other worker
    ref, run = engine.mutant_run(chapter)
    verdicts = engine.judge_variants(chapter, ref, run)
    spec = load_spec(chapter)
    _same_outputs_as_the_reference(ref, run)
    for _grade_id, verdict in verdicts[engine.SUBMITTED].items():  # the solution earns full points
        assert verdict.points == verdict.max_points, verdict
    raised = [c for c in ref.cells + run.cells if c.get("status") == "error"]
    assert not raised, f"cells of the solution raised: {raised}"
    misses = []
    for ex in spec.exercises:
        for mutant in ex.mutants:
            verdict = verdicts[f"mutant:{mutant}"][ex.grade_id]
            assert verdict.points < verdict.max_points, f"{ex.grade_id}: mutant '{mutant}' survived"
            word = ex.mentions(mutant)
            assert word and word.lower() in verdict.message.lower(), (
                f"{ex.grade_id}: the feedback on mutant '{mutant}' does not name {word!r}: {verdict.message}")
        for alt in ex.alternatives:
            verdict = verdicts[f"alt:{alt}"][ex.grade_id]
            assert verdict.points == verdict.max_points, \
                f"{ex.grade_id}: correct alternative '{alt}' rejected: {verdict}"
        misses.extend(_rules_not_broken_on_their_edge(ex, ref, run))
    assert not misses, misses


def _failed_cases(ex, ref, run, variant) -> set[str]:
    """The names of the cases on which ``variant`` loses (an error, or the judge's reason)."""
    want = outputs_of(ref, ex.grade_id, engine.SUBMITTED, len(ex.cases))
    got = outputs_of(run, ex.grade_id, variant, len(ex.cases))
    failed = set()
    for case, (g_status, g), (_, w) in zip(ex.cases, got, want):
        if g_status != "ok" or ex.judge(g, w, case.params):
            failed.add(case.name)
    return failed


def _rules_not_broken_on_their_edge(ex, ref, run) -> list[str]:
    """Issue 29: a rule's edge case is not decoration: at least one of the rule's mutants loses on one of the edge
    cases the rule names (so a wrong answer that breaks the rule exactly there is caught there). Returns the misses."""
    edges = {c.name for c in ex.cases if c.edge}
    misses = []
    for rule in ex.rules:
        named = set(rule.cases) & edges
        if not any(_failed_cases(ex, ref, run, f"mutant:{m}") & named for m in rule.mutants):
            misses.append(f"{ex.grade_id}: no mutant of rule {rule.quote!r} loses on its edge cases {sorted(named)}")
    return misses


def _same_outputs_as_the_reference(ref, run):
    """The cases are deterministic: the solution's outputs in this fresh run equal the (cached or fresh)
    reference run's, bit for bit."""
    assert ref.ok and run.ok
    submitted = f"|{engine.SUBMITTED}|"
    want = {k for k in ref.arrays if submitted in k}
    got = {k for k in run.arrays if submitted in k}
    assert want and want == got
    for key in want:
        np.testing.assert_array_equal(ref.arrays[key], run.arrays[key], err_msg=key)
