"""The CUDA out-of-memory retry policy and its worker side, on the CPU: a digits classifier
raises a simulated ``torch.cuda.OutOfMemoryError`` whenever its forward pass is larger than
a limit, after it has taken its batch (so the retry must find the trainer unchanged)."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench import _oom, _worker
from workbench.models.digits import DigitsMLP
from workbench.registry import register_model
from workbench.trainer import HParam, StepContext


@register_model("test_oom_digits")
class OomDigits(DigitsMLP):
    hyperparameters = {**DigitsMLP.hyperparameters,
                       "fits": HParam(int, 8, low=0, high=4096, help="largest forward pass that fits")}

    def _train_step(self):
        if self.hparams["batch_size"] > self.hparams["fits"]:
            self._next_batch()  # state changed before the failure: the trainer must undo it
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return super()._train_step()


def test_policy_halves_the_batch_and_keeps_the_effective_batch():
    d = _oom.decide({"batch_size": 32, "grad_accumulation": 1}, failures=1, max_failures=3)
    assert d.retry and d.hparams == {"batch_size": 16, "grad_accumulation": 2}
    assert "effective batch 32 -> 32" in d.reason
    d = _oom.decide({"batch_size": 5, "grad_accumulation": 2}, failures=2, max_failures=3)
    assert d.hparams == {"batch_size": 3, "grad_accumulation": 4}
    d = _oom.decide({"batch_size": 64}, failures=1, max_failures=3)
    assert d.hparams == {"batch_size": 32} and "effective batch shrinks" in d.reason


@pytest.mark.parametrize("hparams, failures, reason", [
    ({"batch_size": 32, "grad_accumulation": 1}, 4, "out of memory 4 times (max_failures=3)"),
    ({"batch_size": 1, "grad_accumulation": 8}, 1, "out of memory at batch_size 1"),
    ({"lr": 0.1}, 1, "no batch_size hyperparameter"),
])
def test_policy_gives_up(hparams, failures, reason):
    d = _oom.decide(hparams, failures, max_failures=3)
    assert not d.retry and reason in d.reason and d.hparams == {}


def _slot(**hp):
    info = _worker.build("oom", "m", "test_oom_digits", {k: v.default for k, v in OomDigits.hyperparameters.items()}
                         | hp, {"name": "digits"}, 0, 1)
    return info, _worker._SLOTS[("oom", "m")]


def test_worker_retries_at_half_the_batch_and_reports_it():
    info, slot = _slot(batch_size=32, fits=8)
    events = []
    metrics = _oom.guarded_step(slot, StepContext(), 3, events.append, "m")
    assert metrics["train/loss"] > 0
    trainer = slot.trainer
    assert (trainer.hparams["batch_size"], trainer.hparams["grad_accumulation"]) == (8, 4)
    assert trainer.position == 32  # one effective batch taken: the failed attempts took none
    assert trainer.steps_per_epoch == info["steps_per_epoch"]
    assert [e["event"] for e in events] == ["oom_retry", "oom_retry"]
    assert events[0]["payload"]["old"] == {"batch_size": 32, "grad_accumulation": 1}
    assert events[1]["payload"]["new"] == {"batch_size": 8, "grad_accumulation": 4}
    assert "Tried to allocate" in events[0]["payload"]["error"]


def test_worker_gives_up_after_max_failures():
    _, slot = _slot(batch_size=32, fits=0)
    events = []
    with pytest.raises(torch.cuda.OutOfMemoryError, match="workbench gave up: out of memory 3 times"):
        _oom.guarded_step(slot, StepContext(), 2, events.append, "m")
    assert len(events) == 2 and slot.trainer.hparams["batch_size"] == 8


@pytest.mark.slow
def test_oom_retry_through_the_engine(runs_dir, inprocess_scheduler):
    preset = {"datasets": ["digits"], "target_models": ["test_oom_digits"], "epochs": 2, "batch_size": 32,
              "checkpoint_interval": 1, "enable_collaborative_training": False, "description": "oom",
              "models": {"test_oom_digits": {"hyperparameters": {"fits": 16}}}}
    path = runs_dir.parent / "oom.json"
    import json

    path.write_text(json.dumps({"oom": preset}))
    run = wb.start_run(str(path), scheduler=inprocess_scheduler)
    assert run.wait(timeout=300) == wb.RunState.FINISHED
    retries = run.events(kind="oom_retry")
    assert len(retries) == 1 and retries["payload"].iloc[0]["new"] == {"batch_size": 16, "grad_accumulation": 2}
    hparams = run.models().set_index("model").loc["test_oom_digits@digits", "hparams"]
    assert (hparams["batch_size"], hparams["grad_accumulation"]) == (16, 2)  # kept for the next segments
    assert run.metrics(name="eval/test_accuracy")["value"].iloc[-1] > 0.8
