"""Reading metric histories and moving hyperparameter values within their schema.

Every policy of the controller needs the same two things: a per-epoch, lower-is-better
score for each model, and a way to scale or resample a hyperparameter without ever
leaving its ``HParam`` bounds. They live here so the policies stay plain functions.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ...control import ModelView
from ...trainer import HParam

# The engine's per-epoch mean of the step losses (``<name>_epoch``, what a ``ModelView``
# of a real run holds), then the raw per-step name (scripted views and the benchmark).
FALLBACK_METRICS = ("train/loss_epoch", "train/loss")
FALLBACK_METRIC = FALLBACK_METRICS[0]
# Metric names whose larger values are better when ``mode="auto"``.
_HIGHER_BETTER_WORDS = ("accuracy", "acc", "reward", "return", "r2", "win", "score", "f1", "auc")


@dataclasses.dataclass(frozen=True)
class Objective:
    """The metric a group is ranked by and its direction (``sign=-1`` means higher is better)."""

    metric: str
    sign: float

    def score(self, value: float) -> float:
        """Lower-is-better version of a raw metric value."""
        return self.sign * value

    def raw(self, score: float) -> float:
        return self.sign * score


def direction(metric: str, mode: str) -> float:
    """+1 when lower values of ``metric`` are better, -1 when higher ones are."""
    if mode == "min":
        return 1.0
    if mode == "max":
        return -1.0
    leaf = metric.split("/")[-1].lower()
    return -1.0 if any(w in leaf.split("_") or leaf == w for w in _HIGHER_BETTER_WORDS) else 1.0


def resolve_objective(members: Iterable[ModelView], metric: str, mode: str) -> Objective:
    """The first of ``metric``'s names (comma-separated) every member of a group reports.

    Models report different key metrics (a classifier ``eval/loss``, the simulator
    ``eval/one_step_nmse``, the causal engine none), so ``metric`` is a preference list; a
    group is ranked by one
    metric only, so a member that lacks a name (no evaluation yet, or a model that never
    reports it) moves the whole group to the next name, and finally to the training loss
    (``train/loss_epoch`` in a real run, ``train/loss`` in a scripted one).
    """
    members = list(members)
    names = [n.strip() for n in metric.split(",") if n.strip()]
    for name in names:
        if members and all(m.history.get(name) for m in members):
            return Objective(name, direction(name, mode))
    for name in FALLBACK_METRICS:
        if members and all(m.history.get(name) for m in members):
            return Objective(name, 1.0)
    return Objective(FALLBACK_METRIC, 1.0)


def train_losses(view: ModelView) -> list[tuple[int, float]]:
    """Per-epoch training loss: the engine's epoch mean, else the per-step values averaged."""
    for name in FALLBACK_METRICS:
        series = epoch_series(view, name)
        if series:
            return series
    return []


def epoch_series(view: ModelView, metric: str) -> list[tuple[int, float]]:
    """One value per epoch: the mean of the points an epoch reported (steps or one eval)."""
    sums: dict[int, list[float]] = {}
    for epoch, value in view.history.get(metric, ()):
        sums.setdefault(int(epoch), []).append(float(value))
    out = []
    for epoch in sorted(sums):
        values = sums[epoch]
        # A single non-finite step poisons the epoch on purpose: it is a divergence signal.
        out.append((epoch, float(sum(values) / len(values))))
    return out


def score_series(view: ModelView, objective: Objective) -> list[tuple[int, float]]:
    """Per-epoch lower-is-better scores of one model."""
    return [(e, objective.score(v)) for e, v in epoch_series(view, objective.metric)]


def current_score(view: ModelView, objective: Objective) -> float | None:
    series = score_series(view, objective)
    return series[-1][1] if series else None


def score_noise(series: Sequence[tuple[int, float]], window: int = 4) -> float:
    """Round-to-round noise of a score: the spread of its last ``window`` changes.

    A steady fall (every change alike) has no noise however fast it is; a score that
    jumps around by chance has a spread as large as its jumps. Non-finite values count as
    unbounded noise only through the ranking (they rank last), not here.
    """
    values = [v for _, v in series[-(window + 1):] if math.isfinite(v)]
    if len(values) < 3:
        return 0.0
    diffs = np.diff(np.asarray(values, dtype=float))
    return float(np.std(diffs))


def relative_improvement(before: float, after: float) -> float:
    """How much a lower-is-better score fell, as a fraction of its size (negative: got worse)."""
    if not (math.isfinite(before) and math.isfinite(after)):
        return -1.0
    return (before - after) / max(abs(before), 1e-12)


def is_number(spec: HParam) -> bool:
    return spec.type in (int, float) and spec.choices is None


def _clip(spec: HParam, value: float) -> float:
    if spec.low is not None:
        value = max(value, float(spec.low))
    if spec.high is not None:
        value = min(value, float(spec.high))
    return value


def _cast(spec: HParam, value: float) -> Any:
    return int(round(value)) if spec.type is int else float(value)


def scaled(spec: HParam, value: Any, factor: float) -> Any | None:
    """``value * factor`` clipped into the schema's bounds; None when nothing would change.

    A value of zero cannot be scaled, so it moves by a tenth of its range instead (or not
    at all when the range is open).
    """
    if not is_number(spec) or factor == 1.0:
        return None
    current = float(value)
    if current == 0.0:
        if spec.low is None or spec.high is None:
            return None
        step = 0.1 * (float(spec.high) - float(spec.low))
        target = current + (step if factor > 1.0 else -step)
    else:
        target = current * factor
    new = _cast(spec, _clip(spec, target))
    if spec.type is int and new == int(value):
        new = _cast(spec, _clip(spec, current + (1 if factor > 1.0 else -1)))
    return None if new == value else new


def sample(spec: HParam, rng: np.random.Generator, value: Any) -> Any | None:
    """A fresh value from the schema's range (log-uniform when ``log``); None when unbounded."""
    if spec.choices is not None:
        others = [c for c in spec.choices if c != value]
        return others[int(rng.integers(len(others)))] if others else None
    if spec.type is bool:
        return not value
    if not is_number(spec) or spec.low is None or spec.high is None:
        return None
    low, high = float(spec.low), float(spec.high)
    if spec.log and low > 0:
        draw = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        draw = rng.uniform(low, high)
    new = _cast(spec, _clip(spec, draw))
    return None if new == value else new


def controllable(view: ModelView, names: Sequence[str] | None = None) -> dict[str, HParam]:
    """Live hyperparameters of ``view`` that no human pinned (optionally only ``names``)."""
    allowed = {k: s for k, s in view.schema.items() if s.live and k not in view.pinned}
    if names is not None:
        allowed = {k: s for k, s in allowed.items() if k in names}
    return allowed


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Checkpoint-safe copy of hyperparameter values (numbers, strings, bools only)."""
    return {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
