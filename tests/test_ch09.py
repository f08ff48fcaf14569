"""Chapter 9's rule table: every rule the exercise instructions state names hidden cases that exercise it
and mutants that break it, and every mutant of the spec targets at least one listed rule."""
from llmprep.grading.engine import load_spec


def test_every_rule_has_a_case_and_a_mutant_and_every_mutant_a_rule():
    spec = load_spec("ch09_transformer")
    for ex in spec.EXERCISES:
        rules = spec.RULES[ex.grade_id]
        cases = {c.name for c in ex.cases}
        assert rules, ex.grade_id
        targeted = set()
        for rule, rule_cases, rule_mutants in rules:
            assert rule_cases and set(rule_cases) <= cases, (ex.grade_id, rule, set(rule_cases) - cases)
            assert rule_mutants and set(rule_mutants) <= set(ex.mutants), (ex.grade_id, rule)
            targeted |= set(rule_mutants)
        assert targeted == set(ex.mutants), (ex.grade_id, set(ex.mutants) - targeted)
        assert ex.alternatives, ex.grade_id
    assert set(spec.RULES) == {ex.grade_id for ex in spec.EXERCISES} == set(spec.ORACLES)
