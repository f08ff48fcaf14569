"""The trusted engine inside nbgrader's own autograde: what Formgrader's ⚡ Autograde button and a plain
``nbgrader autograde`` run.

Stock nbgrader executes a submission in the student's kernel and takes the verdict from its test cells:
the path this course exists to avoid. ``autograder/nbgrader_config.py`` replaces nbgrader's ``Execute``
(and the score reading that follows it) by :class:`TrustedAutograde`: the sanitized notebook nbgrader
hands over is graded by :func:`llmprep.grading.engine.grade_notebook` in the sandbox, the verdicts are
recorded by its stage 6, :func:`llmprep.grading.record.record_submission` (the same writer ``llmprep grade``
uses) and shown as each test cell's output. nbgrader keeps the rest: the submission's timestamp, late penalties, the autograded
notebook, feedback and export. A notebook without graded cells (a chapter's reference notebook) passes
through untouched; where no sandbox can start, it refuses instead of running the submission unconfined.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from nbgrader.preprocessors.base import NbGraderPreprocessor


class TrustedAutograde(NbGraderPreprocessor):
    """Grade the notebook with the trusted engine and record the verdicts in the gradebook."""

    def preprocess(self, nb, resources):
        import nbformat

        from llmprep.grading.engine import Destination, Submission, grade_notebook, isolation, test_cells

        if not test_cells(nb):
            return nb, resources  # e.g. the chapter's reference notebook: nothing to grade
        iso = isolation()
        if not iso.strong:
            raise RuntimeError(f"no sandbox can start here ({iso.why}); the course does not run submissions "
                               "unconfined: grade with `llmprep grade --unsandboxed` if you trust them")
        info = resources["nbgrader"]
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        with tempfile.TemporaryDirectory(prefix="llmprep-autograde-") as tmp, _specs_of_this_package():
            path = Path(tmp) / f"{info['notebook']}.ipynb"
            nbformat.write(nb, str(path))
            sub = Submission(path, folder=folder, expected=info["assignment"],
                             destination=Destination(info["db_url"], info["student"], info["notebook"], annotate=nb))
            result = grade_notebook(sub)  # stage 6 records in nbgrader's gradebook and annotates ``nb``
        if not result.cells:
            raise RuntimeError(f"{info['student']}: {'; '.join(result.notes)}")
        if sub.record_error is not None:
            raise sub.record_error
        self.log.info("llmprep: %s %s: %g / %g (trusted engine, %s)", info["student"], info["notebook"],
                      result.score, result.max_score, iso.level)
        return nb, resources


@contextmanager
def _specs_of_this_package():
    """nbgrader runs with ``LLMPREP_ROOT`` set to the *course* root (its gradebook and submissions); the
    specs, solutions and reference cache belong to the course's code, which is this package's repository
    when the course root is a copy elsewhere."""
    from llmprep.grading import trusted

    package_repo = Path(trusted.__file__).resolve().parents[2]
    if (trusted.autograder_dir()).is_dir() or not (package_repo / "autograder").is_dir():
        yield
        return
    old = os.environ.get("LLMPREP_ROOT")
    os.environ["LLMPREP_ROOT"] = str(package_repo)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LLMPREP_ROOT", None)
        else:
            os.environ["LLMPREP_ROOT"] = old
