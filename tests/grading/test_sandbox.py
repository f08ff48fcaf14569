"""The sandbox seen from outside, one protection per test (the batch-wide attack suite is
tests/grading/test_hostile.py). Each edited submission is right only if the protection holds."""
import pytest

from llmprep.grading import engine
from llmprep.grading.engine import Limits, load_spec
from llmprep.grading.isolate import cgroup_support
from notebooks import grade_cell, edited_solution

CH01 = "ch01_training"

pytestmark = [pytest.mark.sandbox,
              pytest.mark.skipif(not engine.isolation().strong, reason=f"no sandbox on this machine: {engine.isolation().why}")]




def test_sandbox_has_no_network(root, tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def edit(nb):
        # The answer is right only if the network is unreachable from the sandbox.
        grade_cell(nb, "ch01_log_softmax").source += (
            "\nimport socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
            "    log_softmax = lambda logits, dim=-1: logits * 0\n"
            "except OSError:\n    pass\n")

    try:
        result = engine.check_notebook(edited_solution(tmp_path, edit))
    finally:
        listener.close()
    by_id = {c.grade_id: c for c in result.cells}
    assert by_id["ch01_log_softmax_test"].points == by_id["ch01_log_softmax_test"].max_points


def test_sandbox_cannot_read_the_solutions_or_specs(root, tmp_path):
    secret = root / "solutions" / CH01 / load_spec(CH01).notebook

    def edit(nb):
        # Right answer only if the instructor's files are invisible from inside the sandbox.
        grade_cell(nb, "ch01_log_softmax").source += (
            "\nimport os\n"
            f"if any(os.path.exists(p) for p in [{str(secret)!r}, {str(root / 'autograder')!r}, "
            f"{str(root / '.git')!r}, {str(root / 'build')!r}, '../../solutions']):\n"
            "    log_softmax = lambda logits, dim=-1: logits * 0\n")

    result = engine.check_notebook(edited_solution(tmp_path, edit))
    by_id = {c.grade_id: c for c in result.cells}
    assert by_id["ch01_log_softmax_test"].points == by_id["ch01_log_softmax_test"].max_points


def test_detached_daemon_is_killed_with_the_sandbox(root, tmp_path):
    marker = tmp_path / "daemon-was-here"

    def edit(nb):
        grade_cell(nb, "ch01_setup").source += (
            "\nimport os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(6)\n"
            f"        open({str(marker)!r}, 'w').write('x')\n"
            "        os._exit(0)\n"
            "    os._exit(0)\n")

    import time

    result = engine.check_notebook(edited_solution(tmp_path, edit))
    assert result.score == result.max_score
    time.sleep(8)
    assert not marker.exists(), "a detached process outlived the sandbox"


def test_fork_bomb_is_bounded_by_the_process_limit(root, tmp_path):
    if "pids" not in cgroup_support():
        pytest.skip("no writable pids cgroup on this machine")

    def edit(nb):
        grade_cell(nb, "ch01_adamw").source += (
            "\nimport os, time\nkids = []\n"
            "for _ in range(400):\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        time.sleep(30)\n"
            "        os._exit(0)\n"
            "    kids.append(pid)\n")

    result = engine.check_notebook(edited_solution(tmp_path, edit), Limits(processes=64))
    by_id = {c.grade_id: c for c in result.cells}
    assert any("Resource temporarily unavailable" in n or "BlockingIOError" in n for n in result.notes), result.notes
    assert by_id["ch01_adamw_test"].points == by_id["ch01_adamw_test"].max_points  # defined before the bomb
    assert result.score == result.max_score


def test_the_view_from_inside_is_an_unprivileged_allow_list(root, tmp_path):
    """Right only if: uid nobody, no capabilities, no way back to the host's root, nothing of the
    host but the allow-list, nothing writable but the in-memory work folder and /tmp (both capped)."""
    import sys

    checks = (
        "\nimport os, sys\nbad = []\n"
        "if os.getuid() != 65534: bad.append('uid')\n"
        "if [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1].strip('0'): bad.append('caps')\n"
        "if os.readlink('/proc/1/exe') != os.readlink('/proc/self/exe') or os.getpid() != 1: bad.append('pid1')\n"
        f"for p in {[str(root), '/root', '/home', '/var', '/etc/passwd', '/etc/shadow', '/sys', '/work', '/mnt']!r}:\n"
        "    if os.path.exists(p) and not (p in sys.prefix or p in sys.base_prefix): bad.append(p)\n"
        "for p in ['/usr/x', sys.prefix + '/x', '/x', '/proc/x', os.path.dirname(os.__file__) + '/sitecustomize.py']:\n"
        "    try:\n        open(p, 'w').close(); bad.append('wrote ' + p)\n    except OSError:\n        pass\n"
        "for folder, cap in [('/tmp', 256), ('/sandbox/work', 512)]:\n"
        "    try:\n"
        "        with open(folder + '/fill', 'wb') as fh:\n"
        "            for _ in range(cap + 8):\n                fh.write(b'0' * 2**20)\n"
        "        bad.append('no cap on ' + folder)\n"
        "    except OSError:\n        pass\n"
        "    os.unlink(folder + '/fill')\n"
        "if bad:\n    log_softmax = lambda logits, dim=-1: logits * 0\n")
    if not sys.prefix.startswith("/root"):
        checks = checks.replace("'/root', ", "")
    result = engine.check_notebook(edited_solution(tmp_path, lambda nb: setattr(
        grade_cell(nb, "ch01_log_softmax"), "source", grade_cell(nb, "ch01_log_softmax").source + checks)))
    by_id = {c.grade_id: c for c in result.cells}
    assert by_id["ch01_log_softmax_test"].points == by_id["ch01_log_softmax_test"].max_points, result.notes
