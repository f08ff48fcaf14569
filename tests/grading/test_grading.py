"""The trusted grading engine, chapter by chapter: the released stub earns zero without crashing (the
solution's full points: tests/chapters/test_mutants.py), every mutant loses its cell's points, the cases are
deterministic, and the solution agrees with the library implementation each exercise imitates."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmprep.grading import engine
from llmprep.grading.engine import Limits, all_chapters, load_spec
from llmprep.grading.trusted import solutions_dir
from notebooks import grade_cell, edited_solution

CHAPTERS = all_chapters()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_spec_matches_the_notebook(solution_nb, chapter):
    spec = load_spec(chapter)
    cells = engine.test_cells(solution_nb(chapter))
    assert set(cells) == {ex.grade_id for ex in spec.exercises}
    for ex in spec.exercises:
        assert cells[ex.grade_id]["points"] == ex.points, ex.grade_id
        assert len(ex.cases) >= 3 and len(ex.mutants) >= 2, ex.grade_id
        assert len({c.name for c in ex.cases}) == len(ex.cases)
    assert len(spec.exercises) >= 5


def _defines(source, name):
    return re.search(rf"^(def|class) {name}\b|^{name}\s*=", source, re.M) is not None


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_spec_functions_are_what_notebook_probe_and_mutants_name(solution_nb, chapter):
    """``Exercise.functions`` is checked, not decorative: the solution defines each name, the probe
    looks each one up in the namespace, and every mutant redefines at least one of them."""
    spec = load_spec(chapter)
    nb = solution_nb(chapter)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for ex in spec.exercises:
        assert ex.functions, ex.grade_id
        for name in ex.functions:
            assert _defines(source, name), f"{ex.grade_id}: the notebook never defines {name}"
            assert f'"{name}"' in ex.probe_source, f"{ex.grade_id}: the probe never looks up {name}"
        for mutant in ex.mutants:
            assert any(_defines(ex.mutant_source(mutant), n) for n in ex.functions), f"{ex.grade_id}: {mutant}"


# The solution earns full points: tests/chapters/test_mutants.py proves it per chapter from its fresh sandbox run
# (the solution's own probes judged against the reference, bit-identical outputs, no cell raising), the run that
# also serves every mutant; grading the solution notebook once more here ran the same job a third time (the
# reference is the second). The whole path (check_notebook: six stages, score, notes) on a full-marks notebook
# is proven by the tests below (on ch15) and by test_bans.py (every exercise without a ban keeps its points).


@pytest.mark.sandbox
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_released_stub_earns_zero_with_reasons(reference, released_path, chapter):
    reference(chapter)
    result = engine.check_notebook(released_path(chapter))
    assert result.max_score > 0 and result.score == 0
    for cell in result.cells:
        assert cell.points == 0 and "not implemented" in cell.message, cell


@pytest.mark.sandbox
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_agrees_with_the_library_oracles(reference, chapter):
    """The reference outputs equal what the library implementation gives on every case."""
    spec = load_spec(chapter)
    ref = reference(chapter)
    oracles = spec.oracles
    assert oracles, "every chapter compares with library implementations"
    for ex in spec.exercises:
        if ex.grade_id not in oracles:
            continue
        for ci, case in enumerate(ex.cases):
            ns = oracles[ex.grade_id]()
            got = {k: engine_array(v) for k, v in ex.probe(ns, json.loads(json.dumps(case.params))).items()}
            status, want = engine.outputs_of(ref, ex.grade_id, engine.SUBMITTED, len(ex.cases))[ci]
            assert status == "ok"
            assert ex.judge(got, want, case.params) is None, f"{ex.grade_id} / {case.name}"


def engine_array(value):
    from llmprep.grading.sandbox import _to_array

    return _to_array(value)


# --------------------------------------------------------------------------- malformed submissions

# The engine's own behaviour on malformed and failing submissions, on ch15: its answers are pure Python (0.3 CPU-s a
# sandboxed notebook, ch01 about 3); torch inside the sandbox is covered by test_sandbox.py and test_bans.py (ch01).
CH = "ch15_agents"


@pytest.fixture
def ch15_reference(reference):
    return reference(CH)


def _edited(tmp_path, edit, **kwargs):
    return edited_solution(tmp_path, edit, chapter=CH, **kwargs)


def test_invalid_json_gets_a_reason_not_a_traceback(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ this is not json")
    result = engine.check_notebook(bad)
    assert result.score == 0 and result.cells == []
    assert "not a readable notebook" in result.notes[0]


def test_empty_file(tmp_path):
    bad = tmp_path / "empty.ipynb"
    bad.write_text("")
    assert "not a readable notebook" in engine.check_notebook(bad).notes[0]


@pytest.mark.sandbox
def test_one_broken_cell_does_not_cost_the_others(ch15_reference, tmp_path):
    def edit(nb):
        grade_cell(nb, "ch15_loop").source = "def run_agent(:\n    pass"

    result = engine.check_notebook(_edited(tmp_path, edit))
    by_id = {c.grade_id: c for c in result.cells}
    assert by_id["ch15_loop_test"].points == 0
    assert result.score == result.max_score - by_id["ch15_loop_test"].max_points
    assert any("SyntaxError" in n for n in result.notes)


@pytest.mark.sandbox
def test_renamed_notebook_is_matched_by_grade_ids(ch15_reference, tmp_path):
    renamed = _edited(tmp_path, lambda nb: None, name="my homework (final) v2.ipynb")
    result = engine.check_notebook(renamed)
    assert result.chapter == CH and result.score == result.max_score


@pytest.mark.sandbox
def test_deleted_test_cell_costs_only_that_cell(ch15_reference, tmp_path):
    def edit(nb):
        nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "ch15_parse_test"]

    result = engine.check_notebook(_edited(tmp_path, edit))
    by_id = {c.grade_id: c for c in result.cells}
    assert by_id["ch15_parse_test"].points == 0 and "missing" in by_id["ch15_parse_test"].message
    assert result.score == result.max_score - 3


@pytest.mark.sandbox
def test_visible_asserts_do_not_decide_the_grade(ch15_reference, tmp_path):
    """A submission that edits the visible test cells to pass (or deletes their asserts) gains nothing."""
    def edit(nb):
        for c in nb.cells:
            meta = c.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                c.source = "pass"
            if meta.get("solution"):
                c.source = c.source.replace("### BEGIN SOLUTION", "raise NotImplementedError()\n### BEGIN SOLUTION", 1)

    result = engine.check_notebook(_edited(tmp_path, edit))
    assert result.score == 0


@pytest.mark.sandbox
def test_patched_testing_functions_cannot_change_the_verdict(ch15_reference, tmp_path):
    """Monkeypatching numpy/math comparison functions in the sandbox changes nothing: judging is elsewhere."""
    def edit(nb):
        cell = grade_cell(nb, "ch15_reliability")
        cell.source = ("import math, numpy\nnumpy.allclose = lambda *a, **k: True\n"
                       "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                       "math.isclose = lambda *a, **k: True\n"
                       "def reliability(outcomes, k):\n    return {'pass_at_k': 0.0, 'pass_hat_k': 0.0}\n")

    result = engine.check_notebook(_edited(tmp_path, edit))
    by_id = {c.grade_id: c for c in result.cells}
    assert by_id["ch15_reliability_test"].points == 0


@pytest.mark.sandbox
def test_exit_in_a_cell_is_reported_and_later_cells_still_graded(ch15_reference, tmp_path):
    def edit(nb):
        setup = grade_cell(nb, "ch15_setup")
        setup.source += "\nimport sys\nsys.exit(0)\n"

    result = engine.check_notebook(_edited(tmp_path, edit))
    assert result.score == result.max_score


@pytest.mark.sandbox
def test_process_exit_after_correct_answers_grades_what_finished(ch15_reference, tmp_path):
    def edit(nb):
        grade_cell(nb, "ch15_template").source += "\nimport os\nos._exit(7)\n"

    result = engine.check_notebook(_edited(tmp_path, edit))
    by_id = {c.grade_id: c for c in result.cells}
    # the run is repeated without the fatal cell: only that cell's exercise is lost
    for gid, verdict in by_id.items():
        lost = gid == "ch15_template_test"
        assert verdict.points == (0 if lost else verdict.max_points), verdict
    assert any("exit code 7" in n and "that cell was skipped" in n for n in result.notes), result.notes


@pytest.mark.sandbox
def test_a_function_that_kills_the_process_costs_only_its_exercise(ch15_reference, tmp_path):
    def edit(nb):
        grade_cell(nb, "ch15_loop").source = (
            "import os\ndef run_agent(*args, **kwargs):\n    os._exit(3)\n")

    result = engine.check_notebook(_edited(tmp_path, edit))
    by_id = {c.grade_id: c for c in result.cells}
    assert by_id["ch15_loop_test"].points == 0 and "ended the notebook process" in by_id["ch15_loop_test"].message
    assert result.score == result.max_score - 3


@pytest.mark.sandbox
def test_infinite_loop_hits_the_cell_time_limit(ch15_reference, tmp_path):
    def edit(nb):
        grade_cell(nb, "ch15_parse").source += "\nwhile True:\n    pass\n"

    result = engine.check_notebook(_edited(tmp_path, edit), Limits(cell_timeout=3, wall=120))
    assert any("did not finish within 3 s" in n for n in result.notes), result.notes
    by_id = {c.grade_id: c for c in result.cells}
    # the function was defined before the loop started, so it is still graded
    assert by_id["ch15_parse_test"].points == by_id["ch15_parse_test"].max_points


@pytest.mark.sandbox
def test_feedback_never_shows_hidden_case_data(ch15_reference, tmp_path):
    def edit(nb):
        grade_cell(nb, "ch15_parse").source = (
            "def parse_tool_calls(text, tools):\n"
            "    raise ValueError(f'{text!r} {tools!r}')\n")

    result = engine.check_notebook(_edited(tmp_path, edit))
    text = json.dumps(result.to_json())
    spec = load_spec(CH)
    public = (Path(solutions_dir()).parent / "course" / CH / spec.notebook).read_text()
    hidden = {run for case in spec.exercise("ch15_parse_test").cases  # plain words survive repr() and JSON escaping
              for run in re.split(r"[^A-Za-z0-9 ]", case.params["text"]) if len(run.strip()) >= 12 and run not in public}
    assert hidden and not [h for h in hidden if h in text], [h for h in hidden if h in text]
    assert len(text) < 20_000
    for ex in spec.exercises:
        assert ex.probe.__name__ not in text


@pytest.mark.sandbox
def test_cli_check_json(reference, released_path):
    reference(CH)
    proc = subprocess.run([sys.executable, "-m", "llmprep", "check", str(released_path(CH)), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["score"] == 0 and out["max_score"] == sum(ex.points for ex in load_spec(CH).exercises)
    assert {"grade_id", "points", "max_points", "message"} <= set(out["cells"][0])
