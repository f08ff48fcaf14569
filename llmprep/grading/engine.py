"""The path of one submission, stage by stage; the verdict never comes from student code.

1. read the notebook as data and match it to a chapter ........ :mod:`llmprep.grading.notebook`
2. isolate: the bubblewrap profile and limits ................. :mod:`llmprep.grading.isolate`
3. run the cells and probes in the sandbox, within a budget ... :mod:`llmprep.grading.run`
4. collect what came back, as hostile data .................... :mod:`llmprep.grading.collect`
5. judge against the reference outputs, in words .............. :mod:`llmprep.grading.judge`
   (the reference: the solution run the same way, cached) ..... :mod:`llmprep.grading.reference`
6. record in the gradebook, autograded notebook, feedback ..... :mod:`llmprep.grading.record`

A class is graded by :mod:`llmprep.grading.batch`; the only code that runs inside the sandbox is
:mod:`llmprep.grading.sandbox`. This module ties the stages together for one notebook
(``check_notebook``) and, for the test suite, for every mutant and alternative (``mutant_run`` once per
chapter, then ``judge_variants``).
"""
from __future__ import annotations

from pathlib import Path

from llmprep.grading.collect import SandboxRun, outputs_of
from llmprep.grading.isolate import Isolation, Limits, isolation
from llmprep.grading.judge import CellVerdict, NotebookResult, cell_notes, hidden_fragments, judge_exercise
from llmprep.grading.notebook import (SUBMITTED, build_job, code_cells, match_chapter, nbgrader_meta,
                                      read_notebook, test_cells)
from llmprep.grading.reference import reference_run
from llmprep.grading.run import run_sandbox, run_submission
from llmprep.grading.trusted import GradingError, all_chapters, load_spec, repo_root, solutions_dir

__all__ = ["SUBMITTED", "CellVerdict", "GradingError", "Isolation", "Limits", "NotebookResult", "SandboxRun",
           "all_chapters", "build_job", "check_notebook", "code_cells", "isolation",
           "judge_exercise", "judge_variants", "load_spec", "match_chapter", "mutant_run", "nbgrader_meta",
           "outputs_of", "read_notebook", "reference_run", "repo_root", "run_sandbox", "run_submission", "test_cells"]


def check_notebook(path: str | Path, limits: Limits | None = None, folder: Path | None = None,
                   expected: str | None = None, progress=None) -> NotebookResult:
    """Grade one notebook. Problems of the submission become messages, never exceptions;
    GradingError means the grader itself could not work. ``folder`` (default: the notebook's
    own) is what the cells find in their working folder. ``expected``: the assignment asked for;
    a notebook of another chapter is then a one-line failure, never graded against that chapter."""
    path = Path(path)
    try:
        nb = read_notebook(path)
        chapter = match_chapter(nb, path.name)
    except GradingError as exc:
        return NotebookResult(path.name, None, 0.0, 0.0, [], [str(exc)])
    if expected is not None and chapter != expected:
        return NotebookResult(path.name, chapter, 0.0, 0.0, [],
                              [f"this is the {chapter} notebook; expected {expected}"])
    spec = load_spec(chapter)
    exercises = list(spec.exercises)
    fragments = hidden_fragments(exercises)
    max_score = float(sum(ex.points for ex in exercises))
    ref = reference_run(chapter, limits)
    present = test_cells(nb)
    if progress is not None:
        labels = {c["index"]: c["label"] for c in code_cells(nb)}
        report = progress
        progress = lambda where, seconds: report(  # noqa: E731
            labels.get(where.get("index"), "a cell") if where.get("phase") == "cell"
            else f"the tests of {where['grade_id']}" if where.get("phase") == "probe" else "starting", seconds)
    run, notes, lost = run_submission(nb, exercises, limits, folder=folder or path.parent, progress=progress)
    if not run.ok:
        notes.append(run.reason)
    notes += cell_notes(run, fragments)
    verdicts = []
    for ex in exercises:
        if ex.grade_id not in present:
            verdicts.append(CellVerdict(ex.grade_id, 0.0, float(ex.points), "its test cell is missing from the notebook"))
        elif ex.grade_id in lost:
            verdicts.append(CellVerdict(ex.grade_id, 0.0, float(ex.points), lost[ex.grade_id]))
        elif not run.ok:
            verdicts.append(CellVerdict(ex.grade_id, 0.0, float(ex.points), f"not graded: {run.reason}"))
        else:
            verdicts.append(judge_exercise(ex, run, ref, fragments=fragments))
    score = float(sum(v.points for v in verdicts))
    return NotebookResult(path.name, chapter, score, max_score, verdicts, notes)


def mutant_run(chapter: str, notebook: Path | None = None, limits: Limits | None = None) -> tuple[SandboxRun, SandboxRun]:
    """For the test suite: (the cached reference run, one fresh sandbox run of the solution, or ``notebook``,
    with every mutant and every alternative-correct fixture swapped in)."""
    spec = load_spec(chapter)
    path = notebook or solutions_dir() / chapter / spec.notebook
    nb = read_notebook(path)
    ref = reference_run(chapter, limits)
    run = run_sandbox(build_job(nb, list(spec.exercises), mutants=True), limits, folder=path.parent)
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
