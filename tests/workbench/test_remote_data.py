"""User data files on an external cluster whose worker cannot see them (workbench/data/remote.py).

The worker is a real ``dask worker`` process in its own mount namespace, with an empty
file system mounted over the data folder: the file exists for the client, not for it.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
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
def cluster_blind_to(tmp_path, external_dask):
    """(address, data folder): a scheduler and one worker that sees an empty data folder."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "x").write_text("")
    if not _can_hide_a_folder(data):
        pytest.skip("needs unshare and mount (root in a mount namespace)")
    (data / "x").unlink()
    address = external_dask(1, wrap=lambda cmd: ["unshare", "--mount", "sh", "-c",
                                                 f"mount -t tmpfs tmpfs {data} && exec {shlex.join(cmd)}"])
    yield address, data


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
