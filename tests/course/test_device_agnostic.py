"""The GPU path, checked on a CPU (issue 38): one device choice (``llmprep.runtime.pick_device``), no device
hard-coded in a notebook or spec outside an allow-list that says why, and every recorded result names the
device and dtype that produced it.

The scan is static (the code of every solution notebook, every autograder spec and the package): it looks
for a device *named* in code, i.e. a ``"cuda"``/``"cpu"`` string literal (``torch.device("cpu")``,
``.to("cuda")``, ``device="cpu"``, ``map_location="cpu"``), ``.cuda()`` or a Trainer's ``use_cpu=True``. A
comparison with the chosen device (``device.type == "cuda"``), ``torch.cuda.*`` calls and ``.cpu()`` (to NumPy,
to the host) are not choices and are not flagged. A reference notebook that lets setup() choose a device and then
computes on the CPU must be in ``llmprep.runtime.CPU_CHAPTERS`` (with its reason), so that its results say cpu.
Everything here runs on a CPU; nothing needs a GPU.
"""
from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from pathlib import Path

import pytest
import torch

import llmprep
from llmprep import results, runtime

ROOT = Path(llmprep.__file__).resolve().parent.parent  # works wherever tests/ is laid out

DEVICE_STRING = re.compile(r"""[rbuRBU]?(["'])(?:cuda|cpu)(?::\d+)?\1""")

# (file, a fragment of the flagged line, why the device is named there). Every entry must still match a line:
# a stale entry fails the test too, so the list stays the audit of what is hard-coded and why.
ALLOWED = [
    ("llmprep/runtime.py", 'torch.device("cuda" if torch.cuda.is_available() else "cpu")',
     "the course's one device choice (pick_device)"),
    ("llmprep/grading/isolate.py", '"cpu"', "a cgroup controller's name, not a torch device"),
    ("llmprep/results.py", "", "reports the device a result was computed on (and the CPU of old results files); "
     "chooses none"),
    ("solutions/ch01_training/ch01_reference.ipynb", 'map_location="cpu"',
     "a checkpoint holds torch's CPU RNG state (a CPU ByteTensor); load_state_dict copies the weights onto the "
     "model's device"),
    ("solutions/ch05_sentiment/ch05_reference.ipynb", 'device = torch.device("cpu")',
     "the CPU is the deployment target whose latency the chapter measures (TorchScript, batch 1)"),
    ("solutions/ch05_sentiment/ch05_reference.ipynb", 'torch.device("cuda") if torch.cuda.is_available()',
     "pitfall demo: a batch sent to another device than the model's"),
    ("solutions/ch06_generation/ch06_reference.ipynb", '"cpu" if device.type == "cuda" else "cuda"',
     "pitfall demo: inputs on another device than the model's"),
    ("solutions/ch11_posttraining/ch11_reference.ipynb", "use_cpu=True",
     "TRL's Trainer would move the shared SmolLM2 policy to CUDA by itself; the step-by-step comparison with the "
     "from-scratch DPO loop (and every later cell) runs on one device, the chapter's CPU"),
    ("autograder/ch11_posttraining.py", 'device = torch.device("cpu")',
     "the grading sandbox is CPU-only (no /dev/nvidia* inside): the stand-in for TRL's accelerator"),
]


@pytest.fixture(autouse=True)
def _no_device_chosen(monkeypatch):
    """pick_device remembers its choice for record(): keep one test's choice out of the next test."""
    monkeypatch.setattr(runtime, "_CHOSEN", None)


def _code_cells(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            yield f"cell {i}", "".join(cell["source"])


def _sources():
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        yield from ((path, where, src) for where, src in _code_cells(path))
    for folder in ("autograder", "llmprep", "llmprep/grading"):
        for path in sorted((ROOT / folder).glob("*.py")):
            yield path, "", path.read_text(encoding="utf-8")


def _device_names(src: str) -> list[int]:
    """Line numbers (1-based) where ``src`` names a device in code: a string literal that is exactly
    ``"cuda"``/``"cpu"`` (optionally ``:N``), unless it is compared (``== "cuda"``), a key or subscript
    (``state["cuda"]``, ``{"cuda": ...}``) or the argument of ``hasattr``/``getattr``/``startswith``; and every
    ``.cuda()``. Comments and docstrings are text, never code."""
    toks = [t for t in tokenize.generate_tokens(io.StringIO(src).readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)]
    lines = []
    for i, tok in enumerate(toks):
        before = toks[i - 1].string if i else ""
        after = toks[i + 1].string if i + 1 < len(toks) else ""
        if tok.type == tokenize.NAME and tok.string in ("use_cpu", "no_cuda") and after == "=" \
                and i + 2 < len(toks) and toks[i + 2].string == "True":  # transformers' Trainer told to stay on the CPU
            lines.append(tok.start[0])
        if tok.type == tokenize.NAME and tok.string == "cuda" and before == "." and after == "(" \
                and i + 2 < len(toks) and toks[i + 2].string == ")":
            lines.append(tok.start[0])
        if tok.type != tokenize.STRING or not DEVICE_STRING.fullmatch(tok.string):
            continue
        if before in ("==", "!=", "[") or after in ("==", "!=", ":") or _callee(toks, i) in NOT_A_CHOICE:
            continue
        lines.append(tok.start[0])
    return lines


NOT_A_CHOICE = ("hasattr", "getattr", "startswith")


def _callee(toks, i) -> str:
    """The name of the call whose argument list holds token ``i`` (``""`` outside a call)."""
    depth = 0
    for j in range(i - 1, 0, -1):
        s = toks[j].string
        if s in ")]}":
            depth += 1
        elif s in "([{" and s:
            if depth == 0:
                return toks[j - 1].string if s == "(" else ""
            depth -= 1
    return ""


def _flagged():
    found = []
    for path, where, src in _sources():
        if src.lstrip().startswith(("%", "!")):
            continue
        lines = src.splitlines()
        for n in _device_names(src):
            found.append((path.relative_to(ROOT).as_posix(), f"{where} line {n}".strip(), lines[n - 1].strip()))
    return found


def test_no_device_is_hard_coded_outside_the_allow_list():
    unexplained = [f"{file} {where}: {line}" for file, where, line in _flagged()
                   if not any(file == f and fragment in line for f, fragment, _ in ALLOWED)]
    assert not unexplained, ("a device is named in code outside llmprep.runtime.pick_device; create tensors and "
                             "models on the chosen device (`device = setup(...)`), or add the line to ALLOWED "
                             "with the reason it must be that device:\n" + "\n".join(unexplained))


def test_every_allow_list_entry_still_matches_a_line():
    flagged = _flagged()
    stale = [(f, fragment) for f, fragment, _ in ALLOWED
             if not any(file == f and fragment in line for file, _, line in flagged)]
    assert not stale, f"allow-list entries that match nothing any more (remove them): {stale}"


def test_the_scan_catches_a_hard_coded_device():
    named = ['x = torch.zeros(3, device="cuda")', "model.cuda()", "y = x.to('cpu:0')",
             'ckpt = torch.load(p, map_location="cpu")', 'd = torch.device("cuda" if ok else "cpu")',
             "args = DPOConfig(out, use_cpu=True)"]
    fine = ['if device.type == "cuda":\n    pass', "arr = x.detach().cpu().numpy()", "torch.cuda.synchronize()",
            'z = x.to(device)  # not "cuda"', 's = {"cuda": []}\nt = s["cuda"]', 'def f():\n    """on "cpu"."""',
            'ok = hasattr(v, "cpu")']
    assert all(_device_names(src) for src in named)
    assert not any(_device_names(src) for src in fine)


def _device_loads(path: Path) -> tuple[bool, int]:
    """(does the notebook assign ``device``, how often is it read)."""
    code = "\n".join(src for _, src in _code_cells(path) if not src.lstrip().startswith(("%", "!")))
    tree = ast.parse(code)
    assigned = any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "device" for t in n.targets)
                   for n in ast.walk(tree))
    loads = sum(isinstance(n, ast.Name) and n.id == "device" and isinstance(n.ctx, ast.Load) for n in ast.walk(tree))
    return assigned, loads


def test_a_reference_that_chooses_a_device_uses_it_or_is_a_cpu_chapter():
    """A reference notebook that calls setup() (which picks CUDA where present) but never reads ``device`` computes
    on the CPU everywhere: it must be in runtime.CPU_CHAPTERS with its reason, so that its recorded results say
    cpu on a GPU machine too; a notebook that starts using its device must leave that list."""
    unused = set()
    for path in sorted((ROOT / "solutions").glob("*/*_reference.ipynb")):
        code = "\n".join(src for _, src in _code_cells(path))
        assigned, loads = _device_loads(path)
        if ("setup(" in code or assigned) and loads == 0:
            unused.add(path.stem.split("_")[0])
    assert unused == set(runtime.CPU_CHAPTERS), (
        f"choose a device and never use it, not in runtime.CPU_CHAPTERS: {sorted(unused - set(runtime.CPU_CHAPTERS))}; "
        f"use their device now (remove from CPU_CHAPTERS): {sorted(set(runtime.CPU_CHAPTERS) - unused)}")
    assert all(len(reason) > 20 for reason in runtime.CPU_CHAPTERS.values())


def test_a_cpu_chapter_records_cpu_even_where_a_gpu_was_chosen(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    monkeypatch.setenv(results.RESULTS_ENV, str(path))
    monkeypatch.setattr(runtime, "_CHOSEN", "cuda")  # as setup() on a CUDA machine
    results.record("ch13_distributed", "gloo", 1.0)
    results.record("ch06_generation", "small GPT", 1.0)
    assert [r.device for r in results.read_results(path)] == ["cpu", "cuda"]


def test_the_device_aware_references_use_their_device():
    for stem in ("ch01_reference", "ch03_reference", "ch06_reference"):
        path = next((ROOT / "solutions").glob(f"*/{stem}.ipynb"))
        assert _device_loads(path)[1] >= 5, stem


def test_every_notebook_cell_parses_so_the_scan_sees_it():
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        for _where, src in _code_cells(path):
            if not src.lstrip().startswith(("%", "!")):
                ast.parse(src)  # a cell the tokenizer cannot read would hide its devices from the scan


@pytest.mark.parametrize("forced", ["cpu", "meta"])
def test_pick_device_honours_llmprep_device(monkeypatch, forced):
    monkeypatch.setenv(runtime.DEVICE_ENV, forced)
    assert runtime.pick_device() == torch.device(forced)
    assert runtime.chosen_device() == forced
    assert runtime.pick_device("cpu") == torch.device("cpu")  # an explicit preference wins over the variable


def test_pick_device_without_the_variable_is_cuda_only_when_present(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.pick_device().type == expected
    monkeypatch.setenv(runtime.DEVICE_ENV, "  ")  # blank is unset, not a device named " "
    assert runtime.pick_device().type == expected


def test_autocast_dtype_is_bf16_on_cpu():
    assert runtime.autocast_dtype(torch.device("cpu")) == torch.bfloat16
    assert runtime.autocast_dtype("cpu") == torch.bfloat16


def test_a_recorded_result_names_its_device_and_dtype(tmp_path, monkeypatch, capsys):
    path = tmp_path / "results.jsonl"
    monkeypatch.setenv(results.RESULTS_ENV, str(path))
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    runtime.pick_device()
    results.record("ch01_training", "accuracy", 0.5, anchor="chance")
    results.record("ch01_training", "accuracy under autocast", 0.6, dtype="bfloat16")
    results.record("ch13_distributed", "gloo", 1.0, device="cpu", dtype="float64")
    got = results.read_results(path)
    assert [(r.device, r.dtype) for r in got] == [("cpu", "float32"), ("cpu", "bfloat16"), ("cpu", "float64")]
    assert got[0].where == "cpu, float32"
    assert "cpu" not in capsys.readouterr().out  # a CPU figure prints exactly as before


def test_a_non_cpu_device_is_printed_beside_the_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(results.RESULTS_ENV, raising=False)
    results.record("ch01_training", "accuracy", 0.5, device="cuda", dtype="bfloat16")
    assert "[cuda, bfloat16]" in capsys.readouterr().out


def test_results_files_from_before_the_device_field_stay_readable(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"chapter": "ch01_training", "name": "old", "value": "1", "anchor": "a"}) + "\n"
                    + json.dumps({"chapter": "ch07_jax", "name": "new", "value": "2", "anchor": "",
                                  "device": "gpu", "dtype": "float32"}) + "\n")
    old, new = results.read_results(path)
    assert (old.device, old.dtype) == (results.LEGACY_DEVICE, "") == ("cpu", "")
    assert (new.device, new.dtype) == ("gpu", "float32")
    results.write_results(path, [old, new])  # rewritten with the fields filled
    assert json.loads(path.read_text().splitlines()[0])["device"] == "cpu"


def test_the_website_and_the_bench_table_show_the_device(tmp_path):
    from llmprep import book

    path = tmp_path / "results.jsonl"
    results.write_results(path, [results.Result("ch01_training", "acc", "76.9%", "CNN 76.1%", "cpu", "bfloat16")])
    table = book._results_table(path)
    assert "device, dtype" in table and "| cpu, bfloat16 |" in table

    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    md = bench.render([], [{"chapter": "ch01", "name": "acc", "value": "1", "anchor": "", "device": "cuda",
                            "dtype": "bfloat16"}], {}, "cpu", 0.0)
    assert md.startswith("Device: cpu") and "| cuda, bfloat16 |" in md


def test_gpu_check_runs_the_small_asset_chapters_and_records_the_device():
    script = (ROOT / "benchmarks" / "gpu_check").read_text()
    for chapter in ("ch01", "ch02", "ch06", "ch07", "ch08", "ch13"):
        assert chapter in script
    assert "LLMPREP_FULL" in script and "LLMPREP_DEVICE" in script
