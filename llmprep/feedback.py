"""nbgrader feedback pages: the grader's verdict lines wrap (autograder/nbgrader_config.py adds this to
``GenerateFeedback.preprocessors``).

`llmprep grade` writes each verdict as the test cell's text output, which nbconvert renders as ``<pre>``:
a long message ran off the page. This preprocessor turns those outputs into escaped HTML that wraps,
keeping the plain text beside it."""
from __future__ import annotations

import html

from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_output
from traitlets import Bool, Unicode

MARK = "llmprep grader:"


class WrapVerdicts(Preprocessor):
    enabled = Bool(True).tag(config=True)  # nbconvert's Preprocessor is off unless enabled

    def preprocess_cell(self, cell, resources, index):
        if cell.get("cell_type") == "code":
            outputs = []
            for out in cell.get("outputs", []):
                text = out.get("text", "") if out.get("output_type") == "stream" else ""
                text = "".join(text) if isinstance(text, list) else str(text)
                if text.startswith(MARK):
                    page = ("<pre style='white-space: pre-wrap; overflow-wrap: anywhere'>"
                            f"{html.escape(text.rstrip())}</pre>")
                    out = new_output("display_data", data={"text/html": page, "text/plain": text})
                outputs.append(out)
            cell.outputs = outputs
        return cell, resources


class NameExercises(Preprocessor):
    """Put the title of each graded test cell's exercise (from its trusted spec, never from the submission)
    into ``cell.metadata.llmprep.title``: llmprep's feedback template lists the exercises by name instead of
    nbgrader's "Test cell" for every one."""

    enabled = Bool(True).tag(config=True)
    spec_dir = Unicode("", help="the folder of the trusted specs (default: the course's autograder/)").tag(config=True)

    def preprocess(self, nb, resources):
        titles = exercise_titles(self.spec_dir or None)
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            gid = meta.get("grade_id") if isinstance(meta, dict) else None
            if meta.get("grade") and not meta.get("solution") and gid in titles:
                cell.metadata["llmprep"] = {"title": titles[gid]}
            elif "llmprep" in cell.get("metadata", {}):
                del cell.metadata["llmprep"]  # never a title the submission brought
        return nb, resources


def exercise_titles(spec_dir: str | None = None) -> dict[str, str]:
    """grade_id -> "Exercise N: title" for every chapter, from the headings of the solution notebooks
    (``solutions/``, the source of truth, beside ``spec_dir``'s autograder/): the ``## Exercise N — title``
    heading before each graded test cell; the points in brackets are left out."""
    import json
    import re
    from pathlib import Path

    from llmprep.paths import format_path

    solutions = Path(spec_dir).parent / "solutions" if spec_dir else format_path("solutions")
    heading = re.compile(r"^#+\s*(Exercise\s+\d+)\s*[—:-]+\s*(.*?)\s*(\(\d+(\.\d+)? points?\))?\s*$")
    titles = {}
    for path in sorted(solutions.glob("ch*/ch*_exercises.ipynb")):
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError):
            continue
        current = ""
        for cell in cells:
            source = "".join(cell.get("source", ""))
            if cell.get("cell_type") == "markdown":
                for line in source.splitlines():
                    match = heading.match(line)
                    if match:
                        current = f"{match.group(1)}: {match.group(2)}".rstrip(": ")
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution") and meta.get("grade_id") and current:
                titles[meta["grade_id"]] = current
    return titles
