"""Hostile and malformed submissions graded in one batch (``--jobs 2``) beside honest victims.

Everything is verified from outside the sandbox: after the batch, sentinel files in every place a
submission might reach (repository, specs, reference cache, asset cache, interpreter library,
virtual environment, the grader's home, the shared temporary folders, a neighbour's files) are
unchanged, no process of the batch is left, a loopback listener got no connection, every victim
kept full marks, every attacker got exactly what its honest code deserves, the CSV and the
gradebook agree, and the autograded notebooks and feedback hold no hidden material and no
live HTML. One ``grade_assignment`` run serves every assertion.
"""
import csv
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from llmprep.grading import engine
from llmprep.grading.batch import grade_assignment
from llmprep.grading.engine import Limits, load_spec
from llmprep.grading.record import gradebook_url
from notebooks import grade_cell

CH01 = "ch01_training"
FULL = 18.0
WRONG_LOG_SOFTMAX = "\ndef log_softmax(logits, dim=-1):\n    return logits * 0\n"
HONEST_WRONG = 14.0  # a wrong log_softmax loses its 2 points and cross_entropy's 2 (which calls it)
MARKER = "llmprep-hostile-marker"
LIMITS = Limits(wall=300, cell_timeout=60, case_timeout=60)  # generous: CI runs this beside other tests

pytestmark = pytest.mark.skipif(not engine.isolation().strong,
                                reason=f"no sandbox on this machine: {engine.isolation().why}")




def _append(grade_id, code, wrong=True):
    def edit(nb, ctx):
        grade_cell(nb, grade_id).source += "\n" + (WRONG_LOG_SOFTMAX if wrong else "") + code.format(**ctx)
    return edit


def _new_cell(code):
    def edit(nb, ctx):
        nb.cells.append(nbformat.v4.new_code_cell(code.format(**ctx)))
    return edit


# ---------------------------------------------------------------------- attacks (code run by students)

# Try to leave the jail: unmount, remount, mount over, pivot through /proc, join the host's
# namespaces, ptrace the parent, create a user namespace, make device nodes, then write to every
# host location (directly and through /proc/1/root).
ESCAPE = r'''
import ctypes, ctypes.util, os, glob
libc = ctypes.CDLL(None, use_errno=True)
for target in [b"/", b"/usr", b"/proc", b"/tmp", b"/sandbox/work", {repo_b!r}]:
    libc.umount2(target, 2)
libc.mount(b"none", b"/", None, 0x20 | 0x4000, None)  # MS_REMOUNT | MS_BIND -> rw
libc.mount(b"tmpfs", b"/usr", b"tmpfs", 0, None)
libc.unshare(0x10000000)  # CLONE_NEWUSER
for ns in glob.glob("/proc/1/ns/*") + glob.glob("/proc/*/ns/mnt"):
    try:
        fd = os.open(ns, os.O_RDONLY)
        libc.setns(fd, 0)
    except OSError:
        pass
libc.ptrace(16, os.getppid(), None, None)  # PTRACE_ATTACH
os.system("umount -l / 2>/dev/null; mount -o remount,rw / 2>/dev/null")
import stat
for dev, kind in [("disk", stat.S_IFBLK | 0o666), ("mem", stat.S_IFCHR | 0o666)]:
    try:  # a block device of the host disk (8, 0) or /dev/mem (1, 1), if it could be made
        os.mknod(dev, kind, os.makedev(8, 0) if dev == "disk" else os.makedev(1, 1))
        open(dev, "r+b").write(b"x")
    except OSError:
        pass
secret = None
for root in ["", "/proc/1/root", "/proc/self/root", "/proc/2/root"] + [f"/proc/{{p}}/root" for p in range(3, 40)]:
    try:
        secret = open(root + {solution!r}).read()
        break
    except OSError:
        pass
if secret:
    import json as _j
    src = [''.join(c['source']) for c in _j.loads(secret)['cells'] if 'def log_softmax' in ''.join(c['source'])][0]
    exec(src.replace('### BEGIN SOLUTION', '').replace('### END SOLUTION', ''))
for path in {targets!r}:
    for root in ["", "/proc/1/root"]:
        try:
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            with open(root + path, "a") as fh:
                fh.write("\nimport os; os.environ['PWNED'] = '1'\n")
        except OSError:
            pass
        try:
            os.unlink(root + path)
        except OSError:
            pass
import sqlite3
try:
    con = sqlite3.connect({gradebook!r})
    con.execute("UPDATE grade SET auto_score = 99")
    con.commit()
except Exception:
    pass
'''

# Neighbours: find other sandboxes of the same batch, hard-link or overwrite their files, and
# fill every writable place.
NEIGHBOURS = r'''
import os
for base in ["/tmp", "/var/tmp", "/sandbox", "/", {tmp_parent!r}]:
    try:
        for name in os.listdir(base):
            p = os.path.join(base, name)
            try:
                os.link(p, "stolen-" + name)
            except OSError:
                pass
            try:
                with open(p, "w") as fh:
                    fh.write("x")
            except OSError:
                pass
    except OSError:
        pass
for folder in ["/tmp", "/sandbox/work", {tmp_parent!r}]:
    try:
        with open(os.path.join(folder, "fill"), "wb") as fh:
            for _ in range(2048):
                fh.write(b"\0" * 2**20)
    except OSError:
        pass
'''

# Processes: a fork bomb (capped), a double-forked daemon that writes later, and a connection
# to a listener on the host's loopback.
PROCESSES = r'''
import os, time, socket
kids = []
for _ in range(400):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        import sys
        sys.argv = ["{marker}"]
        time.sleep(4)
        for path in {targets!r}:
            try:
                with open(path, "a") as fh:
                    fh.write("late")
            except OSError:
                pass
        os._exit(0)
    os._exit(0)
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hello")
except OSError:
    pass
'''

# Results channel: forged, malformed and oversized frames on every pipe, then exit so that the
# forgery is the last thing the grader reads.
FORGE = r'''
import os, stat, io, json, zipfile
def frame(kind, payload):
    return kind.encode() + b" " + str(len(payload)).encode() + b"\n" + payload
deep = ("[" * 5000 + "]" * 5000).encode()
zbuf = io.BytesIO()
with zipfile.ZipFile(zbuf, "w") as zf:
    zf.writestr("a|submitted|0|x.npy", b"\x93NUMPY\x01\x00v\x00{{'descr': '<f8', 'fortran_order': False, "
                b"'shape': (400000000,), }}" + b" " * 50 + b"\n" + b"\0" * 64)
blobs = [frame("summary", b"[1, 2, 3]"), frame("summary", deep), frame("progress", deep),
         frame("progress", json.dumps({{"phase": ["x"], "index": "0"}}).encode()),
         frame("npz", zbuf.getvalue()),
         frame("summary", json.dumps({{"cells": [{{"index": 999, "status": "ok"}}], "probes": []}}).encode())]
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            for b in blobs:
                os.write(fd, b)
    except OSError:
        pass
os._exit(0)
'''

# Feedback: live HTML in exception text, and the job (hidden cases, probe source) found in memory.
INJECT = r'''
import gc
job = next((o for o in gc.get_objects() if isinstance(o, dict) and "exercises" in o and "cells" in o), None)
if job is not None:
    leak = json_text = str(job["exercises"][0]["cases"]) + job["exercises"][0]["probe"]
    raise RuntimeError("<script>alert(1)</script><img src=x onerror=alert(2)> " + leak[:200])
raise RuntimeError("<script>alert(1)</script><img src=x onerror=alert(2)>")
'''

TIME_ABUSE = r'''
import signal
signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.setitimer = lambda *a, **k: None
while True:
    pass
'''

HELPER_MODULE = ("import torch\n\ndef log_softmax(logits, dim=-1):\n"
                 "    shifted = logits - logits.amax(dim=dim, keepdim=True)\n"
                 "    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()\n")


def _use_helper(nb, ctx):
    cell = grade_cell(nb, "ch01_log_softmax")
    cell.source = "from my_helpers import log_softmax\n"


def _magics(nb, ctx):
    cell = grade_cell(nb, "ch01_log_softmax")
    cell.source = "%matplotlib inline\n%config InlineBackend.figure_format = 'png'\n" + cell.source
    cell = grade_cell(nb, "ch01_cross_entropy")
    cell.source = "%%time\n" + cell.source


def _syntax_error(nb, ctx):
    grade_cell(nb, "ch01_log_softmax").source += "\ndef broken(:\n    pass\n"


# student -> (edit of the solution notebook, expected score, file name, extra files)
STUDENTS = {
    "victim_a": (None, FULL, None, None),
    "victim_b": (None, FULL, None, None),
    "victim_c": (None, FULL, None, None),
    "escape": (_append("ch01_log_softmax", ESCAPE), HONEST_WRONG, None, None),
    "neighbours": (_append("ch01_log_softmax", NEIGHBOURS), HONEST_WRONG, None, None),
    "processes": (_append("ch01_log_softmax", PROCESSES), HONEST_WRONG, None, None),
    "forged_results": (_new_cell(FORGE), FULL, None, None),
    "feedback_injection": (_new_cell(INJECT), FULL, None, None),
    "time_abuse": (_new_cell(TIME_ABUSE), FULL, None, None),
    "symlinked_files": (None, FULL, None, "links"),
    "symlinked_notebook": ("symlink", None, None, None),
    "patches_testing": (_append("ch01_log_softmax", "import numpy, torch\nnumpy.allclose = lambda *a, **k: True\n"
                                "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                                "torch.testing.assert_close = lambda *a, **k: None\n"), HONEST_WRONG, None, None),
    "exception_handler": (_append("ch01_log_softmax",
                                  "ip = get_ipython()\nip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                                  "ip.events.register('post_run_cell', lambda *a, **k: None)\n"), HONEST_WRONG, None,
                          None),
    "input_transformer": (_append("ch01_log_softmax", "get_ipython().input_transformers_post.append("
                                  "lambda lines: [l.replace('assert ', 'pass  # ') for l in lines])\n"),
                          HONEST_WRONG, None, None),
    "stderr_warnings": (_append("ch01_adamw", "import sys, warnings\nprint('a warning', file=sys.stderr)\n"
                                "warnings.warn('deprecated thing')\n", wrong=False), FULL, None, None),
    "exits_after_answers": (_new_cell("import os\nos._exit(0)"), FULL, None, None),
    "renamed_notebook": (None, FULL, "Copy of ch01_exercises (1).ipynb", None),
    "huge_output": (_append("ch01_log_softmax", "print('x' * (50 * 2**20))\n", wrong=False), FULL, None, None),
    "memory_hog": (_append("ch01_cross_entropy", "try:\n    hog = bytearray(40 * 2**30)\nexcept MemoryError:\n"
                           "    pass\nhog = bytearray(40 * 2**30)\n", wrong=False), FULL, None, None),
    "helper_module": (_use_helper, FULL, None, "helper"),
    "magics": (_magics, FULL, None, None),
    "syntax_error": (_syntax_error, FULL - 4, None, None),  # log_softmax never defined: it and cross_entropy lose
    "invalid_json": ("invalid", None, None, None),
    "nbformat_v3": ("v3", FULL, None, None),
    "retyped_cell": ("retype", HONEST_WRONG, None, None),  # log_softmax's cell became markdown
}


def _changed_ids(nb, ctx):
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"renamed-{i}"


def _duplicate_test_cell(nb, ctx):
    nb.cells.append(nbformat.from_dict(json.loads(json.dumps(grade_cell(nb, "ch01_adamw_test")))))


def _unknown_schema(nb, ctx):
    for cell in nb.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata["nbgrader"]["schema_version"] = 99


STUDENTS["changed_cell_ids"] = (_changed_ids, FULL, None, None)
STUDENTS["duplicate_test_cell"] = (_duplicate_test_cell, FULL, None, None)
STUDENTS["unknown_schema"] = (_unknown_schema, FULL, None, None)


# ---------------------------------------------------------------------- sentinels (outside the sandbox)

def _digest(path: Path) -> str:
    if not path.exists():
        return "absent"
    if path.is_dir():
        return hashlib.sha256("\n".join(sorted(
            f"{p.relative_to(path)}:{p.stat().st_size}:{_digest(p) if p.stat().st_size < 2**20 else ''}"
            for p in path.rglob("*") if p.is_file())).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def batch(root, tmp_path_factory):
    course = tmp_path_factory.mktemp("hostile") / "course_root"
    shutil.copytree(root / "solutions" / CH01, course / "solutions" / CH01)
    nb_name = load_spec(CH01).NOTEBOOK
    engine.reference_run(CH01)  # the reference cache exists before any attacker runs
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    stdlib = Path(os.__file__).parent
    shared_tmp = Path(tempfile.mkdtemp(prefix="llmprep-sentinel-"))
    (shared_tmp / "neighbour.txt").write_text("a file of someone else")
    home_sentinel = Path.home() / ".llmprep-hostile-sentinel"
    home_sentinel.write_text("home")
    var_tmp = Path("/var/tmp") / f"llmprep-sentinel-{os.getpid()}"
    var_tmp.write_text("var tmp")
    from llmprep.assets import cache_root

    sentinels = {
        "spec": root / "autograder" / f"{CH01}.py",
        "solution": root / "solutions" / CH01 / nb_name,
        "sandbox code": root / "llmprep" / "grading" / "sandbox.py",
        "git HEAD": root / ".git" / "HEAD",
        "asset cache": cache_root() / "assets" / "gpt2_tokenizer",
        "interpreter library": stdlib / "os.py",
        "interpreter sitecustomize": stdlib / "sitecustomize.py",
        "venv sitecustomize": site / "sitecustomize.py",
        "venv usercustomize": site / "usercustomize.py",
        "home": home_sentinel,
        "shared tmp": shared_tmp,
        "var tmp": var_tmp,
        "course copy of the solutions": course / "solutions" / CH01 / nb_name,
    }
    cache = root / "build" / "grading-cache"  # (other chapters' references may be added meanwhile, by us)
    sentinels.update({f"reference cache {p.name}": p for p in cache.glob(f"{CH01}-*")})
    before = {k: _digest(v) for k, v in sentinels.items()}
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    ctx = {"solution": str(root / "solutions" / CH01 / nb_name), "gradebook": str(course / "gradebook.db"),
           "repo_b": str(root).encode(), "targets": [str(p) for p in sentinels.values()]
           + [str(p / "x") for p in (cache, shared_tmp)],
           "tmp_parent": tempfile.gettempdir(), "marker": MARKER, "port": listener.getsockname()[1]}
    for student, (edit, _, name, extra) in STUDENTS.items():
        folder = course / "submitted" / student / CH01
        folder.mkdir(parents=True)
        target = folder / (name or nb_name)
        nb = nbformat.read(str(root / "solutions" / CH01 / nb_name), as_version=4)
        if edit == "invalid":
            target.write_text('{"cells": [')
            continue
        if edit == "symlink":
            target.symlink_to(root / "solutions" / CH01 / nb_name)
            continue
        if edit == "v3":
            nbformat.write(nbformat.convert(nb, 3), str(target), version=3)
            continue
        if edit == "retype":
            grade_cell(nb, "ch01_log_softmax").cell_type = "markdown"
            del grade_cell(nb, "ch01_log_softmax")["outputs"], grade_cell(nb, "ch01_log_softmax")["execution_count"]
        elif edit is not None:
            edit(nb, ctx)
        nbformat.write(nb, str(target))
        if extra == "helper":
            (folder / "my_helpers.py").write_text(HELPER_MODULE)
        if extra == "links":  # links to private files and a FIFO: never followed, never waited on
            (folder / "solution_link.ipynb").symlink_to(root / "solutions" / CH01 / nb_name)
            (folder / "spec_link.py").symlink_to(root / "autograder" / f"{CH01}.py")
            (folder / "repo_link").symlink_to(root)
            os.mkfifo(folder / "data.fifo")
    start = time.perf_counter()
    code = grade_assignment(CH01, root=course, jobs=2, limits=LIMITS)
    seconds = time.perf_counter() - start
    time.sleep(6)  # give any escaped daemon the time to do its damage
    connections = 0
    try:
        while True:
            listener.accept()
            connections += 1
    except BlockingIOError:
        pass
    listener.close()
    after = {k: _digest(v) for k, v in sentinels.items()}
    leftovers = subprocess.run(["pgrep", "-f", MARKER], capture_output=True, text=True).stdout.split()
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(gradebook_url(course)) as gb:
        for student in STUDENTS:
            try:
                scores[student] = gb.find_submission(CH01, student).score
            except Exception:  # noqa: BLE001 - not in the gradebook
                scores[student] = None
    rows = {r["student"]: r for r in csv.DictReader(open(course / "build" / "grades" / f"{CH01}.csv"))}
    home_sentinel.unlink()
    var_tmp.unlink()
    shutil.rmtree(shared_tmp)
    return {"code": code, "scores": scores, "course": course, "seconds": seconds, "before": before,
            "after": after, "connections": connections, "leftovers": leftovers, "rows": rows}


def test_no_sentinel_outside_the_sandbox_changed(batch):
    changed = [k for k in batch["before"] if batch["before"][k] != batch["after"][k]]
    assert not changed, changed


def test_no_process_survives_and_no_connection_left_the_sandbox(batch):
    assert batch["leftovers"] == []
    assert batch["connections"] == 0


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_each_student_gets_what_their_code_deserves(batch, student):
    assert batch["scores"][student] == STUDENTS[student][1], (student, batch["rows"].get(student))


def test_csv_and_gradebook_agree(batch):
    for student, row in batch["rows"].items():
        score = batch["scores"][student]
        if row["status"].startswith("graded"):
            assert float(row["score"]) == score, student
        else:
            assert score is None and row["score"] == "", student
    assert set(batch["rows"]) == set(STUDENTS)


def test_the_batch_finishes_within_its_budget_and_reports_failures(batch):
    assert batch["code"] == 1  # the invalid file and the symlinked notebook could not be graded
    rows = batch["rows"]
    assert "not a readable notebook" in rows["invalid_json"]["status"]
    assert rows["symlinked_notebook"]["status"].startswith("missing")
    # at most every student's full budget spread over two jobs; in practice far less
    assert batch["seconds"] < len(STUDENTS) * LIMITS.wall / 2


def test_time_abuse_costs_one_budget_and_is_reported(batch):
    autograded = batch["course"] / "autograded" / "time_abuse" / CH01 / "ch01_exercises.ipynb"
    text = autograded.read_text()
    assert "ignored the alarm" in text


def test_syntax_errors_name_the_cell_as_the_learner_sees_it(batch):
    text = (batch["course"] / "autograded" / "syntax_error" / CH01 / "ch01_exercises.ipynb").read_text()
    assert "your answer for ch01_log_softmax" in text and "SyntaxError" in text
    assert "KeyError" not in text


def test_autograded_notebooks_and_feedback_show_verdicts_not_hidden_material(batch):
    from llmprep.course import nbgrader

    nbgrader(["generate_feedback", CH01, "--force"], batch["course"])
    spec = load_spec(CH01)
    files = list((batch["course"] / "autograded").rglob("*.ipynb")) + \
        list((batch["course"] / "feedback").rglob("*.html"))
    assert len(files) >= 2 * (len(STUDENTS) - 2)
    for path in files:
        text = path.read_text()
        assert path.stat().st_size < 2_000_000, path  # the 50 MB print is not copied into grading artifacts
        assert "llmprep grader:" in text
        assert "<script>alert" not in text and "<img src=x" not in text, path
        for ex in spec.EXERCISES:
            assert ex.probe.__name__ not in text, path
            for case in ex.cases:
                for key, value in case.params.items():
                    if path.suffix == ".ipynb":  # (HTML has its own quoted words, such as class="n")
                        assert f'"{key}"' not in text and f"'{key}'" not in text, (path, key)
                    if len(json.dumps(value)) >= 12:
                        assert json.dumps(value)[:40] not in text and repr(value)[:40] not in text, (path, key)
    injected = (batch["course"] / "autograded" / "feedback_injection" / CH01 / "ch01_exercises.ipynb").read_text()
    assert "message withheld" in injected and "params" not in injected and "script" not in injected
    victim = (batch["course"] / "feedback" / "victim_a" / CH01 / "ch01_exercises.html").read_text()
    assert "llmprep grader: 3 / 3 points" in victim


def test_grade_refuses_without_a_sandbox(root, tmp_path, monkeypatch, capsys):
    from llmprep.grading import batch as batch_module

    monkeypatch.setattr(batch_module, "isolation", lambda: engine.Isolation("limits", why="test: no bwrap"))
    (tmp_path / "submitted" / "s" / CH01).mkdir(parents=True)
    assert grade_assignment(CH01, root=tmp_path) == 2
    err = capsys.readouterr().err
    assert "no sandbox can start here" in err and "--unsandboxed" in err
