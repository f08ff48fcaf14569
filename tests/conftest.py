"""Shared test set-up: one thread per process, offline, non-interactive plots."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    _absl_handler_writes_to_the_real_stderr()


def _absl_handler_writes_to_the_real_stderr():
    """absl's log handler (imported by JAX's libraries) keeps the ``sys.stderr`` of its import time and, when
    closed, closes that stream unless it is the *current* ``sys.stderr``. Any traitlets application (nbgrader)
    closes every handler through ``logging.config.dictConfig``; inside a ``capsys`` test this closed pytest's
    own capture file, and every later test of that worker failed with "I/O operation on closed file"."""
    import sys

    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_handler().python_handler.setStream(sys.__stderr__)


@pytest.fixture(scope="session")
def root():
    from llmprep.grading.engine import repo_root

    return repo_root()
