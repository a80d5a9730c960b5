"""Mixed precision as a per-model option: the ``precision`` hyperparameter and its autocast.

A model offers ``precision`` by putting :data:`PRECISION` in its ``hyperparameters`` and
running its forward passes inside :func:`autocast`; :func:`check_precision` refuses, when
the trainer is built, a GPU that cannot do bfloat16. ``bf16`` autocasts matrix products
and convolutions to bfloat16 and keeps reductions and the optimiser in float32. On a CPU
with bfloat16 instructions (AMX, AVX512-BF16) it is faster; without them, slower
(``benchmarks/gpu.py`` measures both precisions on every device it finds).
"""
from __future__ import annotations

import contextlib
from typing import Any

from .trainer import HParam

__all__ = ["PRECISION", "autocast", "check_precision"]

PRECISION = HParam(str, "fp32", choices=("fp32", "bf16"),
                   help="bf16: bfloat16 autocast (CPU, and GPUs that support it)")


def check_precision(device: Any, precision: str) -> None:
    """Raise ``ValueError`` (one line, naming the fix) when ``device`` cannot run ``precision``."""
    import torch

    device = torch.device(device)
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; "
                         "use precision fp32")


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager:
    """The context to run a forward pass in: bfloat16 autocast for ``bf16``, nothing for ``fp32``."""
    if precision != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
