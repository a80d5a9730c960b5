"""A causal mask with confidence: drop an input only when it is stably absent and unsupported.

The causal engine proposes ``causal_mask/<dataset>`` (1 = input ``i`` drives next-state
output ``j``). A hard cut trusts every proposal: in issue 13 a true parent (pole angle ->
cart acceleration) was dropped once planner data dominated the engine's data, and the
simulator's one-step error got 3.7x worse. Here a proposal becomes a drop only when

1. *stable*: the last ``mask_patience`` masks imported all left the edge out, and
2. *unsupported by the simulator's own held-out data*: after every epoch each dropped
   edge is tested on the held-out transitions (never trained on). The masked head's
   residual (real change minus the ensemble-mean prediction) is regressed, 2-fold, on a
   degree-2 polynomial of all inputs and of all inputs but the dropped one; when the
   input's own share removes more than ``mask_restore_gain`` of the residual error left
   without it, the data still support it and the edge is restored for good (a vetoed
   edge is never dropped again).

The test is cheap (a few least-squares fits on a few hundred rows) and sensitive where
it matters: the environments are deterministic, so a missing true parent leaves a
residual that is almost a function of that parent.
"""
from __future__ import annotations

import torch

from ._ensemble import ProbabilisticEnsemble
from ._metrics import mean_prediction

__all__ = ["supported_gain", "MIN_ROWS"]

MIN_ROWS = 40  # fewer held-out transitions than this: no verdict, the mask stays as it is


def _features(z: torch.Tensor, cols: list[int]) -> torch.Tensor:
    """Full degree-2 polynomial (constant, linear, squares, pairwise products) of ``cols``."""
    parts = [torch.ones(len(z), 1, dtype=z.dtype)]
    for a, i in enumerate(cols):
        parts += [z[:, i:i + 1] * z[:, k:k + 1] for k in cols[a:]] + [z[:, i:i + 1]]
    return torch.cat(parts, 1)


def _cv_mse(feats: torch.Tensor, target: torch.Tensor, ridge: float = 1e-3) -> float:
    """2-fold cross-validated MSE of a ridge least-squares fit (folds: alternating rows)."""
    err = 0.0
    for fold in (0, 1):
        test = torch.arange(len(target)) % 2 == fold
        a, b = feats[~test], target[~test]
        w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype), a.T @ b)
        err += float(((feats[test] @ w - target[test]) ** 2).sum())
    return err / len(target)


@torch.no_grad()
def supported_gain(model: ProbabilisticEnsemble, held: dict[str, torch.Tensor], mask: torch.Tensor
                   ) -> torch.Tensor:
    """For every dropped edge ``(i, j)`` (``mask[i, j] == 0``), the share of head ``j``'s
    held-out residual error that input ``i`` alone explains (0 for kept edges, and
    everywhere when there are fewer than :data:`MIN_ROWS` held-out rows).
    """
    gain = torch.zeros_like(mask, dtype=torch.float64)
    if len(held["obs"]) < MIN_ROWS or bool((mask > 0).all()):
        return gain
    pred, _ = mean_prediction(model, held["obs"], held["act"])
    resid = (held["next_obs"] - pred).double()
    x = torch.cat([held["obs"], held["act"]], 1).double()
    z = (x - x.mean(0)) / x.std(0).clamp_min(1e-8)
    every = list(range(mask.shape[0]))
    feats_all = _features(z, every)
    for j in range(mask.shape[1]):
        dropped = [i for i in every if mask[i, j] == 0]
        if not dropped:
            continue
        r = resid[:, j]
        r = (r - r.mean()) / r.std().clamp_min(1e-12)
        full = _cv_mse(feats_all, r)
        for i in dropped:
            # Input i's own share: every other input (kept or also dropped) stays in the
            # baseline, so a dropped input cannot stand in for another dropped parent.
            without = _cv_mse(_features(z, [k for k in every if k != i]), r)
            gain[i, j] = max(0.0, 1.0 - full / max(without, 1e-12))
    return gain
