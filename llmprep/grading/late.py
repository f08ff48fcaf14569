"""Late penalties, through nbgrader's own late-submission plugin interface.

The policy is :class:`PercentPerStartedDay`, an ``nbgrader.plugins.LateSubmissionPlugin`` that
``autograder/nbgrader_config.py`` installs as ``AssignLatePenalties.plugin_class``: a submission
``d`` started days after its due date loses ``min(percent_per_day * d, max_percent)`` percent of the
score it earned (default 10 % a started day, at most 50 %). One second late is one started day.

Every path computes the penalty the same way, with nbgrader's ``AssignLatePenalties`` preprocessor
built from that configuration file:

- Formgrader's ⚡ Autograde and ``nbgrader autograde`` run it after the trusted engine (its
  ``autograde_preprocessors``);
- ``llmprep grade`` runs it on each recorded submission (:class:`LatePenalties`), after the verdicts
  are in the gradebook;
- ``nbgrader export``, ``generate_feedback`` (nbgrader's ``GetGrades``) and Formgrader read the penalty
  back from the gradebook (``SubmittedNotebook.late_submission_penalty``).

How late a submission is comes from nbgrader too: the submission's timestamp (the ``timestamp.txt``
nbgrader's exchange writes, recorded by :func:`llmprep.grading.record.record`) minus the assignment's
due date in the gradebook plus any extension the student was given. No due date, no timestamp, or on
time: no penalty.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float

DAY = 86400.0


def percent_late(seconds_late: float, percent_per_day: float, max_percent: float) -> float:
    """The percentage of the score lost: ``percent_per_day`` for every started day late, at most ``max_percent``."""
    if not seconds_late or seconds_late <= 0:
        return 0.0
    return min(max_percent, percent_per_day * math.ceil(seconds_late / DAY))


class PercentPerStartedDay(LateSubmissionPlugin):
    """A percentage of the earned score per started day late, capped (the course's late policy)."""

    percent_per_day = Float(10.0, help="Percent of the earned score lost for each started day late.").tag(config=True)
    max_percent = Float(50.0, help="The most a late submission loses, in percent of its earned score.").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        percent = percent_late(total_seconds_late, self.percent_per_day, self.max_percent)
        penalty = round((score or 0.0) * percent / 100.0, 6)
        self.log.info("late policy: %s is %.0f s late: -%g %% of %g = -%g", student_id, total_seconds_late,
                      percent, score or 0.0, penalty)
        return penalty


def course_config(root: Path):
    """The course's nbgrader configuration (``autograder/nbgrader_config.py``) as nbgrader reads it for the
    course root ``root``; the process environment is left as it was."""
    from traitlets.config.loader import PyFileConfigLoader

    from llmprep.nbgrader_wiring import nbgrader_env

    env = nbgrader_env(root)
    config_dir = env["JUPYTER_CONFIG_PATH"]
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return PyFileConfigLoader("nbgrader_config.py", path=config_dir).load_config()
    finally:
        os.environ.clear()
        os.environ.update(saved)


class LatePenalties:
    """nbgrader's ``AssignLatePenalties`` as the course configures it, run on one recorded submission at a time
    (by the one process that writes the gradebook)."""

    def __init__(self, root: Path):
        from nbgrader.preprocessors import AssignLatePenalties

        self.preprocessor = AssignLatePenalties(config=course_config(root))

    @property
    def policy(self) -> str:
        plugin = self.preprocessor.plugin_class
        if issubclass(plugin, PercentPerStartedDay):
            inst = plugin(config=self.preprocessor.config)
            return f"{inst.percent_per_day:g} % of the score per started day late, at most {inst.max_percent:g} %"
        return plugin.__name__

    def apply(self, db_url: str, assignment: str, student: str, notebook: str) -> float:
        """Assign the penalty in the gradebook (as ``nbgrader autograde`` does after grading) and return it."""
        import nbformat
        from nbgrader.api import Gradebook

        resources = {"nbgrader": {"notebook": notebook, "assignment": assignment, "student": student,
                                  "db_url": db_url}}
        self.preprocessor.preprocess(nbformat.v4.new_notebook(), resources)
        with Gradebook(db_url) as gb:
            penalty = gb.find_submission_notebook(notebook, assignment, student).late_submission_penalty
        return float(penalty or 0.0)


def with_penalty(row: dict, late: LatePenalties, sub) -> dict:
    """A row of ``llmprep grade``'s CSV with ``late_penalty`` and ``final_score``: for a submission recorded in
    the gradebook, the penalty nbgrader's preprocessor assigned there (blank where nothing was graded)."""
    graded = row.get("score") != "" and sub is not None and sub.recorded
    penalty = 0.0
    if graded:
        try:
            penalty = late.apply(sub.destination.db_url, sub.expected, sub.destination.student,
                                 sub.destination.notebook)
        except Exception as exc:  # noqa: BLE001 - that student's failure, never the batch's
            row.update(status=f"failed: the late penalty could not be recorded ({type(exc).__name__})",
                       score="", max_score="", late_penalty="", final_score="")
            return row
    row["late_penalty"] = penalty if graded else ""
    row["final_score"] = max(0.0, row["score"] - penalty) if graded else ""
    return row
