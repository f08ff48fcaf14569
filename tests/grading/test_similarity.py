"""`llmprep similarity`: near-copies rank first, the released stub alone makes no pair similar, and student code
and names reach the HTML report escaped."""
import csv

import nbformat
import pytest

from llmprep.grading.engine import load_spec
from llmprep.grading.notebook import nbgrader_meta
from llmprep.grading.similarity import compare, similarity_report

CH01 = "ch01_training"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"


def _answer_cells(nb):
    return [c for c in nb.cells if c.get("cell_type") == "code" and nbgrader_meta(c).get("solution")]


def _class(root, course):
    """alice: the solution; bob: alice's answers with names changed and comments added (a near-copy);
    carol, dave and a hostile name: the released stub, untouched; erin: correct answers in another style (the
    spec's alternatives); mallory: the stub, one alternative and a <script> in her code."""
    spec = load_spec(CH01)
    solution = nbformat.read(str(root / "solutions" / CH01 / spec.notebook), as_version=4)
    stub = nbformat.read(str(root / "course" / CH01 / spec.notebook), as_version=4)
    alternatives = [ex.alternative_source(name) for ex in spec.exercises for name in ex.alternatives]
    assert len(alternatives) >= 2
    bob = nbformat.from_dict(solution)
    for cell in _answer_cells(bob):
        lines = cell.source.replace("result", "out").replace("grad", "g").splitlines()
        cell.source = "\n".join(f"{line}  # my own work" if line.strip() else line for line in lines)
    erin = nbformat.from_dict(stub)
    _answer_cells(erin)[-1].source += "\n\n" + "\n\n".join(alternatives)
    mallory = nbformat.from_dict(stub)
    _answer_cells(mallory)[-1].source += ("\n\nbanner = \"<script>alert('owned')</script>\"\n\n" + alternatives[0])
    for student, nb in [("alice", solution), ("bob", bob), ("carol", stub), ("dave", stub), (HOSTILE_NAME, stub),
                        ("erin", erin), ("mallory", mallory)]:
        folder = course / "submitted" / student / CH01
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / spec.notebook))


def test_near_copies_rank_first_and_the_stub_makes_nothing_similar(root, tmp_path):
    course = tmp_path / "course_root"
    _class(root, course)
    report = compare(CH01, course)
    assert set(report.students) == {"alice", "bob", "carol", "dave", HOSTILE_NAME, "erin", "mallory"}
    top = report.pairs[0]
    assert (top.a, top.b) == ("alice", "bob") and top.similarity > 0.9
    stub_only = {"carol", "dave", HOSTILE_NAME}
    assert not [p for p in report.pairs if {p.a, p.b} & stub_only]  # the stub's code is boilerplate
    assert all("stub" in report.notes[s] for s in stub_only)
    erin_alice = next(p for p in report.pairs if {p.a, p.b} == {"alice", "erin"})
    assert erin_alice.similarity < top.similarity - 0.3  # another style is not a copy


def test_report_escapes_hostile_code_and_names(root, tmp_path, capsys):
    course = tmp_path / "course_root"
    _class(root, course)
    assert similarity_report(CH01, root=course, top=10) == 0
    page = (course / "build" / "similarity" / f"{CH01}.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<mark>" in page and "changes no" in page
    rows = list(csv.DictReader(open(course / "build" / "similarity" / f"{CH01}.csv")))
    assert (rows[0]["student_a"], rows[0]["student_b"], rows[0]["rank"]) == ("alice", "bob", "1")
    assert float(rows[0]["similarity"]) > 0.9 and len(rows) <= 10
    assert "alice ~ bob" in capsys.readouterr().out


def test_similarity_refuses_in_one_line(tmp_path, capsys):
    assert similarity_report("ch99_nothing", root=tmp_path) == 2
    assert similarity_report(CH01, root=tmp_path) == 1
    err = capsys.readouterr().err
    assert "unknown assignment 'ch99_nothing'" in err and "nothing to compare" in err and "Traceback" not in err


def test_similarity_cli_bad_input(capsys):
    from llmprep.cli import main

    assert main(["similarity", "ch99_nothing"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["similarity", CH01, "--top", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
