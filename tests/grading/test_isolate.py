"""The sandbox profile and cgroups, checked without starting a sandbox."""
from llmprep.grading import isolate
from llmprep.grading.isolate import Cgroup, Limits, bwrap_command


def test_cgroup_v2_groups_get_pids_and_memory_limits(tmp_path, monkeypatch):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(isolate, "CGROUP_ROOT", tmp_path)
    isolate.cgroup_support.cache_clear()
    try:
        # a real hierarchy would enable the controllers; a plain folder just records the request
        assert isolate._v2_root() == tmp_path
        assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"
        (tmp_path / "cgroup.subtree_control").write_text("memory pids")
        group = Cgroup(Limits(processes=99, resident=2**30))
        assert len(group.groups) == 1
        assert (group.groups[0] / "pids.max").read_text() == "99"
        assert (group.groups[0] / "memory.max").read_text() == str(2**30)
    finally:
        isolate.cgroup_support.cache_clear()


def test_the_profile_is_an_allow_list_without_privilege():
    cmd = bwrap_command("bwrap", "/staged/submission")
    text = " ".join(cmd)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--as-pid-1", "--cap-drop ALL", "--uid 65534", "--remount-ro /", "--proc /proc", "--dev /dev"):
        assert flag in text, flag
    binds = [cmd[i + 1] for i, a in enumerate(cmd) if a in ("--bind", "--ro-bind")]
    assert "--bind" not in cmd  # nothing of the host is writable
    from llmprep.grading.trusted import repo_root

    root = str(repo_root())
    assert all(not b.startswith(root + "/") or b.startswith(root + "/llmprep") or b.startswith(root + "/.venv")
               for b in binds), binds
    assert root not in binds and "/" not in binds and "/tmp" not in binds
