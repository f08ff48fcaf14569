"""Every solution notebook executes without an error (its payoff asserts included) and every reference notebook's
printed results are the ones `llmprep run` stores for the results table.

Each notebook is executed once per `make test`: by `llmprep run` before pytest starts (in parallel, the longest
first; copies in build/executed/, results in build/results.jsonl). These tests read those copies; where a copy is
missing or stale (pytest run alone), the ``executed`` fixture executes the notebook itself (tests/conftest.py).
"""
import re

import pytest

from llmprep.course import chapters, notebooks
from llmprep.grading.engine import repo_root

NOTEBOOKS = [(ch, nb.name) for ch in chapters(repo_root()) for nb in notebooks(ch, repo_root())]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cell_problems(nb) -> list[str]:
    """One line (plus the cell's first source lines and the traceback's end) per cell that raised or never ran."""
    problems = []
    stopped = False
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        head = "\n".join("    | " + line for line in cell.source.splitlines()[:3])
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            err = errors[0]
            trace = ANSI.sub("", "\n".join(err.get("traceback", [])[-3:]))
            problems.append(f"cell {number} (In [{cell.get('execution_count')}]) raised {err.get('ename')}: "
                            f"{ANSI.sub('', str(err.get('evalue')))[:300]}\n"
                            f"{head}\n{trace[-1500:]}")
            stopped = True
        elif cell.get("execution_count") is None and not stopped:
            problems.append(f"cell {number} never ran (the run stopped before it: a time-out or a dead kernel?)\n{head}")
            stopped = True
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("chapter, name", NOTEBOOKS, ids=[f"{ch}/{name}" for ch, name in NOTEBOOKS])
def test_notebook_executes_without_error(executed, chapter, name):
    run = executed(chapter, name)
    assert run.nb is not None, f"{chapter}/{name}: no executed copy at {run.path}"
    problems = cell_problems(run.nb)
    if problems:
        pytest.fail(f"{chapter}/{name} (executed by {run.by}, copy {run.path}):\n" + "\n".join(problems), pytrace=False)


def _printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.slow
@pytest.mark.parametrize("chapter", chapters(repo_root()))
def test_reference_results_reach_the_results_table(executed, chapter):
    """The payoff each reference notebook prints with ``report.record`` is what the results table stores."""
    name = next(nb.name for nb in notebooks(chapter, repo_root()) if "reference" in nb.stem)
    run = executed(chapter, name)
    assert run.nb is not None and not cell_problems(run.nb), f"{chapter}/{name} did not execute (see its own test)"
    printed = _printed(run.nb)
    assert run.records, f"{chapter}: no results recorded (build/results.jsonl, `llmprep run`)"
    for r in run.records:
        assert f"] {r['name']}: {r['value']}" in printed, f"{chapter}: recorded but not printed: {r}"


def test_a_failing_or_unfinished_notebook_is_named_by_its_cell():
    """What a failure reads like: the first cell that raised (number, error, source, traceback's end), or the
    first cell that never ran; cells after the failure are not listed again."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    def cell(source, count, *outputs):
        c = new_code_cell(source, execution_count=count)
        c.outputs = list(outputs)
        return c

    error = new_output("error", ename="AssertionError", evalue="accuracy 0.41 below 0.7",
                       traceback=["\x1b[31mTraceback\x1b[0m", "----> 2 assert acc > 0.7"])
    nb = new_notebook(cells=[new_markdown_cell("# title"), cell("x = 1", 1),
                             cell("acc = 0.41\nassert acc > 0.7", 2, error), cell("print(x)", None)])
    nbformat.validate(nb)
    (problem,) = cell_problems(nb)
    assert problem.startswith("cell 3 (In [2]) raised AssertionError: accuracy 0.41 below 0.7")
    assert "| acc = 0.41" in problem and "----> 2 assert acc > 0.7" in problem and "\x1b" not in problem
    nb.cells[2] = cell("acc = 0.9", None)  # a kernel that died (or a time-out) without an error output
    (problem,) = cell_problems(nb)
    assert problem.startswith("cell 3 never ran")
    nb.cells[2] = cell("acc = 0.9", 2)
    nb.cells[3] = cell("print(x)", 3, new_output("stream", name="stdout", text="1\n"))
    assert cell_problems(nb) == []
