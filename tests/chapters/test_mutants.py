"""Every mutant of every exercise loses its points with feedback that names what it broke, every
alternative-correct fixture earns full points, and the cases are deterministic (the fresh run's outputs
of the solution equal the reference run's, bit for bit): one sandbox run per chapter serves them all.
(A file of its own, so that `pytest -n 2 --dist loadfile` spreads the heaviest tests over both workers.)"""
import numpy as np
import pytest

from llmprep.grading import engine
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
    for _grade_id, verdict in verdicts[engine.SUBMITTED].items():
        assert verdict.points == verdict.max_points, verdict
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
