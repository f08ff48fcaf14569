"""The token-sequence judge in words (``spec.sequence_diff``, shared by ch10 and ch12; the rule table is checked
for every chapter by test_exercise_rules.py)."""
import numpy as np

from llmprep.grading.spec import sequence_diff


def test_token_judge_says_how_many_tokens_differ_and_where():
    assert sequence_diff(["a", "b", "c"], ["a", "x", "y"]) == "2 of 3 tokens differ, first at position 1"
    assert "you returned 2 tokens, expected 3" in sequence_diff(["a", "b"], ["a", "b", "c"])
    assert sequence_diff([1, 2], [1, 2]) is None


def test_token_ids_judge_names_its_label_and_wants_integers():
    said = sequence_diff(np.array([5, 6, 9]), np.array([5, 6, 7]), "tokens", "the emitted tokens", integers=True)
    assert said == "the emitted tokens: 1 of 3 tokens differ, first at position 2"
    assert "integer token ids" in sequence_diff(np.array([5.0]), np.array([5]), "tokens", "the tokens", integers=True)
