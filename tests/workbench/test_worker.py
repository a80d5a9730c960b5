"""What runs inside a worker, called directly (no cluster): code shipped by value and
replayed changes applied at their exact step."""
from __future__ import annotations

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


def test_a_class_shipped_by_value_is_built_and_changes_land_on_their_step():
    blob = cloudpickle.dumps(_shipped_class())
    info = _worker.build("r", "seen@x", "test_shipped_by_value", {"lr": 0.1}, None, 0, 1, code=blob)
    assert info["steps_per_epoch"] == 4
    # The shipped class is used as it came, without touching the worker's registry (a
    # long-lived external worker may hold another class of that name from an earlier run).
    from workbench.registry import _REGISTRY

    assert "test_shipped_by_value" not in _REGISTRY
    assert type(_worker._SLOTS[("r", "seen@x")].trainer).__name__ == "Seen"
    try:
        spec = _worker.SegmentSpec("r", "seen@x", 1, 3, "topic", {"lr": 0.1}, epochs=3,
                                   changes=((2, "lr", 0.5, 7), (9, "lr", 0.25, 8), (40, "lr", 9.0, 9)))
        result = _worker.run_segment(spec)
        assert result["status"] == "done" and result["step"] == 12
        trainer = _worker._SLOTS[("r", "seen@x")].trainer
        assert [lr for _, lr in trainer.seen] == [0.1, 0.1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    finally:
        _worker.drop("r", "seen@x")
