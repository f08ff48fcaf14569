"""Chapter 10's token judge in words (the rule table is checked for every chapter by test_exercise_rules.py)."""
from llmprep.grading.engine import load_spec

CHAPTER = "ch10_tokenization"


def test_token_judge_says_how_many_tokens_differ_and_where():
    spec = load_spec(CHAPTER)
    assert spec.sequence_diff(["a", "b", "c"], ["a", "x", "y"]) == "2 of 3 tokens differ, first at position 1"
    assert "you returned 2 tokens, expected 3" in spec.sequence_diff(["a", "b"], ["a", "b", "c"])
    assert spec.sequence_diff([1, 2], [1, 2]) is None
