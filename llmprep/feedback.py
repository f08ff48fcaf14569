"""nbgrader feedback pages: the grader's verdict lines wrap (autograder/nbgrader_config.py adds this to
``GenerateFeedback.preprocessors``).

`llmprep grade` writes each verdict as the test cell's text output, which nbconvert renders as ``<pre>``:
a long message ran off the page. This preprocessor turns those outputs into escaped HTML that wraps,
keeping the plain text beside it."""
from __future__ import annotations

import html

from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_output
from traitlets import Bool

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
