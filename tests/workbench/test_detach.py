"""Runs that live on their own: a detached driver, steered from a notebook kernel and from
other processes, one driver per run, and trainers defined in a notebook cell.

Everything here is real: `workbench` processes, detached driver processes with their local
Dask clusters (or a `dask scheduler` with two `dask worker` processes), notebooks executed
by papermill in a real kernel.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.lease import current_lease
from workbench.store import read_store

pytestmark = pytest.mark.slow
papermill = pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _children_see_the_package(monkeypatch):
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *paths]))


@pytest.fixture(autouse=True)
def _no_driver_outlives_its_test(tmp_path):
    """A failing test must not leave a detached driver training in the background."""
    yield
    for store in tmp_path.glob("**/store.sqlite"):
        lease = current_lease(store)
        if lease is not None and lease.alive():
            try:
                os.killpg(lease.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _cli(*args, runs, timeout=300):
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _events(run_dir: Path, kind: str):
    return read_store(run_dir / "store.sqlite").events(kind=kind)


def _wait_for(predicate, timeout=300, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _driver_gone(run_dir: Path) -> bool:
    lease = current_lease(run_dir / "store.sqlite")
    return lease is None or not lease.alive()


def _exited(pid: int) -> bool:
    """The process is gone (or a zombie nobody reaped yet: it does nothing more)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cells[0], metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells[1:]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def _execute(path: Path, **parameters):
    out = path.with_name(path.stem + "-out.ipynb")
    papermill.execute_notebook(str(path), str(out), parameters=parameters, kernel_name="python3", cwd=str(path.parent),
                               progress_bar=False)
    return out


def test_a_detached_run_is_steered_from_a_notebook_kernel_and_from_other_processes(tmp_path):
    runs = tmp_path / "runs"
    started = _cli("run", "--preset", "digits_mutual", "--set", "epochs=400", "--run-id", "det", "--detach", runs=runs)
    assert started.returncode == 0, started.stderr
    assert "run det" in started.stdout and "workbench watch det" in started.stdout
    run_dir = runs / "det"
    lease = current_lease(run_dir / "store.sqlite")
    assert lease is not None and lease.alive() and lease.pid != os.getpid()

    # A change from another process (the CLI) is acknowledged with the step the trainer applied it at.
    cli_set = _cli("set", "det", "digits_mlp@digits", "lr=0.02", runs=runs)
    assert cli_set.returncode == 0, cli_set.stderr
    assert "applied by the trainer at step" in cli_set.stdout

    # A notebook in a real kernel attaches by id: the panel's sliders steer the run.
    nb = _notebook(tmp_path / "steer.ipynb", "run_id = ''\nruns_dir = ''\nresult = ''", """
import json
import workbench as wb
from workbench.channel import wait_for_ack
from widgets import ControlPanel

panel = ControlPanel(runs_dir=runs_dir)
run = panel.attach(run_id)
assert panel.tuning.logic.live and not panel.progress.stop_button.disabled
command = panel.tuning.logic.on_change("digits_cnn@digits", "lr", 0.003)
ack = wait_for_ack(run.dir / "store.sqlite", command, "set", timeout=60)
json.dump({"command": command, "ack": ack, "error": panel.tuning.logic.error}, open(result, "w"))
""")
    result = tmp_path / "result.json"
    _execute(nb, run_id="det", runs_dir=str(runs), result=str(result))
    from_notebook = json.loads(result.read_text())
    assert from_notebook["error"] == ""
    assert "hparam_applied" in from_notebook["ack"], from_notebook

    applied = _events(run_dir, "hparam_applied")
    steps = {(r.model, p["name"], p["value"]): p["step"] for r in applied.itertuples() for p in [r.payload]}
    assert ("digits_mlp@digits", "lr", 0.02) in steps and ("digits_cnn@digits", "lr", 0.003) in steps
    clients = {p["client"].split(":")[0] for p in _events(run_dir, "hparam")["payload"] if p.get("source") == "user"}
    assert clients == {"api", "attach"} or clients >= {"attach"}  # the CLI and the notebook, both recorded

    paused = _cli("pause", "det", "digits_cnn@digits", runs=runs)
    assert paused.returncode == 0 and "done" in paused.stdout, paused.stdout + paused.stderr
    _wait_for(lambda: "paused" in _cli("status", "det", runs=runs).stdout, 60, "the paused state")
    resumed = _cli("continue", "det", runs=runs)
    assert resumed.returncode == 0, resumed.stderr
    assert len(_events(run_dir, "resumed_model")) == 1

    stopped = _cli("stop", "det", "--wait", runs=runs)
    assert stopped.returncode == 0, stopped.stderr
    assert "run det stopped" in stopped.stdout
    _wait_for(lambda: _driver_gone(run_dir), 60, "the driver to exit")
    assert read_store(run_dir / "store.sqlite").run_info()["state"] == "stopped"

    # The driver leaves the run's report as it ends: `workbench report` finds it made, not drawn again.
    _wait_for(lambda: _exited(lease.pid), 60, "the driver process to end")
    report = run_dir / "report" / "report.html"
    assert report.exists()
    made = report.stat().st_mtime_ns
    asked = _cli("report", "det", runs=runs)
    assert asked.returncode == 0 and "report.html" in asked.stdout, asked.stdout + asked.stderr
    assert report.stat().st_mtime_ns == made


def test_one_driver_per_run_and_a_dead_drivers_run_is_resumed(tmp_path):
    runs = tmp_path / "runs"
    started = _cli("run", "--preset", "digits_mutual", "--set", "epochs=6", "--set", "checkpoint_interval=2",
                   "--run-id", "lease", "--detach", runs=runs)
    assert started.returncode == 0, started.stderr
    run_dir = runs / "lease"
    second = _cli("resume", "lease", runs=runs)
    assert second.returncode == 2
    assert "already driven by pid" in second.stderr and "Traceback" not in second.stderr

    _wait_for(lambda: len(_events(run_dir, "checkpoint")) >= 2, 300, "the first checkpoints")
    driver = current_lease(run_dir / "store.sqlite")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its cluster, as a crash would
    _wait_for(lambda: _driver_gone(run_dir), 30, "the driver to die")
    assert "interrupted" in _cli("status", "lease", runs=runs).stdout

    resumed = _cli("resume", "lease", "--quiet", "--no-report", runs=runs)
    assert resumed.returncode == 0, resumed.stderr
    assert "run lease finished" in resumed.stdout
    models = read_store(run_dir / "store.sqlite").models()
    assert set(models["state"]) == {"finished"} and set(models["epoch"]) == {6}


NOTEBOOK_TRAINER = '''
import math, os, time, torch
import workbench as wb

HOLD = runs_dir + "/hold"  # while this file exists, training waits at epoch 4: the test kills the run there

@wb.register_model("nb_regressor")
class NotebookRegressor(wb.Trainer):
    """Defined in a notebook cell: the workers and the driver never imported it."""
    accepts = ("images",)
    hyperparameters = {"lr": wb.HParam(float, 0.05, low=1e-6, high=1.0, log=True, live=True),
                       "steps": wb.HParam(int, 2000, low=1, high=100_000),
                       "batch_size": wb.HParam(int, 32, low=1, high=4096)}
    metrics = ("train/loss", "eval/loss")

    def __init__(self, hparams, data, resources, seed):
        super().__init__(hparams, data, resources, seed)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(256, 8, generator=g)
        self.y = self.x @ torch.arange(1.0, 9.0)
        self.w = torch.zeros(8)

    @property
    def steps_per_epoch(self):
        return self.hparams["steps"]

    def train_step(self, ctx):
        while ctx.epoch >= 4 and os.path.exists(HOLD):
            time.sleep(0.05)
        grad = 2 * self.x.T @ (self.x @ self.w - self.y) / len(self.x)
        self.w = self.w - self.hparams["lr"] * grad
        return {"train/loss": float(((self.x @ self.w - self.y) ** 2).mean())}

    def evaluate(self):
        return {"eval/loss": float(((self.x @ self.w - self.y) ** 2).mean())}

    def state_dict(self):
        return {"w": self.w.clone(), "hparams": dict(self.hparams)}

    def load_state_dict(self, state):
        self.w = state["w"].clone()
        self.hparams.update(state["hparams"])

preset = {"description": "a notebook model", "datasets": ["digits"], "target_models": ["nb_regressor"],
          "epochs": 30, "batch_size": 32, "checkpoint_interval": 2, "checkpoint_seconds": 0,
          "enable_collaborative_training": False,
          "models": {"nb_regressor": {"population": 2}}}
path = runs_dir + "/nb_preset.json"
import json
os.makedirs(runs_dir, exist_ok=True)
open(HOLD, "w").close()
json.dump({"nb": preset}, open(path, "w"))
run = wb.start_run(path, runs_dir_=runs_dir, run_id=run_id, scheduler=scheduler or None, detach=True)
print(run.id, run.state)
'''


@pytest.fixture
def dask_cluster(tmp_path, external_dask):
    """A `dask scheduler` and two `dask worker` processes on loopback."""
    return external_dask(2, cwd=tmp_path)


@pytest.mark.parametrize("where", ["local", "external"])
def test_a_trainer_defined_in_a_notebook_cell_trains_and_resumes_after_sigkill(tmp_path, where, request):
    scheduler = request.getfixturevalue("dask_cluster") if where == "external" else ""
    runs = tmp_path / "runs"
    nb = _notebook(tmp_path / "define.ipynb", "run_id = ''\nruns_dir = ''\nscheduler = ''", NOTEBOOK_TRAINER)
    _execute(nb, run_id="nb", runs_dir=str(runs), scheduler=scheduler)  # the kernel ends here; the run goes on
    run_dir = runs / "nb"
    assert (run_dir / "code" / "nb_regressor.pkl").exists()
    _wait_for(lambda: len(_events(run_dir, "checkpoint")) >= 2, 300, "the first checkpoints")
    driver = current_lease(run_dir / "store.sqlite")
    assert driver is not None, "the run ended before it could be killed"
    os.killpg(driver.pid, signal.SIGKILL)
    _wait_for(lambda: _driver_gone(run_dir), 30, "the driver to die")
    assert read_store(run_dir / "store.sqlite").models()["epoch"].max() < 30
    (runs / "hold").unlink()  # the resumed run trains through (and frees an external worker held in the latch)

    # A fresh process that never saw the class resumes it from the run directory.
    args = ["resume", "nb", "--quiet", "--no-report"] + (["--scheduler", scheduler] if scheduler else [])
    resumed = _cli(*args, runs=runs)
    assert resumed.returncode == 0, resumed.stderr
    assert "run nb finished" in resumed.stdout
    models = read_store(run_dir / "store.sqlite").models()
    assert set(models["state"]) == {"finished"} and set(models["epoch"]) == {30}
    assert len(_events(run_dir, "resumed")) == 1
    losses = read_store(run_dir / "store.sqlite").metrics(name="eval/loss")
    assert losses[losses.epoch == 30].value.max() < 1e-3  # it trained (the untrained loss is about 200)
