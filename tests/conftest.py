"""Shared fixtures: fixed seeds, a temporary runs directory, in-process and external Dask clusters."""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys

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


@pytest.fixture
def external_dask():
    """Start an external cluster: ``start(workers, wrap=None, cwd=None) -> address``.

    A ``dask scheduler`` and ``workers`` ``dask worker`` processes (one thread each, named
    ``ext-0``...) on loopback, as a user's own cluster would be; ``wrap`` turns a worker's
    command line into another one (to run it in a mount namespace, say). Everything is
    stopped when the test ends.
    """
    from distributed import Client

    procs: list[subprocess.Popen] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}

    def spawn(cmd: list[str], cwd=None) -> None:
        procs.append(subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))

    def start(workers: int = 2, wrap=None, cwd=None) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        address = f"tcp://127.0.0.1:{port}"
        spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
               "--no-dashboard"])
        for i in range(workers):
            cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--host",
                   "127.0.0.1", "--no-dashboard", "--name", f"ext-{i}"]
            spawn(wrap(cmd) if wrap else cmd, cwd=cwd)
        with Client(address, timeout=60) as client:  # retries until the scheduler listens
            client.wait_for_workers(workers, timeout=120)
        return address

    yield start
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


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
