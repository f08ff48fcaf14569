"""Issue 27 item 4: the visible self-checks never mislead.

* Every visible check cell runs on its own after the set-up: a learner who restarts the kernel, runs the
  set-up (and the cells the chapter gives), one answer and its check gets the check's verdict, never a
  ``NameError`` for something another exercise's check imported. Proven against the solutions, one
  process per chapter, a fresh namespace per exercise.
* Every ``assert`` of a check cell says in words what it expected (a bare ``AssertionError`` tells a
  learner nothing).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import nbformat
import pytest

pytestmark = pytest.mark.slow
from llmprep.grading.trusted import all_chapters, load_spec, solutions_dir


def _kind(cell) -> str:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if cell.cell_type != "code":
        return "text"
    if meta.get("solution"):
        return "answer"
    if meta.get("grade"):
        return "check"
    return "given"


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines at top level, names it reads anywhere)."""
    tree = ast.parse(source)
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return defined, read


def isolated_runs(nb) -> list[dict]:
    """For every check cell: the cells a learner runs after a restart to use it alone, in order: the
    set-up and every cell the chapter gives before it, then its answer cell(s), then it.

    An answer may build on the learner's own earlier answers where the instructions say so ("your
    ``log_softmax``", "your class from Exercise 2"): the earlier answer cells that the answer's code
    names are run too. What the *check* names must come from the set-up, the given cells, its own answer
    or the check itself: never from another exercise."""
    runs, given, answers, earlier = [], [], [], []
    for cell in nb.cells:
        kind = _kind(cell)
        if kind == "given":
            given.append(cell.source)
        elif kind == "answer":
            answers.append(cell.source)
        elif kind == "check":
            needed, wanted = [], set().union(*(_names(a)[1] for a in answers)) if answers else set()
            changed = True
            while changed:  # the earlier answers this one uses, and the ones those use
                changed = False
                for source in earlier:
                    defined, read = _names(source)
                    if source not in needed and defined & wanted:
                        needed.append(source)
                        wanted |= read
                        changed = True
            needed.sort(key=earlier.index)
            gid = cell.metadata["nbgrader"]["grade_id"]
            runs.append({"grade_id": gid, "cells": [*given, *needed, *answers, cell.source]})
            earlier += answers
            answers = []
    return runs


# Runs in a fresh interpreter (one per chapter): each exercise's cells in a new namespace, through
# IPython's input transformer so that a magic would run as it does in Jupyter. Prints one JSON object.
RUNNER = r"""
import json, sys, traceback
from IPython.core.inputtransformer2 import TransformerManager

runs = json.loads(sys.stdin.read())
transform = TransformerManager().transform_cell
failures = {}
for run in runs:
    ns = {"__name__": "__main__"}
    for i, source in enumerate(run["cells"]):
        try:
            exec(compile(transform(source), f"<{run['grade_id']} cell {i}>", "exec"), ns)
        except BaseException as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            failures[run["grade_id"]] = f"cell {i} of {len(run['cells'])}: {last}"
            break
print("\n@@RESULT@@" + json.dumps(failures))
"""


def _notebook(chapter):
    return nbformat.read(str(solutions_dir() / chapter / load_spec(chapter).notebook), as_version=4)


@pytest.mark.parametrize("chapter", all_chapters())
def test_every_check_cell_runs_on_its_own_after_the_setup(chapter):
    runs = isolated_runs(_notebook(chapter))
    assert len(runs) >= 5
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LLMPREP_THREADS="1", MPLBACKEND="Agg",
               HF_HUB_OFFLINE="1", XLA_FLAGS="--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0 "
               "--xla_llvm_disable_expensive_passes=true")  # (XLA compiles for compile time: the arrays are tiny)
    proc = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(runs), capture_output=True, text=True,
                          cwd=solutions_dir() / chapter, env=env, timeout=600)
    assert "@@RESULT@@" in proc.stdout, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.rsplit("@@RESULT@@", 1)[1])
    assert not failures, "check cells that fail alone (set-up + answer + check) on the solution:\n" + "\n".join(
        f"  {gid}: {why}" for gid, why in failures.items())


def bare_asserts(source: str) -> list[str]:
    """The ``assert`` statements of ``source`` that carry no message."""
    return [ast.get_source_segment(source, node).splitlines()[0] for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Assert) and node.msg is None]


@pytest.mark.parametrize("chapter", all_chapters())
def test_every_assert_of_a_check_cell_says_what_it_expected(chapter):
    nb = _notebook(chapter)
    bare = [f"{cell.metadata['nbgrader']['grade_id']}: {line}" for cell in nb.cells if _kind(cell) == "check"
            for line in bare_asserts(cell.source)]
    assert not bare, f"{len(bare)} assert(s) without a message in words:\n" + "\n".join(bare)


def test_the_isolation_finds_what_a_learner_would_miss():
    """The runner itself: a check that needs a name only an earlier check imported fails alone."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import math", metadata={"nbgrader": {"grade_id": "setup"}}),
        nbformat.v4.new_code_cell("def f():\n    return 1", metadata={"nbgrader": {"solution": True, "grade_id": "a"}}),
        nbformat.v4.new_code_cell("from fractions import Fraction\nassert f() == 1, 'f() returns 1'",
                                  metadata={"nbgrader": {"grade": True, "grade_id": "a_test"}}),
        nbformat.v4.new_code_cell("def g():\n    return 2", metadata={"nbgrader": {"solution": True, "grade_id": "b"}}),
        nbformat.v4.new_code_cell("assert g() == Fraction(2), 'g() returns 2'",
                                  metadata={"nbgrader": {"grade": True, "grade_id": "b_test"}}),
    ])
    runs = isolated_runs(nb)
    assert [r["grade_id"] for r in runs] == ["a_test", "b_test"]
    assert runs[1]["cells"] == ["import math", "def g():\n    return 2", "assert g() == Fraction(2), 'g() returns 2'"]
    proc = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(runs), capture_output=True, text=True)
    failures = json.loads(proc.stdout.rsplit("@@RESULT@@", 1)[1])
    assert list(failures) == ["b_test"] and "NameError" in failures["b_test"]
    assert bare_asserts("assert x == 1\nassert y, 'y is set'\n") == ["assert x == 1"]
