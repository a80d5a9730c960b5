"""Device placement owned by the engine, on the CPU: the "meta" device stands in for a GPU
(tensors on it have a device but no data), so a trainer that forgets to move something is
caught exactly as it would be on cuda:0."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from workbench import _device, _worker
from workbench.checkpoint import DiskSaver
from workbench.data import load_dataset, prepare
from workbench.errors import DevicePlacementError
from workbench.models.digits import DigitsCNN, DigitsMLP
from workbench.registry import register_model
from workbench.trainer import HParam, Resources, StepContext, Trainer

pytestmark = pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")


def _digits(cls=DigitsMLP, device="cpu", seed=0, **hp):
    data, _ = prepare(load_dataset("digits"), 0)
    hparams = {k: v.default for k, v in cls.hyperparameters.items()} | hp
    return cls(hparams, data, Resources(device=device), seed)


@register_model("test_forgetful")
class Forgetful(Trainer):
    """Moves its body to the planned device; ``forget`` says what it leaves on the CPU."""

    accepts = ("images",)
    hyperparameters = {"forget": HParam(str, "", choices=("", "head", "optimizer", "tensor"))}
    host_tensors = ("replay",)

    def __init__(self, hparams, data, resources, seed):
        super().__init__(hparams, data, resources, seed)
        dev, forget = resources.device, hparams["forget"]
        self.body = nn.Linear(4, 4).to(dev)
        self.head = nn.Linear(4, 2) if forget == "head" else nn.Linear(4, 2).to(dev)
        self.extra = torch.zeros(3) if forget == "tensor" else torch.zeros(3, device=dev)
        self.counts = torch.zeros(3, dtype=torch.long)  # integer bookkeeping may stay on the host
        self.replay = {"x": torch.zeros(5)}  # declared in host_tensors
        params = list(self.body.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(params)
        if forget == "optimizer":  # Adam state restored by hand from a host copy, never moved
            self.opt.state[params[0]] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros(4, 4),
                                         "exp_avg_sq": torch.zeros(4, 4)}

    steps_per_epoch = 1

    def train_step(self, ctx):
        return {"train/loss": 0.0}

    def evaluate(self):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _build(monkeypatch, forget, checkpoint=None, model="test_forgetful", hparams=None):
    monkeypatch.setattr(_device, "planned_device", lambda device: "meta")
    return _worker.build("r", f"m-{forget}", model, hparams if hparams is not None else {"forget": forget},
                         {"name": "digits"}, 0, 1, "cuda:0", None, checkpoint)


def test_a_trainer_on_its_device_passes_the_check(monkeypatch):
    info = _build(monkeypatch, "")
    assert info["steps_per_epoch"] == 1
    assert _device.check_placement(_worker._SLOTS[("r", "m-")].trainer, "meta") >= 5


@pytest.mark.parametrize("forget, tensor", [("head", "trainer.head.weight"),
                                            ("optimizer", "trainer.opt.state[0].exp_avg"),
                                            ("tensor", "trainer.extra")])
def test_the_engine_refuses_a_tensor_left_on_another_device(monkeypatch, forget, tensor):
    with pytest.raises(DevicePlacementError) as err:
        _build(monkeypatch, forget)
    message = str(err.value)
    assert f"m-{forget}: tensor {tensor} " in message and "is on cpu but the model is placed on meta" in message
    assert ("r", f"m-{forget}") not in _worker._SLOTS  # refused, not half-registered


def test_same_device_treats_cuda_and_cuda0_alike():
    assert _device.same_device("cuda", "cuda:0") and _device.same_device("cuda:0", "cuda")
    assert not _device.same_device("cuda:1", "cuda:0") and not _device.same_device("cpu", "cuda:0")


def test_to_host_copies_and_keeps_state_dict_metadata():
    net = nn.Linear(2, 2)
    state = {"net": net.state_dict(), "pair": (torch.ones(1), 3), "n": [torch.zeros(2)]}
    host = _device.to_host(state, copy=True)
    assert host["net"]._metadata == state["net"]._metadata
    host["net"]["weight"].add_(1.0)
    assert not torch.equal(host["net"]["weight"], net.weight)  # a copy, not the live weights
    assert _device.to_host(state)["n"][0] is state["n"][0]  # no copy asked: host tensors pass through


def test_digits_checkpoint_resumes_on_another_device(tmp_path, monkeypatch):
    """A state saved by a CPU run is loaded onto a model placed elsewhere: every tensor the
    model trains lands on the new device (load_state_dict moves it), and the check passes."""
    trained = _digits(mutual_from="all")  # the untrained peer is worse: "better" would ignore it
    for _ in range(3):
        trained.train_step(StepContext())
    peer = _digits(DigitsCNN).export_knowledge()
    trained.import_knowledge({k: {"cnn": v} for k, v in peer.items()})
    assert peer["soft_predictions/digits"]["probs"].device.type == "cpu"  # knowledge travels on the host
    saver = DiskSaver(tmp_path)
    saver.save("m", 1, _device.to_host(trained.state_dict(), copy=True))
    _, on_meta = saver.load_latest("m", map_location="meta")
    assert on_meta["net"]["0.weight"].device.type == "meta"  # map_location reaches torch.load
    _, state = saver.load_latest("m")
    assert state["net"]["0.weight"].device.type == "cpu"
    moved = _digits(device="meta", mutual_from="all")
    moved.load_state_dict(copy.deepcopy(state))
    assert moved.peer_probs.device.type == "meta"
    assert _device.check_placement(moved, "meta") > 10
    with pytest.raises(DevicePlacementError, match="trainer.x_train"):
        _device.check_placement(trained, "meta")


def test_digits_bf16_autocast_trains_on_cpu():
    t = _digits(DigitsCNN, precision="bf16")
    with t._autocast():
        assert t.net(t.x_train[:4]).dtype == torch.bfloat16
    for _ in range(3):
        for _ in range(t.steps_per_epoch):
            metrics = t.train_step(StepContext())
    ev = t.evaluate()
    assert ev["eval/test_accuracy"] > 0.85 and metrics["train/loss"] < 1.0
    assert t.net[1].weight.dtype == torch.float32  # autocast: the weights stay fp32


def test_grad_accumulation_keeps_the_effective_batch():
    whole, split = _digits(batch_size=32), _digits(batch_size=8, grad_accumulation=4)
    assert whole.steps_per_epoch == split.steps_per_epoch
    whole.net.eval(), split.net.eval()  # no dropout: the two must compute the same gradient
    whole.net.train = split.net.train = lambda mode=True: None
    for _ in range(5):
        a, b = whole.train_step(StepContext()), split.train_step(StepContext())
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
    for p, q in zip(whole.net.parameters(), split.net.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
