"""The library ban of a from-scratch exercise also catches a name the student bound at import time
(the gates are installed before the first cell runs), is in force only while that exercise is
probed (the rest of the notebook may use the library), and says which call it blocked."""
import nbformat
import pytest

from llmprep.grading import engine
from llmprep.grading.engine import load_spec
from notebooks import grade_cell

CH01 = "ch01_training"




@pytest.mark.sandbox
def test_import_time_bindings_of_banned_calls_lose_points(root, tmp_path, ch01_reference):
    nb = nbformat.read(str(root / "solutions" / CH01 / load_spec(CH01).notebook), as_version=4)
    grade_cell(nb, "ch01_setup").source += (
        "\nfrom torch import log_softmax as _library_log_softmax\n"
        "from torch.optim import AdamW as _LibraryAdamW\n"
        "import torch.nn.functional as _F\n"
        "_F.log_softmax(torch.zeros(2, 3), dim=-1)  # allowed outside the probes\n")
    grade_cell(nb, "ch01_log_softmax").source = (
        "def log_softmax(logits, dim=-1):\n    return _library_log_softmax(logits, dim=dim)\n")
    grade_cell(nb, "ch01_adamw").source = (
        "def adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,\n"
        "                 weight_decay=0.01):\n"
        "    p = param.clone().requires_grad_(True)\n"
        "    opt = _LibraryAdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)\n"
        "    opt.state[p] = {'step': torch.tensor(float(step - 1)), 'exp_avg': exp_avg.clone(),\n"
        "                    'exp_avg_sq': exp_avg_sq.clone()}\n"
        "    p.grad = grad.clone()\n"
        "    opt.step()\n"
        "    s = opt.state[p]\n"
        "    return p.detach(), s['exp_avg'], s['exp_avg_sq']\n")
    path = tmp_path / "library.ipynb"
    nbformat.write(nb, str(path))
    result = engine.check_notebook(path)
    by_id = {c.grade_id: c for c in result.cells}
    for gid, label in [("ch01_log_softmax_test", "torch.log_softmax"), ("ch01_adamw_test", "torch.optim.AdamW")]:
        assert by_id[gid].points == 0, by_id[gid]
        assert f"calls {label}, which this exercise asks you to write yourself" in by_id[gid].message
    assert by_id["ch01_early_stopping_test"].points == by_id["ch01_early_stopping_test"].max_points
    assert not result.notes, result.notes  # the setup cell's own library call was allowed


# --------------------------------------------------------------------------- every chapter that bans something

def _binding(owner: str, name: str, alias: str) -> str:
    """Source that binds ``owner.name`` to ``alias`` the way a student would at import time: ``from module
    import name as alias``, or ``import module`` then the attribute path (a method of a library class)."""
    import importlib.util

    parts = owner.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is not None:
            rest = parts[cut:]
            if not rest:
                return f"from {module} import {name} as {alias}\n"
            return f"import {module} as {alias}_module\n{alias} = {alias}_module.{'.'.join(rest)}.{name}\n"
    raise AssertionError(f"no importable module in {owner}")


def _with_bans_bound(nb, exercises) -> None:
    """The solution, but every exercise that bans something first calls each banned callable bound at import
    time in the first code cell, by its global name (no arguments: a ban in force raises before the library
    runs), then calls the first one for real; a banned callable that does not raise the ban's error says so."""
    first = next(c for c in nb.cells if c.cell_type == "code")
    bindings = []
    for n, ex in enumerate(exercises):
        aliases = []
        for m, (owner, name, label) in enumerate(ex.bans):
            alias = f"_banned_{n}_{m}"
            bindings.append(_binding(owner, name, alias))
            aliases.append(f"({label!r}, {alias!r})")
        fn = ex.functions[0]
        cell = next(c for c in nb.cells if c.cell_type == "code" and (f"def {fn}(" in c.source
                                                                       or f"class {fn}" in c.source))
        cell.source += (
            f"\n\n_library_{n} = [{', '.join(aliases)}]\n_solution_{n} = {fn}\n\n"
            f"def {fn}(*args, **kwargs):\n"
            f"    for label, name in _library_{n}:\n"
            f"        try:\n"
            f"            globals()[name]()\n"
            f"        except RuntimeError as exc:\n"
            f"            if 'which this exercise asks you to write yourself' in str(exc):\n"
            f"                continue\n"
            f"        except Exception:\n"
            f"            pass\n"
            f"        raise AssertionError(f'the ban of {{label}} is not in force')\n"
            f"    globals()[_library_{n}[0][1]]()\n"
            f"    return _solution_{n}(*args, **kwargs)\n")
    first.source = "".join(bindings) + first.source


def _chapters_with_bans():
    return [c for c in engine.all_chapters() if any(ex.bans for ex in load_spec(c).exercises)]


@pytest.mark.parametrize("chapter", _chapters_with_bans())
def test_every_ban_catches_a_name_bound_at_import_time(chapter, tmp_path):
    """Each banned callable of every exercise, bound at import time before any other cell ran (a module the
    notebook had not imported yet included), is refused while that exercise is probed: the cell loses its
    points with the ban's own words; every exercise without bans keeps full points."""
    spec = load_spec(chapter)
    banning = [ex for ex in spec.exercises if ex.bans]
    nb = nbformat.read(str(root_dir() / "solutions" / chapter / spec.notebook), as_version=4)
    _with_bans_bound(nb, banning)
    path = tmp_path / "library.ipynb"
    nbformat.write(nb, str(path))
    result = engine.check_notebook(path)
    by_id = {c.grade_id: c for c in result.cells}
    for ex in spec.exercises:
        verdict = by_id[ex.grade_id]
        if ex.bans:
            label = ex.bans[0][2]
            assert verdict.points == 0, verdict
            assert "is not in force" not in verdict.message, verdict.message
            assert f"calls {label}, which this exercise asks you to write yourself" in verdict.message, verdict
        else:
            assert verdict.points == verdict.max_points, verdict
    assert not result.notes, result.notes  # binding at import time, and calling outside the probes, is allowed


def root_dir():
    from llmprep.grading.trusted import repo_root

    return repo_root()


def test_every_public_alias_of_a_banned_function_is_banned_too():
    """A ban gates one attribute of one module: a public module that binds the same function under its own name
    (``torch.distributed.distributed_c10d.all_reduce``) must be listed too, or importing from there walks past it."""
    import importlib
    import sys
    from types import ModuleType

    missing = []
    for chapter in engine.all_chapters():
        for ex in load_spec(chapter).exercises:
            banned = {(owner, name) for owner, name, _ in ex.bans}
            for owner, name, _ in ex.bans:
                try:
                    module = importlib.import_module(owner)
                except ImportError:
                    continue  # a method of a class: no module binds it
                obj = getattr(module, name, None)
                if obj is None or isinstance(obj, (type, ModuleType)):
                    continue  # classes and submodules are swapped wherever the notebook binds them
                for modname, mod in list(sys.modules.items()):
                    parts = modname.split(".")
                    if mod is None or parts[0] != owner.split(".")[0] or any(p.startswith("_") for p in parts):
                        continue
                    for attr, value in list(vars(mod).items()):
                        if value is obj and not attr.startswith("_") and (modname, attr) not in banned:
                            missing.append(f"{ex.grade_id}: {modname}.{attr} is {owner}.{name}")
    assert not missing, missing
