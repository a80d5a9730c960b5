"""The ``workbench`` command as a user runs it: real processes, a real local cluster."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from workbench.store import read_store


def _cli(*args, runs_dir, timeout=600, **kw):
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "quick", "--set", "epoch=3"], "unknown key 'epoch', did you mean 'epochs'?"),
    (["--preset", "quick", "--set", "epochs=-3"], "presets.quick.epochs: must be > 0, got -3"),
    (["--preset", "quick", "--set", "batch_size=\"big\""], "presets.quick.batch_size: must be an integer"),
    (["--preset", "quick", "--set", "target_models=[\"digits_mpl\"]"], "did you mean 'digits_mlp'?"),
    (["--preset", "quick", "--set", "datasets=[\"digit\"]"], "did you mean 'digits'?"),
    (["--replay", "nosuch"], "no run 'nosuch' to replay"),
    (["--replay", "nosuch", "--preset", "quick"], "leave out --preset and --set"),
])
def test_bad_input_is_one_clear_message_and_leaves_nothing(tmp_path, args, message):
    runs = tmp_path / "runs"
    result = _cli("run", *args, runs_dir=runs, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not runs.exists() or not any(runs.iterdir())


def test_presets_models_and_datasets_are_listed(tmp_path):
    out = _cli("presets", runs_dir=tmp_path).stdout
    assert "collaborative_training" in out and "quick" in out
    assert '"epochs": 50' in _cli("presets", "show", "collaborative_training", runs_dir=tmp_path).stdout
    assert "digits_mlp" in _cli("models", runs_dir=tmp_path).stdout
    assert "digits" in _cli("datasets", runs_dir=tmp_path).stdout


def _final_eval(run_dir):
    metrics = read_store(run_dir / "store.sqlite").metrics()
    evals = metrics[metrics["name"].str.startswith("eval/")]
    last = evals[evals["epoch"] == evals.groupby("model")["epoch"].transform("max")]
    return {(r.model, r.name): r.value for r in last.itertuples()}


def _checkpoint_epochs(store_path):
    try:
        conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
        rows = conn.execute("SELECT model, payload FROM events WHERE kind='checkpoint'").fetchall()
        conn.close()
        return rows
    except sqlite3.Error:
        return []


def _start(*args, runs_dir):
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs_dir)}
    return subprocess.Popen([sys.executable, "-m", "workbench", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill_after_checkpoints(proc, run_dir, models: int, epoch: int, controller: str | None = None) -> None:
    """SIGKILL the run's whole process group once ``models`` models (and ``controller``) have
    their epoch-``epoch`` checkpoints: a crash, not a stop, so nothing gets to clean up."""
    store, files = run_dir / "store.sqlite", run_dir / "checkpoints"

    def ready():
        done = [json.loads(p)["epoch"] for _, p in _checkpoint_epochs(store)].count(epoch) >= models
        return done and (controller is None or (files / controller / f"epoch_{epoch:06d}.pt").exists())

    deadline = time.time() + 1800
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ready(), "the run ended before its first checkpoints"


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_final_metrics(tmp_path):
    runs = tmp_path / "runs"
    common = ["--preset", "digits_mutual", "--set", "epochs=4", "--set", "checkpoint_interval=2", "--quiet",
              "--no-report"]
    done = _cli("run", *common, "--run-id", "straight", "--dashboard", runs_dir=runs)
    assert done.returncode == 0, done.stderr
    assert "dask dashboard http://127.0.0.1:" in done.stdout  # asked for: served, its link printed
    proc = _start("run", *common, "--run-id", "killed", runs_dir=runs)
    store = runs / "killed" / "store.sqlite"
    _kill_after_checkpoints(proc, runs / "killed", models=2, epoch=2)
    assert "interrupted" in _cli("status", runs_dir=runs).stdout
    resumed = _cli("resume", "killed", "--quiet", runs_dir=runs)
    assert resumed.returncode == 0, resumed.stderr
    assert "dask dashboard" not in resumed.stdout  # the default: none
    assert _final_eval(runs / "killed") == _final_eval(runs / "straight")
    events = read_store(store).events()
    assert "resumed" in set(events["kind"])
    assert (runs / "killed" / "report" / "report.html").exists()
    status = _cli("status", "killed", runs_dir=runs).stdout
    assert "finished" in status


@pytest.mark.slow
@pytest.mark.timeout(2400)  # about 4 minutes on a quiet 2-core machine; far more on a shared one
def test_quick_preset_is_deterministic_uninterrupted_and_resumed(tmp_path):
    """The ``quick`` preset with every flow switched on (mutual learning, causal mask,
    experience, self-play, the controller's exploit and lr search; some are off in ``quick``
    by default), twice straight and once SIGKILLed after its epoch-2 checkpoints and resumed:
    all final ``eval/`` metrics bitwise equal. Runs go two at a time, so their timing differs
    too (which must not matter)."""
    runs = tmp_path / "runs"
    common = ["--preset", "quick", "--set", "seed=7", "--set", "epochs=4", "--set", "checkpoint_interval=2",
              "--set", "collaboration.controller=true", "--set", "collaboration.experience=true",
              "--set", "collaboration.mutual_learning=true", "--quiet", "--no-report"]
    procs = []
    try:
        procs += [_start("run", *common, "--run-id", "first", runs_dir=runs),
                  _start("run", *common, "--run-id", "killed", runs_dir=runs)]
        _kill_after_checkpoints(procs[1], runs / "killed", models=7, epoch=2,
                                controller="adaptive_learning_controller")
        procs += [_start("run", *common, "--run-id", "second", runs_dir=runs),
                  _start("resume", "killed", "--quiet", "--no-report", runs_dir=runs)]
        for proc in (procs[0], procs[2], procs[3]):
            _, err = proc.communicate(timeout=2000)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    reference = _final_eval(runs / "first")
    assert len(reference) >= 40 and {m for m, _ in reference} >= {
        "adaptive_learning_controller", "alpha_deep_model@tictactoe", "causal_reasoning_engine@cartpole",
        "causal_reasoning_engine@sem_linear", "digits_cnn@digits", "digits_mlp@digits", "digits_mlp@digits#1",
        "environment_simulator@cartpole"}
    assert _final_eval(runs / "second") == reference
    assert _final_eval(runs / "killed") == reference
    events = read_store(runs / "killed" / "store.sqlite").events()
    assert set(events[events["kind"] == "resumed"].iloc[-1]["payload"]["from_epoch"].values()) == {2}
    # Every flow happened, before and after the kill.
    kinds = set(events["kind"])
    assert {"exploit", "decision", "knowledge_used"} <= kinds
    used = events[(events["kind"] == "knowledge_used")]
    assert {p["epoch"] for p in used["payload"]} >= {2, 3, 4}


@pytest.mark.slow
def test_existing_scheduler_with_two_worker_processes(tmp_path, external_dask):
    address = external_dask(2)
    result = _cli("run", "--preset", "digits_mutual", "--set", "epochs=2", "--scheduler", address, "--quiet",
                  "--run-id", "remote", runs_dir=tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    env_json = (tmp_path / "runs" / "remote" / "environment.json").read_text()
    assert address.removeprefix("tcp://") in env_json
    final = _final_eval(tmp_path / "runs" / "remote")
    assert final[("digits_mlp@digits", "eval/test_accuracy")] > 0.5


@pytest.mark.slow
def test_sigterm_stops_a_run_like_ctrl_c(tmp_path):
    """`docker stop`, systemd and SLURM send SIGTERM: the run stops at a step boundary, says
    how to continue, and exits 0 instead of dying with 143 and losing its state."""
    runs = tmp_path / "runs"
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "run", "--preset", "digits_mutual", "--set",
                             "epochs=300", "--run-id", "term", "--quiet", "--no-report"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = runs / "term" / "store.sqlite"

    def segments():
        try:
            conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
            try:
                return conn.execute("SELECT COUNT(*) FROM events WHERE kind='segment'").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error:
            return 0

    deadline = time.time() + 300
    while segments() < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping at the next step boundary" in err
    assert "run term stopped" in out and "workbench resume term" in out
    info = read_store(store).run_info()
    assert info["state"] == "stopped"


def test_watch_on_a_terminal_rewrites_only_the_rows_that_changed():
    import io
    import types

    from workbench.cli import _Progress
    from workbench.states import ModelSnapshot, ModelState

    def snap(i, epoch):
        return ModelSnapshot(f"m{i}", "digits_mlp", "digits", ModelState.RUNNING, epoch, 10, epoch * 45, 45, {},
                             frozenset(), 100.0, 5.0, None, {"eval/accuracy": 0.5})

    models = {f"m{i}": snap(i, 1) for i in range(64)}
    run = types.SimpleNamespace(snapshot=lambda: types.SimpleNamespace(models=dict(models)))
    screen = io.StringIO()
    screen.isatty = lambda: True
    progress = _Progress(run, screen)
    progress.update()
    assert screen.getvalue().count("\x1b[2K") == 64  # the first draw writes every row
    models["m7"] = snap(7, 2)
    screen.seek(0)
    screen.truncate()
    progress.update()
    out = screen.getvalue()
    assert out.startswith("\x1b[64F")  # back to the first row...
    assert out.count("\x1b[2K") == 1 and "m7 " in out and "m8 " not in out  # ...and only m7 rewritten
    assert out.count("\x1b[1E") == 63
