"""The learned part: a discounted Thompson-sampling bandit over learning-rate adjustments.

Arms are multiplicative factors (``x0.5, x0.8, keep, x1.25, x2``). The reward of an arm is
how much faster the model improved after it than before it (per-round relative
improvement of its objective, minus the model's own recent rate), so the slow decline of
every improvement rate during training does not count against late actions.

Statistics are kept per population group (members of a group are the same model on the
same data, so what helps one helps the others), plus a pooled copy over all groups that
serves as a weak prior for a group with little data. Old observations are discounted:
the best arm changes as the learning rate moves, so recent evidence must weigh more.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["AdjustmentBandit", "parse_actions", "speedup"]

_POOLED = "*"


def parse_actions(text: str) -> tuple[float, ...]:
    """``"0.5,0.8,1,1.25,2"`` -> factors; every factor must be a positive finite number."""
    try:
        factors = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise ValueError(f"bandit_actions: expected comma-separated numbers, got {text!r}") from exc
    if not factors or any(not math.isfinite(f) or f <= 0 for f in factors):
        raise ValueError(f"bandit_actions: factors must be positive numbers, got {text!r}")
    return factors


def speedup(rate_before: float, rate_after: float, scale: float = 1e-3, clip: float = 3.0) -> float:
    """Reward of an action: how much faster the model improved after it than before.

    Rates are per-round relative improvements. They are compared through
    ``asinh(rate / scale)``, which is linear near zero and logarithmic beyond ``scale``:
    doubling a slow rate (a learning rate far too small) earns about as much as doubling
    a fast one, so the bandit can climb out of a flat region whose absolute progress is
    tiny. Clipped so one blow-up, or the recovery from one, cannot outweigh many rounds.
    """
    gain = math.asinh(rate_after / scale) - math.asinh(rate_before / scale)
    return float(min(max(gain, -clip), clip))


class AdjustmentBandit:
    """Gaussian Thompson sampling with discounting, one set of arm statistics per group.

    ``prior_weight`` is how much of the pooled statistics a group borrows; ``min_sigma`` keeps
    the posterior from collapsing on a few lucky rounds.
    """

    def __init__(self, factors: tuple[float, ...], discount: float = 0.9,
                 prior_weight: float = 0.3, min_sigma: float = 0.1):
        self.factors = tuple(factors)
        self.discount = discount
        self.prior_weight = prior_weight
        self.min_sigma = min_sigma
        # group -> [counts, sums, sums of squares], each a list with one entry per arm
        self.stats: dict[str, list[list[float]]] = {}

    def _table(self, group: str) -> list[list[float]]:
        k = len(self.factors)
        return self.stats.setdefault(group, [[0.0] * k, [0.0] * k, [0.0] * k])

    def _effective(self, group: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        own = np.asarray(self._table(group), dtype=float)
        pooled = np.asarray(self._table(_POOLED), dtype=float)
        if group != _POOLED:
            own = own + self.prior_weight * pooled
        return own[0], own[1], own[2]

    def posterior(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of each arm's reward."""
        n, s, ss = self._effective(group)
        total = n.sum()
        # A pooled noise estimate: per-arm variances from 1-2 samples are meaningless.
        if total > 1:
            mean_all = s.sum() / total
            var = max(ss.sum() / total - mean_all**2, 0.0)
            sigma = max(math.sqrt(var), self.min_sigma)
        else:
            sigma = 4 * self.min_sigma
        # One pseudo-observation at reward 0 per arm: "no better than keeping" until shown.
        mean = s / (n + 1.0)
        std = sigma / np.sqrt(n + 1.0)
        return mean, std

    def select(self, group: str, rng: np.random.Generator,
               allowed: list[int] | None = None) -> int:
        """Index of the arm to play: the best of one posterior draw per arm."""
        mean, std = self.posterior(group)
        draws = rng.normal(mean, std)
        candidates = list(range(len(self.factors))) if allowed is None else list(allowed)
        return max(candidates, key=lambda i: (draws[i], -abs(math.log(self.factors[i]))))

    def update(self, group: str, arm: int, reward: float) -> None:
        """Discount the group's (and the pooled) statistics, then add one observation."""
        for key in (group, _POOLED) if group != _POOLED else (_POOLED,):
            table = self._table(key)
            for row in table:
                for i in range(len(row)):
                    row[i] *= self.discount
            table[0][arm] += 1.0
            table[1][arm] += reward
            table[2][arm] += reward * reward

    def keep_index(self) -> int:
        """The arm closest to "no change" (used when a bandit must stand aside)."""
        return min(range(len(self.factors)), key=lambda i: abs(math.log(self.factors[i])))

    def state_dict(self) -> dict[str, Any]:
        return {"factors": list(self.factors),
                "stats": {g: [list(r) for r in t] for g, t in self.stats.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        factors = tuple(float(f) for f in state["factors"])
        if factors != self.factors:
            raise ValueError(f"bandit state has arms {factors}, this controller {self.factors}")
        self.stats = {g: [[float(x) for x in r] for r in t] for g, t in state["stats"].items()}
