"""Release: course/ is generated from solutions/, in sync, without outputs, solutions or spec code."""
import json

import pytest

from llmprep.course import chapters, release_diff
from llmprep.grading.engine import all_chapters, load_spec


def _notebooks(root, top):
    return sorted(p for p in (root / top).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.slow
def test_course_is_in_sync_with_solutions(root):
    assert release_diff(root) == []


@pytest.mark.parametrize("top", ["solutions", "course"])
def test_notebooks_are_stored_without_outputs(root, top):
    for nb in _notebooks(root, top):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, nb


def test_every_chapter_is_released(root):
    for chapter in chapters(root):
        assert (root / "course" / chapter).is_dir()
        assert {p.name for p in (root / "solutions" / chapter).glob("*.ipynb")} == \
               {p.name for p in (root / "course" / chapter).glob("*.ipynb")}


def test_released_notebooks_hold_no_solutions_or_spec_material(root):
    course_text = "\n".join(p.read_text() for p in _notebooks(root, "course"))
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "BEGIN MARK SCHEME"):
        assert marker not in course_text
    for chapter in all_chapters():
        spec = load_spec(chapter)
        # the graded notebook must not carry any mutant's body (reference notebooks may share
        # ordinary lines of correct code with a mutant, e.g. an optimizer step)
        course_text = (root / "course" / chapter / spec.notebook).read_text()
        # a mutant edited from the solution keeps the stub's own lines (signatures, docstrings) and the lines of
        # code the notebook gives out (a bug hunt's broken script): those are public
        released = json.loads(course_text)["cells"]
        public = {line.strip() for cell in released if cell["cell_type"] == "code"
                  and (cell["metadata"].get("nbgrader", {}).get("solution")
                       or not cell["metadata"].get("nbgrader", {}).get("grade"))
                  for line in "".join(cell["source"]).splitlines()}
        for ex in spec.exercises:
            assert ex.probe.__name__ not in course_text
            for mutant in ex.mutants:
                body = [line.strip() for line in ex.mutant_source(mutant).splitlines()
                        if len(line.strip()) > 25 and line.strip() not in public]
                leaked = [line for line in body if json.dumps(line)[1:-1] in course_text and "def " not in line]
                # a mutant may share a line with the stub signature, never its body
                assert len(leaked) <= 1, (ex.grade_id, mutant, leaked)


def test_every_solution_cell_has_a_stub_in_course(root):
    for chapter in chapters(root):
        for src in (root / "solutions" / chapter).glob("*.ipynb"):
            sol = json.loads(src.read_text())
            rel = json.loads((root / "course" / chapter / src.name).read_text())
            sol_ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in sol["cells"]
                       if c["metadata"].get("nbgrader", {}).get("solution")]
            for cell in rel["cells"]:
                meta = cell["metadata"].get("nbgrader", {})
                if meta.get("solution") and cell["cell_type"] == "code":
                    assert "raise NotImplementedError()" in "".join(cell["source"])
            assert len(sol_ids) == len(set(sol_ids))
