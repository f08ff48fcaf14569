"""The package's import graph is layered: a ground floor every wing may use, the grading wing and the
course wing beside each other (neither imports the other), the command line on top. Every import counts,
also one inside a function, so that no lazy import hides a cycle."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import llmprep

PACKAGE = Path(llmprep.__file__).resolve().parent  # (wherever this test file lives)

# floor -> modules (``llmprep.grading`` stands for every module of the grading package); the ground floor
# in an order where each module imports only those before it (``llmprep`` itself imports the runtime)
GROUND = ["llmprep.paths", "llmprep.runtime", "llmprep", "llmprep.i18n", "llmprep.nbgrader_wiring", "llmprep.results",
          "llmprep.report", "llmprep.assets", "llmprep.models", "llmprep.feedback", "llmprep.longctx", "llmprep.rag",
          "llmprep.agents", "llmprep.reasoning"]
COURSE_WING = ["llmprep.course", "llmprep.course_map", "llmprep.headless", "llmprep.book", "llmprep.jupyter",
               "llmprep.mock_session"]
GRADING_WING = ["llmprep.grading"]
TOP = ["llmprep.cli", "llmprep.__main__", "llmprep.coach",  # the coach reads both wings (cards)
       "llmprep.untrusted", "llmprep.agent_server"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every llmprep module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("llmprep"):
            found.add(node.module)
            for alias in node.names:  # ``from llmprep import course`` imports the module llmprep.course
                sub = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").is_file():
                    found.add(sub)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("llmprep"))
    return found - {module_name(path)}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def wing(module: str) -> str:
    for name, members in (("ground", GROUND), ("course", COURSE_WING), ("grading", GRADING_WING), ("top", TOP)):
        if any(module == m or module.startswith(m + ".") and m != "llmprep" for m in members):
            return name
    return "unplaced"


def test_every_module_has_a_place():
    assert [m for m in graph() if wing(m) == "unplaced"] == []


def test_each_floor_imports_only_downwards():
    allowed = {"ground": {"ground"}, "grading": {"ground", "grading"}, "course": {"ground", "course"},
               "top": {"ground", "grading", "course", "top"}}
    wrong = [f"{m} ({wing(m)}) imports {d} ({wing(d)})" for m, deps in graph().items() for d in sorted(deps)
             if wing(d) not in allowed[wing(m)]]
    assert wrong == []


def test_ground_floor_modules_import_only_the_ones_listed_before_them():
    order = {m: i for i, m in enumerate(GROUND)}
    wrong = [f"{m} imports {d}" for m, deps in graph().items() if m in order
             for d in deps if d in order and order[d] >= order[m] and d != "llmprep"]
    assert wrong == []


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if d == "llmprep":  # the package's __init__ (it imports only llmprep.runtime)
                continue
            if state.get(d) == 1:
                pytest.fail(f"import cycle: {' -> '.join(path + [m, d])}")
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in g:
        if m not in state:
            visit(m, [])


def _loaded_after(statement: str) -> list[str]:
    code = (f"import sys\n{statement}\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith(('llmprep', 'numpy', 'torch')))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.split()


@pytest.mark.parametrize("module", ["llmprep.course", "llmprep.headless", "llmprep.results", "llmprep.paths",
                                    "llmprep.course_map", "llmprep.models", "llmprep.book"])
def test_the_course_wing_loads_no_grading_and_no_numpy(module):
    loaded = _loaded_after(f"import {module}")
    assert not [m for m in loaded if m.startswith("llmprep.grading")], loaded
    assert "numpy" not in loaded and "torch" not in loaded, loaded


def test_a_notebooks_results_import_is_light():
    assert _loaded_after("from llmprep.results import record") == ["llmprep", "llmprep.paths", "llmprep.results",
                                                                    "llmprep.runtime"]


def test_no_notebook_imports_the_grading_engine():
    root = PACKAGE.parent
    hits = [str(p.relative_to(root)) for folder in ("solutions", "course") for p in sorted((root / folder).rglob("*.ipynb"))
            if "llmprep.grading" in p.read_text(encoding="utf-8")]
    assert hits == []
