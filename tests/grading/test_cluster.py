"""Grading through a real Dask cluster (``llmprep grade --cluster``): a scheduler and two worker processes on this
machine grading 40 submissions, every connection mutual TLS with certificate files made by openssl (README's
recipe), one worker killed mid-batch, every submission graded exactly once with the scores a single-host run gives,
a worker of another course refused, a peer without the course's certificate unable to join or connect, and a hostile
student unable to reach the client's files or the gradebook (checked from outside). One cluster batch serves every
assertion."""
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import nbformat
import pytest

from llmprep.grading import cluster, engine, record
from llmprep.grading.batch import grade_assignment
from llmprep.grading.engine import Limits, load_spec
from llmprep.grading.record import gradebook_url

pytestmark = [pytest.mark.sandbox, pytest.mark.slow,
              pytest.mark.skipif(not engine.isolation().strong,
                                 reason=f"no sandbox on this machine: {engine.isolation().why}")]

CH = "ch15_agents"  # the cheapest chapter to run (pure Python answers: about 0.3 CPU-s a submission)
COPIES = 13  # of each kind (solution, stub, partial): 39 honest students, plus one hostile: 40 submissions
LIMITS = Limits(wall=300, cell_timeout=60, case_timeout=60)
MARKER = "llmprep-cluster-secret-7f3a"

HOSTILE = r'''
import os, socket, sqlite3, glob
found = []
for path in [{secret!r}, {gradebook!r}] + glob.glob({course!r} + "/**", recursive=True):
    try:
        found.append(open(path, errors="replace").read()[:200])
    except Exception:
        pass
for path in [{secret!r}, {course!r} + "/planted.txt"]:
    try:
        open(path, "w").write("owned")
    except Exception:
        pass
try:
    db = sqlite3.connect({gradebook!r})
    db.execute("UPDATE grade SET auto_score = 999")
    db.commit()
except Exception:
    pass
try:
    socket.create_connection(({host!r}, {port}), timeout=2).sendall(b"x")
    found.append("connected to the scheduler")
except Exception:
    pass
print("FOUND", found)
'''


# Appended to mallory's answer cell: if any worker-side folder of any task (its own or another student's, running
# beside it on the other worker) is visible from inside the sandbox, the answer turns wrong, which the score shows
# from outside (mallory must keep the solution's score).
OTHER_TASKS = r'''
import glob as _glob
if any(_glob.glob(f"/tmp/llmprep-{kind}-*") for kind in ("remote", "stage", "pack")):
    def reliability(outcomes, k):  # another task's folder was visible from this sandbox
        return {"pass_at_k": 0.0, "pass_hat_k": 0.0}
'''


def _kinds(root):
    spec = load_spec(CH)
    solution = nbformat.read(str(root / "solutions" / CH / spec.notebook), as_version=4)
    stub = nbformat.read(str(root / "course" / CH / spec.notebook), as_version=4)
    stub_cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in stub.cells}
    partial = nbformat.from_dict(json.loads(json.dumps(solution)))
    answers = [c for c in partial.cells if c.metadata.get("nbgrader", {}).get("solution")]
    answers[0].source = stub_cells[answers[0].metadata["nbgrader"]["grade_id"]]
    return {"solution": solution, "stub": stub, "partial": partial}


def _course(root, path, students: dict):
    shutil.copytree(root / "solutions" / CH, path / "solutions" / CH)
    for student, nb in students.items():
        folder = path / "submitted" / student / CH
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / load_spec(CH).notebook))
    return path


def _csv(course):
    with open(course / "build" / "grades" / f"{CH}.csv") as fh:
        return list(csv.DictReader(fh))


def _certificate(folder, name):
    """(CA, certificate, key) files: one self-signed certificate that is its own CA, as README's recipe makes it."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    f"/CN={name}", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(cert), str(key)


def _outsiders(address, own_tls, other_tls, client):
    """A client and a worker without the course's certificate try the scheduler: what each achieved."""
    from distributed import Client

    got = {}
    for name, tls in (("other certificate", other_tls), ("plain tcp", None)):
        target = address if tls else address.replace("tls://", "tcp://")
        try:
            with Client(target, timeout="10s", set_as_default=False, security=cluster.security(target, tls)) as c:
                got[name] = f"connected, saw {len(c.nthreads())} workers"
        except Exception as exc:  # noqa: BLE001
            got[name] = f"refused: {type(exc).__name__}"
    before = set(client.nthreads())
    ca, cert, key = other_tls
    proc = subprocess.run([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                           "--no-nanny", "--death-timeout", "4", "--tls-ca-file", ca, "--tls-cert", cert,
                           "--tls-key", key], capture_output=True, text=True, timeout=120)
    got["worker"] = {"joined": sorted(set(client.nthreads()) - before), "exit": proc.returncode,
                     "log": proc.stderr[-2000:]}
    return got


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.fixture(scope="module")
def batch(root, tmp_path_factory, reference):
    reference(CH)
    kinds = _kinds(root)
    tmp = tmp_path_factory.mktemp("cluster")
    single = _course(root, tmp / "single", kinds)  # the single-host run, one of each kind
    assert grade_assignment(CH, root=single, jobs=2, limits=LIMITS) == 0
    expected = {r["student"]: float(r["score"]) for r in _csv(single)}

    course = tmp / "course"
    students = {f"{kind}{i}": nb for i in range(COPIES) for kind, nb in kinds.items()}
    _course(root, course, students)
    secret = course / "secret.txt"
    secret.write_text(MARKER)
    sentinels = [secret, course / "solutions" / CH / load_spec(CH).notebook]

    from distributed import Client

    tls, other_tls = _certificate(tmp / "tls", "course"), _certificate(tmp / "tls", "outsider")
    with cluster.local_cluster(workers=2, tls=tls) as lc, Client(lc, set_as_default=False) as client:
        assert lc.scheduler_address.startswith("tls://")
        host, port = lc.scheduler_address.removeprefix("tls://").rsplit(":", 1)
        hostile = nbformat.from_dict(json.loads(json.dumps(kinds["solution"])))
        answer = next(c for c in hostile.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "ch15_reliability")
        answer.source += "\n" + OTHER_TASKS
        hostile.cells.append(nbformat.v4.new_code_cell(HOSTILE.format(
            secret=str(secret), gradebook=str(course / "gradebook.db"), course=str(course), host=host, port=port)))
        folder = course / "submitted" / "mallory" / CH
        folder.mkdir(parents=True)
        nbformat.write(hostile, str(folder / load_spec(CH).notebook))
        before = {p: _digest(p) for p in sentinels}

        calls, killed, done = {}, {}, {}
        real_record = record.record

        def counted(db_url, assignment, student, *args, **kwargs):
            calls[student] = calls.get(student, 0) + 1
            return real_record(db_url, assignment, student, *args, **kwargs)

        mp = pytest.MonkeyPatch()
        mp.setattr(record, "record", counted)

        def run():
            done["code"] = grade_assignment(CH, root=course, limits=LIMITS, cluster=lc)

        start = time.monotonic()
        thread = threading.Thread(target=run)
        thread.start()
        try:
            while thread.is_alive() and not killed:  # mid-batch: some graded, a worker busy with the next
                busy = [w for w, keys in client.processing().items() if keys]
                if len(calls) >= 2 and busy:
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.update(worker=busy[0], after=len(calls))
                time.sleep(0.1)
            thread.join(600)
        finally:
            mp.undo()
        seconds = time.monotonic() - start
        after = {p: _digest(p) for p in sentinels}
        # a compromised worker (not only a sandbox) answering with a pickle: the client refuses to load it
        pwned = tmp / "pwned"

        def forged():
            class Evil:
                def __reduce__(self):
                    return os.system, (f"touch {pwned}",)
            return Evil()

        runner = cluster.ClusterRunner(lc.scheduler_address, CH, tls=tls)  # by address and files, as the CLI does
        try:
            runner.client.submit(forged, pure=False).result(timeout=120)
            forged_error = None
        except Exception as exc:  # noqa: BLE001
            forged_error = type(exc).__name__
        finally:
            runner.close()
        outsiders = _outsiders(lc.scheduler_address, tls, other_tls, client)
    return {"course": course, "expected": expected, "students": [*students, "mallory"], "calls": calls,
            "killed": killed, "code": done.get("code"), "before": before, "after": after, "seconds": seconds,
            "forged_error": forged_error, "pwned": pwned.exists(), "outsiders": outsiders}


def test_a_worker_killed_mid_batch_loses_nothing(batch):
    assert batch["killed"], "the batch ended before a worker could be killed"
    assert batch["killed"]["after"] < len(batch["students"])
    assert batch["code"] == 0
    assert batch["calls"] == {s: 1 for s in batch["students"]}  # each recorded exactly once
    rows = _csv(batch["course"])
    assert sorted(r["student"] for r in rows) == sorted(batch["students"])  # one row each
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(batch["course"])) as gb:
        assert sorted(s.id for s in gb.students) == sorted(batch["students"])
        for row in rows:
            kind = row["student"].rstrip("0123456789")
            want = batch["expected"]["solution" if kind == "mallory" else kind]
            assert row["status"] == "graded" and float(row["score"]) == want, row
            assert gb.find_submission(CH, row["student"]).score == want
            assert (batch["course"] / "autograded" / row["student"] / CH / load_spec(CH).notebook).is_file()
    assert batch["expected"]["stub"] < batch["expected"]["partial"] < batch["expected"]["solution"]


def test_hostile_student_on_a_worker_cannot_reach_the_client(batch):
    """Nor another task: mallory's answer would turn wrong had any worker-side task folder been visible (its
    score, checked in the test above, equals the solution's)."""
    course = batch["course"]
    assert batch["after"] == batch["before"]  # the secret and the solution unchanged
    assert not (course / "planted.txt").exists()
    assert batch["forged_error"] is not None and not batch["pwned"]  # a worker's pickle is never loaded
    for path in [course / "build" / "grades" / f"{CH}.csv", *(course / "autograded").rglob("*.ipynb")]:
        assert MARKER not in path.read_text()
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(course)) as gb:  # its sqlite write never happened: no score above the maximum
        assert all(s.score <= s.max_score for s in gb.assignment_submissions(CH))


def test_a_peer_without_the_course_certificate_can_neither_connect_nor_join(batch):
    """Over tls://, a client with another certificate and a plain tcp:// client are refused by the scheduler, and
    a worker started with another certificate never joins (it would otherwise receive jobs and could answer
    any of them with full marks)."""
    seen = batch["outsiders"]
    assert seen["other certificate"].startswith("refused"), seen
    assert seen["plain tcp"].startswith("refused"), seen
    assert seen["worker"]["joined"] == [] and seen["worker"]["exit"] != 0, seen["worker"]


def test_tls_options_are_checked_in_one_line(tmp_path):
    with pytest.raises(engine.GradingError, match="secure a tls:// scheduler"):
        cluster.security("tcp://10.0.0.9:8786", ("a", "b", "c"))
    with pytest.raises(engine.GradingError, match=r"TLS file .*missing.pem does not exist"):
        cluster.security("tls://10.0.0.9:8786", (str(tmp_path / "missing.pem"),) * 3)
    assert "unauthenticated" in cluster.unauthenticated("tcp://10.0.0.9:8786")
    assert cluster.unauthenticated("tcp://127.0.0.1:8786") is None
    assert cluster.unauthenticated("tls://10.0.0.9:8786") is None


def test_a_worker_of_another_course_is_refused(monkeypatch, capsys):
    assert cluster.remote_attempt({}, {}, {}, 1.0, "0" * 16, CH, False)["refused"].startswith("worker ")
    monkeypatch.setattr(cluster, "fingerprint", lambda chapter: "different")
    runner = cluster.ClusterRunner.__new__(cluster.ClusterRunner)
    runner.chapter, runner.unsandboxed, runner.fingerprint = CH, False, "different"

    class OneWorker:
        def run(self, fn, *args):
            return {"tcp://10.0.0.9:4000": {"fingerprint": "0123456789abcdef", "strong": True}}

    runner.client = OneWorker()
    with pytest.raises(engine.GradingError, match=r"worker tcp://10.0.0.9:4000 has course/environment fingerprint "
                                                  r"0123456789abcdef, the client different"):
        runner.check_workers()


def test_received_treats_a_worker_like_a_sandbox():
    job = {"cells": [{"index": 0}], "exercises": []}
    limits = Limits(results=100)
    assert cluster.received("not a dict", job, limits).reason == "the grading worker returned no usable answer"
    got = cluster.received({"data": b"x" * 200, "reason": "", "log": 5}, job, limits)
    assert got.reason == "the notebook process sent more results than allowed" and got.log_tail == ""
    forged = cluster.received({"data": b'progress 34\n{"phase": "cell", "index": 99999}', "reason": "a\nb"},
                              job, Limits())
    assert forged.where == {} and forged.reason == "a b"


def test_regrade_judges_from_kept_results_and_runs_a_changed_job_again(batch, monkeypatch):
    """After the cluster batch: a judge-only change is regraded from the kept results (no sandbox run), while
    the one submission whose notebook changed since (so its job hash) runs again."""
    from llmprep.grading import judge
    from llmprep.grading import run as run_module

    course, name = batch["course"], load_spec(CH).notebook
    first = load_spec(CH).exercises[0]
    runs, real_attempt, real_judge = [], run_module.attempt, judge.judge_exercise
    monkeypatch.setattr(run_module, "attempt", lambda job, limits, folder, *a, **k: runs.append(
        folder.parent.name if folder is not None else "?") or real_attempt(job, limits, folder, *a, **k))
    monkeypatch.setattr(judge, "judge_exercise", lambda ex, *a, **k: (  # a stricter judge: the first exercise 0
        judge.CellVerdict(ex.grade_id, 0.0, float(ex.points), "stricter") if ex.grade_id == first.grade_id
        else real_judge(ex, *a, **k)))
    edited = course / "submitted" / "stub0" / CH / name
    nb = nbformat.read(str(edited), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("changed = True"))
    nbformat.write(nb, str(edited))

    kept = {}  # what the store held for each student before the regrade: why a run again, if one happens
    for folder in (course / "build" / "grading-results" / CH).iterdir():
        try:
            meta = json.loads((folder / "run.json").read_text())
            kept[folder.name] = f"kept: ok={meta['ok']} reason={meta['reason']!r} hash={meta['job_hash'][:12]}"
        except (OSError, ValueError) as exc:
            kept[folder.name] = f"nothing usable kept ({type(exc).__name__})"
    assert grade_assignment(CH, root=course, limits=LIMITS, regrade=True) == 0
    # stub0 runs again (its notebook changed). Seen once in five runs with ch13's 10 submissions: one more
    # submission ran again too, after the killed worker; not yet understood (issue 36): allowed, and the store's
    # record of it is named, so that the next time it happens says why.
    why = {s: kept.get(s, "no folder in the store") for s in runs if s != "stub0"}
    assert "stub0" in runs and len(runs) <= 2, why
    if why:
        import warnings

        warnings.warn(f"issue 36: a regrade ran again a submission whose job did not change: {why}", stacklevel=1)
    rows = {r["student"]: float(r["score"]) for r in _csv(course)}
    assert rows["solution0"] == batch["expected"]["solution"] - first.points
    assert rows["stub0"] == rows["stub1"] and rows["partial0"] == rows["partial1"] <= batch["expected"]["partial"]
