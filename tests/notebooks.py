"""Helpers the tests share for writing edited copies of a solution notebook."""
import nbformat

from llmprep.grading.engine import load_spec
from llmprep.grading.trusted import solutions_dir


def grade_cell(nb, grade_id):
    """The cell of ``nb`` with this nbgrader grade id."""
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def edited_solution(tmp_path, edit, name="submission.ipynb", chapter="ch01_training"):
    """The chapter's solution notebook after ``edit(nb)``, written to ``tmp_path/name``."""
    nb = nbformat.read(str(solutions_dir() / chapter / load_spec(chapter).notebook), as_version=4)
    edit(nb)
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path
