"""GPU benchmarks: prints what sharing one GPU through the workbench gives, measured here.

    python benchmarks/gpu.py [--epochs 5] [--models 4] [--games 20]

1. N digits CNNs sharing one GPU through the workbench (one pinned worker per share, memory
   caps) vs the same N trained one after another in this plain process on the same GPU:
   wall ratio of the training phases, and the GPU's mean utilization in each (NVML, where
   ``nvidia-ml-py`` is installed);
2. Alpha self-play positions and arena games per second, the network evaluated on the CPU
   vs on the GPU (the same games: same seeds and settings);
3. mixed precision: a digits CNN trained with ``precision`` fp32 and bf16 (autocast), on the
   CPU and on the GPU: seconds per epoch and test accuracy and NLL after ``--epochs``.

On a machine without a CUDA GPU it measures 3 on the CPU, says there is no GPU and exits 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path


class UtilizationSampler:
    """Mean utilization of one physical GPU, sampled by NVML every 0.2 s in a thread."""

    def __init__(self, physical: int = 0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(physical)
            self._nvml = pynvml
        except Exception:  # NVML missing: utilization is reported as n/a
            self._nvml = None

    def __enter__(self) -> UtilizationSampler:
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append(float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._nvml is not None:
            self._thread.join()

    @property
    def mean(self) -> str:
        return f"{sum(self.samples) / len(self.samples):.0f}%" if self.samples else "n/a (no NVML)"


def _plain_sequential(n: int, epochs: int) -> float:
    """The same CNNs trained one after another in this process on cuda:0; training seconds."""
    import torch

    from workbench.data import load_dataset, prepare
    from workbench.models.digits import DigitsCNN
    from workbench.trainer import Resources, StepContext

    data, _ = prepare(load_dataset("digits"), 0)
    hp = {k: v.default for k, v in DigitsCNN.hyperparameters.items()} | {"batch_size": 32}
    trainers = [DigitsCNN(hp, data, Resources(device="cuda:0"), seed) for seed in range(n)]
    ctx = StepContext()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for t in trainers:
        for _ in range(epochs):
            for _ in range(t.steps_per_epoch):
                t.train_step(ctx)
            t.evaluate()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def sharing(root: Path, n: int, epochs: int) -> None:
    import workbench as wb
    from workbench.resources import detect_inventory

    gpu = detect_inventory().gpus[0]
    preset = {"description": "gpu benchmark", "datasets": ["digits"], "epochs": epochs, "batch_size": 32,
              "target_models": ["digits_cnn"], "checkpoint_interval": epochs, "enable_collaborative_training": False,
              "models": {"digits_cnn": {"population": n, "resources": {"device": "cuda:0"}}}}
    path = root / "gpu_bench.json"
    path.write_text(json.dumps({"gpu_bench": preset}))
    physical = int(gpu.physical) if gpu.physical and gpu.physical.isdigit() else 0
    with UtilizationSampler(physical) as shared_util:
        run = wb.start_run(str(path), runs_dir_=root)
        state = run.wait()
    events = run.events()
    started = events[events["kind"] == "started"]["wall_time"].iloc[0]
    shared = events[events["kind"] == "segment"]["wall_time"].max() - started
    memory = run.metrics(name="sys/gpu_memory_mb").groupby("model")["value"].max()
    with UtilizationSampler(physical) as plain_util:
        plain = _plain_sequential(n, epochs)
    env = json.loads((run.dir / "environment.json").read_text())
    shares = ", ".join(f"{p['gpu_fraction']:.2f}" for p in env["placements"])
    print(f"[1] {n} digits CNNs x {epochs} epochs on {gpu.name} (physical {gpu.physical}), run {state.value}:\n"
          f"    training phase: workbench, sharing the GPU {shared:.1f} s vs one after another in one process "
          f"{plain:.1f} s -> {shared / plain:.2f}x\n"
          f"    mean GPU utilization: shared {shared_util.mean}, sequential {plain_util.mean}\n"
          f"    shares {shares}; peak tensor memory per model {memory.min():.0f}-{memory.max():.0f} MiB")


def selfplay_rate(games: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from alpha import selfplay_rates

    selfplay_rates(games, devices=("cpu", "cuda:0"))


def precision(devices: tuple[str, ...], epochs: int, seed: int = 0) -> None:
    """A digits CNN per precision and device: seconds per epoch, test accuracy and NLL."""
    import torch

    from workbench.data import load_dataset, prepare
    from workbench.models.digits import DigitsCNN
    from workbench.trainer import Resources, StepContext

    data, _ = prepare(load_dataset("digits"), seed)
    ctx = StepContext()
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            print(f"[3] {torch.cuda.get_device_name(device)} has no bfloat16 support: fp32 only")
            continue
        line = []
        for mode in ("fp32", "bf16"):
            hp = {k: v.default for k, v in DigitsCNN.hyperparameters.items()} | {"precision": mode}
            trainer = DigitsCNN(hp, data, Resources(device=device), seed)
            start = time.perf_counter()
            for _ in range(epochs):
                for _ in range(trainer.steps_per_epoch):
                    trainer.train_step(ctx)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            per_epoch = (time.perf_counter() - start) / epochs
            result = trainer.evaluate()
            line.append(f"{mode} {per_epoch:.2f} s/epoch, test accuracy {result['eval/test_accuracy']:.3f}, "
                        f"NLL {result['eval/test_nll']:.3f}")
        print(f"[3] digits CNN x {epochs} epochs on {device}: " + "; ".join(line), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--games", type=int, default=20)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if not torch.cuda.is_available():
        precision(("cpu",), args.epochs)
        print("no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing else to measure")
        return 0
    precision(("cpu", "cuda:0"), args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        sharing(Path(tmp), args.models, args.epochs)
    selfplay_rate(args.games)
    return 0


if __name__ == "__main__":
    sys.exit(main())
