"""nbgrader configuration of the course (used by `llmprep release`, `llmprep grade`, `llmprep nbgrader ...`
and `llmprep lab`).

solutions/ is nbgrader's SOURCE directory and course/ its RELEASE directory. The
verdict of every graded cell comes from llmprep's trusted engine (see
autograder/README.md); nbgrader keeps release, collect, the gradebook, formgrader,
feedback and export.

The exchange (release_assignment, fetch, submit, collect, release_feedback, fetch_feedback and the
lab's Assignment List) is course-local by default: ``exchange/`` in the course root, created on first
use, for a class on one machine or a demonstration. For a shared machine set ``LLMPREP_EXCHANGE`` to a
folder every student can write (nbgrader's usual ``/srv/nbgrader/exchange``, created once by an admin
with mode 0777). Fetched assignments land in the learner's workspace ``work/`` (``LLMPREP_WORKSPACE``
to change it), the folder `llmprep start` copies chapters into.
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

_exchange = os.environ.get("LLMPREP_EXCHANGE")
if not _exchange:
    _exchange = os.path.join(_root, "exchange")
    os.makedirs(_exchange, exist_ok=True)  # course-local: ours to create (a shared one is the admin's)
c.Exchange.root = _exchange
c.Exchange.assignment_dir = os.environ.get("LLMPREP_WORKSPACE") or os.path.join(_root, "work")
os.makedirs(c.Exchange.assignment_dir, exist_ok=True)  # the lab's Assignment List fails without it

# Autograde (Formgrader's ⚡ button, `nbgrader autograde`): the trusted engine in place of nbgrader's in-kernel
# Execute and the score reading that follows it; nbgrader keeps sanitizing, the timestamp and late penalties.
from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata  # noqa: E402

from llmprep.grading.formgrader import TrustedAutograde  # noqa: E402

c.Autograde.autograde_preprocessors = [TrustedAutograde, AssignLatePenalties, CheckCellMetadata]

# Late penalties (the same in `llmprep grade`, Formgrader and `nbgrader export`): nbgrader's AssignLatePenalties with
# the course's policy, a percentage of the earned score per started day after the due date (plus any extension),
# capped. Set a due date with `llmprep nbgrader db assignment add ASSIGNMENT --duedate="2026-12-01 23:59:00 UTC"`
# (or Formgrader's Manage Assignments); without one nothing is late.
from llmprep.grading.late import PercentPerStartedDay  # noqa: E402

c.AssignLatePenalties.plugin_class = PercentPerStartedDay
c.PercentPerStartedDay.percent_per_day = 10.0
c.PercentPerStartedDay.max_percent = 50.0

# Feedback pages: nbgrader's two preprocessors, then one that lets the grader's verdict lines wrap and one
# that names each exercise (from its trusted spec) for the contents list of llmprep's feedback template
# (llmprep/templates/feedback: nbgrader's, with those names). The pages carry MathJax inlined, no CDN: the
# ``mathjax`` macro in <root>/build/jupyter (llmprep.jupyter.offline_templates), put first on JUPYTER_PATH.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import GetGrades  # noqa: E402

from llmprep.feedback import NameExercises, WrapVerdicts  # noqa: E402
from llmprep.jupyter import feedback_template_dirs, offline_templates  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, WrapVerdicts, NameExercises]
c.NameExercises.spec_dir = os.path.dirname(os.path.abspath(__file__))  # this folder, whatever the root
try:
    _pages = str(offline_templates(os.path.join(_root, "build", "jupyter")))
except OSError:  # a course root this user cannot write (a student on a shared machine): pages as nbconvert makes them
    _pages = ""
if _pages:  # llmprep's feedback template extends nbgrader's copy in that folder
    c.HTMLExporter.extra_template_basedirs = feedback_template_dirs()
    if _pages not in os.environ.get("JUPYTER_PATH", "").split(os.pathsep):
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (_pages, os.environ.get("JUPYTER_PATH", "")) if p)
