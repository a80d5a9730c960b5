"""Replay: the schedule read from a run's events (no cluster), and a real run replayed."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from workbench.errors import WorkbenchError
from workbench.replay import ReplayQueue, ReplaySchedule, ScheduledChange, ScheduledRelease, schedule_from_events
from workbench.store import read_store


def _hparam(name, new, step, id_, round_=0, source="user", **extra):
    return {"name": name, "new": new, "step": step, "id": id_, "round": round_, "source": source, "pinned": True,
            **extra}


def test_a_change_is_scheduled_at_the_step_where_the_trainer_applied_it():
    rows = [("a", "hparam", _hparam("lr", 0.1, 40, 1)),          # taken mid-segment...
            ("b", "hparam", _hparam("lr", 0.2, 90, 2, round_=2)),  # ...and between segments: never acknowledged
            ("a", "hparam_applied", {"name": "lr", "value": 0.1, "id": 1, "step": 57}),
            ("a", "hparam", _hparam("lr", 0.5, 0, 3, source="controller")),  # recomputed, not replayed
            ("a", "release", {"name": "lr", "round": 3})]
    changes, releases = schedule_from_events(rows)
    assert [(c.model, c.value, c.step, c.round, c.original_id) for c in changes] == [
        ("a", 0.1, 57, 0, 1), ("b", 0.2, 90, 2, 2)]
    assert releases == (ScheduledRelease("a", "lr", 3, 4),)


def test_changes_lost_to_a_kill_are_not_replayed_and_resume_with_set_is_refused():
    rows = [("a", "segment", {"epoch": 1, "step": 50}),
            ("a", "hparam", _hparam("lr", 0.1, 20, 1)),
            ("a", "hparam", _hparam("lr", 0.3, 70, 2)),  # after the checkpoint at epoch 1: redone without it
            (None, "resumed", {"from_epoch": {"a": 1}}),
            ("a", "hparam", _hparam("lr", 0.4, 60, 1))]  # ids start again in the resumed process
    changes, _ = schedule_from_events(rows)
    assert [(c.value, c.step) for c in changes] == [(0.1, 20), (0.4, 60)]
    with pytest.raises(WorkbenchError, match="resumed with changed settings"):
        schedule_from_events([("a", "hparam", _hparam("lr", 0.1, 50, 1, client="resume"))])


def test_the_queue_hands_a_change_to_the_copy_at_its_step_and_round():
    change = ScheduledChange("a", "lr", 0.1, step=100, round=2, pinned=True, original_id=1, order=0)
    release = ScheduledRelease("a", "lr", round=2, order=1)
    queue = ReplayQueue(ReplaySchedule("r", "p", {}, (change,), (release,)))
    assert queue.for_segment("a", 50) == [change] and queue.for_segment("b", 50) == []
    assert queue.due({"a": 90}, idle=["a"]) == []  # not reached yet: it rides in the segment
    assert queue.due({"a": 100}, idle=[]) == []  # reached, but a segment is in flight
    assert queue.due({"a": 100}, idle=["a"], next_round=2) == []  # the original took it after round 2
    assert queue.due({"a": 100}, idle=["a"], next_round=3) == [change, release]
    assert queue.pending == []


def test_a_release_waits_for_the_earlier_change_of_its_hyperparameter():
    change = ScheduledChange("a", "lr", 0.1, step=100, round=0, pinned=True, original_id=1, order=0)
    release = ScheduledRelease("a", "lr", round=0, order=1)
    queue = ReplayQueue(ReplaySchedule("r", "p", {}, (change,), (release,)))
    assert queue.due({"a": 10}, idle=["a"], next_round=1) == []
    assert queue.due({"a": 100}, idle=["a"]) == [change]  # before a segment: no release
    assert queue.due({"a": 100}, idle=["a"], next_round=2) == [release]


def _final_eval(run_dir):
    metrics = read_store(run_dir / "store.sqlite").metrics()
    evals = metrics[metrics["name"].str.startswith("eval/")]
    last = evals[evals["epoch"] == evals.groupby("model")["epoch"].transform("max")]
    return {(r.model, r.name): r.value for r in last.itertuples()}


@pytest.mark.slow
def test_a_run_steered_by_hand_replays_to_the_same_final_metrics(runs_dir):
    """Worker processes (a real local cluster), as in use: in-process worker threads share
    one global RNG, so their runs are not reproducible in the first place."""
    import workbench as wb

    overrides = {"epochs": 5, "batch_size": 8, "target_models": ["digits_mlp", "digits_cnn",
                                                                 "adaptive_learning_controller"],
                 "models.digits_mlp.population": 2,
                 "models.adaptive_learning_controller.hyperparameters.warmup_rounds": 1}
    run = wb.start_run("digits_mutual", overrides, run_id="steered")
    deadline = time.time() + 120

    def when(model, epoch):
        while run.snapshot().models[model].epoch < epoch and not run.done and time.time() < deadline:
            time.sleep(0.01)

    when("digits_mlp@digits", 1)
    time.sleep(0.05)  # mid-epoch
    run.set_hparam("digits_mlp@digits", "lr", 0.004)
    when("digits_cnn@digits", 2)
    run.set_hparam("digits_cnn@digits", "lr", 0.0007)
    run.release("digits_mlp@digits", "lr")
    when("digits_mlp@digits#1", 3)
    time.sleep(0.05)
    from workbench.coordinator import Command

    # As a store-backed command channel would: the id is the store's, kept by submit.
    assert run._coordinator.submit(Command("set", "digits_mlp@digits#1", "lr", 0.02, id=1000, client="t:h:1")) == 1000
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    sent = [p for p in run.events(kind="hparam")["payload"] if p["new"] == 0.02]
    assert [(p["id"], p["client"]) for p in sent] == [(1000, "t:h:1")]
    from workbench.replay import replay_plan

    schedule = {(c.model, c.value, c.step) for c in replay_plan(run.dir).changes}
    assert len(schedule) == 3

    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs_dir)}
    result = subprocess.run([sys.executable, "-m", "workbench", "run", "--replay", "steered", "--run-id", "again",
                             "--quiet", "--no-report"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    replayed = wb.open_run("again")
    assert _final_eval(replayed.dir) == _final_eval(run.dir)
    hp = replayed.events(kind="hparam")
    ours = [p for p in hp["payload"] if p["source"] == "replay"]
    assert {(p["name"], p["new"], p["replay_of"]) for p in ours} == {
        ("lr", 0.004, "steered"), ("lr", 0.0007, "steered"), ("lr", 0.02, "steered")}
    assert {(m, p["new"], p["step"]) for m, p in zip(hp["model"], hp["payload"]) if p["source"] == "replay"} == schedule
    applied = replayed.events(kind="hparam_applied")  # the trainer's own word on where it applied them
    assert {(m, p["value"], p["step"]) for m, p in zip(applied["model"], applied["payload"])} <= schedule
    assert replayed.events(kind="started")["payload"].iloc[0]["replay_of"] == "steered"
