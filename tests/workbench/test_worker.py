"""What runs inside a worker, called directly (no cluster): code shipped by value and
replayed changes applied at their exact step."""
from __future__ import annotations

import contextlib

import cloudpickle

from workbench import _worker


def _shipped_class():
    """A trainer defined in a function: no module can import it, like a notebook cell's."""
    from workbench import HParam, Trainer

    class Seen(Trainer):
        accepts = ("images",)
        hyperparameters = {"lr": HParam(float, 0.1, low=0.0, high=10.0, live=True)}

        def __init__(self, hparams, data, resources, seed):
            super().__init__(hparams, data, resources, seed)
            self.seen: list[tuple[int, float]] = []

        @property
        def steps_per_epoch(self):
            return 4

        def train_step(self, ctx):
            self.seen.append((len(self.seen), self.hparams["lr"]))
            return {"train/loss": 1.0}

        def evaluate(self):
            return {"eval/loss": 1.0}

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    return Seen



@contextlib.contextmanager
def _built(name: str):
    """The shipped trainer built as ``name`` of run ``r`` for the block, dropped after it."""
    info = _worker.build("r", name, "test_shipped_by_value", {"lr": 0.1}, None, 0, 1,
                         code=cloudpickle.dumps(_shipped_class()))
    try:
        yield info
    finally:
        _worker.drop("r", name)


def test_a_class_shipped_by_value_is_built_and_changes_land_on_their_step():
    from workbench.registry import _REGISTRY

    with _built("seen@x") as info:
        assert info["steps_per_epoch"] == 4
        # The shipped class is used as it came, without touching the worker's registry (a
        # long-lived external worker may hold another class of that name from an earlier run).
        assert "test_shipped_by_value" not in _REGISTRY
        assert type(_worker._SLOTS[("r", "seen@x")].trainer).__name__ == "Seen"
        spec = _worker.SegmentSpec("r", "seen@x", 1, 3, "topic", {"lr": 0.1}, epochs=3,
                                   changes=((2, "lr", 0.5, 7), (9, "lr", 0.25, 8), (40, "lr", 9.0, 9)))
        result = _worker.run_segment(spec)
        assert result["status"] == "done" and result["step"] == 12
        trainer = _worker._SLOTS[("r", "seen@x")].trainer
        assert [lr for _, lr in trainer.seen] == [0.1, 0.1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_step_metrics_travel_packed_and_come_back_as_rows():
    packer = _worker._Packer("m@d")
    rows = [("m@d", 3, 10, "train/loss", 0.5, 100.25), ("m@d", 3, 10, "train/acc", 0.75, 100.25),
            ("m@d", 4, 11, "train/loss", 0.25, 100.5)]
    for _, epoch, step, name, value, now in rows:
        packer.add(epoch, step, name, value, now)
    packed = packer.pack()
    assert all(isinstance(packed[k], bytes) for k in ("epochs", "steps", "values", "times", "which"))
    assert _worker.unpack(packed) == rows
    sent = []
    packer.send(sent.append, [{"id": 1}])
    assert _worker.unpack(sent[0]["packed"]) == rows and sent[0]["applied"] == [{"id": 1}] and len(packer) == 0
    assert _worker.unpack(packer.pack()) == []


def test_a_segment_streams_every_step_once_in_order(monkeypatch):
    sent = []
    monkeypatch.setattr(_worker, "_emitter", lambda topic: sent.append)  # what Dask's event log would carry
    with _built("st@x"):
        _worker.run_segment(_worker.SegmentSpec("r", "st@x", 1, 3, "topic", {"lr": 0.1}, epochs=3))
    rows = [row for msg in sent for row in _worker.unpack(msg["packed"])]
    expected = [(e, s) for e in (1, 2, 3) for s in range(4 * e - 3, 4 * e + 1)]  # 4 steps an epoch
    assert [(epoch, step) for _, epoch, step, *_ in rows] == expected
    assert len(sent) == 1  # a segment of well under a second: one message


def test_a_pack_trains_its_models_in_turn_and_streams_their_steps_as_one_message(monkeypatch):
    sent = []
    monkeypatch.setattr(_worker, "_emitter", lambda topic: sent.append)
    with _built("p1@x"), _built("p2@x"), _built("p3@x"):
        specs = [_worker.SegmentSpec("r", f"p{i}@x", 1, 2, "topic", {"lr": 0.1}, epochs=2) for i in (1, 2, 3)]
        out = _worker.run_segments(specs, 3600.0)["results"]
        assert list(out) == ["p1@x", "p2@x", "p3@x"]
        assert all(r["status"] == "done" and r["step"] == 8 and r["pack"] == 3 for r in out.values())
    assert len(sent) == 1 and sent[0]["kind"] == "batch"  # well under a second: one event for the pack
    rows = [row for msg in sent[0]["messages"] for row in _worker.unpack(msg["packed"])]
    assert [(model, step) for model, _, step, *_ in rows] == [(f"p{i}@x", s) for i in (1, 2, 3) for s in range(1, 9)]


def test_a_pack_out_of_time_leaves_the_rest_untouched_and_a_lost_model_spoils_no_other():
    with _built("q1@x"), _built("q2@x"), _built("q3@x"):
        specs = [_worker.SegmentSpec("r", f"q{i}@x", 1, 2, "topic", {"lr": 0.1}, epochs=2) for i in (1, 2, 3)]
        out = _worker.run_segments(specs, 0.0)["results"]  # past its time once the first model's segment ends
        assert out["q1@x"]["step"] == 8 and out["q2@x"] == out["q3@x"] == {"skipped": True}
        assert [_worker._SLOTS[("r", f"q{i}@x")].step for i in (2, 3)] == [0, 0]
        lost = _worker.SegmentSpec("r", "gone@x", 1, 2, "topic", {"lr": 0.1}, epochs=2)
        out = _worker.run_segments([lost, specs[1]], 3600.0)["results"]
        assert isinstance(out["gone@x"]["raised"], KeyError) and out["q2@x"]["step"] == 8


def test_a_packs_metrics_wait_for_the_interval_but_an_applied_change_leaves_at_once():
    sent = []
    batched = _worker._Batched(sent.append, 3600.0)
    batched({"kind": "metrics", "model": "a", "applied": []})
    batched({"kind": "metrics", "model": "b", "applied": []})
    assert sent == []
    batched({"kind": "metrics", "model": "c", "applied": [{"id": 4}]})  # the panel waits on it
    assert sent == [{"kind": "batch", "messages": [{"kind": "metrics", "model": "a", "applied": []},
                                                   {"kind": "metrics", "model": "b", "applied": []}]},
                    {"kind": "metrics", "model": "c", "applied": [{"id": 4}]}]
    batched({"kind": "metrics", "model": "d", "applied": []})
    batched.flush()
    assert sent[-1] == {"kind": "metrics", "model": "d", "applied": []}  # one held: sent as it is


def test_a_state_copy_shares_nothing_with_the_trainer():
    import torch

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {"net": net.state_dict(), "opt": opt.state_dict(), "position": 4, "order": [1, 2], "none": None}
    copied = _worker._copy_state(state)
    with torch.no_grad():
        net.weight.add_(1.0)
    opt.step()
    assert not torch.equal(copied["net"]["weight"], net.state_dict()["weight"])
    assert copied["opt"]["state"][0]["step"] != opt.state_dict()["state"][0]["step"]
    assert copied["position"] == 4 and copied["order"] == [1, 2] and copied["none"] is None
    net.load_state_dict(copied["net"])  # loads as a state_dict does


def test_a_segment_takes_its_checkpoint_states_at_the_epochs_asked():
    with _built("ck@x"):
        with_state = {}
        epoch = 1
        while epoch <= 6:  # a segment ends at the epoch it took a checkpoint at: its state is saved at once
            spec = _worker.SegmentSpec("r", "ck@x", epoch, 6, "topic", {"lr": 0.1}, epochs=7 - epoch,
                                       checkpoint_interval=2)
            result = _worker.run_segment(spec)
            assert result["status"] == "done" and len(result["epochs"]) == 2
            with_state.update({r["epoch"]: _loaded(r["state"])["engine"]["step"] for r in result["epochs"]
                               if "state" in r})
            epoch += len(result["epochs"])
        assert with_state == {2: 8, 4: 16, 6: 24}  # the step counter as each of those epochs ended
        # the last one is what the separate state task returns after the segment
        last = _loaded(result["epochs"][-1]["state"])
        assert last["engine"]["rng"]["torch"].equal(_worker.from_wire(_worker.state("r", "ck@x"))["engine"]["rng"]["torch"])
        assert all(isinstance(r["state"]["data"], bytes) for r in result["epochs"] if "state" in r)


def _loaded(checkpoint_state: dict) -> dict:
    """A checkpoint state as the worker serialized it, read back as a resume reads the file."""
    import io

    import torch

    return torch.load(io.BytesIO(checkpoint_state["data"]), weights_only=True)


def test_a_checkpoint_due_within_the_time_floor_is_skipped_but_never_the_last():
    with _built("fl@x"):
        spec = _worker.SegmentSpec("r", "fl@x", 1, 6, "topic", {"lr": 0.1}, epochs=6, checkpoint_interval=2,
                                   checkpoint_seconds=3600.0)
        result = _worker.run_segment(spec)
        assert [r["epoch"] for r in result["epochs"] if "state" in r] == [6]


def test_a_segment_bounded_by_time_ends_after_the_epoch_that_reaches_it():
    with _built("tb@x"):
        # 0 s: past the bound as soon as the first epoch ends, so exactly one epoch runs
        result = _worker.run_segment(_worker.SegmentSpec("r", "tb@x", 1, 6, "topic", {"lr": 0.1}, epochs=6,
                                                         seconds=0.0))
        assert result["status"] == "done" and [r["epoch"] for r in result["epochs"]] == [1]
        # an hour: every epoch asked for, and the next segment goes on from the step reached
        result = _worker.run_segment(_worker.SegmentSpec("r", "tb@x", 2, 6, "topic", {"lr": 0.1}, epochs=5,
                                                         seconds=3600.0))
        assert [r["epoch"] for r in result["epochs"]] == [2, 3, 4, 5, 6] and result["step"] == 24


def test_a_state_travels_as_numpy_and_comes_back_as_the_same_tensors(tmp_path):
    import collections
    import io
    import pickle

    import torch

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {"net": net.state_dict(), "opt": opt.state_dict(), "half": torch.ones(2, dtype=torch.bfloat16),
             "rng": torch.get_rng_state(), "plain": [1, "a", None]}
    wired = _worker.to_wire(state)
    assert isinstance(wired["net"]["weight"], _worker._Wired)  # numpy inside
    assert isinstance(wired["half"], torch.Tensor)  # numpy has no bfloat16: left a tensor
    back = _worker.from_wire(pickle.loads(pickle.dumps(wired, protocol=5)))
    assert isinstance(back["net"], collections.OrderedDict) and back["net"]._metadata == state["net"]._metadata
    for key in ("weight", "bias"):
        assert torch.equal(back["net"][key], state["net"][key]) and back["net"][key].dtype == torch.float32
    assert back["opt"]["state"][0]["step"].dim() == 0 and torch.equal(back["opt"]["state"][0]["step"],
                                                                        state["opt"]["state"][0]["step"])
    assert torch.equal(back["rng"], state["rng"]) and torch.equal(back["half"], state["half"])
    assert back["plain"] == [1, "a", None]
    buffer = io.BytesIO()  # what the driver writes loads as a checkpoint does (weights only)
    torch.save(back, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer, weights_only=True)["net"]["weight"], state["net"]["weight"])


def test_a_state_taken_from_one_trainer_loads_into_another_as_an_exploit_does():
    import torch

    class Weighted(_shipped_class()):
        def __init__(self, *args):
            super().__init__(*args)
            self.w = torch.zeros(2)

        def state_dict(self):
            return {"w": self.w.clone()}

        def load_state_dict(self, state):
            self.w = state["w"].clone()

    blob = cloudpickle.dumps(Weighted)
    for name in ("src@x", "dst@x"):
        _worker.build("r", name, "test_shipped_by_value", {"lr": 0.1}, None, 0, 1, code=blob)
    try:
        _worker._SLOTS[("r", "src@x")].trainer.w = torch.tensor([1.5, -2.0])
        payload = _worker.state("r", "src@x")  # what travels between workers: numpy inside
        _worker.load_state("r", "dst@x", payload, {"lr": 0.2})
        assert torch.equal(_worker._SLOTS[("r", "dst@x")].trainer.w, torch.tensor([1.5, -2.0]))
    finally:
        _worker.drop_run("r")


def test_the_end_of_a_run_forgets_its_trainers_and_only_them():
    blob = cloudpickle.dumps(_shipped_class())
    for run, name in (("r1", "a@x"), ("r1", "b@x"), ("r2", "a@x")):
        _worker.build(run, name, "test_shipped_by_value", {"lr": 0.1}, None, 0, 1, code=blob)
    _worker.drop_run("r1")
    assert ("r1", "a@x") not in _worker._SLOTS and ("r1", "b@x") not in _worker._SLOTS
    assert ("r2", "a@x") in _worker._SLOTS
    _worker.drop_run("r2")


def test_an_export_that_runs_after_its_run_ended_finds_nothing_but_a_lost_trainer_still_fails():
    """An export submitted before the run ended may run after its trainers were dropped (a
    run failing on a full disk): that is no error, and Dask must not log one. A trainer
    missing from a run still going (its worker died) stays an error."""
    import pytest

    blob = cloudpickle.dumps(_shipped_class())
    _worker.build("r3", "a@x", "test_shipped_by_value", {"lr": 0.1}, None, 0, 1, code=blob)
    _worker.drop_run("r3")
    assert _worker.export("r3", "a@x") == {}
    with pytest.raises(_worker.SlotLost):
        _worker.export("elsewhere", "a@x")
    _worker.build("r3", "a@x", "test_shipped_by_value", {"lr": 0.1}, None, 0, 1, code=blob)  # resumed here
    _worker.drop("r3", "a@x")
    with pytest.raises(_worker.SlotLost):
        _worker.export("r3", "a@x")
