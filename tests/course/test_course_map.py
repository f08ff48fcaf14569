"""The course map has one source (llmprep/course_map.py): README's "Course map" table is written from it by
`llmprep readme`, the website renders the same rows, and every chapter of solutions/ has exactly one row."""
from __future__ import annotations

import pytest

from llmprep import cli, course_map
from llmprep.course import chapters


def test_readme_shows_the_map_as_course_map_py_writes_it(root):
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert course_map.readme_with_map(readme) == readme, "README's course map is stale: run `llmprep readme`"
    assert cli.main(["readme", "--check"]) == 0


def test_every_chapter_has_one_row_in_course_order(root):
    assert [ch.id for ch in course_map.CHAPTERS] == chapters(root)
    assert all(ch.topic and ch.exercises for ch in course_map.CHAPTERS)


def test_rewriting_replaces_only_the_table():
    stale = "# t\n\nintro\n\n## Course map\n\n| old | table |\n| --- | --- |\n| x | y |\n\nAfter the table.\n\n## Next\n"
    fresh = course_map.readme_with_map(stale)
    assert fresh.startswith("# t\n\nintro\n\n## Course map\n\n" + course_map.MARK + "\n| chapter |")
    assert fresh.endswith(course_map.markdown_table() + "\nAfter the table.\n\n## Next\n")
    assert course_map.readme_with_map(fresh) == fresh
    with pytest.raises(ValueError, match="no '## Course map' section"):
        course_map.readme_with_map("# no map here\n")


def test_the_website_links_the_chapters_it_built():
    table = course_map.markdown_table(["ch01_training", "ch99_new"], lambda ch: f"[`{ch}`]({ch}/index.md)")
    lines = table.splitlines()
    assert lines[:2] == list(course_map.HEADER)
    assert lines[2].startswith("| [`ch01_training`](ch01_training/index.md) | 大模型的训练流程")
    assert lines[3] == "| [`ch99_new`](ch99_new/index.md) |  |  |"  # a chapter without a row: empty cells
