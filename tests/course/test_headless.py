"""The headless runner's inactivity timeout: a kernel that shows no sign of life (no output, no CPU use) for
the timeout fails its notebook with the cell named, instead of hanging `llmprep run`; a cell that computes
silently or talks while it waits is left alone."""
from __future__ import annotations

import time

import nbformat
import pytest

from llmprep import headless


def _notebook(path, *sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), str(path))
    return path


def test_a_stuck_cell_fails_the_notebook_with_its_name(tmp_path):
    nb = _notebook(tmp_path / "stuck.ipynb", "import time\nprint('started')", "time.sleep(600)  # a stall",
                   "print('never reached')")
    out = tmp_path / "executed" / "stuck.ipynb"
    start = time.monotonic()
    with pytest.raises(headless.CellInactivityError, match=r"cell 1 \('time.sleep\(600\)  # a stall'\) showed no "
                                                           r"output and no CPU use for 0.05 min"):
        headless.execute_notebook(nb, out, tmp_path / "results.jsonl", idle_timeout=3)
    assert time.monotonic() - start < 120  # stopped after seconds, not the cell's ten minutes
    executed = nbformat.read(str(out), as_version=4)  # the executed copy is kept, with what ran
    assert executed.cells[0].outputs[0]["text"] == "started\n"


def test_silent_work_and_talking_waits_are_not_inactivity(tmp_path):
    busy = "t = time.time()\nwhile time.time() - t < 5:\n    pass  # silent, but computing"
    talking = "for i in range(5):\n    print(i, flush=True)\n    time.sleep(1)"
    nb = _notebook(tmp_path / "fine.ipynb", "import time", busy, talking)
    stats = headless.execute_notebook(nb, tmp_path / "out.ipynb", tmp_path / "results.jsonl", idle_timeout=2.5)
    assert stats["seconds"] >= 10


def test_run_reports_the_stalled_cell_in_its_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(headless.IDLE_ENV, "0.05")  # 3 s
    _notebook(tmp_path / "solutions" / "ch01_a" / "ch01_exercises.ipynb", "import time", "time.sleep(600)")
    assert headless.run(root=tmp_path, jobs=1) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ch01_a"))
    assert "FAILED: CellInactivityError: cell 1 ('time.sleep(600)')" in row


def test_the_idle_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(headless.IDLE_ENV, raising=False)
    assert headless.idle_timeout_default() == 60 * headless.DEFAULT_IDLE_MINUTES
    monkeypatch.setenv(headless.IDLE_ENV, "0.5")
    assert headless.idle_timeout_default() == 30
    monkeypatch.setenv(headless.IDLE_ENV, "0")  # never
    assert headless.idle_timeout_default() == 0
    monkeypatch.setenv(headless.IDLE_ENV, "soon")
    assert headless.idle_timeout_default() == 60 * headless.DEFAULT_IDLE_MINUTES


def test_no_kernel_yet_is_never_taken_for_a_stalled_one():
    # psutil.Process(None) is the calling process: with no kernel pid the monitor must look at nothing
    with headless._KernelMonitor(lambda: None, idle=0.1, interval=0.05) as monitor:
        monitor.touch((0, "x = 1"))
        time.sleep(0.5)
    assert monitor.stalled is None and monitor.peak == 0
