"""llmprep.runtime: environment defaults and thread control shared by every notebook."""
import os

import torch

from llmprep import runtime


def test_offline_by_default_unless_opted_in(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", runtime.ONLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    runtime.apply_env_defaults()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv(runtime.ONLINE_ENV, "1")
    runtime.apply_env_defaults()
    assert "HF_HUB_OFFLINE" not in os.environ


def test_set_threads_follows_env_and_returns_to_the_default(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("LLMPREP_THREADS", raising=False)
        monkeypatch.setattr(runtime, "_TORCH_DEFAULT_THREADS", 2)  # as on a 2-core machine
        assert runtime.set_threads(1) == 1 == torch.get_num_threads()
        # None means "the default", not "whatever an earlier call left behind"
        assert runtime.set_threads() == 2 == torch.get_num_threads()
        monkeypatch.setenv("LLMPREP_THREADS", "1")
        assert runtime.set_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_usable_cores_is_within_the_machine():
    assert 1 <= runtime.usable_cores() <= (os.cpu_count() or 1)


def test_an_nbgrader_app_inside_capsys_leaves_pytest_capture_working(capsys):
    """Regression (CI stop 23): absl's handler closed pytest's capture file when traitlets reconfigured logging;
    tests/conftest.py points it at the real stderr. The next print must still be captured."""
    import sys

    from absl import logging as absl_logging
    from nbgrader.apps.baseapp import NbGrader

    assert absl_logging.get_absl_handler().python_handler.stream is sys.__stderr__
    NbGrader().log.info("reconfigures logging")
    print("still captured")
    assert capsys.readouterr().out == "still captured\n"
