"""Devices and placement: which model runs where, with how many CPU threads.

:func:`plan_placement` is a plain function from requests and a device inventory to
placements, so it is tested with injected inventories ("4 models on 2 GPUs", "a share
too large", "no GPU"). :func:`rebalance` gives a finished model's GPU share to the models
still running on that GPU. :func:`detect_inventory` reads the real machine: only the GPUs
``CUDA_VISIBLE_DEVICES`` lets this process use, each with its physical id and UUID (the
worker pinned to it gets those) and, through NVML, the memory other processes hold there,
which placement leaves to them.
"""
from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence

from .errors import PlacementError

__all__ = ["GPU", "GPUProcess", "Inventory", "Request", "Placement", "detect_inventory", "plan_placement",
           "rebalance", "layout_workers", "WorkerSpec", "MIN_SHARE"]

# A GPU with less than this fraction of its memory free is full: nothing is placed there.
MIN_SHARE = 0.05


@dataclasses.dataclass(frozen=True)
class GPUProcess:
    """A process holding memory on a GPU (NVML)."""

    pid: int
    memory_gb: float


@dataclasses.dataclass(frozen=True)
class GPU:
    """One GPU this process may use. ``index`` is its logical number (``cuda:N`` in a
    preset: the N-th entry of ``CUDA_VISIBLE_DEVICES``); ``physical`` the NVML index that
    ``nvidia-smi`` shows, and ``uuid`` its UUID; the memory readings come from NVML (None
    without it)."""

    index: int
    name: str
    memory_gb: float
    utilization: float | None = None  # percent, where NVML is present
    physical: str | None = None
    uuid: str | None = None
    memory_used_gb: float | None = None  # by every process, at detection time
    memory_free_gb: float | None = None
    processes: tuple[GPUProcess, ...] = ()

    @property
    def visible_id(self) -> str:
        """What a worker pinned to this GPU gets in ``CUDA_VISIBLE_DEVICES``: the UUID where
        known (the same GPU whatever ``CUDA_DEVICE_ORDER`` says), else the physical index."""
        return self.uuid or self.physical or str(self.index)

    @property
    def available(self) -> float:
        """The fraction of the GPU's memory free for our models (1.0 when not measured)."""
        if self.memory_free_gb is None or not self.memory_gb:
            return 1.0
        return max(0.0, min(1.0, self.memory_free_gb / self.memory_gb))


@dataclasses.dataclass(frozen=True)
class Inventory:
    cpus: int
    memory_gb: float
    gpus: tuple[GPU, ...] = ()

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Request:
    """What one model instance asks for. ``device``: "auto", "cpu", "gpu" or "cuda:N"."""

    instance: str
    device: str = "auto"
    gpu_fraction: float | None = None
    threads: int | None = None


@dataclasses.dataclass(frozen=True)
class Placement:
    instance: str
    device: str  # "cpu" or "cuda:N" (N = physical index; the worker sees it as cuda:0)
    threads: int
    gpu_index: int | None = None
    gpu_fraction: float | None = None


def detect_inventory() -> Inventory:
    """CPU cores usable by this process, total memory, and the CUDA GPUs it may use."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        memory_gb = psutil.virtual_memory().total / 2**30
    except ImportError:  # psutil is a dependency, but the planner must not need it
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    if not _nvidia_present():  # importing torch costs seconds: skip it where no GPU can be
        return Inventory(cpus=cpus, memory_gb=round(memory_gb, 1), gpus=())
    from ._gpus import detect_gpus

    return Inventory(cpus=cpus, memory_gb=round(memory_gb, 1), gpus=detect_gpus())


def _nvidia_present() -> bool:
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.isdir("/proc/driver/nvidia"))


def plan_placement(requests: Sequence[Request], inventory: Inventory) -> list[Placement]:
    """Place every request or raise :class:`PlacementError` naming the reason.

    - ``cpu`` requests run on the CPU; ``auto`` ones too when there is no usable GPU, else
      they go to the GPU that leaves each of its models the largest share.
    - Memory other processes hold is theirs: a GPU's shares add up to at most its free
      fraction (``GPU.available``), and a GPU with less than ``MIN_SHARE`` free is full.
    - ``gpu`` / ``cuda:N`` with no (such, or no free) GPU is refused; explicit fractions on
      one GPU may not add up to more than what is free; models without a fraction split
      what is left.
    - CPU threads: explicit requests are honoured if they fit, the rest get one thread each;
      the sum of threads of models that can run at once never exceeds the cores.
    """
    n_gpus = len(inventory.gpus)
    avail = {g.index: g.available for g in inventory.gpus}
    usable = [i for i in range(n_gpus) if avail[i] >= MIN_SHARE]
    gpu_of: dict[str, int] = {}
    problems: list[str] = []
    auto_gpu: list[Request] = []
    for req in requests:
        dev = req.device
        if dev == "cpu" or (dev == "auto" and not usable):
            if req.gpu_fraction is not None:
                problems.append(f"{req.instance}: gpu_fraction given but the model is placed on the CPU")
            continue
        if n_gpus == 0:
            problems.append(f"{req.instance}: asks for {dev!r} but this machine has no GPU "
                            "(use device 'cpu' or 'auto')")
            continue
        if dev.startswith("cuda:"):
            try:
                idx = int(dev.split(":", 1)[1])
            except ValueError:
                problems.append(f"{req.instance}: device {dev!r} is not of the form cuda:N")
                continue
            if not 0 <= idx < n_gpus:
                problems.append(f"{req.instance}: asks for {dev} but only GPUs 0..{n_gpus - 1} exist")
                continue
            if idx not in usable:
                problems.append(f"{req.instance}: {_full(inventory.gpus[idx])}; choose another GPU or device 'cpu'")
                continue
            gpu_of[req.instance] = idx
        elif dev in ("gpu", "auto"):
            if not usable:
                problems.append(f"{req.instance}: asks for 'gpu' but every GPU is full: "
                                + "; ".join(_full(g) for g in inventory.gpus) + " (use device 'cpu' or 'auto')")
                continue
            auto_gpu.append(req)
        else:
            problems.append(f"{req.instance}: unknown device {dev!r}; use 'auto', 'cpu', 'gpu' or 'cuda:N'")
    # Auto GPU models go where each model would get the largest share: with nothing else
    # running, the GPU with the fewest models so far.
    load = defaultdict(int)
    for idx in gpu_of.values():
        load[idx] += 1
    for req in auto_gpu:
        idx = max(usable, key=lambda i: (avail[i] / (load[i] + 1), -i))
        gpu_of[req.instance] = idx
        load[idx] += 1
    fractions: dict[str, float] = {}
    by_gpu: dict[int, list[Request]] = defaultdict(list)
    for req in requests:
        if req.instance in gpu_of:
            by_gpu[gpu_of[req.instance]].append(req)
    for idx, reqs in by_gpu.items():
        fixed = {r.instance: r.gpu_fraction for r in reqs if r.gpu_fraction is not None}
        total = sum(fixed.values())
        gpu = inventory.gpus[idx]
        room = avail[idx]
        others = "" if room >= 1 else f" (other processes hold {gpu.memory_gb - (gpu.memory_free_gb or 0):.1f} GB)"
        if total > room + 1e-9:
            names = ", ".join(f"{k}={v:g}" for k, v in fixed.items())
            problems.append(f"GPU {idx} ({gpu.name}): shares add up to {total:g} > {round(room, 3):g}{others} "
                            f"({names}); lower the gpu_fraction values or use another GPU")
            continue
        free = [r.instance for r in reqs if r.gpu_fraction is None]
        if free and total >= room - 1e-9:
            problems.append(f"GPU {idx}: explicit shares use all its free memory{others}, nothing left for "
                            f"{', '.join(free)}")
            continue
        fractions.update(fixed)
        for name in free:
            fractions[name] = (room - total) / len(free)
    if problems:
        raise PlacementError("cannot place the models:\n" + "\n".join(f"  - {p}" for p in problems))
    threads = _plan_threads(requests, inventory.cpus)
    return [
        Placement(r.instance, f"cuda:{gpu_of[r.instance]}" if r.instance in gpu_of else "cpu",
                  threads[r.instance], gpu_of.get(r.instance), fractions.get(r.instance))
        for r in requests
    ]


def _full(gpu: GPU) -> str:
    held = gpu.memory_gb - (gpu.memory_free_gb or 0.0)
    return (f"GPU {gpu.index} ({gpu.name}) is full: {gpu.memory_free_gb or 0.0:.1f} of {gpu.memory_gb:.1f} GB "
            f"free, other processes hold {held:.1f} GB")


def _plan_threads(requests: Sequence[Request], cpus: int) -> dict[str, int]:
    too_many = [r for r in requests if r.threads is not None and r.threads > cpus]
    if too_many:
        raise PlacementError("cannot place the models:\n" + "\n".join(
            f"  - {r.instance}: asks for {r.threads} threads but the machine has {cpus} cores" for r in too_many))
    # One torch thread per model unless it asks for more: the engine's models take steps of
    # a few ms, where a second thread only adds synchronisation (a lone digits MLP under load:
    # 50-95 ms per step with 2 threads, 1.9 ms with 1). Models run concurrently up to the
    # number of cores; with more models than cores the cluster runs `cpus` of them at a time.
    return {r.instance: (r.threads if r.threads is not None else 1) for r in requests}


def rebalance(placements: Iterable[Placement], finished: Iterable[str]) -> list[Placement]:
    """Give the GPU share of finished models to the models still running on the same GPU."""
    finished = set(finished)
    placements = list(placements)
    freed: dict[int, float] = defaultdict(float)
    running: dict[int, list[Placement]] = defaultdict(list)
    for p in placements:
        if p.gpu_index is None:
            continue
        if p.instance in finished:
            freed[p.gpu_index] += p.gpu_fraction or 0.0
        else:
            running[p.gpu_index].append(p)
    out = []
    for p in placements:
        if p.gpu_index is not None and p.instance not in finished and freed[p.gpu_index] > 0:
            bonus = freed[p.gpu_index] / len(running[p.gpu_index])
            p = dataclasses.replace(p, gpu_fraction=min(1.0, (p.gpu_fraction or 0.0) + bonus))
        out.append(p)
    return out


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """One Dask worker process of the local cluster."""

    name: str
    threads: int  # torch threads of the models it runs
    gpu_index: int | None = None  # logical, as in Placement.gpu_index
    resources: tuple[tuple[str, float], ...] = ()
    gpu_id: str | None = None  # its CUDA_VISIBLE_DEVICES: the GPU's UUID or physical index


def layout_workers(placements: Sequence[Placement], inventory: Inventory) -> list[WorkerSpec]:
    """Worker processes for a plan: CPU workers that never oversubscribe the cores, and
    one worker per GPU share, pinned to its physical GPU (``CUDA_VISIBLE_DEVICES``)."""
    specs: list[WorkerSpec] = []
    gpu_places = [p for p in placements if p.gpu_index is not None]
    for p in gpu_places:
        specs.append(WorkerSpec(f"gpu{p.gpu_index}-{len(specs)}", p.threads, p.gpu_index,
                                (("GPU", 1.0), (f"slot-{p.instance}", 1.0)), inventory.gpus[p.gpu_index].visible_id))
    cpu_places = [p for p in placements if p.gpu_index is None]
    if cpu_places:
        cores_left = max(1, inventory.cpus - sum(p.threads for p in gpu_places))
        threads = max(1, min(p.threads for p in cpu_places))
        n_workers = max(1, min(len(cpu_places), cores_left // threads))
        for i in range(n_workers):
            specs.append(WorkerSpec(f"cpu-{i}", threads, None, (("CPU", float(threads)),)))
    return specs
