"""Shared fixtures: fixed seeds, a temporary runs directory, an in-process Dask cluster."""
from __future__ import annotations

import os
import random
import shutil

import numpy as np
import pytest

os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(autouse=True)
def _seeds():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def inprocess_scheduler():
    """A real Dask scheduler with two worker threads in this process.

    Models registered by a test module exist in these workers too, which lets tests use
    purpose-built trainers (one that diverges, one that sleeps) through the real engine.
    """
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                           dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


def pytest_collection_modifyitems(config, items):
    has_gpu = False
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        pass
    for item in items:
        # Markers, not keywords: keywords include folder names (a checkout in .../gpu/).
        if item.get_closest_marker("gpu") and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if item.get_closest_marker("browser") and not shutil.which("chromium"):
            item.add_marker(pytest.mark.skip(reason="needs Debian's chromium (apt-get install chromium)"))
