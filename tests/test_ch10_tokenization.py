"""Chapter 10's rule table: every rule its instructions state is exercised by a named hidden case and
broken by a named mutant, and every mutant targets a stated rule (issue 14, rules 1 and 5)."""
from llmprep.grading.engine import load_spec

CHAPTER = "ch10_tokenization"


def test_every_rule_has_a_case_and_a_mutant():
    spec = load_spec(CHAPTER)
    by_id = {ex.grade_id: ex for ex in spec.EXERCISES}
    assert set(spec.RULES) == set(by_id)
    for grade_id, rules in spec.RULES.items():
        ex = by_id[grade_id]
        cases, mutants = {c.name for c in ex.cases}, set(ex.mutants)
        targeted = set()
        for rule, (rule_cases, rule_mutants) in rules.items():
            assert rule_cases and rule_mutants, f"{grade_id}: rule '{rule}' needs a case and a mutant"
            assert set(rule_cases) <= cases, f"{grade_id}: rule '{rule}' names unknown cases"
            assert set(rule_mutants) <= mutants, f"{grade_id}: rule '{rule}' names unknown mutants"
            targeted |= set(rule_mutants)
        assert targeted == mutants, f"{grade_id}: mutants targeting no stated rule: {mutants - targeted}"
        assert ex.alternatives, f"{grade_id}: no alternative-correct fixture"


def test_every_exercise_has_an_oracle():
    spec = load_spec(CHAPTER)
    assert set(spec.ORACLES) == {ex.grade_id for ex in spec.EXERCISES}


def test_token_judge_says_how_many_tokens_differ_and_where():
    spec = load_spec(CHAPTER)
    assert spec.sequence_diff(["a", "b", "c"], ["a", "x", "y"]) == "2 of 3 tokens differ, first at position 1"
    assert "you returned 2 tokens, expected 3" in spec.sequence_diff(["a", "b"], ["a", "b", "c"])
    assert spec.sequence_diff([1, 2], [1, 2]) is None
