"""``workbench batch`` runs are normal runs of the runs directory, and ``workbench compare``
folds them over their seeds: the CLI end to end, papermill and real runs of digits_mutual.

One batch of three jobs serves every test here. It is started the way a user hits the
issue's defects: from a folder holding their own preset file (``-p preset=mine.json``),
with another environment's broken ``python3`` kernel first on the Jupyter path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("papermill")

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    work = tmp_path_factory.mktemp("caller")
    # The user's own preset, next to where they type the command.
    (work / "mine.json").write_text(json.dumps({"mine": {
        "description": "digits, one epoch", "datasets": ["digits"], "epochs": 1, "batch_size": 32,
        "target_models": ["digits_mlp", "digits_cnn"], "checkpoint_interval": 1,
        "enable_collaborative_training": True}}))
    # Another environment's python3 kernel, first on the Jupyter path: an interpreter that does not exist.
    broken = work / "other-jupyter" / "kernels" / "python3"
    broken.mkdir(parents=True)
    (broken / "kernel.json").write_text(json.dumps({
        "argv": ["/nonexistent/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    paths = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *paths]),
           "JUPYTER_PATH": str(work / "other-jupyter")}
    env.pop("WORKBENCH_RUNS_DIR", None)
    result = _cli("batch", "collaborative_training", "-p", "preset=mine.json", "-g", "seed=0,1,2",
                  "--parallel", "2", "--out", "out", cwd=work, env=env)
    return work, env, result


def test_batch_runs_are_listed_by_status_and_tagged(batch):
    work, env, result = batch
    assert result.returncode == 0, result.stdout + result.stderr
    # Live lines while jobs run, then each run's key metric when done.
    assert "running" in result.stdout
    assert result.stdout.count("accuracy=") >= 3
    status = _cli("status", "--json", cwd=work, env=env)
    assert status.returncode == 0, status.stderr
    runs = json.loads(status.stdout)
    assert len(runs) == 3 and {r["state"] for r in runs} == {"finished"}
    assert {r["batch"] for r in runs} == {"out"} and {r["preset"] for r in runs} == {"mine"}
    # Runs live in the caller's ./runs, the executed notebook next to each.
    for r in runs:
        assert (work / "runs" / r["run"] / "collaborative_training.html").exists()
    seeds = sorted(json.loads((work / "runs" / r["run"] / "preset.json").read_text())["seed"] for r in runs)
    assert seeds == [0, 1, 2]
    index = (work / "out" / "index.html").read_text()
    assert index.count("accuracy=") >= 3 and "http-equiv='refresh'" not in index  # done: no more reloading
    assert "../runs/" in index  # relative links from the batch folder to each run


def test_compare_prints_mean_and_spread_over_the_seeds(batch):
    work, env, _ = batch
    result = _cli("compare", "--batch", "out", "--out", "cmp.html", cwd=work, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "settings that differ" in out and "seed" in out
    grouped = out.split("mean ± standard deviation over runs")[1]
    lines = [line for line in grouped.splitlines() if "@digits" in line]
    assert len(lines) == 2  # one group (the seeds folded), one row per model
    for line in lines:
        assert " 3 " in line and "±" in line  # three runs in the group, mean ± spread
    page = (work / "cmp.html").read_text()
    assert "data:image/png;base64" in page and "±" in page


def test_compare_json_and_group_by_a_shared_setting(batch):
    work, env, _ = batch
    result = _cli("compare", "--batch", "out", "--json", "--group-by", "epochs", cwd=work, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["runs"]) == 6  # three runs of two models
    assert list(data["settings_diff"]) == ["seed"]
    groups = data["groups"]
    assert {g["epochs"] for g in groups} == {1} and {g["runs"] for g in groups} == {3}
    for g in groups:
        values = [r["final eval/accuracy"] for r in data["runs"] if r["model"] == g["model"]]
        mean = sum(values) / 3
        assert g["final eval/accuracy mean"] == pytest.approx(mean)
        assert g["final eval/accuracy std"] == pytest.approx((sum((v - mean) ** 2 for v in values) / 2) ** 0.5)
