"""The spec vocabulary (``llmprep.grading.spec``): mutants written as edits fail loudly when their snippet is not
found exactly once, resolve against the solution's own definitions, and never reach a student's grading job.
Fast and static (no sandbox)."""
import json

import pytest

from llmprep.grading import engine
from llmprep.grading.engine import all_chapters, load_spec
from llmprep.grading.notebook import SUBMITTED, build_job
from llmprep.grading.spec import Case, Chapter, Exercise, Hint, Mutant, SpecError, mutate, solution_source, whole

BASE = "def f(x):\n    y = x + 1\n    return y * 2\n"


def _exercise(**mutants):
    return Exercise("t_test", ("f",), 1, (Case("c"),), probe=lambda ns, params: {}, judge=lambda g, w, p: None,
                    mutants=mutants, base=BASE)


def _chapter(**mutants):
    return Chapter("ch00_none", "none.ipynb", [_exercise(**mutants)])


def test_an_edit_replaces_its_snippet_in_the_base():
    ex = _chapter(plus_two=mutate("x + 1", "x + 2"), both=mutate({"x + 1": "x - 1", "* 2": "* 3"})).exercises[0]
    assert ex.mutant_source("plus_two") == BASE.replace("x + 1", "x + 2")
    assert ex.mutant_source("both") == "def f(x):\n    y = x - 1\n    return y * 3\n"


@pytest.mark.parametrize("edit, said", [
    (mutate("x + 3", "x"), "occurs 0 times in its base, not exactly once"),
    (mutate("y", "z"), "occurs 2 times in its base, not exactly once"),
    (mutate("x + 1", "x + 1"), "changes nothing"),
    (mutate("y", "z", count=3), "occurs 2 times in its base, not exactly 3 times"),
])
def test_an_edit_whose_snippet_is_not_found_exactly_once_fails_when_the_spec_is_built(edit, said):
    with pytest.raises(SpecError, match="t_test: mutant 'bad'") as info:
        _chapter(bad=edit)
    assert said in str(info.value)


def test_count_replaces_every_occurrence():
    ex = _chapter(m=mutate("y", "z", count=2)).exercises[0]
    assert ex.mutant_source("m") == BASE.replace("y", "z")


def test_whole_and_plain_sources_stay_possible_and_a_hint_is_optional():
    ex = _chapter(a=whole("def f(x):\n    return 0\n", hint=Hint(zh="常数", en="a constant")),
                  b="def f(x):\n    return 1\n").exercises[0]
    assert ex.mutant_source("a") == "def f(x):\n    return 0\n" and ex.mutants["a"].hint.en == "a constant"
    assert ex.mutant_source("b") == "def f(x):\n    return 1\n" and ex.mutants["b"].hint is None
    assert isinstance(ex.mutants["b"], Mutant)


def test_an_unapplied_edit_has_no_source():
    with pytest.raises(SpecError, match="not yet applied"):
        _exercise(m=mutate("x + 1", "x")).mutant_source("m")


def test_tables_naming_an_unknown_exercise_are_refused():
    with pytest.raises(SpecError, match="unknown grade ids"):
        Chapter("ch00_none", "none.ipynb", [_exercise()], rules={"nope_test": ()})


def test_the_default_base_is_the_solutions_own_definition():
    """ch12's block manager mutants edit the solution notebook's BlockManager, pulled by name."""
    spec = load_spec("ch12_inference")
    base = solution_source("ch12_inference", spec.notebook, ("BlockManager",))
    assert base.startswith("class BlockManager:") and "### BEGIN SOLUTION" not in base
    ex = spec.exercise("ch12_block_manager_test")
    early = ex.mutant_source("takes a new block one token early")
    assert early == base.replace("if n % self.block_size == 0:", "if (n + 1) % self.block_size == 0:")


@pytest.mark.parametrize("chapter", all_chapters())
def test_a_students_grading_job_holds_no_mutant_and_no_solution_code(root, chapter):
    """Mutant sources (and the solution code they are edited from) reach a sandbox only in the test suite's
    mutant runs: the job built for a submission (here the released notebook) has the submission's variant only."""
    spec = load_spec(chapter)
    nb = engine.read_notebook(root / "course" / chapter / spec.notebook)
    job = build_job(nb, list(spec.exercises))
    text = json.dumps(job)
    for ex, entry in zip(spec.exercises, job["exercises"]):
        assert entry["variants"] == [{"name": SUBMITTED, "patch": None}]
        for name in ex.mutants:
            assert ex.mutant_source(name) not in text, f"{ex.grade_id}: mutant {name!r} is in the job"
        if any(m.edits for m in ex.mutants.values()):
            assert solution_source(chapter, spec.notebook, ex.functions) not in text


# ---- shared helpers for judges, oracles and cases

def test_first_difference_counts_a_missing_element_as_different():
    from llmprep.grading.spec import first_difference

    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 5, 3], [1, 2, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2 and first_difference([1, 2, 3, 4], [1, 2, 3]) == 3
    assert first_difference("abc", "abd") == 2 and first_difference("", "") is None


def test_text_diff_names_the_first_character_and_both_lengths():
    from llmprep.grading.spec import text_diff

    assert text_diff("héllo", "héllo", "the text differs") is None
    assert text_diff("hello", "help", "slice 0 of 2: decoded text differs") == \
        "slice 0 of 2: decoded text differs at character 3 (5 characters, expected 4)"
    assert text_diff("ab", "abc", "x differs") == "x differs at character 2 (2 characters, expected 3)"


def test_json_lists_reads_both_lists_or_says_why_the_submissions_cannot_be_read():
    import numpy as np

    from llmprep.grading.spec import json_lists

    want = {"tokens": np.array(json.dumps(["a", "b"]))}
    mine = {"tokens": np.array(json.dumps(["a"]))}
    assert json_lists(mine, want, "tokens", "your tokens") == (["a"], ["a", "b"], None)
    assert json_lists({"tokens": np.array("{not json")}, want, "tokens", "your tokens", " (return a list)") == \
        ([], [], "your tokens could not be read back (return a list)")
    assert json_lists({"tokens": np.array(json.dumps({"a": 1}))}, want, "tokens", "your tokens")[2] == \
        "your tokens is not a list"


def test_oracle_from_source_runs_the_text_with_torch_bound_and_returns_the_names():
    from llmprep.grading.spec import oracle_from_source

    oracle = oracle_from_source("""
        def double(x):
            return torch.as_tensor(x) * 2

        class Unused:
            pass
    """, "double")
    found = oracle()
    assert list(found) == ["double"] and found["double"](3).item() == 6
    assert oracle()["double"] is not found["double"]  # built afresh on every call, like a notebook cell


def test_with_defaults_lays_each_cases_params_over_the_shared_ones():
    from llmprep.grading.spec import with_defaults

    shared = {"B": 2, "causal": True}
    cases = with_defaults(shared, Case("plain", {"seed": 0}), Case("no mask", {"seed": 1, "causal": False}, edge="e"))
    assert cases == (Case("plain", {"B": 2, "causal": True, "seed": 0}),
                     Case("no mask", {"B": 2, "causal": False, "seed": 1}, edge="e"))
    assert shared == {"B": 2, "causal": True}  # the shared dict is not modified


def test_ranking_accepts_ties_in_either_rounding_order_and_names_the_first_wrong_thing():
    import numpy as np

    from llmprep.grading.spec import ranking

    judge = ranking("the ranking (ids)", "documents", "fused score")
    want = {"ids": np.array([4, 2, 7]), "scores": np.array([0.5, 0.25, 0.25]), "inputs_untouched": np.array(True)}

    def got(ids, scores, untouched=True):
        return {"ids": np.array(ids), "scores": np.array(scores), "inputs_untouched": np.array(untouched)}

    assert judge(got([4, 2, 7], [0.5, 0.25, 0.25]), want, {}) is None
    # expected scores that tie up to rounding put 7 first; the stated order (ties by ascending id) passes too
    near = dict(want, ids=np.array([4, 7, 2]), scores=np.array([0.5, 0.25 + 1e-13, 0.25]))
    assert judge(got([4, 2, 7], [0.5, 0.25, 0.25 + 1e-13]), near, {}) is None
    assert "not in the expected order: 2 of 3 positions differ" in judge(got([4, 7, 2], [0.5, 0.25, 0.25]), want, {})
    assert judge(got([4, 2], [0.5, 0.25]), want, {}) == "the ranking (ids) has 2 documents, expected 3"
    assert "holds different documents" in judge(got([4, 2, 9], [0.5, 0.25, 0.25]), want, {})
    assert judge(got([4, 2, 7], [0.5, 0.25]), want, {}) == "ids and scores must have the same length"
    assert judge(got([4, 2, 7], [0.5, 0.3, 0.25]), want, {}).startswith("fused scores: 1 of 3 values differ")
    assert "modified its inputs in place" in judge(got([4, 2, 7], [0.5, 0.25, 0.25], False), want, {})
    assert judge({"ids": np.array([4])}, want, {}) == "no value for 'ids' or 'scores'"


def test_banned_spells_each_dotted_path_as_owner_attribute_and_label():
    from llmprep.grading.spec import banned

    assert banned("torch.quantize_per_channel", "jax.scipy.special.logsumexp") == (
        ("torch", "quantize_per_channel", "torch.quantize_per_channel"),
        ("jax.scipy.special", "logsumexp", "jax.scipy.special.logsumexp"))
    with pytest.raises(SpecError, match="give the owner's dotted path"):
        banned("topk")
