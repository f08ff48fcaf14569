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


@pytest.fixture(scope="session")
def root():
    from llmprep.grading.engine import repo_root

    return repo_root()


def pytest_collection_modifyitems(config, items):
    """Work units for ``pytest -n 2 --dist loadgroup``: a file stays on one worker (nbval runs a
    notebook's cells in order; module fixtures are built once), except the per-chapter grading tests,
    which form one unit per chapter so that both workers share them."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        path = item.nodeid.split("::")[0]
        chapter = getattr(getattr(item, "callspec", None), "params", {}).get("chapter")
        group = f"grading-{chapter}" if path.endswith("test_grading.py") and chapter else path
        item.add_marker(pytest.mark.xdist_group(group))
