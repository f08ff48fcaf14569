"""`llmprep check` on a notebook that has nothing to grade says so and points at the right notebook.

A learner who runs `llmprep check` on a chapter's reference notebook used to be asked whether the test cells had
been deleted. The reference notebook never had any: the message says that it has no graded exercises and names the
chapter's exercises notebook. Static and fast: nothing reaches the sandbox (match_chapter refuses first)."""
import nbformat
import pytest

from llmprep import cli
from llmprep.grading.engine import GradingError, all_chapters, load_spec, match_chapter

CHAPTERS = all_chapters()


def _check(argv, capsys):
    got = cli.main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert got == 2 and out == "", (got, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_reference_notebook_names_the_exercises_notebook(chapter, root, capsys):
    reference = sorted((root / "course" / chapter).glob("*_reference.ipynb"))
    assert len(reference) == 1, reference
    line = _check(["check", str(reference[0])], capsys)
    exercises = load_spec(chapter).notebook
    assert f"{reference[0].name} has no graded exercises" in line
    assert "reference notebook" in line and exercises in line and chapter in line
    assert "were the test cells deleted" not in line


def test_exercises_notebook_still_matches_its_chapter(root):
    chapter = CHAPTERS[0]
    nb = nbformat.read(str(root / "course" / chapter / load_spec(chapter).notebook), as_version=4)
    assert match_chapter(nb, load_spec(chapter).notebook) == chapter


def test_exercises_notebook_without_its_metadata_is_told_to_start_again(root, tmp_path, capsys):
    """The exercises notebook's cells pasted into a fresh notebook: its name is right but nothing is graded."""
    chapter = CHAPTERS[0]
    name = load_spec(chapter).notebook
    nb = nbformat.read(str(root / "course" / chapter / name), as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nbformat.write(nb, str(tmp_path / name))
    line = _check(["check", str(tmp_path / name)], capsys)
    assert "lost its graded cells" in line and f"llmprep start {chapter}" in line


def test_test_cells_with_unknown_ids_keep_the_old_question(tmp_path):
    """A notebook with nbgrader cells that match no exercise: the ids were changed (the old message stays)."""
    cell = nbformat.v4.new_code_cell("assert True")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "renamed_test", "points": 1,
                                 "locked": True, "schema_version": 3, "task": False}
    with pytest.raises(GradingError, match="were the test cells deleted or their ids changed"):
        match_chapter(nbformat.v4.new_notebook(cells=[cell]), "ch01_exercises.ipynb")


def test_a_notebook_from_elsewhere_is_told_where_the_exercises_are(tmp_path, capsys):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), str(tmp_path / "mine.ipynb"))
    line = _check(["check", str(tmp_path / "mine.ipynb")], capsys)
    assert "no graded cells at all" in line and "chNN_exercises.ipynb" in line
