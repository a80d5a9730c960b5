import copy

import pytest
import torch

from workbench.data import load_dataset, prepare
from workbench.models.digits import DigitsCNN, DigitsMLP
from workbench.trainer import Resources, StepContext


def _make(cls, seed=0, **hp):
    data, _ = prepare(load_dataset("digits"), 0)
    hparams = {k: v.default for k, v in cls.hyperparameters.items()} | hp
    return cls(hparams, data, Resources(), seed)


def _epoch(t):
    for _ in range(t.steps_per_epoch):
        t.train_step(StepContext())
    return t.evaluate()


def test_mlp_and_cnn_learn_well_above_chance():
    for cls in (DigitsMLP, DigitsCNN):
        t = _make(cls)
        for _ in range(3):
            ev = _epoch(t)
        assert ev["eval/test_accuracy"] > 0.85, (cls.name, ev)


def test_state_round_trip_continues_identically():
    a = _make(DigitsMLP)
    _epoch(a)
    state = copy.deepcopy(a.state_dict())  # state_dict shares storage with the live model
    rng = torch.get_rng_state()
    after_a = _epoch(a)
    b = _make(DigitsMLP, seed=123)
    b.load_state_dict(state)
    torch.set_rng_state(rng)
    assert _epoch(b) == after_a


def test_mutual_learning_uses_peer_predictions():
    a, b = _make(DigitsMLP), _make(DigitsCNN)
    assert set(a.train_step(StepContext())) == {"train/loss"}  # no KL term yet: no parts to report
    _epoch(b)
    art = b.export_knowledge()
    kind = "soft_predictions/digits"
    assert art[kind]["probs"].shape == (len(a.x_train), 10)
    used = a.import_knowledge({kind: {"digits_cnn@digits": art[kind]}})
    assert used["peers"] == ["digits_cnn@digits"]
    metrics = a.train_step(StepContext())
    assert metrics["train/kl"] > 0
    assert metrics["train/loss"] == pytest.approx(metrics["train/ce"] + a.hparams["mutual_weight"] * metrics["train/kl"])
