"""`llmprep run`: every notebook executed headless, graded ones on one thread (several at a time),
a failure reported in the table without stopping the others, results gathered per chapter."""
import nbformat

from llmprep import course


def _notebook(path, *sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), str(path))


def test_run_executes_reference_then_graded_and_reports_failures(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    record = ("import os\nfrom llmprep.report import record\n"
              "record({ch!r}, 'threads', os.environ.get('OMP_NUM_THREADS', 'default'))")
    for ch in ("ch01_a", "ch02_b"):
        _notebook(tmp_path / "solutions" / ch / f"{ch[:4]}_reference.ipynb", record.format(ch=ch))
        _notebook(tmp_path / "solutions" / ch / f"{ch[:4]}_exercises.ipynb", record.format(ch=ch))
    _notebook(tmp_path / "solutions" / "ch03_c" / "ch03_exercises.ipynb", "raise ValueError('broken on purpose')")

    assert course.run(root=tmp_path, jobs=2) == 1  # one notebook failed
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("ch0")]
    table = [line.split() for line in lines]
    status = {(row[0], row[1]): "ok" if line.endswith(" ok") else line[line.find("FAILED"):]
              for line, row in zip(lines, table) if row[1].endswith(".ipynb")}
    assert status[("ch03_c", "ch03_exercises.ipynb")]== "FAILED: CellExecutionError: ValueError: broken on purpose"
    assert all(v == "ok" for k, v in status.items() if k[0] != "ch03_c") and len(status) == 5
    results = [(row[0], row[-1]) for row in table if not row[1].endswith(".ipynb")]
    # reference notebooks keep the default threads, graded ones get one; results grouped by chapter
    assert results == [("ch01_a", "default"), ("ch01_a", "1"), ("ch02_b", "default"), ("ch02_b", "1")]
    assert (tmp_path / "build" / "executed" / "ch03_c" / "ch03_exercises.ipynb").exists()
