"""The user's GPUs and only those: NVML readings mapped through ``CUDA_VISIBLE_DEVICES``.

On a shared server a user sets ``CUDA_VISIBLE_DEVICES=2,3``; the workbench must then use
physical GPUs 2 and 3 (its ``cuda:0`` and ``cuda:1``), pin each worker to the physical GPU
(by UUID, which means the same GPU whatever ``CUDA_DEVICE_ORDER`` says), and count the
memory other processes already hold there. :func:`map_visible` is the pure part (tested
with injected device lists); :func:`probe_nvml` reads the machine through NVML
(``nvidia-ml-py``, the optional extra ``gpu``; imported only here, and absent or failing
NVML just means fewer details); :func:`probe_torch` is the fallback without NVML.

Integer entries of ``CUDA_VISIBLE_DEVICES`` are NVML indices (PCI bus order, as in
``nvidia-smi``); CUDA reads them the same way under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, and
on machines whose GPUs are all one model. Where CUDA's own order may differ, torch's view
of the visible devices' UUIDs (``visible_uuids``) decides. Entries are read as CUDA does:
from the first invalid or negative one on, nothing more is visible, and a GPU named
twice hides them all.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from .resources import GPU, GPUProcess

__all__ = ["map_visible", "probe_nvml", "probe_torch", "detect_gpus", "worker_gpu"]


def map_visible(devices: Sequence[GPU], cuda_visible: str | None,
                visible_uuids: Sequence[str] | None = None) -> tuple[GPU, ...]:
    """The GPUs this process may use, renumbered ``0..n-1`` (``index``: what ``cuda:N`` means
    in a preset), each keeping its physical NVML index (``physical``) and ``uuid``.

    ``devices``: every GPU of the machine, ``physical`` set. ``cuda_visible``: the variable's
    value (None when unset). ``visible_uuids``: the UUIDs CUDA itself reports, in its order
    (from torch), which take precedence over parsing the variable.
    """
    import dataclasses

    chosen: list[GPU] | None = None
    if visible_uuids is not None:
        by_uuid = {d.uuid: d for d in devices if d.uuid}
        if all(u in by_uuid for u in visible_uuids):  # else NVML and CUDA disagree: read the variable
            chosen = [by_uuid[u] for u in visible_uuids]
    if chosen is None:
        chosen = _parse(devices, cuda_visible)
    return tuple(dataclasses.replace(d, index=i) for i, d in enumerate(chosen))


def _parse(devices: Sequence[GPU], cuda_visible: str | None) -> list[GPU]:
    ordered = sorted(devices, key=lambda d: int(d.physical or 0))
    if cuda_visible is None:
        return ordered
    by_index = {str(d.physical): d for d in devices}
    chosen: list[GPU] = []
    for entry in (e.strip() for e in cuda_visible.split(",")):
        if not entry:
            break
        if entry.lstrip("-").isdigit():
            device = by_index.get(str(int(entry))) if int(entry) >= 0 else None
        else:  # a UUID, or a unique prefix of one ("GPU-8f2c")
            name = entry if entry.startswith("GPU-") else f"GPU-{entry}"
            matches = [d for d in devices if d.uuid and d.uuid.startswith(name)]
            device = matches[0] if len(matches) == 1 else None
        if device is None:
            break  # CUDA ignores this entry and every one after it
        if device in chosen:
            return []  # a GPU named twice: CUDA (and torch) then see none
        chosen.append(device)
    return chosen


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvml() -> list[GPU] | None:
    """Every GPU of the machine through NVML (memory, utilization, compute processes), or
    None when NVML is not installed or not working."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    gib = 2**30
    devices = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                util = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except pynvml.NVMLError:
                util = None
            try:
                procs = tuple(GPUProcess(int(p.pid), (p.usedGpuMemory or 0) / gib)
                              for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle))
            except pynvml.NVMLError:  # not permitted in some containers
                procs = ()
            devices.append(GPU(i, _text(pynvml.nvmlDeviceGetName(handle)), memory.total / gib, util,
                               physical=str(i), uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                               memory_used_gb=memory.used / gib, memory_free_gb=memory.free / gib,
                               processes=procs))
    except pynvml.NVMLError:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    return devices


def _torch_uuid(props) -> str | None:
    uuid = getattr(props, "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def probe_torch(cuda_visible: str | None) -> tuple[list[GPU], list[str] | None]:
    """The visible GPUs as torch sees them (no memory readings: that would open a CUDA
    context in this process), and their UUIDs (None when torch cannot tell)."""
    try:
        import torch
    except ImportError:
        return [], None
    if not torch.cuda.is_available():
        return [], None
    entries = [e.strip() for e in cuda_visible.split(",")] if cuda_visible else []
    gpus, uuids = [], []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = _torch_uuid(props)
        uuids.append(uuid)
        physical = entries[i] if i < len(entries) and entries[i].isdigit() else (None if entries else str(i))
        gpus.append(GPU(i, props.name, props.total_memory / 2**30, physical=physical, uuid=uuid))
    return gpus, (uuids if all(uuids) else None)


def detect_gpus() -> tuple[GPU, ...]:
    """The GPUs this process may use: NVML readings where present, mapped through
    ``CUDA_VISIBLE_DEVICES`` (and torch's view of it)."""
    cuda_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen_by_torch, uuids = probe_torch(cuda_visible)
    if not seen_by_torch:  # torch cannot use a GPU here (no CUDA build, driver mismatch): none to place on
        return ()
    nvml = probe_nvml()
    if nvml is None:
        return tuple(seen_by_torch)
    mapped = map_visible(nvml, cuda_visible, uuids)
    # NVML and CUDA disagree on how many GPUs are visible (MIG instances, for one): torch's list holds.
    return mapped if len(mapped) == len(seen_by_torch) else tuple(seen_by_torch)


def worker_gpu() -> dict | None:
    """Run on an external Dask worker: the GPU it would train on (its ``cuda:0``)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)  # the worker trains on it anyway: a context is fine
    return {"name": props.name, "memory_gb": total / 2**30, "memory_free_gb": free / 2**30,
            "memory_used_gb": (total - free) / 2**30, "uuid": _torch_uuid(props),
            "physical": (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]}
