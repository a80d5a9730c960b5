"""How the engine's own cost grows with the number of models.

    python benchmarks/scale.py [--models 8 32 64 128] [--epochs 10] [--only local external] [--quick]

Runs a population of N digits MLP trainers (batch 32, one torch thread each) for
``--epochs`` epochs, first on a local cluster laid out by the workbench, then on an external
scheduler (``dask scheduler`` and 4 ``dask worker --nthreads 1`` processes started here), and
prints, over the training phase (the ``started`` event to the last ``segment`` event):

- driver CPU per model-epoch: this process (coordinator, store writer, inbox; on a local
  cluster the scheduler runs in this process too, so it is counted here);
- scheduler CPU per model-epoch (external: the scheduler process);
- nanny CPU (local: the host process of the nannies, its torch import at the start
  included) and training CPU (the worker processes) in total;
- the bar's figure: (driver + scheduler) CPU as a share of the training CPU (bar at 64
  models: <= 10%), and the nannies' share apart (their cost is per second of wall time);
- wall time per epoch of the whole population, and the store's size per model-epoch.

"At most linear" means the per-model-epoch figures stay flat as N grows. Ten epochs by
default: each segment runs epochs until about two seconds have passed (the worker ends it;
checkpoints are taken inside it), as in real runs, so a model whose epochs take tens of
milliseconds trains them all in one segment; with many models on few cores an epoch takes
longer and segments hold fewer. Checkpoints at the product's defaults (interval 5 as the
built-in presets, ``checkpoint_seconds`` 10). ``--quick``: 8, 32 and 64 models for 5 epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _cpu(proc) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except Exception:  # the process ended: its time is no longer counted (nor needed)
        return 0.0


def _processes(procs: dict[str, list]) -> dict[str, float]:
    return {role: sum(_cpu(p) for p in members) for role, members in procs.items()}


def _attach(pids: dict[str, list[int]]) -> dict[str, list]:
    import psutil

    out: dict[str, list] = {}
    for role, ids in pids.items():
        out[role] = []
        for pid in ids:
            try:
                out[role].append(psutil.Process(pid))
            except psutil.Error:
                pass
    return out


def _local_roles() -> dict[str, list[int]]:
    """This process's children are the nannies' host processes; their children are the workers."""
    import psutil

    me = psutil.Process()
    nannies = me.children()
    workers = [c.pid for n in nannies for c in n.children(recursive=True)]
    return {"driver": [me.pid], "nanny": [n.pid for n in nannies], "workers": workers}


def _twin(name: str) -> str:
    """The digits MLP under another registry name (a population has at most
    ``MAX_POPULATION`` members): defined here, so the run ships it to the workers by value."""
    from workbench import register_model
    from workbench.models.digits import DigitsMLP
    from workbench.registry import _REGISTRY

    if name not in _REGISTRY:
        register_model(name)(type("DigitsTwin", (DigitsMLP,), {"__module__": "__main__"}))
    return name


def _preset(n: int, epochs: int) -> dict:
    """N digits MLPs: one population of ``digits_mlp``, more of its twins past 64 members."""
    from workbench.limits import MAX_POPULATION

    groups = -(-n // MAX_POPULATION)
    names = ["digits_mlp"] + [_twin(f"digits_mlp_{i}") for i in range(1, groups)]
    sizes = [min(MAX_POPULATION, n - i * MAX_POPULATION) for i in range(groups)]
    return {"description": "scale benchmark", "datasets": ["digits"], "epochs": epochs, "batch_size": 32,
            "target_models": names, "checkpoint_interval": 5, "enable_collaborative_training": False,
            "models": {name: {"population": size} for name, size in zip(names, sizes)}}


SNAPSHOT_S = 0.1


def measure(root: Path, n: int, epochs: int, scheduler: str | None = None,
            roles=None) -> dict[str, float]:
    import workbench as wb

    path = root / f"scale_{n}_{time.time_ns()}.json"
    path.write_text(json.dumps({"scale": _preset(n, epochs)}))
    marks: dict[str, tuple[float, dict[str, float]]] = {}
    lock = threading.Lock()
    procs: dict[str, list] = {}

    # The measuring runs in the driver's coordinator thread (a subscriber), so it is kept
    # cheap: the processes are looked up once, and the end of the window is the last
    # snapshot, taken at a segment event at most every SNAPSHOT_S (a snapshot at each of
    # 1,280 events cost the driver 0.2 ms a model-epoch, counted as the engine's).
    def on_message(message: dict) -> None:
        if message.get("type") != "event" or message.get("kind") not in ("started", "segment"):
            return
        with lock:
            now = time.time()
            if message["kind"] == "started":
                procs.update(_attach(roles() if roles else _local_roles()))
                marks["start"] = (now, _processes(procs))
            elif "start" in marks and now - marks.get("end", (0.0,))[0] >= SNAPSHOT_S:
                marks["end"] = (now, _processes(procs))

    run = wb.start_run(str(path), runs_dir_=root, **({"scheduler": scheduler} if scheduler else {}))
    run.subscribe(on_message)
    state = run.wait()
    if state != wb.RunState.FINISHED or "start" not in marks:
        raise SystemExit(f"{n} models: the run ended {state.value}")
    (t0, c0), (t1, c1) = marks["start"], marks["end"]
    units = n * epochs
    used = {role: c1[role] - c0.get(role, 0.0) for role in c1}
    store = (run.dir / "store.sqlite").stat().st_size
    return {"wall_epoch": (t1 - t0) / epochs, "units": units, "store_kib_unit": store / 1024 / units,
            "store_mib": store / 2**20, **{f"cpu_{k}": v for k, v in used.items()}}


BAR_MODELS, BAR_SHARE = 64, 0.10  # issue 9: at 64 models, driver + scheduler CPU <= 10% of training CPU


def _print(label: str, n: int, r: dict[str, float]) -> None:
    units = r["units"]
    driver_scheduler = r.get("cpu_driver", 0) + r.get("cpu_scheduler", 0)
    training = r.get("cpu_workers", 0) or float("nan")
    share = driver_scheduler / training
    sched = f"{1000 * r['cpu_scheduler'] / units:6.1f}" if "cpu_scheduler" in r else "  (in driver)"
    bar = ""
    if n == BAR_MODELS:
        bar = f" | bar <= {100 * BAR_SHARE:.0f}%: {'met' if share <= BAR_SHARE else 'MISSED'}"
    print(f"  {label:8s} {n:4d} models | driver {1000 * r['cpu_driver'] / units:6.1f} ms | scheduler {sched} ms "
          f"per model-epoch | training {training:6.1f} s | driver+scheduler {100 * share:5.1f}% of training"
          f"{bar} | nannies {r.get('cpu_nanny', 0):5.1f} s = {100 * r.get('cpu_nanny', 0) / training:4.1f}% | "
          f"{r['wall_epoch']:6.2f} s per population epoch | "
          f"store {r['store_kib_unit']:5.1f} KiB per model-epoch ({r['store_mib']:.1f} MiB)", flush=True)


class External:
    """A `dask scheduler` and ``workers`` `dask worker --nthreads 1` processes on this machine."""

    def __init__(self, root: Path, workers: int = 4):
        self.file = root / "scheduler.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                           "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                                           "--scheduler-file", str(self.file)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not self.file.exists() and time.time() < deadline:
            time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]
        # No nanny: nothing sets MALLOC_TRIM_THRESHOLD_ in the workers (see workbench/cluster.py)
        self.workers = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                                          "--nthreads", "1", "--no-nanny", "--memory-limit", "0", "--name", f"w{i}"],
                                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for i in range(workers)]
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def roles(self) -> dict[str, list[int]]:
        import psutil

        return {"driver": [psutil.Process().pid], "scheduler": [self.scheduler.pid],
                "workers": [w.pid for w in self.workers]}

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--only", nargs="*", choices=["local", "external"])
    parser.add_argument("--quick", action="store_true", help="8, 32 and 64 models for 5 epochs")
    args = parser.parse_args()
    models = args.models or ([8, 32, 64] if args.quick else [8, 32, 64, 128])
    epochs = args.epochs or (5 if args.quick else 10)
    print(f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}; per model-epoch "
          f"figures over the training phase, {epochs} epochs")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not args.only or "local" in args.only:
            for n in models:
                _print("local", n, measure(root, n, epochs))
        if not args.only or "external" in args.only:
            cluster = External(root)
            try:
                for n in models:
                    _print("external", n, measure(root, n, epochs, cluster.address, cluster.roles))
            finally:
                cluster.close()
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
