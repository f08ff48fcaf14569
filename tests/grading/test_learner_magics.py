"""Issue 27 item 5: a notebook saved with the course's own magics (``%llmprep_check`` from README step 3,
``%llmprep_progress``) or other learner-side magics grades exactly as one without them."""
import nbformat

from llmprep.grading import engine
from tests.notebooks import edited_solution, grade_cell
import pytest

pytestmark = pytest.mark.sandbox

CH = "ch15_agents"  # the magics are the point, not the chapter: ch15 grades in 0.3 s of CPU (ch01: 3 s)

MAGIC_CELLS = [
    "%llmprep_check",
    "%load_ext llmprep.jupyter\n%llmprep_check work/ch15_agents/ch15_exercises.ipynb",
    "%llmprep_progress",
    "%matplotlib inline\n%config InlineBackend.figure_format = 'retina'",
    "%time _ = 1 + 1",
    "%%time\n_ = 2 + 2",
]


def test_saved_learner_magics_do_not_cost_points_or_pollute_notes(tmp_path):
    def edit(nb):
        at = nb.cells.index(grade_cell(nb, "ch15_setup")) + 1
        for source in reversed(MAGIC_CELLS):  # right after the set-up, before every answer
            nb.cells.insert(at, nbformat.v4.new_code_cell(source))
        nb.cells.append(nbformat.v4.new_code_cell("%llmprep_check"))

    result = engine.check_notebook(edited_solution(tmp_path, edit, chapter=CH))
    assert result.score == result.max_score, [(c.grade_id, c.message) for c in result.cells]
    assert not [n for n in result.notes if "magic" in n.lower() or "UsageError" in n], result.notes


def test_the_sandbox_shell_treats_learner_magics_as_no_ops():
    from llmprep.grading.sandbox import make_shell

    shell = make_shell()
    for source in MAGIC_CELLS:
        outcome = shell.run_cell(source, store_history=False, silent=True)
        assert outcome.success, f"{source!r}: {outcome.error_before_exec or outcome.error_in_exec}"
    # the real extension was never loaded in its place: %llmprep_check would grade the notebook from inside its grading
    assert shell.find_line_magic("llmprep_check").__module__ == "llmprep.grading.sandbox"
