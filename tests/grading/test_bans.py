"""The library ban of a from-scratch exercise also catches a name the student bound at import time
(the gates are installed before the first cell runs), is in force only while that exercise is
probed (the rest of the notebook may use the library), and says which call it blocked: here through the whole
grading path (ch01); every ban of every chapter in tests/chapters/test_mutants.py."""
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


# Every chapter that bans something: tests/chapters/test_mutants.py (the bans bound at import time ride on the
# chapter's one mutant run: test_every_ban_catches_a_name_bound_at_import_time).


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
