"""The path of one submission, stage by stage; the verdict never comes from student code.

One :class:`Submission` is carried through six stages; :func:`grade_notebook` is the six calls, in order,
each into its own module, each visited once (stages 3 and 4 repeat only when a crash part-way makes the
grader run the rest again, within the same budget):

1. read + match: the notebook parsed once, its chapter, the job ... :func:`llmprep.grading.notebook.read_submission`
2. isolate: the sandbox profile, the limits, the one budget ...... :func:`llmprep.grading.isolate.isolate_submission`
3. run: one attempt in a fresh sandbox (spawn, supervise, finish) :func:`llmprep.grading.run.run_attempt`
4. collect: what came back, validated as hostile data ............ :func:`llmprep.grading.collect.collect_submission`
5. judge against the reference outputs, in words ................. :func:`llmprep.grading.judge.judge_submission`
   (the reference: the solution run the same way, cached) ........ :func:`llmprep.grading.reference.reference_run`
6. record: gradebook, autograded notebook, feedback .............. :func:`llmprep.grading.record.record_submission`

What the sandbox and the trusted side exchange (frames, caps, paths, the job and summary shapes) is
:mod:`llmprep.grading.protocol`; the only code that runs inside the sandbox is :mod:`llmprep.grading.sandbox`.

**The walk of one submission through ``llmprep grade``** (re-walked after issue 28; stage -> file -> function)::

    cli.cmd_grade -> batch.grade_assignment          (the class: checks, reference warmed once, thread pool)
      batch._grade_one                                (one student: the name checked, a Submission of the folder)
        engine.grade_notebook(sub)
          1 read+match  notebook.py  read_submission     (picked, parsed once, matched; the spec from trusted.py)
          2 isolate     isolate.py   isolate_submission
          3 run         run.py       run_attempt -> spawn / supervise / finish  (bwrap profile: isolate.py)
          4 collect     collect.py   collect_submission
          5 judge       judge.py     judge_submission (-> reference.reference_run, cached)
          6 record      record.py    record_submission  (gradebook, autograded notebook, timestamp)
      batch: CSV row and terminal line                (from the Submission)

With ``--cluster``, stage 3's attempt runs on a Dask worker (``Submission.runner``: cluster.py) and comes back as
raw bytes that stage 4 validates here; every stage else stays in this process. The batch keeps each submission's
validated stage-4 results with its job hash (stored.py); ``--regrade`` takes stages 3 and 4 from there when the
hash is unchanged.

``check_notebook`` (``llmprep check``, the tests, Formgrader's autograde) is the same walk with no
destination for stage 6 (Formgrader passes its own). For the test suite, ``mutant_run`` runs every
mutant and alternative once per chapter, then ``judge_variants`` judges them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from llmprep.grading.collect import Attempt, SandboxRun, collect_submission, outputs_of
from llmprep.grading.isolate import Isolation, Limits, isolate_submission, isolation
from llmprep.grading.judge import CellVerdict, NotebookResult, judge_exercise, judge_submission
from llmprep.grading.notebook import (SUBMITTED, build_job, code_cells, match_chapter, nbgrader_meta, read_notebook,
                                      read_submission, test_cells)
from llmprep.grading.protocol import CELL, PROBE
from llmprep.grading.record import Destination, record_submission
from llmprep.grading.reference import reference_run
from llmprep.grading.run import run_attempt, run_sandbox
from llmprep.grading.stored import keep_results, reuse_results
from llmprep.grading.trusted import GradingError, all_chapters, load_spec, repo_root, solutions_dir

__all__ = ["SUBMITTED", "CellVerdict", "Destination", "GradingError", "Isolation", "Limits", "NotebookResult",
           "SandboxRun", "Submission", "all_chapters", "build_job", "check_notebook", "code_cells", "grade_notebook",
           "isolation", "judge_exercise", "judge_variants", "load_spec", "match_chapter", "mutant_run",
           "nbgrader_meta", "outputs_of", "read_notebook", "reference_run", "repo_root", "run_sandbox",
           "test_cells"]


@dataclass
class Submission:
    """One notebook on its way through the six stages; each stage fills in its part."""

    path: Path | None  # the notebook (None: stage 1 picks it in ``folder`` for the assignment ``expected``)
    folder: Path | None = None  # what its cells find in their working folder (default: the notebook's own)
    expected: str | None = None  # the assignment asked for: another chapter's notebook is a one-line failure
    limits: Limits = field(default_factory=Limits)
    progress: Callable[[str, float], Any] | None = None  # hears (where, as the learner names it; seconds)
    destination: Destination | None = None  # where stage 6 records it (None: nothing is written)
    notes: list[str] = field(default_factory=list)  # for the learner, in order (a renamed notebook's first)
    # 1 read + match
    missing: bool = False  # no notebook of the assignment in the folder
    nb: Any = None  # the notebook node, parsed once
    chapter: str | None = None
    matched: bool = False  # readable, and of the chapter asked for
    exercises: list = field(default_factory=list)
    present: dict = field(default_factory=dict)  # grade_id -> its test cell, for those in the notebook
    labels: dict = field(default_factory=dict)  # cell index -> the cell as the learner names it
    job: dict = field(default_factory=dict)  # what the sandbox executes (protocol.Job); 2 adds the limits,
    #                                           3 leaves out what killed an earlier attempt
    # 2 isolate
    isolation: Isolation | None = None
    deadline: float = 0.0  # time.monotonic() at which the submission's budget ends
    # 3 run, 4 collect
    attempt: Attempt | None = None  # the latest attempt, as it came back
    run: SandboxRun = field(default_factory=lambda: SandboxRun(False, "not run"))  # it, validated
    lost: dict = field(default_factory=dict)  # grade_id -> why: exercises whose probing killed the process
    # 5 judge
    result: NotebookResult | None = None
    # 6 record
    recorded: bool = False
    record_error: Exception | None = None
    # where stage 3 runs and what is kept of it (batch.py; default: a local sandbox, nothing kept)
    runner: Callable | None = None  # run.attempt's signature: a cluster's worker (cluster.py) instead
    results_dir: Path | None = None  # its validated results are kept there (stored.py)
    regrade: bool = False  # judge from the kept results when the job hash is unchanged
    job_hash: str = ""
    reused: bool = False  # its results came from the store, not a run

    def __post_init__(self):
        if self.path is not None:
            self.path = Path(self.path)
            if self.folder is None:
                self.folder = self.path.parent

    def tell(self, where: dict, seconds: float) -> None:
        """Progress from the run, in the learner's words."""
        phase = where.get("phase")
        self.progress(self.labels.get(where.get("index"), "a cell") if phase == CELL
                      else f"the tests of {where['grade_id']}" if phase == PROBE else "starting", seconds)


def grade_notebook(sub: Submission) -> NotebookResult:
    """The six stages, in order. Problems of the submission become notes, never exceptions;
    GradingError means the grader itself could not work."""
    if read_submission(sub):  # 1
        isolate_submission(sub)  # 2
        before = len(sub.notes)
        if not reuse_results(sub):  # a regrade: 3 and 4 from the store, when the job hash is unchanged
            while run_attempt(sub):  # 3
                collect_submission(sub)  # 4
            keep_results(sub, before)
    judge_submission(sub)  # 5
    record_submission(sub)  # 6
    return sub.result


def check_notebook(path: str | Path, limits: Limits | None = None, folder: Path | None = None,
                   expected: str | None = None, progress=None) -> NotebookResult:
    """Grade one notebook, record nothing. Problems of the submission become messages, never exceptions;
    GradingError means the grader itself could not work. ``folder`` (default: the notebook's
    own) is what the cells find in their working folder. ``expected``: the assignment asked for;
    a notebook of another chapter is then a one-line failure, never graded against that chapter.
    ``progress(where, seconds)``: where the run is, in the learner's words."""
    return grade_notebook(Submission(Path(path), folder=folder, expected=expected, limits=limits or Limits(),
                                     progress=progress))


def mutant_run(chapter: str, notebook: Path | None = None, limits: Limits | None = None, edit=None,
               extra: dict[str, dict[str, str]] | None = None) -> tuple[SandboxRun, SandboxRun]:
    """For the test suite: (the cached reference run, one fresh sandbox run of the solution, or ``notebook``,
    with every mutant and every alternative-correct fixture swapped in). ``edit(nb)`` changes the notebook
    before the run; ``extra``: {grade_id: {name: source}}, more variants, probed as ``extra:<name>``."""
    spec = load_spec(chapter)
    path = notebook or solutions_dir() / chapter / spec.notebook
    nb = read_notebook(path)
    if edit is not None:
        edit(nb)
    ref = reference_run(chapter, limits)
    job = build_job(nb, list(spec.exercises), mutants=True)
    for ex in job["exercises"]:
        ex["variants"] += [{"name": f"extra:{name}", "patch": source}
                           for name, source in (extra or {}).get(ex["grade_id"], {}).items()]
    run = run_sandbox(job, limits, folder=path.parent)
    if not run.ok:
        raise GradingError(f"{chapter}: {run.reason}\n{run.log_tail[-3000:]}")
    return ref, run


def judge_variants(chapter: str, ref: SandboxRun, run: SandboxRun) -> dict[str, dict[str, CellVerdict]]:
    """{variant name: {grade_id: CellVerdict}} of a ``mutant_run``: the submitted notebook, each mutant
    (``mutant:<name>``) and each alternative (``alt:<name>``); a variant only replaces the function(s) of its
    own exercise."""
    result: dict[str, dict[str, CellVerdict]] = {}
    for ex in load_spec(chapter).exercises:
        for variant in [SUBMITTED] + [f"mutant:{m}" for m in ex.mutants] + [f"alt:{a}" for a in ex.alternatives]:
            result.setdefault(variant, {})[ex.grade_id] = judge_exercise(ex, run, ref, variant)
    return result
