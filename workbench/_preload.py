"""Dask worker preload: import torch and the built-in models once, when the worker starts,
so the first training segment does not pay for it (seconds on a small machine)."""
import os

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

from . import _worker  # noqa: E402,F401
from .registry import list_models  # noqa: E402

list_models()
