"""nbgrader configuration of the course (used by `llmprep release`, `llmprep grade` and `make lab`).

solutions/ is nbgrader's SOURCE directory and course/ its RELEASE directory. The
verdict of every graded cell comes from llmprep's trusted engine (see
autograder/README.md); nbgrader keeps release, collect, the gradebook, formgrader,
feedback and export.
"""
import os

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

_root = os.environ.get("LLMPREP_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
c.CourseDirectory.root = _root
c.CourseDirectory.course_id = "llmprep"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
c.CourseDirectory.db_url = os.environ.get("LLMPREP_GRADEBOOK") or "sqlite:///" + os.path.join(_root, "gradebook.db")
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
