"""Dask worker preload: import torch when the worker starts, so the first training segment
does not pay for it (seconds on a small machine). Model modules load on first use."""
import os

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

from . import _worker  # noqa: E402,F401
