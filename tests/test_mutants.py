"""Every mutant of every exercise loses its points with feedback that names what it broke, and
every alternative-correct fixture earns full points: one sandbox run per chapter serves them all.
(A file of its own, so that `pytest -n 2 --dist loadfile` spreads the heaviest tests over both workers.)"""
import pytest

from llmprep.grading import engine
from llmprep.grading.engine import all_chapters, load_spec

CHAPTERS = all_chapters()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_mutant_loses_points(chapter):
    verdicts = engine.check_mutants(chapter)
    spec = load_spec(chapter)
    for _grade_id, verdict in verdicts[engine.SUBMITTED].items():
        assert verdict.points == verdict.max_points, verdict
    for ex in spec.EXERCISES:
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
