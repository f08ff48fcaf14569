"""`llmprep run`: every notebook executed headless, several at a time (longest expected first), graded ones
on one thread, a failure reported in the table without stopping the others, results gathered per chapter."""
import json
from pathlib import Path

import nbformat

from llmprep import course, headless
from llmprep.runtime import usable_cores


def _notebook(path, *sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), str(path))


def test_run_executes_reference_then_graded_and_reports_failures(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    record = ("import os\nfrom llmprep.results import record\n"
              "record({ch!r}, 'threads', os.environ.get('OMP_NUM_THREADS', 'default'))")
    for ch in ("ch01_a", "ch02_b"):
        _notebook(tmp_path / "solutions" / ch / f"{ch[:4]}_reference.ipynb", record.format(ch=ch))
        _notebook(tmp_path / "solutions" / ch / f"{ch[:4]}_exercises.ipynb", record.format(ch=ch))
    _notebook(tmp_path / "solutions" / "ch03_c" / "ch03_exercises.ipynb", "raise ValueError('broken on purpose')")

    assert headless.run(root=tmp_path, jobs=2) == 1  # one notebook failed
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("ch0")]
    table = [line.split() for line in lines]
    status = {(row[0], row[1]): "ok" if line.endswith(" ok") else line[line.find("FAILED"):]
              for line, row in zip(lines, table) if row[1].endswith(".ipynb")}
    assert status[("ch03_c", "ch03_exercises.ipynb")]== "FAILED: CellExecutionError: ValueError: broken on purpose"
    assert all(v == "ok" for k, v in status.items() if k[0] != "ch03_c") and len(status) == 5
    results = [(row[0], row[-1]) for row in table if not row[1].endswith(".ipynb")]
    # two at a time: a reference notebook gets half the cores, a graded one one thread; results in course order
    half = str(max(1, usable_cores() // 2))
    assert results == [("ch01_a", half), ("ch01_a", "1"), ("ch02_b", half), ("ch02_b", "1")]
    assert (tmp_path / "build" / "executed" / "ch03_c" / "ch03_exercises.ipynb").exists()
    timed = json.loads((tmp_path / "build" / headless.SECONDS_FILE).read_text())  # the next run's schedule
    assert set(timed) == {"ch01_a/ch01_reference.ipynb", "ch01_a/ch01_exercises.ipynb",
                          "ch02_b/ch02_reference.ipynb", "ch02_b/ch02_exercises.ipynb"}  # not the failed one
    assert all(v > 0 for v in timed.values())


def test_schedule_starts_the_longest_first_and_untimed_references_early(tmp_path):
    todo = [("ch01_a", Path("ch01_reference.ipynb")), ("ch01_a", Path("ch01_exercises.ipynb")),
            ("ch02_b", Path("ch02_reference.ipynb")), ("ch02_b", Path("ch02_exercises.ipynb")),
            ("ch03_c", Path("ch03_reference.ipynb"))]
    seconds = {"ch01_a/ch01_reference.ipynb": 30.0, "ch01_a/ch01_exercises.ipynb": 4.0,
               "ch02_b/ch02_reference.ipynb": 200.0, "ch02_b/ch02_exercises.ipynb": 3.0}
    order = [f"{ch}/{nb.name}" for ch, nb in headless.schedule(todo, seconds)]
    assert order == ["ch03_c/ch03_reference.ipynb", "ch02_b/ch02_reference.ipynb", "ch01_a/ch01_reference.ipynb",
                     "ch01_a/ch01_exercises.ipynb", "ch02_b/ch02_exercises.ipynb"]
    # two workers: 200 s on one, 30 + 4 + 3 on the other -> 200 s; one worker: the sum; an untimed notebook: unknown
    timed = [item for item in todo if not item[0].startswith("ch03")]
    assert headless.expected_wall(headless.schedule(timed, seconds), seconds, 2) == 200.0
    assert headless.expected_wall(timed, seconds, 1) == 237.0
    assert headless.expected_wall(todo, seconds, 2) is None
    # this machine's last run wins over the reference machine's figures; unreadable files are skipped
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / headless.SECONDS_FILE).write_text(json.dumps({"x/y.ipynb": 1}))
    assert headless.expected_seconds(tmp_path) == {"x/y.ipynb": 1.0}
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / headless.SECONDS_FILE).write_text("{not json")
    assert headless.expected_seconds(tmp_path) == {"x/y.ipynb": 1.0}
    (tmp_path / "build" / headless.SECONDS_FILE).write_text(json.dumps({"x/y.ipynb": 2}))
    assert headless.expected_seconds(tmp_path) == {"x/y.ipynb": 2.0}


def test_the_checked_in_schedule_names_every_notebook(root):
    names = {f"{ch}/{nb.name}" for ch in course.chapters(root) for nb in course.notebooks(ch, root)}
    assert set(json.loads((root / "benchmarks" / headless.SECONDS_FILE).read_text())) == names
