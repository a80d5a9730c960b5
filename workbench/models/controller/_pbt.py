"""Population-based training (Jaderberg et al., 2017) as plain functions.

Within one population group, members are ranked by their objective; each *ready* member
of the bottom quantile copies a random member of the top quantile (exploit) and then
perturbs the copied hyperparameters (explore). The functions return plans; the
controller turns them into :class:`~workbench.control.Exploit` and ``SetHParam``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...trainer import HParam
from ._values import sample, scaled

__all__ = ["exploit_pairs", "explore", "rank"]


def rank(scores: Mapping[str, float]) -> list[str]:
    """Instances best first (lowest score); non-finite scores last; ties by name."""
    def key(item: tuple[str, float]) -> tuple[int, float, str]:
        name, score = item
        finite = math.isfinite(score)
        return (0 if finite else 1, score if finite else 0.0, name)

    return [name for name, _ in sorted(scores.items(), key=key)]


def exploit_pairs(ranked: Sequence[str], ready: set[str], quantile: float,
                  rng: np.random.Generator, protected: set[str] = frozenset()) -> list[tuple[str, str]]:
    """``(target, source)`` pairs: ready bottom members each copy a random top member.

    The quantile is at least one member at each end once the group has two members, and
    the two ends never overlap. ``protected`` members (kept at fixed settings as a
    control) are never targets but may be sources.
    """
    n = len(ranked)
    if n < 2:
        return []
    k = min(max(1, int(math.ceil(quantile * n))), n // 2)
    top = list(ranked[:k])
    bottom = list(ranked[n - k:])
    pairs = []
    for target in bottom:
        if target in ready and target not in protected:
            source = top[int(rng.integers(len(top)))]
            pairs.append((target, source))
    return pairs


def explore(schema: Mapping[str, HParam], values: Mapping[str, Any], rng: np.random.Generator,
            perturb_factor: float, resample_prob: float) -> dict[str, tuple[Any, str]]:
    """New values for the copied hyperparameters: ``{name: (value, how)}``.

    ``schema`` must hold only the hyperparameters the controller may change (live, not
    pinned). Each one is resampled from its range with ``resample_prob``, else scaled by
    ``perturb_factor`` or its inverse (log-space symmetric).
    """
    out: dict[str, tuple[Any, str]] = {}
    for name in sorted(schema):
        spec, current = schema[name], values.get(name)
        if current is None:
            continue
        # Draw both random numbers for every name so the stream does not depend on the
        # outcome of earlier names (easier to reason about replays).
        u, coin = rng.random(), rng.random()
        if u < resample_prob:
            new = sample(spec, rng, current)
            if new is not None:
                out[name] = (new, "resample")
            continue
        factor = perturb_factor if coin < 0.5 else 1.0 / perturb_factor
        if spec.choices is not None or spec.type is bool:
            continue  # categorical values only move by resampling
        new = scaled(spec, current, factor)
        if new is not None:
            out[name] = (new, f"x{factor:.3g}")
    return out
