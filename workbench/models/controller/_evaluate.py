"""``eval/improvement_vs_fixed``: the controlled members against members left at fixed settings.

Definition (per group, then the geometric mean over the groups where it is defined):

    ratio = best final objective of the fixed members / best final objective of the others
            (inverted for higher-is-better objectives, so > 1 always means "controlled is better")

A member counts as *fixed* when the controller never changed it and its hyperparameters
are still the ones it started with (a human change or an engine rollback disqualifies it).
Members kept fixed on purpose (``keep_fixed``) make this a measured control inside the
run. Without a fixed member in any group the metric is not reported: there is nothing
honest to compare with, and extrapolating a fixed run's curve would be a guess.
The ratio is only defined for objectives whose values are positive (losses, accuracies).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ...control import RunView
from ._values import current_score, plain, resolve_objective

__all__ = ["improvement_vs_fixed"]


def improvement_vs_fixed(view: RunView, objective: str, mode: str,
                         initial: Mapping[str, Mapping[str, Any]],
                         touched: set[str]) -> tuple[float | None, int]:
    """Geometric-mean ratio over groups, and the number of groups it was measured in."""
    logs = []
    for _, members in sorted(view.groups().items()):
        obj = resolve_objective(members, objective, mode)
        fixed, controlled = [], []
        for m in members:
            start = initial.get(m.instance)
            unchanged = start is not None and all(plain(m.hparams).get(k) == v for k, v in start.items())
            (fixed if unchanged and m.instance not in touched else controlled).append(m)
        if not fixed or not controlled:
            continue
        best_fixed = _best_raw(fixed, obj)
        best_controlled = _best_raw(controlled, obj)
        if best_fixed is None or best_controlled is None or best_fixed <= 0 or best_controlled <= 0:
            continue
        ratio = best_fixed / best_controlled if obj.sign > 0 else best_controlled / best_fixed
        logs.append(math.log(ratio))
    if not logs:
        return None, 0
    return math.exp(sum(logs) / len(logs)), len(logs)


def _best_raw(members: list, obj) -> float | None:
    scores = [current_score(m, obj) for m in members]
    scores = [s for s in scores if s is not None and math.isfinite(s)]
    return obj.raw(min(scores)) if scores else None
