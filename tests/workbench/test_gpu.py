"""On a real CUDA GPU (skipped elsewhere): where the computation runs, not only what the
plan says. Every test here needs ``torch.cuda.is_available()``."""
from __future__ import annotations

import json

import pytest
import torch

import workbench as wb
from workbench import _device, _oom, _worker
from workbench.checkpoint import DiskSaver
from workbench.registry import get_model, register_model
from workbench.trainer import HParam, StepContext, Trainer, validate_hparams

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# Small settings per built-in model, so each trains a few steps in seconds.
SMALL = {
    ("digits_mlp", "digits"): {},
    ("digits_cnn", "digits"): {"precision": "bf16"},
    ("environment_simulator", "cartpole"): {"initial_random_steps": 200, "steps_per_epoch": 5,
                                            "env_steps_per_epoch": 20, "eval_episodes": 1, "eval_max_steps": 20,
                                            "plan_population": 20, "plan_horizon": 5, "imagined_count": 20},
    ("causal_reasoning_engine", "sem_nonlinear"): {"stage_iters": 50, "iters_per_step": 10, "fit_epochs": 1},
    ("causal_reasoning_engine", "cartpole"): {"env_samples": 300, "env_iters": 30, "fit_epochs": 1},
    ("alpha_deep_model", "tictactoe"): {"steps_per_epoch": 3, "games_per_epoch": 2, "simulations": 4,
                                        "arena_games": 0, "eval_games": 2, "eval_simulations": 2,
                                        "eval_minimax": False, "selfplay_tasks": 1},
    ("alpha_deep_model", "connect4"): {"steps_per_epoch": 3, "games_per_epoch": 2, "simulations": 4,
                                       "arena_games": 2, "eval_games": 1, "eval_simulations": 2,
                                       "selfplay_tasks": 1, "precision": "bf16"},
}


def _build(model: str, dataset: str, device: str = "cuda:0", instance: str | None = None, checkpoint=None,
           gpu_fraction: float | None = None, **extra):
    hparams, problems = validate_hparams(get_model(model).hyperparameters, {**SMALL.get((model, dataset), {}),
                                                                           **extra})
    assert not problems
    instance = instance or f"{model}@{dataset}"
    _worker.build("gpu-test", instance, model, hparams, {"name": dataset}, 0, 1, device, gpu_fraction, checkpoint)
    return _worker._SLOTS[("gpu-test", instance)]


@pytest.mark.parametrize("model, dataset", list(SMALL))
def test_every_builtin_model_trains_on_the_gpu(model, dataset):
    slot = _build(model, dataset)
    trainer = slot.trainer
    # Modules, optimiser state and float tensors (the causal engine keeps its parameters in
    # plain dicts): all checked, all on the GPU.
    assert _device.check_placement(trainer, "cuda:0") > 0
    assert any(t.is_cuda for _, t, _ in _device.iter_tensors(trainer))
    torch.cuda.reset_peak_memory_stats()
    ctx = StepContext()
    for _ in range(2):
        metrics = trainer.train_step(ctx)
    trainer.on_epoch_end(ctx)
    trainer.evaluate()
    assert torch.cuda.max_memory_allocated() > 0  # the steps ran kernels on the GPU
    assert all(isinstance(v, float) or hasattr(v, "__float__") for v in metrics.values())
    _device.check_placement(trainer, "cuda:0")  # still on the GPU after training and evaluation
    state = _device.to_host(trainer.state_dict(), copy=True)
    assert all(t.device.type == "cpu" for _, t, _ in _device.iter_tensors(state))


def test_gpu_checkpoint_resumes_on_the_cpu_and_back(tmp_path):
    gpu = _build("digits_mlp", "digits", instance="ckpt-gpu")
    for _ in range(5):
        gpu.trainer.train_step(StepContext())
    saver = DiskSaver(tmp_path)
    # Written with CUDA tensors, as a user's own save would be; read where no GPU is needed.
    saver.save("m", 1, {"trainer": gpu.trainer.state_dict(), "engine": {"rng": _worker.rng_to_tensors(gpu.rng),
                                                                         "step": 5}})
    _, state = saver.load_latest("m")
    assert state["trainer"]["net"]["0.weight"].device.type == "cpu"
    cpu = _build("digits_mlp", "digits", device="cpu", instance="ckpt-cpu", checkpoint=state)
    _device.check_placement(cpu.trainer, "cpu")
    assert cpu.step == 5 and cpu.trainer.position == gpu.trainer.position
    expected = gpu.trainer.evaluate()
    assert cpu.trainer.evaluate()["eval/loss"] == pytest.approx(expected["eval/loss"], rel=1e-4)
    back = _build("digits_mlp", "digits", instance="ckpt-back", checkpoint=state)  # CPU state onto the GPU
    _device.check_placement(back.trainer, "cuda:0")
    assert back.trainer.train_step(StepContext())["train/loss"] > 0


@register_model("test_gpu_hog")
class GpuHog(Trainer):
    """Allocates ``batch_size`` x 64 MiB on its device per forward pass: a real CUDA
    out-of-memory error once the share's cap is below that."""

    accepts = ("images",)
    hyperparameters = {"batch_size": HParam(int, 32, low=1, high=4096),
                       "grad_accumulation": HParam(int, 1, low=1, high=4096)}
    steps_per_epoch = 2

    def __init__(self, hparams, data, resources, seed):
        super().__init__(hparams, data, resources, seed)
        self.w = torch.zeros(1, device=resources.device, requires_grad=True)

    def train_step(self, ctx):
        total = 0.0
        for _ in range(self.hparams["grad_accumulation"]):
            block = torch.ones(self.hparams["batch_size"], 16 * 2**20, device=self.w.device)  # 64 MiB a sample
            total += float((block.sum() * self.w).sum())
            del block
        return {"train/loss": total}

    def evaluate(self):
        return {}

    def state_dict(self):
        return {"w": self.w.detach(), "hparams": dict(self.hparams)}

    def load_state_dict(self, state):
        self.w.data.copy_(state["w"])
        self.hparams.update(state["hparams"])


def test_a_deliberate_oom_inside_a_share_is_retried_at_a_smaller_batch():
    total = torch.cuda.get_device_properties(0).total_memory
    # A 0.7 GiB share: 32 or 16 x 64 MiB (2 and 1 GiB) cannot fit, 8 x 64 MiB can.
    fraction = 0.7 * 2**30 / total
    _worker._SLOTS.clear()  # earlier tests' trainers would count against the cap
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    try:
        slot = _build("test_gpu_hog", "digits", instance="hog", gpu_fraction=fraction)
        events = []
        _oom.guarded_step(slot, StepContext(), 3, events.append, "hog")
        assert [e["payload"]["new"]["batch_size"] for e in events] == [16, 8]
        assert "out of memory" in events[0]["payload"]["error"].lower()
        assert (slot.trainer.hparams["batch_size"], slot.trainer.hparams["grad_accumulation"]) == (8, 4)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()


def test_four_models_share_one_gpu_with_caps_and_compute_there(runs_dir):
    overrides = {"epochs": 2, "target_models": ["digits_mlp", "digits_cnn"],
                 "models.digits_mlp.population": 2, "models.digits_cnn.population": 2,
                 "models.digits_mlp.resources.device": "cuda:0", "models.digits_cnn.resources.device": "cuda:0"}
    run = wb.start_run("digits_mutual", overrides)
    assert run.wait(timeout=600) == wb.RunState.FINISHED
    env = json.loads((run.dir / "environment.json").read_text())
    placements = env["placements"]
    assert len(placements) == 4 and {p["device"] for p in placements} == {"cuda:0"}
    gpu = env["devices"]["gpus"][0]
    available = 1.0 if gpu["memory_free_gb"] is None else gpu["memory_free_gb"] / gpu["memory_gb"]
    assert sum(p["gpu_fraction"] for p in placements) == pytest.approx(available, rel=1e-6)
    pinned = {w["gpu_id"] for w in env["workers"].values() if w["gpu_index"] is not None}
    assert pinned == {gpu["uuid"] or gpu["physical"] or "0"}  # physical id or UUID, not the logical index
    memory = run.metrics(name="sys/gpu_memory_mb")
    assert set(memory["model"]) == {p["instance"] for p in placements} and (memory["value"] > 0).all()
    accuracy = run.metrics(name="eval/test_accuracy")
    assert (accuracy[accuracy["epoch"] == 2]["value"] > 0.8).all()
