"""Interview questions are marked by a cell tag: the markdown cells of a reference notebook tagged
``interview`` hold its questions (one per ``###`` heading), and the website's mock-interview page reads
only those cells."""
from __future__ import annotations

import nbformat
import pytest

from llmprep.book import INTERVIEW_TAG, QUESTION, parse_questions
from llmprep.course import chapter_prefix, chapters


def _tagged(nb):
    return [c for c in nb.cells if c.cell_type == "markdown" and INTERVIEW_TAG in c.metadata.get("tags", [])]


@pytest.mark.parametrize("folder", ["solutions", "course"])
def test_every_reference_notebook_tags_its_questions(root, folder):
    for ch in chapters(root):
        path = root / folder / ch / f"{chapter_prefix(ch)}_reference.ipynb"
        tagged = _tagged(nbformat.read(str(path), as_version=4))
        headings = [line for c in tagged for line in c.source.splitlines() if QUESTION.match(line)]
        assert headings, f"{path}: no cell tagged '{INTERVIEW_TAG}' with a question"
        if folder == "solutions":
            assert len(parse_questions(ch, path)) == len(headings)


def test_only_tagged_cells_are_read(tmp_path):
    question = "### Q1. 为什么？ / Why?\n\nBecause.\n\n**30-second version.** Short.\n\n#### Follow-ups\n\nMore?"
    untagged = "### 2. Not a question / 不是问题\n\nA section of the reference implementation."
    cells = [nbformat.v4.new_markdown_cell("## Part 1 — 面试题 / Interview questions\n\n" + question),
             nbformat.v4.new_markdown_cell(untagged)]
    cells[0].metadata["tags"] = [INTERVIEW_TAG]
    path = tmp_path / "ch99_reference.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(path))
    (q,) = parse_questions("ch99_x", path)
    assert (q.number, q.title, q.answer, q.short, q.followups) == (
        "1", "为什么？ / Why?", "Because.", "**30-second version.** Short.", "More?")
