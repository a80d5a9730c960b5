"""Progress figures a person can trust: smoothed steps/s and ETAs over the whole run.

The engine reports, per model, the steps/s of its last epoch (compute only) and an ETA of
"remaining epochs x last epoch's length". Both mislead in a collaborative run: a model
spends much of its time waiting for its peers, so the last epoch's compute time
underestimates the time to the end several-fold, and one epoch's rate swings with the
machine's load. :class:`ProgressClock` is fed the same snapshots the panel shows and keeps
what a fair figure needs:

- **steps/s**: an exponentially weighted moving average of the per-epoch rates (one
  sample per finished epoch, so re-reading an unchanged snapshot does not bias it);
- **ETA**: remaining epochs over the model's rate across everything observed so far
  (epochs finished / seconds it was running, waits for peers and controller rounds
  included, time paused or held by a paused peer left out);
- **run-level** elapsed time and ETA (the longest of the models still training).

Pure logic over plain numbers and an injected clock: tested with synthetic sequences.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["ProgressClock", "ModelFigures", "EWMA_ALPHA"]

EWMA_ALPHA = 0.3  # weight of the newest epoch's rate: about the last 5 epochs count


@dataclasses.dataclass
class _Track:
    first_epoch: int
    active_s: float = 0.0  # seconds running (waits included) since first seen, pauses left out
    active_at_epoch: float = 0.0  # active_s when the last epoch was seen to end
    last_seen: float | None = None
    last_epoch: int = 0
    rate: float | None = None  # EWMA of the per-epoch steps/s
    counts: bool = False  # whether the time since last_seen counts as running


@dataclasses.dataclass(frozen=True)
class ModelFigures:
    """What the panel shows for one model, beside its state."""

    steps_per_s: float | None  # smoothed; None while it waits, is paused or has ended
    eta_s: float | None  # None until a rate is known, and while it is not training


def _counts(model: Mapping[str, Any]) -> bool:
    """Time that belongs to the model's pace: running, or waiting for a peer that is itself
    going. A pause (its own, or a paused peer's) is a person's choice, not the model's speed."""
    waiting = model.get("waiting") or ""
    return model.get("state") == "running" and not waiting.endswith("(paused)")


class ProgressClock:
    """Per-model smoothed rates and whole-run ETAs from a sequence of observations.

    Example (``now`` in seconds from any fixed origin)::

        clock = ProgressClock()
        clock.observe(0.0, {"m": {"state": "running", "epoch": 0, "total_epochs": 4, "steps_per_s": None}})
        clock.observe(10.0, {"m": {"state": "running", "epoch": 1, "total_epochs": 4, "steps_per_s": 50.0}})
        clock.figures(10.0)["m"].eta_s   # 30.0: three epochs at ten seconds each
    """

    def __init__(self, alpha: float = EWMA_ALPHA):
        self.alpha = alpha
        self._tracks: dict[str, _Track] = {}
        self._models: dict[str, Mapping[str, Any]] = {}

    def reset(self) -> None:
        self._tracks, self._models = {}, {}

    def observe(self, now: float, models: Mapping[str, Mapping[str, Any]]) -> None:
        """Take one snapshot: ``{instance: {state, epoch, total_epochs, steps_per_s, waiting}}``."""
        for name, model in models.items():
            epoch = int(model.get("epoch") or 0)
            track = self._tracks.get(name)
            if track is None:
                track = self._tracks[name] = _Track(first_epoch=epoch, last_epoch=epoch)
            elif track.last_seen is not None and track.counts:
                track.active_s += max(0.0, now - track.last_seen)
            if epoch > track.last_epoch:
                sample = model.get("steps_per_s")
                if sample:  # one sample per finished epoch
                    track.rate = sample if track.rate is None else self.alpha * sample + (1 - self.alpha) * track.rate
                track.last_epoch, track.active_at_epoch = epoch, track.active_s
            track.last_seen, track.counts = now, _counts(model)
        self._models = dict(models)

    def figures(self, now: float) -> dict[str, ModelFigures]:
        """Smoothed steps/s and ETA per model, as of ``now`` (after the last :meth:`observe`)."""
        out = {}
        for name, model in self._models.items():
            track = self._tracks[name]
            training = model.get("state") == "running" and not model.get("waiting")
            eta = self._eta(track, model, now) if training else None
            out[name] = ModelFigures(track.rate if training else None, eta)
        return out

    def _eta(self, track: _Track, model: Mapping[str, Any], now: float) -> float | None:
        done = track.last_epoch - track.first_epoch
        if done <= 0 or track.active_at_epoch <= 0:
            return None
        per_epoch = track.active_at_epoch / done  # the whole run's pace, not the last epoch's
        active = track.active_s + (max(0.0, now - track.last_seen) if track.counts and track.last_seen is not None else 0.0)
        remaining = max(0, int(model.get("total_epochs") or 0) - track.last_epoch)
        # A countdown: the time already spent on the epoch under way is taken off.
        return max(0.0, remaining * per_epoch - (active - track.active_at_epoch))

    def run_eta(self, now: float) -> float | None:
        """Until the last model still to train is done: the longest ETA among them (they run
        side by side). None while one of them has no estimate yet, or none is left."""
        going = {n: m for n, m in self._models.items() if m.get("state") in ("running", "paused", "pending")}
        if not going:
            return None
        etas = []
        for name, model in going.items():
            if model.get("state") != "running":
                return None  # a paused model ends when a person says so
            eta = self._eta(self._tracks[name], model, now)
            if eta is None:
                return None
            etas.append(eta)
        return max(etas)
