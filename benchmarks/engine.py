"""Engine benchmarks (the bars are in docs/benchmarks.md): prints five figures measured side by side in one run.

    python benchmarks/engine.py [--epochs 8] [--trainers 4]

1. wall time of N digits MLP trainers through the workbench (metrics streaming, control
   and checkpoints on) vs a plain concurrent.futures process pool running the same loops;
2. N equal trainers on N cores vs one trainer;
3. median latency from ``Run.set_hparam`` to the trainer applying it;
3b. the same from another process, to a run driven by a detached driver (the store's control
   channel: the path `workbench set` and a second kernel take);
4. metric points per second into the store, and the slowdown of a training loop meanwhile;
5. checkpoint time as a share of training time at the default interval.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import statistics
import tempfile
import time
from pathlib import Path

import workbench as wb


def _train_plainly(args: tuple[int, int, int]) -> tuple[float, float]:
    """The same training loop as a workbench segment, without the workbench.

    Returns when training started and ended (after imports and data loading, as the
    workbench's 'started' event comes after its models are built)."""
    seed, epochs, threads = args
    import torch

    from workbench.data import load_dataset, prepare
    from workbench.models.digits import DigitsMLP
    from workbench.trainer import Resources, StepContext

    torch.set_num_threads(threads)
    data, _ = prepare(load_dataset("digits"), 0)
    hp = {k: v.default for k, v in DigitsMLP.hyperparameters.items()}
    hp["batch_size"] = 32
    t = DigitsMLP(hp, data, Resources(threads=threads), seed)
    ctx = StepContext()
    start = time.time()
    for _ in range(epochs):
        for _ in range(t.steps_per_epoch):
            t.train_step(ctx)
        t.evaluate()
    return start, time.time()


def _preset(n: int, epochs: int, interval: int) -> dict:
    return {"description": "benchmark", "datasets": ["digits"], "epochs": epochs, "batch_size": 32,
            "target_models": ["digits_mlp"], "checkpoint_interval": interval,
            "enable_collaborative_training": False, "models": {"digits_mlp": {"population": n}}}


def _workbench_run(root: Path, n: int, epochs: int, interval: int, **kw):
    import json

    path = root / f"bench_{n}_{epochs}_{interval}_{time.time_ns()}.json"
    path.write_text(json.dumps({"bench": _preset(n, epochs, interval)}))
    t0 = time.perf_counter()
    run = wb.start_run(str(path), runs_dir_=root, **kw)
    state = run.wait()
    return time.perf_counter() - t0, run, state


def overhead(root: Path, n: int, epochs: int) -> None:
    cores = len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(max_workers=min(n, cores)) as pool:
        spans = list(pool.map(_train_plainly, [(s, epochs, 1) for s in range(n)]))
    plain = time.perf_counter() - t0
    plain_training = max(e for _, e in spans) - min(s for s, _ in spans)
    wall, run, _ = _workbench_run(root, n, epochs, interval=5)
    events = run.events()
    started = events[events["kind"] == "started"]["wall_time"].iloc[0]
    training = events[events["kind"] == "segment"]["wall_time"].max() - started
    print(f"[1] {n} digits MLP trainers x {epochs} epochs on {cores} cores (metrics, control, checkpoints every 5 "
          f"epochs on):\n    end to end: workbench {wall:.1f} s, process pool {plain:.1f} s -> {wall / plain:.2f}x "
          f"(target <= 1.10x)\n    training phase (models built, imports done): workbench {training:.1f} s, "
          f"process pool {plain_training:.1f} s -> {training / plain_training:.2f}x\n    fixed costs: workbench "
          f"{wall - training:.1f} s (cluster start with torch preloaded, build, shutdown), pool "
          f"{plain - plain_training:.1f} s (fork, imports)")


def parallel_efficiency(root: Path, epochs: int) -> None:
    cores = len(os.sched_getaffinity(0))
    one, run1, _ = _workbench_run(root, 1, epochs, interval=epochs)
    many, run_n, _ = _workbench_run(root, cores, epochs, interval=epochs)

    def training_span(run):
        seg = run.events(kind="segment")
        return seg["wall_time"].max() - run.events(kind="started")["wall_time"].iloc[0]

    print(f"[2] {cores} equal trainers on {cores} cores vs 1: wall {many:.1f} s vs {one:.1f} s -> {many / one:.2f}x; "
          f"training span {training_span(run_n):.1f} s vs {training_span(run1):.1f} s -> "
          f"{training_span(run_n) / training_span(run1):.2f}x (target <= 1.15x)")


def control_latency(root: Path, changes: int = 20) -> None:
    import json

    preset = _preset(1, 200, 1000)
    preset["models"]["digits_mlp"]["hyperparameters"] = {"batch_size": 8}
    path = root / "latency.json"
    path.write_text(json.dumps({"latency": preset}))
    run = wb.start_run(str(path), runs_dir_=root)
    name = "digits_mlp@digits"
    while run.snapshot().models[name].step < 20:
        time.sleep(0.05)
    ids = {}
    for i in range(changes):
        ids[run.set_hparam(name, "lr", 1e-3 * (1 + i % 3))] = time.time()
        time.sleep(0.25)
    run.stop()
    run.wait()
    applied = run.events(kind="hparam_applied")
    lat = [1000 * (p["wall_time"] - ids[p["id"]]) for p in applied["payload"] if p.get("id") in ids]
    step_ms = run.metrics(name="sys/step_ms")["value"].median()
    print(f"[3] set_hparam -> applied by the trainer: median {statistics.median(lat):.1f} ms, "
          f"max {max(lat):.1f} ms over {len(lat)}/{changes} changes (step {step_ms:.1f} ms; target <= 200 ms)")


_SENDER = """
import json, sys, time
import workbench as wb
run = wb.attach(sys.argv[1], sys.argv[2])
sent = {}
for i in range(int(sys.argv[3])):
    sent[run.set_hparam("digits_mlp@digits", "lr", 1e-3 * (1 + i % 3))] = time.time()
    time.sleep(0.25)
print(json.dumps(sent))
"""


def remote_control_latency(root: Path, changes: int = 20) -> None:
    import json
    import subprocess
    import sys

    preset = _preset(1, 400, 1000)
    preset["models"]["digits_mlp"]["hyperparameters"] = {"batch_size": 8}
    path = root / "remote_latency.json"
    path.write_text(json.dumps({"remote_latency": preset}))
    run = wb.start_run(str(path), runs_dir_=root, detach=True)
    while (run.snapshot().models.get("digits_mlp@digits") is None
           or run.snapshot().models["digits_mlp@digits"].step < 20):
        time.sleep(0.1)
    out = subprocess.run([sys.executable, "-c", _SENDER, run.id, str(root), str(changes)], capture_output=True,
                         text=True, check=True).stdout
    sent = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    run.stop()
    run.wait()
    applied = run.events(kind="hparam_applied")
    lat = [1000 * (p["wall_time"] - sent[p["id"]]) for p in applied["payload"] if p.get("id") in sent]
    print(f"[3b] set_hparam from another process -> applied by the trainer of a detached run: median "
          f"{statistics.median(lat):.1f} ms, max {max(lat):.1f} ms over {len(lat)}/{changes} changes "
          f"(target <= 250 ms)")


def _train_for(seconds: float) -> int:
    """Steps of a small MLP in ``seconds`` (run in a worker-like child process)."""
    import torch

    torch.set_num_threads(1)
    x = torch.randn(256, 64)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    steps, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return steps


def store_throughput(root: Path, rate: int = 20_000, seconds: float = 5.0) -> None:
    """As in a run: training in another process, the store written by this one."""
    from workbench.store import RunStore, read_store

    with cf.ProcessPoolExecutor(max_workers=1) as pool:
        pool.submit(_train_for, 0.5).result()  # warm up: torch imported
        base = pool.submit(_train_for, seconds).result()
        store = RunStore(root / "throughput.sqlite")
        training = pool.submit(_train_for, seconds)
        t0 = time.perf_counter()
        sent = 0
        while not training.done():
            now = time.time()
            batch = rate // 20
            store.add_metrics([("m", 1, sent + i, "train/loss", 0.5, now) for i in range(batch)])
            sent += batch
            time.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
        loaded = training.result()
        store.flush()
        elapsed = time.perf_counter() - t0
    n = len(read_store(root / "throughput.sqlite").metrics())
    store.close()
    t0 = time.perf_counter()
    burst = RunStore(root / "burst.sqlite")
    burst.add_metrics([("m", 1, i, "train/loss", 0.5, 0.0) for i in range(200_000)])
    burst.flush()
    burst_rate = 200_000 / (time.perf_counter() - t0)
    burst.close()
    print(f"[4] store: {n / elapsed:,.0f} points/s streamed and committed ({n:,}) while a training process ran "
          f"{loaded} steps vs {base} without -> slowdown {100 * (1 - loaded / base):.1f}%; burst insert "
          f"{burst_rate:,.0f} points/s (target >= 10,000/s with < 2% slowdown)")


def checkpoint_share(root: Path, epochs: int) -> None:
    wall, run, _ = _workbench_run(root, 2, epochs, interval=5)
    m = run.metrics()
    on_worker = m[m["name"] == "time/checkpoint_state_s"]["value"].sum()
    writing = m[m["name"] == "time/checkpoint_s"]["value"].sum()
    compute = m[m["name"].isin(["time/compute_s", "time/eval_s", "time/epoch_end_s"])]["value"].sum()
    n = len(run.events(kind="checkpoint"))
    print(f"[5] checkpoints at the default interval (5), {n} written: {on_worker:.3f} s taken from training "
          f"(state copied on the worker) vs {compute:.1f} s of training -> {100 * on_worker / compute:.2f}% "
          f"(target <= 3%); writing them (serialise, fsync, rename) took {writing:.3f} s in the client's "
          f"writer thread, off the training path")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--trainers", type=int, default=4)
    parser.add_argument("--only", nargs="*", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        steps = {1: lambda: overhead(root, args.trainers, args.epochs),
                 2: lambda: parallel_efficiency(root, args.epochs),
                 3: lambda: (control_latency(root), remote_control_latency(root)),
                 4: lambda: store_throughput(root),
                 5: lambda: checkpoint_share(root, max(10, args.epochs))}
        for key in args.only or sorted(steps):
            steps[key]()


if __name__ == "__main__":
    main()
