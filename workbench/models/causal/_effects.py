"""Interventional queries on structural equations ``x_j = f_j(x) + e_j`` over a DAG.

``do(x_i = v)`` replaces node ``i``'s equation by the constant ``v``; every other node keeps
its equation and its noise. The expected value of a target under the intervention is
estimated by ancestral sampling with a fixed noise matrix, and the *effect* is reported
relative to the same sampling without the intervention (common random numbers), so the
noise cancels in the difference: for linear equations the answer is exact.

    eq = StructuralEquations(names, adjacency, mechanism, noise)
    eq.effect(do={"x3": 1.0}, target="x7")    # E[x7 | do(x3=1)] - E[x7]
    eq.expectation(do={"x3": 1.0}, target="x7")  # E[x7 | do(x3=1)]
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ...data.sem import Mechanism, interventional_effect, interventional_mean, topological_order

__all__ = ["topological_order", "interventional_mean", "interventional_effect", "StructuralEquations"]


class StructuralEquations:
    """Fitted equations over a DAG, queried by column name.

    ``noise`` are residual rows (one per sample, all columns), so the joint noise of the
    data is kept as it was observed instead of assuming Gaussian noise.
    """

    def __init__(self, names: Sequence[str], adjacency: np.ndarray, mechanism: Mechanism,
                 noise: np.ndarray) -> None:
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.adjacency = np.asarray(adjacency)
        self.order = topological_order(self.adjacency)
        self.mechanism = mechanism
        self.noise = np.asarray(noise, dtype=float)

    def _resolve(self, do: Mapping[str, float], target: str) -> tuple[dict[int, float], int]:
        unknown = [n for n in [*do, target] if n not in self.index]
        if unknown:
            raise KeyError(f"unknown variable(s) {unknown}; known: {self.names}")
        return {self.index[k]: float(v) for k, v in do.items()}, self.index[target]

    def expectation(self, do: Mapping[str, float], target: str) -> float:
        """``E[target | do(...)]`` in the data's original units."""
        idx, t = self._resolve(do, target)
        return float(interventional_mean(self.mechanism, self.order, self.noise, idx)[t])

    def effect(self, do: Mapping[str, float], target: str) -> float:
        """``E[target | do(...)] - E[target]``: the change the intervention causes in the mean."""
        idx, t = self._resolve(do, target)
        return interventional_effect(self.mechanism, self.order, self.noise, idx, t)
