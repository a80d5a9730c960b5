"""The engine end to end against a real Dask scheduler (in-process workers, so models
defined here exist on the workers too)."""
from __future__ import annotations

import math
import time

import pytest
import torch

import workbench as wb
from workbench import HParam, Trainer, register_model
from workbench.checkpoint import DiskSaver

pytestmark = pytest.mark.slow


@register_model("test_regressor")
class Regressor(Trainer):
    """Linear regression by SGD on a fixed problem; diverges (NaN) when lr is too high."""

    accepts = ("images",)
    hyperparameters = {"lr": HParam(float, 0.05, low=1e-6, high=100.0, log=True, live=True),
                       "steps": HParam(int, 20, low=1, high=10_000),
                       "batch_size": HParam(int, 32, low=1, high=4096),
                       "crash": HParam(bool, False)}
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
        if self.hparams["crash"]:
            raise RuntimeError("this model always crashes")
        grad = 2 * self.x.T @ (self.x @ self.w - self.y) / len(self.x)
        self.w = self.w - self.hparams["lr"] * grad
        loss = float(((self.x @ self.w - self.y) ** 2).mean())
        return {"train/loss": loss if math.isfinite(loss) and loss < 1e12 else float("nan")}

    def evaluate(self):
        return {"eval/loss": float(((self.x @ self.w - self.y) ** 2).mean())}

    def state_dict(self):
        return {"w": self.w.clone(), "hparams": dict(self.hparams)}

    def load_state_dict(self, state):
        self.w = state["w"].clone()
        self.hparams.update(state["hparams"])


@register_model("test_producer")
class Producer(Regressor):
    """One step an epoch; exports how many epochs it has trained (a one-way flow)."""

    def __init__(self, hparams, data, resources, seed):
        super().__init__({**hparams, "steps": 1}, data, resources, seed)
        self.epochs_done = 0

    def on_epoch_end(self, ctx):
        self.epochs_done += 1
        return {}

    def produces(self):
        return {"epoch_count/digits"}

    def export_knowledge(self):
        return {"epoch_count/digits": {"epoch": self.epochs_done}}


@register_model("test_consumer")
class Consumer(Regressor):
    """Many steps an epoch (slower than its producer); records which export it got."""

    def consumes(self):
        return {"epoch_count/digits"}

    def import_knowledge(self, artifacts):
        return {"from_epochs": sorted(a["epoch"] for a in artifacts.get("epoch_count/digits", {}).values())}


def test_a_fast_producer_waits_for_a_slow_consumer_of_its_knowledge(runs_dir, inprocess_scheduler):
    """A one-way flow: the consumer's epoch e+1 gets the producer's export after epoch e,
    however far ahead the producer could run (only two exports are kept)."""
    import json

    path = runs_dir.parent / "oneway.json"
    path.write_text(json.dumps({"oneway": {**_preset(target_models=["test_producer", "test_consumer"]),
                                           "enable_collaborative_training": True, "epochs": 6,
                                           "description": "o", "batch_size": 8,
                                           "models": {"test_consumer": {"hyperparameters": {"steps": 3000}}}}}))
    run = wb.start_run(str(path), scheduler=inprocess_scheduler)
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    used = run.events(kind="knowledge_used")
    got = {p["epoch"]: p["from_epochs"] for p in used[used["model"] == "test_consumer@digits"]["payload"]}
    assert got == {e: [e - 1] for e in range(2, 7)}


def _preset(**extra):
    base = {"datasets": ["digits"], "target_models": ["test_regressor"], "epochs": 3, "checkpoint_interval": 1,
            "enable_collaborative_training": False}
    base.update(extra)
    return base


def test_models_alone_on_a_worker_train_in_packs_and_learn_exactly_what_they_learn_apart(
        runs_dir, inprocess_scheduler, monkeypatch):
    """Six independent models on two workers: their segments go three to a task, and every
    model's steps, metrics and final weights are the same as with a task per segment."""
    import json

    from workbench import coordinator

    path = runs_dir.parent / "packs.json"
    preset = {**_preset(epochs=6, checkpoint_interval=5), "description": "p", "batch_size": 8,
              "models": {"test_regressor": {"population": 6}}}
    path.write_text(json.dumps({"packs": preset}))
    finals = {}
    for packed in (True, False):
        monkeypatch.setattr(coordinator, "PACK_SEGMENTS", packed)
        run = wb.start_run(str(path), scheduler=inprocess_scheduler)
        assert run.wait(timeout=300) == wb.RunState.FINISHED
        segments = run.events(kind="segment")
        packs = {p["pack"] for p in segments["payload"]}
        assert packs == ({3} if packed else {1}), packs  # three models a worker, all ready together
        metrics = run.metrics()
        steps = metrics[metrics["name"] == "train/loss"].groupby("model")["step"].apply(list)
        assert len(steps) == 6 and all(s == list(range(1, 121)) for s in steps)  # 6 epochs of 20 steps, once each
        finals[packed] = metrics[metrics["name"].isin(["train/loss", "eval/loss"])].sort_values(
            ["model", "name", "step", "epoch"])[["model", "epoch", "step", "name", "value"]].reset_index(drop=True)
    assert finals[True].equals(finals[False])


def test_a_packed_model_pauses_takes_a_change_and_stops_while_its_pack_goes_on(runs_dir, inprocess_scheduler):
    import json

    path = runs_dir.parent / "packs_steered.json"
    preset = {**_preset(epochs=400, checkpoint_interval=5), "description": "p", "batch_size": 8,
              "models": {"test_regressor": {"population": 6, "hyperparameters": {"steps": 400, "lr": 0.001}}}}
    path.write_text(json.dumps({"packs_steered": preset}))
    run = wb.start_run(str(path), scheduler=inprocess_scheduler)
    deadline = time.time() + 120
    while time.time() < deadline and not (run.events(kind="segment")["payload"].map(lambda p: p["pack"]) == 3).any():
        time.sleep(0.1)
    target, other = "test_regressor@digits#1", "test_regressor@digits#2"
    run.pause(target)
    while time.time() < deadline and run.snapshot().models[target].state != wb.ModelState.PAUSED:
        time.sleep(0.05)
    paused = run.snapshot().models
    while time.time() < deadline and run.snapshot().models[other].epoch < paused[other].epoch + 2:
        time.sleep(0.05)  # the rest of its pack goes on...
    assert run.snapshot().models[other].epoch >= paused[other].epoch + 2
    assert run.snapshot().models[target].step == paused[target].step  # ...without it
    run.resume_model(target)
    run.set_hparam(other, "lr", 0.002)
    while time.time() < deadline and run.snapshot().models[target].epoch <= paused[target].epoch + 1:
        time.sleep(0.05)
    stop_asked = time.time()
    run.stop()
    assert run.wait(timeout=120) == wb.RunState.STOPPED and time.time() - stop_asked < 30
    applied = run.events(kind="hparam_applied")
    assert any(p["name"] == "lr" and p["value"] == 0.002 for p in applied[applied["model"] == other]["payload"])
    epochs = run.models().set_index("model")["epoch"]
    assert epochs[target] > paused[target].epoch and all(epochs < 400)


def test_digits_mutual_run_end_to_end(runs_dir, inprocess_scheduler):
    run = wb.start_run("digits_mutual", {"epochs": 2}, scheduler=inprocess_scheduler)
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    metrics = run.metrics()
    final = metrics[(metrics["name"] == "eval/test_accuracy") & (metrics["epoch"] == 2)]
    assert set(final["model"]) == {"digits_mlp@digits", "digits_cnn@digits"}
    assert (final["value"] > 0.5).all()
    assert (metrics["name"] == "train/loss").sum() >= 2 * 2 * 30  # streamed step metrics
    usage = metrics[metrics["name"] == "sys/cpu_percent"]["value"]
    assert len(usage) == 4 and usage.iloc[1:].max() > 0  # measured between segments, not a constant
    kinds = set(run.events()["kind"])
    assert {"started", "segment", "checkpoint", "knowledge", "knowledge_used", "finished"} <= kinds
    saver = DiskSaver(run.dir / "checkpoints")
    assert saver.epochs("digits_mlp@digits") == [2]
    for name in ("preset.json", "environment.json", "store.sqlite"):
        assert (run.dir / name).exists()
    paths = run.report()
    assert paths["report.html"].stat().st_size > 10_000 and (run.dir / "report" / "summary.csv").exists()


def test_live_change_is_applied_pinned_and_recorded(runs_dir, inprocess_scheduler):
    run = wb.start_run("digits_mutual", {"epochs": 4, "models.digits_mlp.hyperparameters.batch_size": 8},
                       scheduler=inprocess_scheduler)
    deadline = time.time() + 120
    while run.snapshot().models["digits_mlp@digits"].state != wb.ModelState.RUNNING and time.time() < deadline:
        time.sleep(0.05)
    command = run.set_hparam("digits_mlp@digits", "lr", 0.0123)
    with pytest.raises(wb.WorkbenchError, match="'hidden' is not a live hyperparameter"):
        run.set_hparam("digits_mlp@digits", "hidden", 3)
    with pytest.raises(wb.WorkbenchError, match="must be <= 1.0"):
        run.set_hparam("digits_mlp@digits", "lr", 5.0)
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    events = run.events(kind="hparam")
    payload = events[events["model"] == "digits_mlp@digits"]["payload"].iloc[0]
    assert payload["new"] == 0.0123 and payload["source"] == "user" and payload["pinned"] and payload["id"] == command
    models = run.models().set_index("model")
    assert models.loc["digits_mlp@digits", "hparams"]["lr"] == 0.0123
    assert models.loc["digits_mlp@digits", "pinned"] == ["lr"]


def test_nonfinite_loss_rolls_back_with_lower_lr(runs_dir, inprocess_scheduler):
    path = runs_dir.parent / "p.json"
    import json

    path.write_text(json.dumps({"diverge": {**_preset(), "description": "d", "batch_size": 8,
                                            "models": {"test_regressor": {"hyperparameters": {"lr": 2.0}}}}}))
    run = wb.start_run(str(path), scheduler=inprocess_scheduler)
    assert run.wait(timeout=120) == wb.RunState.FINISHED
    rollbacks = run.events(kind="rollback")
    assert len(rollbacks) >= 1
    assert rollbacks["payload"].iloc[0]["new_lr"] == pytest.approx(rollbacks["payload"].iloc[0]["old_lr"] / 2)
    final_lr = run.models().set_index("model").loc["test_regressor@digits", "hparams"]["lr"]
    assert final_lr <= 0.5
    assert run.metrics(name="eval/loss")["value"].iloc[-1] < 1.0


def test_a_model_that_keeps_failing_is_marked_failed_and_others_go_on(runs_dir, inprocess_scheduler):
    import json

    path = runs_dir.parent / "crash.json"
    path.write_text(json.dumps({"crash": {**_preset(target_models=["test_regressor", "digits_mlp"]),
                                          "description": "c", "batch_size": 32, "max_failures": 2,
                                          "models": {"test_regressor": {"hyperparameters": {"crash": True}}}}}))
    run = wb.start_run(str(path), scheduler=inprocess_scheduler)
    assert run.wait(timeout=300) == wb.RunState.FINISHED_WITH_FAILURES  # never "finished" over a lost model
    assert not run.wait().ok
    states = run.models().set_index("model")["state"].to_dict()
    assert states == {"test_regressor@digits": "failed", "digits_mlp@digits": "finished"}
    assert (run.dir / "logs" / "test_regressor@digits.log").read_text().count("always crashes") >= 2
    assert wb.open_run(run.id).state == wb.RunState.FINISHED_WITH_FAILURES
    [line] = run.failures()
    assert line.startswith("test_regressor@digits failed: failed 3 times; last: RuntimeError: this model always "
                           "crashes") and "test_regressor@digits.log" in line


def test_pause_resume_stop_and_resume_run(runs_dir, inprocess_scheduler):
    run = wb.start_run("digits_mutual", {"epochs": 400, "enable_collaborative_training": False,
                                         "checkpoint_interval": 1}, scheduler=inprocess_scheduler)
    deadline = time.time() + 120
    while run.snapshot().models["digits_cnn@digits"].epoch < 1 and time.time() < deadline:
        time.sleep(0.05)
    run.pause("digits_cnn@digits")
    time.sleep(1.0)
    paused_at = run.snapshot().models["digits_cnn@digits"]
    assert paused_at.state == wb.ModelState.PAUSED
    time.sleep(1.0)
    assert run.snapshot().models["digits_cnn@digits"].step == paused_at.step  # it really stopped training
    run.resume_model("digits_cnn@digits")
    while run.snapshot().models["digits_cnn@digits"].epoch < paused_at.epoch + 1 and time.time() < deadline:
        time.sleep(0.05)
    run.stop()
    assert run.wait(timeout=120) == wb.RunState.STOPPED
    stopped_epochs = run.models().set_index("model")["epoch"].to_dict()
    assert all(e < 400 for e in stopped_epochs.values())
    resumed = wb.resume_run(run.id, overrides={"epochs": 3 + max(stopped_epochs.values()),
                                               "models.digits_mlp.hyperparameters.lr": 0.002},
                            scheduler=inprocess_scheduler)
    assert resumed.wait(timeout=300) == wb.RunState.FINISHED
    kinds = resumed.events()["kind"].tolist()
    assert "resumed" in kinds and "paused" in kinds and "resumed_model" in kinds
    hp = resumed.events(kind="hparam")
    assert any(p["new"] == 0.002 and p["source"] == "user" for p in hp["payload"])


def test_profile_epoch_writes_a_trace(runs_dir, inprocess_scheduler):
    run = wb.start_run("digits_mutual", {"epochs": 2, "profile_epoch": 2, "target_models": ["digits_mlp"]},
                       scheduler=inprocess_scheduler)
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    trace = run.dir / "profiles" / "digits_mlp@digits-epoch2.json"
    assert trace.stat().st_size > 1000
    assert "aten::" in trace.with_suffix(".txt").read_text()


@pytest.mark.parametrize("models", [["digits_mlp"], ["digits_mlp", "digits_cnn"]], ids=["alone", "with-peer"])
def test_a_worker_killed_mid_segment_costs_only_the_work_since_the_checkpoint(runs_dir, models):
    """A real local cluster (worker processes): kill the process training a model. With a
    peer, the peer may be waiting for knowledge that died with the worker: it must go on."""
    # Enough epochs that the kill lands inside a segment: a model without flows runs segments
    # of about 2 s (several epochs), so with 6 epochs its second segment could be its last.
    epochs = 20
    # every epoch checkpointed (no time floor): the restore point is then epoch 1 or later
    run = wb.start_run("digits_mutual", {"epochs": epochs, "checkpoint_interval": 1, "checkpoint_seconds": 0,
                                         "target_models": models,
                                         "models.digits_mlp.hyperparameters.batch_size": 4})
    name = "digits_mlp@digits"
    deadline = time.time() + 180
    while run.snapshot().models[name].epoch < 2 and time.time() < deadline:
        time.sleep(0.05)
    worker = run._coordinator.models[name].worker
    import os
    import threading

    def kill():  # runs in the worker's event loop, so it lands mid-segment
        try:
            run._cluster.client.run(os._exit, 1, workers=[worker])
        except Exception:  # the connection dies with the worker
            pass

    threading.Thread(target=kill, daemon=True).start()
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    events = run.events()
    restored = events[events["kind"] == "restored"]
    assert len(restored) >= 1 and restored["payload"].iloc[0]["epoch"] >= 1
    states = run.models().set_index("model")["state"]
    assert (states == "finished").all()
    for model in states.index:
        final = run.metrics(name="eval/test_accuracy", model=model)
        assert final["epoch"].max() == epochs and final["value"].iloc[-1] > 0.8


@pytest.mark.gpu
def test_models_share_a_real_gpu_with_capped_memory(runs_dir):
    import json

    run = wb.start_run("digits_mutual", {"epochs": 2, "models.digits_mlp.resources.device": "gpu",
                                         "models.digits_cnn.resources.device": "gpu"})
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    placements = json.loads((run.dir / "environment.json").read_text())["placements"]
    assert {p["device"] for p in placements} == {"cuda:0"}
    assert sum(p["gpu_fraction"] for p in placements) == pytest.approx(1.0)
    resources = run.events(kind="resources")  # the first to finish hands its share over
    assert len(resources) >= 1 and resources["payload"].iloc[0]["gpu_fraction"] > 0.5
    memory = run.metrics(name="sys/gpu_memory_mb")  # and they computed there (was: placed, trained on CPU)
    assert set(memory["model"]) == {p["instance"] for p in placements} and (memory["value"] > 0).all()


def test_a_client_is_accepted_as_scheduler_and_left_open(runs_dir, inprocess_scheduler):
    import json

    from distributed import Client

    with Client(inprocess_scheduler) as client:
        run = wb.start_run("digits_mutual", {"target_models": ["test_regressor"], "epochs": 2}, scheduler=client)
        assert run.wait(timeout=300) == wb.RunState.FINISHED
        assert client.status == "running"  # the caller's Client: theirs to close
        assert client.submit(sum, [1, 2]).result() == 3
        assert json.loads((run.dir / "environment.json").read_text())["scheduler"] == inprocess_scheduler
    with pytest.raises(wb.WorkbenchError, match="scheduler: expected an address like 'tcp://host:8786', a "
                                                "distributed.Client or a Dask cluster, got int"):
        wb.start_run("digits_mutual", {"target_models": ["test_regressor"]}, scheduler=3)
    assert [p.name for p in runs_dir.iterdir()] == [run.id]  # the refused start left nothing


def test_a_run_driven_here_does_not_shadow_a_run_of_the_same_id_in_another_folder(tmp_path):
    """``open_run(id, folder)`` reads the run in ``folder`` even while this process drives a
    run of that id elsewhere (two test modules, or two projects in one kernel, reuse ids)."""
    from workbench import _live
    from workbench.handles import RunRecord
    from workbench.store import RunStore

    elsewhere, here = tmp_path / "a" / "r1", tmp_path / "b" / "r1"
    for folder, preset in ((elsewhere, "quick"), (here, "digits_mutual")):
        folder.mkdir(parents=True)
        store = RunStore(folder / "store.sqlite")
        store.set_run(state="finished", preset=preset, run_id="r1")
        store.close()
    driven = _live.add(RunRecord(elsewhere))  # stands in for the Run this process drives
    assert wb.open_run("r1", tmp_path / "a") is driven
    record = wb.open_run("r1", tmp_path / "b")
    assert record is not driven and record.dir == here and record._reader.run_info()["preset"] == "digits_mutual"


def test_the_driver_plans_checks_and_checkpoints_a_built_in_run_without_pandas_or_torch(tmp_path):
    """The driver reads built-in models' cards, not their modules; the ``data_quality``
    event of a built-in dataset (findings and the fitted preprocessing) is recorded as
    before, but the check runs on a worker that loaded the data already; checkpoints arrive
    serialized by the workers. So a run's driver imports neither pandas (0.4 s of CPU) nor
    torch (1.3 s)."""
    import json
    import subprocess
    import sys

    preset = {"description": "tiny", "datasets": ["digits"], "epochs": 2, "batch_size": 256,
              "target_models": ["digits_mlp"], "enable_collaborative_training": False, "checkpoint_interval": 1,
              "checkpoint_seconds": 0, "models": {"digits_mlp": {"hyperparameters": {"hidden": 8}}}}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"tiny": preset}))
    code = ("import sys, workbench as wb\n"
            f"run = wb.start_run({str(path)!r}, runs_dir_={str(tmp_path / 'runs')!r})\n"
            "state = run.wait(timeout=300)\n"
            "print(run.id, state.value, 'pandas' in sys.modules, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    run_id, state, pandas_loaded, torch_loaded = result.stdout.split()[-4:]
    assert state == "finished", result.stdout + result.stderr
    assert (pandas_loaded, torch_loaded) == ("False", "False")
    run = wb.open_run(run_id, tmp_path / "runs")
    assert list(run.events(kind="checkpoint")["payload"].map(lambda p: p["epoch"])) == [1, 2]
    from workbench.query import load_trainer

    assert load_trainer(run_id, "digits_mlp@digits", tmp_path / "runs").hparams["hidden"] == 8  # the file loads
    quality = run.events(kind="data_quality")
    assert list(quality["model"].isna()) == [True]
    payload = quality["payload"].iloc[0]
    assert payload["dataset"] == "digits" and 0 < payload["score"] <= 100 and payload["preprocessing"]
