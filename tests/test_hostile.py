"""Hostile and malformed submissions graded in one batch beside an honest victim.

Each hostile student must earn exactly what their honest code deserves, the victim's grade must
not change, and the batch must finish. One `llmprep grade` run serves every assertion.
"""
import json
import shutil
import time

import nbformat
import pytest

from llmprep.grading import engine
from llmprep.grading.engine import load_spec
from llmprep.grading.gradebook import grade_assignment, gradebook_url

CH01 = "ch01_training"
FULL = 18.0
WRONG_LOG_SOFTMAX = "\ndef log_softmax(logits, dim=-1):\n    return logits * 0\n"
HONEST_WRONG = 14.0  # a wrong log_softmax loses its 2 points and cross_entropy's 2 (which calls it)


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _append(grade_id, code):
    def edit(nb, ctx):
        _cell(nb, grade_id).source += "\n" + code.format(**ctx)
    return edit


# student -> (edit of the solution notebook, expected score, file name)
STUDENTS = {
    "victim": (None, FULL, None),
    "patches_testing": (_append("ch01_log_softmax", "import numpy, torch\nnumpy.allclose = lambda *a, **k: True\n"
                                "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                                "torch.testing.assert_close = lambda *a, **k: None\n" + WRONG_LOG_SOFTMAX), HONEST_WRONG, None),
    "exception_handler": (_append("ch01_log_softmax",
                                  "ip = get_ipython()\nip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                                  "ip.events.register('post_run_cell', lambda *a, **k: None)\n" + WRONG_LOG_SOFTMAX),
                          HONEST_WRONG, None),
    "input_transformer": (_append("ch01_log_softmax", "get_ipython().input_transformers_post.append("
                                  "lambda lines: [l.replace('assert ', 'pass  # ') for l in lines])\n"
                                  + WRONG_LOG_SOFTMAX), HONEST_WRONG, None),
    "reads_solutions": (_append("ch01_log_softmax", WRONG_LOG_SOFTMAX +
                                "import json, os\n"
                                "for p in [{solution!r}, '../../solutions/ch01_training/ch01_exercises.ipynb']:\n"
                                "    if os.path.exists(p):\n"
                                "        src = [''.join(c['source']) for c in json.load(open(p))['cells']\n"
                                "               if 'def log_softmax' in ''.join(c['source'])][0]\n"
                                "        exec(src.replace('### BEGIN SOLUTION', '').replace('### END SOLUTION', ''))\n"),
                        HONEST_WRONG, None),
    "writes_gradebook": (_append("ch01_log_softmax", WRONG_LOG_SOFTMAX +
                                 "import sqlite3\n"
                                 "try:\n"
                                 "    con = sqlite3.connect({gradebook!r})\n"
                                 "    con.execute('UPDATE grade SET auto_score = 99')\n"
                                 "    con.commit()\n"
                                 "except Exception:\n    pass\n"), HONEST_WRONG, None),
    "daemon_writes_later": (_append("ch01_log_softmax", WRONG_LOG_SOFTMAX +
                                    "import os, time, sqlite3\n"
                                    "if os.fork() == 0:\n"
                                    "    os.setsid()\n"
                                    "    if os.fork() == 0:\n"
                                    "        time.sleep(4)\n"
                                    "        try:\n"
                                    "            con = sqlite3.connect({gradebook!r})\n"
                                    "            con.execute('UPDATE grade SET auto_score = 0')\n"
                                    "            con.commit()\n"
                                    "        except Exception:\n            pass\n"
                                    "        os._exit(0)\n"
                                    "    os._exit(0)\n"), HONEST_WRONG, None),
    "stderr_warnings": (_append("ch01_adamw", "import sys, warnings\nprint('a warning', file=sys.stderr)\n"
                                "warnings.warn('deprecated thing')\n"), FULL, None),
    "exits_after_answers": (lambda nb, ctx: nb.cells.append(nbformat.v4.new_code_cell("import os\nos._exit(0)")),
                            FULL, None),
    "renamed_notebook": (None, FULL, "Copy of ch01_exercises (1).ipynb"),
    "huge_output": (_append("ch01_log_softmax", "print('x' * (50 * 2**20))\n"), FULL, None),
    "memory_hog": (_append("ch01_cross_entropy", "try:\n    hog = bytearray(40 * 2**30)\nexcept MemoryError:\n"
                           "    pass\nhog = bytearray(40 * 2**30)\n"), FULL, None),
}


def _changed_ids(nb, ctx):
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"renamed-{i}"


def _duplicate_test_cell(nb, ctx):
    test = _cell(nb, "ch01_adamw_test")
    nb.cells.append(nbformat.from_dict(json.loads(json.dumps(test))))


def _unknown_schema(nb, ctx):
    for cell in nb.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata["nbgrader"]["schema_version"] = 99


STUDENTS["changed_cell_ids"] = (_changed_ids, FULL, None)
STUDENTS["duplicate_test_cell"] = (_duplicate_test_cell, FULL, None)
STUDENTS["unknown_schema"] = (_unknown_schema, FULL, None)
STUDENTS["nbformat_v3"] = ("v3", FULL, None)
STUDENTS["invalid_json"] = ("invalid", None, None)
STUDENTS["retyped_cell"] = ("retype", HONEST_WRONG, None)  # log_softmax's cell became markdown


@pytest.fixture(scope="module")
def batch(root, tmp_path_factory):
    course = tmp_path_factory.mktemp("hostile") / "course_root"
    shutil.copytree(root / "solutions" / CH01, course / "solutions" / CH01)
    nb_name = load_spec(CH01).NOTEBOOK
    ctx = {"solution": str(root / "solutions" / CH01 / nb_name), "gradebook": str(course / "gradebook.db")}
    for student, (edit, _, name) in STUDENTS.items():
        folder = course / "submitted" / student / CH01
        folder.mkdir(parents=True)
        target = folder / (name or nb_name)
        nb = nbformat.read(str(root / "solutions" / CH01 / nb_name), as_version=4)
        if edit == "invalid":
            target.write_text('{"cells": [')
            continue
        if edit == "v3":
            nbformat.write(nbformat.convert(nb, 3), str(target), version=3)
            continue
        if edit == "retype":
            _cell(nb, "ch01_log_softmax").cell_type = "markdown"
            del _cell(nb, "ch01_log_softmax")["outputs"], _cell(nb, "ch01_log_softmax")["execution_count"]
        elif edit is not None:
            edit(nb, ctx)
        nbformat.write(nb, str(target))
    start = time.perf_counter()
    code = grade_assignment(CH01, root=course, jobs=2)
    seconds = time.perf_counter() - start
    time.sleep(6)  # give any escaped daemon the time to do its damage
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(gradebook_url(course)) as gb:
        for student in STUDENTS:
            try:
                scores[student] = gb.find_submission(CH01, student).score
            except Exception:  # noqa: BLE001 - not in the gradebook
                scores[student] = None
    return {"code": code, "scores": scores, "course": course, "seconds": seconds}


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_each_student_gets_what_their_code_deserves(batch, student):
    expected = STUDENTS[student][1]
    if engine.isolation().level != "namespaces" and student in ("reads_solutions", "writes_gradebook",
                                                                "daemon_writes_later"):
        pytest.skip("needs mount and pid namespaces, which this OS does not grant")
    assert batch["scores"][student] == expected, batch["scores"]


def test_the_batch_finishes_and_reports_failures(batch):
    assert batch["code"] == 1  # the invalid file could not be graded; everything else was
    rows = (batch["course"] / "build" / "grades" / f"{CH01}.csv").read_text()
    assert "invalid_json" in rows and "not a readable notebook" in rows
    assert rows.count("graded") >= len(STUDENTS) - 1


def test_autograded_notebooks_show_verdicts_not_hidden_material(batch):
    spec = load_spec(CH01)
    folder = batch["course"] / "autograded"
    files = list(folder.rglob("*.ipynb"))
    assert len(files) == len(STUDENTS) - 1
    for path in files:
        text = path.read_text()
        assert path.stat().st_size < 200_000, path  # the 50 MB print is not copied into grading artifacts
        assert "llmprep grader:" in text
        for ex in spec.EXERCISES:
            assert ex.probe.__name__ not in text
            for case in ex.cases:
                for key in case.params:
                    assert f'"{key}"' not in text and f"'{key}'" not in text


def test_generate_feedback_works_on_the_trusted_verdicts(batch):
    from llmprep.course import nbgrader

    nbgrader(["generate_feedback", CH01, "--force"], batch["course"])
    victim = batch["course"] / "feedback" / "victim" / CH01 / "ch01_exercises.html"
    html = victim.read_text()
    assert "llmprep grader: 3 / 3 points" in html
    spec = load_spec(CH01)
    for ex in spec.EXERCISES:
        assert ex.probe.__name__ not in html
