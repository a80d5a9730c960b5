"""Which inputs (state and action) drive which next-state changes of an environment.

Time orders the variables (inputs at ``t``, changes over ``t -> t+1``), so the graph is
bipartite and acyclic by construction: no acyclicity penalty is needed, only sparsity.
Each output gets its own small MLP; the first-layer weights leaving input ``i`` form a
group, and a group-lasso penalty on the group norms switches whole inputs off. After
fitting on standardised data, ``importance[i, j]`` is the drop in held-out fit when
input ``i`` of output ``j``'s MLP is replaced by its mean, relative to the variance the
model explains, and the mask keeps inputs above ``threshold``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._dagma import adam_step

__all__ = ["BipartiteMLP"]


class BipartiteMLP:
    """Group-sparse per-output MLPs from ``p`` inputs to ``q`` outputs, trained by Adam."""

    def __init__(self, p: int, q: int, hidden: int, generator: torch.Generator, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.p, self.q, self.hidden = p, q, hidden
        bound = 1.0 / math.sqrt(p)
        rand = lambda *shape: (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        self.params = {"fc1": rand(q, hidden, p), "b1": rand(q, hidden), "fc2": rand(q, hidden),
                       "b2": torch.zeros(q, dtype=torch.float64)}
        self.params = {k: v.to(self.device) for k, v in self.params.items()}  # drawn on the CPU: same everywhere
        self.m = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.t = 0

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        q, m = self.q, self.hidden
        pre = x @ params["fc1"].reshape(q * m, self.p).T
        hid = torch.tanh(pre.reshape(-1, q, m) + params["b1"])
        return (hid * params["fc2"]).sum(dim=2) + params["b2"]

    def group_norms(self) -> torch.Tensor:
        """``[i, j]``: norm of the first-layer weights from input ``i`` into output ``j``'s MLP."""
        return self.params["fc1"].detach().pow(2).sum(dim=1).T.sqrt()

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float, group_lambda: float) -> dict[str, float]:
        """One Adam step on ``mean squared error + group_lambda * sum of group norms``."""
        leaves = {k: v.detach().requires_grad_(True) for k, v in self.params.items()}
        mse = ((self.forward(leaves, x) - y) ** 2).mean()
        groups = (leaves["fc1"].pow(2).sum(dim=1) + 1e-12).sqrt().sum()
        loss = mse + group_lambda * groups
        grads = torch.autograd.grad(loss, list(leaves.values()))
        self.t += 1
        adam_step(self.params, dict(zip(leaves, grads)), self.m, self.v, self.t, lr)
        return {"loss": float(loss.detach()), "mse": float(mse.detach())}

    @torch.no_grad()
    def r2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-output coefficient of determination on ``(x, y)``."""
        resid = ((self.forward(self.params, x) - y) ** 2).mean(dim=0)
        return 1.0 - resid / y.var(dim=0, unbiased=False).clamp_min(1e-12)

    @torch.no_grad()
    def importance(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """``[i, j]``: share of output ``j``'s explained variance lost when input ``i`` is held at its mean."""
        full = ((self.forward(self.params, x) - y) ** 2).mean(dim=0)
        explained = (y.var(dim=0, unbiased=False) - full).clamp_min(1e-12)
        out = np.zeros((self.p, self.q))
        for i in range(self.p):
            ablated = x.clone()
            ablated[:, i] = x[:, i].mean()
            loss = ((self.forward(self.params, ablated) - y) ** 2).mean(dim=0)
            out[i] = ((loss - full) / explained).clamp_min(0.0).cpu().numpy()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"params": dict(self.params), "m": dict(self.m), "v": dict(self.v), "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("params", "m", "v"):
            setattr(self, key, {k: v.to(self.device, copy=True) for k, v in state[key].items()})
        self.t = state["t"]
