"""The rule table of every exercise (``Exercise.rules``) is complete and true to the instructions.

Fast and static (no sandbox): every rule quotes the exercise's own instructions, names at least one
hidden case and one mutant that exist, every mutant targets a stated rule and declares the word its
feedback must contain, and every exercise has an alternative-correct fixture. That the cases and
mutants really break (and the feedback really names the word) is proven in test_mutants.py."""
import re

import pytest

from llmprep.grading import engine
from llmprep.grading.engine import all_chapters, load_spec
from llmprep.grading.spec import Hint, compare_arrays, judging_order

CHAPTERS = all_chapters()


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def instructions(chapter: str) -> dict[str, str]:
    """grade_id of each test cell -> the markdown written since the previous test cell."""
    spec = load_spec(chapter)
    nb = engine.read_notebook(engine.solutions_dir() / chapter / spec.notebook)
    result, text = {}, []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown":
            text.append(cell.source)
        elif meta.get("grade") and not meta.get("solution"):
            result[meta["grade_id"]] = _norm("\n".join(text))
            text = []
    return result


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_stated_rule_has_a_case_and_a_mutant(chapter):
    spec = load_spec(chapter)
    told = instructions(chapter)
    for ex in spec.exercises:
        assert ex.rules, f"{ex.grade_id}: no rule table"
        cases = {c.name for c in ex.cases}
        for rule in ex.rules:
            assert _norm(rule.quote) in told[ex.grade_id], \
                f"{ex.grade_id}: rule not in the instructions: {rule.quote!r}"
            assert rule.cases, f"{ex.grade_id}: no case for {rule.quote!r}"
            assert rule.mutants, f"{ex.grade_id}: no mutant for {rule.quote!r}"
            for case in rule.cases:
                assert case in cases, f"{ex.grade_id}: rule {rule.quote!r} names unknown case {case!r}"
            for mutant, word in rule.mutants.items():
                assert mutant in ex.mutants, f"{ex.grade_id}: rule {rule.quote!r} names unknown mutant {mutant!r}"
                assert word and isinstance(word, str), f"{ex.grade_id}: {mutant!r} declares no word"


# Every chapter's cases are annotated with ``edge=`` (issue 29's boundary-value pass), new chapters from their first
# commit. A chapter listed here is skipped, not weakened; none is left.
NOT_YET_EDGE_ANNOTATED: set[str] = set()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_rule_names_an_edge_case(chapter):
    """Not only a typical case: every rule names at least one case that sits on the edge of a stated domain
    (``Case(..., edge=...)``: a shape, a magnitude, a character class, a tie, a promised error, ...)."""
    if chapter in NOT_YET_EDGE_ANNOTATED:
        pytest.skip(f"{chapter}: cases not annotated with edge= yet (issue 29, Part I)")
    for ex in load_spec(chapter).exercises:
        edges = {c.name: c.edge for c in ex.cases if c.edge}
        assert edges, f"{ex.grade_id}: no case names the edge it sits on"
        for rule in ex.rules:
            assert set(rule.cases) & set(edges), \
                f"{ex.grade_id}: rule {rule.quote!r} names no edge case (only {list(rule.cases)})"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_mutant_targets_a_stated_rule(chapter):
    for ex in load_spec(chapter).exercises:
        for mutant in ex.mutants:
            assert ex.mentions(mutant), f"{ex.grade_id}: mutant {mutant!r} is in no rule of the table"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exercise_has_an_alternative_correct_fixture(chapter):
    for ex in load_spec(chapter).exercises:
        assert ex.alternatives, f"{ex.grade_id}: no alternative-correct solution"


# --------------------------------------------------------------------------- the level-2 hints (issue 35)

# Chapters whose mutants do not all carry a ``Hint`` yet (written Part II first); the check is skipped, not weakened,
# and a chapter listed here whose hints are complete fails, so the list only shrinks.
HINTS_NOT_YET_WRITTEN: set[str] = set()
_CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_mutant_has_a_bilingual_hint(chapter):
    """Level 2 of the hint ladder: every known-wrong variant names its misconception in 中文 and English, in
    its own words (no two mutants of an exercise share a hint), short, and never quotes the solution's code."""
    spec = load_spec(chapter)
    hints = {(ex.grade_id, name): m.hint for ex in spec.exercises for name, m in ex.mutants.items()}
    if chapter in HINTS_NOT_YET_WRITTEN:
        assert not all(hints.values()), f"{chapter}: every mutant has a hint; take it off HINTS_NOT_YET_WRITTEN"
        pytest.skip(f"{chapter}: hints not written yet (issue 35)")
    for ex in spec.exercises:
        seen = set()
        for name, m in ex.mutants.items():
            where = f"{ex.grade_id}: {name!r}"
            assert isinstance(m.hint, Hint), f"{where}: no Hint"
            zh, en = m.hint.zh, m.hint.en
            assert _CJK.search(zh), f"{where}: the zh hint has no Chinese: {zh!r}"
            assert en.isascii() and not _CJK.search(en), f"{where}: the en hint is not plain English: {en!r}"
            assert len(re.findall(r"[A-Za-z]+", en)) >= 5 and en.endswith("."), f"{where}: the en hint is no sentence"
            assert 0 < len(zh) <= 200 and 0 < len(en) <= 200, f"{where}: a hint is empty or over 200 characters"
            assert (zh, en) not in seen and zh != en, f"{where}: the hint is not its own"
            seen.add((zh, en))
            for old, _new in m.edits:  # the code a mutant replaces is (part of) the solution: never in a hint
                snippet = " ".join(old.split())
                if len(snippet) >= 20:  # a statement, not a name such as model.eval()
                    assert snippet not in zh and snippet not in en, f"{where}: the hint quotes the solution"


# --------------------------------------------------------------------------- the judge's words

def test_value_is_judged_before_gradients_and_flags():
    assert judging_order(["grad_A", "input_untouched", "out", "loss"]) == ["out", "loss", "grad_A", "input_untouched"]


def test_integer_outputs_report_how_many_differ_and_where():
    import numpy as np

    msg = compare_arrays("tokens", np.array([1, 2, 9, 4, 7]), np.array([1, 2, 3, 4, 5]), 0, 0)
    assert msg == "tokens: 2 of 5 values differ (first at position 2)"


def test_flags_are_explained_in_words():
    import numpy as np

    msg = compare_arrays("input_untouched", np.array(False), np.array(True), 0, 0)
    assert msg == "your function modified its input in place"


def test_float_reason_counts_the_wrong_positions():
    import numpy as np

    msg = compare_arrays("out", np.array([1.0, 2.0, 3.5]), np.array([1.0, 2.0, 3.0]), 1e-5, 1e-6)
    assert msg.startswith("out: 1 of 3 values differ from the expected ones (first at position 2")
