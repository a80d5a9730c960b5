"""Dask worker preload: import torch when the worker starts, so the first training segment
does not pay for it (seconds on a small machine). Model modules load on first use."""
import os

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

from . import _worker  # noqa: E402

# The coordinator names the run's models and datasets: import and load them now, while
# the cluster starts, rather than in the first segment.
for spec in filter(None, os.environ.get("WORKBENCH_PRELOAD", "").split(";")):
    kind, _, value = spec.partition("=")
    try:
        if kind == "model":
            from .registry import get_model

            get_model(value)
        elif kind == "data":
            name, seed = value.rsplit(":", 1)
            _worker._dataset(name, int(seed), None, None)
    except Exception:  # a preload is an optimisation: the segment reports real errors
        pass
