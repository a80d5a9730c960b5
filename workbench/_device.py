"""Device placement owned by the engine: the tensors a trainer trains must be where it was placed.

A trainer that forgets ``.to(self.resources.device)`` still trains, on the CPU of a worker
pinned to a GPU, and nothing says so. After the worker builds (or restores) a trainer it
calls :func:`check_placement`, which walks the trainer's attributes, finds every
``nn.Module`` (parameters and buffers), every optimizer (its parameters and state) and
every floating-point tensor kept in an attribute, and refuses with one line naming the
first tensor on the wrong device.

What a trainer keeps in host memory on purpose (a replay buffer, index orders, RNG
states) is named in its ``host_tensors`` class attribute and skipped; integer and boolean
tensors in plain attributes are not checked either (indices and masks often live on the
host), but module buffers and optimiser state always are.
"""
from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

from .errors import DevicePlacementError

__all__ = ["planned_device", "same_device", "iter_tensors", "check_placement", "to_host"]

# Attributes of every trainer that are the engine's, not the model's.
_SKIP = frozenset({"data", "resources", "hparams", "seed"})
_MAX_DEPTH = 4


def planned_device(device: str) -> str:
    """The torch device a trainer sees for a placement: a pinned GPU worker sees one GPU,
    its ``cuda:0`` (``CUDA_VISIBLE_DEVICES`` holds the physical id), everything else ``cpu``."""
    return "cuda:0" if device.startswith("cuda") else "cpu"


def same_device(actual: Any, planned: Any) -> bool:
    """``cuda`` and ``cuda:0`` are the same device when only one GPU is visible."""
    import torch

    a, p = torch.device(actual), torch.device(planned)
    if a.type != p.type:
        return False
    return a.index is None or p.index is None or a.index == p.index


def iter_tensors(trainer: Any, strict_only: bool = False) -> Iterator[tuple[str, Any, bool]]:
    """Yield ``(path, tensor, strict)`` for the tensors reachable from a trainer's attributes.

    ``strict`` is True for module parameters and buffers and optimiser state (what the model
    trains), False for loose tensors in attributes (checked only when floating point).
    """
    import torch
    from torch import nn

    seen: set[int] = set()
    host = set(getattr(type(trainer), "host_tensors", ()))

    def walk(obj: Any, path: str, depth: int) -> Iterator[tuple[str, Any, bool]]:
        if id(obj) in seen or depth > _MAX_DEPTH:
            return
        if isinstance(obj, torch.Tensor):
            seen.add(id(obj))
            if not strict_only:
                yield path, obj, False
            return
        if isinstance(obj, (str, bytes, int, float, bool, type(None))):
            return
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            for name, p in obj.named_parameters():
                seen.add(id(p))
                yield f"{path}.{name}", p, True
            for name, b in obj.named_buffers():
                seen.add(id(b))
                yield f"{path}.{name}", b, True
            return
        if isinstance(obj, torch.optim.Optimizer):
            for g, group in enumerate(obj.param_groups):
                for i, p in enumerate(group["params"]):
                    yield f"{path}.param_groups[{g}].params[{i}]", p, True
            for i, state in enumerate(obj.state.values()):
                for key, value in state.items():
                    # Adam keeps its ``step`` counter on the CPU unless capturable: by design.
                    if isinstance(value, torch.Tensor) and not (key == "step" and value.dim() == 0):
                        yield f"{path}.state[{i}].{key}", value, True
            return
        if isinstance(obj, dict):
            items = obj.items()
        elif isinstance(obj, (list, tuple)):
            items = enumerate(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type) and depth < _MAX_DEPTH:
            items = vars(obj).items()
        else:
            return
        for key, value in list(items):
            if depth == 0 and (key in _SKIP or key in host):
                continue
            sep = f"[{key!r}]" if isinstance(obj, dict) else (f"[{key}]" if isinstance(obj, (list, tuple)) else f".{key}")
            yield from walk(value, f"{path}{sep}", depth + 1)

    yield from walk(trainer, "trainer", 0)


def check_placement(trainer: Any, device: str, what: str = "trainer") -> int:
    """Raise :class:`DevicePlacementError` naming the first misplaced tensor; return how many
    tensors were checked. ``device`` is the torch device the trainer was given."""
    checked = 0
    for path, tensor, strict in iter_tensors(trainer):
        if not strict and not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        checked += 1
        if not same_device(tensor.device, device):
            raise DevicePlacementError(
                f"{what}: tensor {path} (shape {tuple(tensor.shape)}) is on {tensor.device} but the model is "
                f"placed on {device}; move it with .to(self.resources.device) after building or loading it, "
                f"or list the attribute in host_tensors if it stays in host memory on purpose")
    return checked


def to_host(obj: Any, copy: bool = False) -> Any:
    """``obj`` with every tensor in host memory (dicts, lists and tuples rebuilt).

    States and knowledge leave a worker this way: the coordinator's process and a CPU
    worker (``CUDA_VISIBLE_DEVICES=""``) cannot unpickle a CUDA tensor, and a driver that
    could would allocate it on its own ``cuda:0``, possibly somebody else's GPU. ``copy``:
    host tensors are cloned and other values deep-copied too (a checkpoint must not share
    storage with the live model)."""
    import copy as _copy

    import torch

    if isinstance(obj, torch.Tensor):
        if obj.device.type != "cpu":
            return obj.detach().to("cpu")
        return obj.detach().clone() if copy else obj
    if isinstance(obj, dict):
        out = {k: to_host(v, copy) for k, v in obj.items()}
        if isinstance(obj, collections.OrderedDict):  # a module's state_dict: keep its version metadata
            out = collections.OrderedDict(out)
            if hasattr(obj, "_metadata"):
                out._metadata = _copy.deepcopy(obj._metadata)
        return out
    if isinstance(obj, list):
        return [to_host(v, copy) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(to_host(v, copy) for v in obj)
    return _copy.deepcopy(obj) if copy else obj
