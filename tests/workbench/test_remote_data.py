"""User data files on an external cluster whose worker cannot see them (workbench/data/remote.py).

The worker is a real ``dask worker`` process in its own mount namespace, with an empty
file system mounted over the data folder: the file exists for the client, not for it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import DataError

pytestmark = pytest.mark.slow


def _can_hide_a_folder(folder: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", f"mount -t tmpfs tmpfs {folder} && test ! -e {folder}/x"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture
def cluster_blind_to(tmp_path):
    """(address, data folder): a scheduler and one worker that sees an empty data folder."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "x").write_text("")
    if not _can_hide_a_folder(data):
        pytest.skip("needs unshare and mount (root in a mount namespace)")
    (data / "x").unlink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([os.path.join(bindir, "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    worker = (f"mount -t tmpfs tmpfs {data} && exec {os.path.join(bindir, 'dask')} worker {address} --nthreads 1 "
              "--host 127.0.0.1 --no-dashboard --name blind")
    procs.append(subprocess.Popen(["unshare", "--mount", "sh", "-c", worker], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True))
    try:
        from distributed import Client

        time.sleep(0.5)
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        yield address, data
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)


def test_a_file_the_worker_lacks_is_shipped_and_trained_on(runs_dir, cluster_blind_to):
    from distributed import Client
    from sklearn.datasets import load_digits

    address, data = cluster_blind_to
    frame = load_digits(as_frame=True).frame.rename(columns={"target": "label"})
    csv = data / "digits.csv"
    frame.to_csv(csv, index=False)
    with Client(address) as client:
        seen = client.run(os.path.exists, str(csv))
        assert list(seen.values()) == [False]  # the worker really cannot see it
        from workbench.data.remote import ship_user_files

        with pytest.raises(DataError, match=r"is not on worker\(s\) tcp://.* too large to send .* put them on "
                                            r"storage every worker mounts"):
            ship_user_files(client, [{"name": "digits_csv", "path": str(csv)}], limit=1000)
    preset = {"datasets": ["digits_csv"], "data": {"digits_csv": {"path": str(csv), "target": "label"}},
              "target_models": ["digits_mlp"], "epochs": 2, "batch_size": 32, "checkpoint_interval": 2,
              "enable_collaborative_training": False}
    preset_file = runs_dir.parent / "csv.json"
    import json

    preset_file.write_text(json.dumps(preset))
    run = wb.start_run(str(preset_file), scheduler=address)
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    accuracy = run.metrics(name="eval/test_accuracy", model="digits_mlp@digits_csv")
    assert accuracy["value"].iloc[-1] > 0.8
