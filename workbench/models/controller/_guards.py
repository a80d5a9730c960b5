"""Rules that protect a model no matter what the learned part thinks: divergence and plateau.

Both are plain functions of a per-epoch series, so they are tested on scripted histories.
They act on the learning rate only: a diverging or stalled model is, far more often than
not, one whose step size is too large for where it now is on its loss surface.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

__all__ = ["GuardSettings", "guard_factor", "is_diverging", "is_plateau"]


@dataclasses.dataclass(frozen=True)
class GuardSettings:
    divergence_ratio: float = 1.5  # loss above this multiple of its best, and still rising
    divergence_factor: float = 0.3  # lr multiplier on divergence
    patience: int = 3  # rounds without improvement that make a plateau
    plateau_threshold: float = 0.01  # relative improvement that still counts as progress
    plateau_factor: float = 0.5  # lr multiplier on a plateau
    train_rise: float = 0.0  # >0: the training loss must also exceed this multiple of its best


def is_diverging(losses: Sequence[float], ratio: float) -> bool:
    """True when the newest loss is non-finite, or far above the best so far and still rising.

    "Still rising" keeps a model that is already recovering from a spike from being cut
    again on every round until it is back under the threshold.
    """
    if not losses:
        return False
    last = losses[-1]
    if not math.isfinite(last):
        return True
    earlier = [x for x in losses[:-1] if math.isfinite(x)]
    if not earlier:
        return False
    best = min(earlier)
    rising = last > losses[-2] if math.isfinite(losses[-2]) else True
    if best > 0:
        return rising and last > ratio * best
    # Scores that can be negative (a higher-is-better metric flipped): compare by spread.
    return rising and last - best > (ratio - 1.0) * max(abs(best), 1e-12)


def is_plateau(scores: Sequence[float], patience: int, threshold: float) -> bool:
    """True when the last ``patience`` scores failed to beat the best before them.

    ``scores`` are lower-is-better and should start at the model's last hyperparameter
    change, so a plateau is judged only on rounds the current settings are responsible for.
    An improvement smaller than ``threshold`` (relative) is not progress.
    """
    if patience < 1 or len(scores) < patience + 1:
        return False
    before = [x for x in scores[:-patience] if math.isfinite(x)]
    recent = [x for x in scores[-patience:] if math.isfinite(x)]
    if not before or not recent:
        return False
    best_before = min(before)
    return min(recent) > best_before - threshold * abs(best_before)


def _training_rose(losses: Sequence[float], ratio: float) -> bool:
    """The round's mean training loss is above ``ratio`` x the best earlier round (or unknown).

    Held-out losses rise from overfitting and evaluation noise as well as from a step
    size that is too large; only the last also drives the training loss up, so a
    divergence cut needs both signals to agree.
    """
    earlier = [x for x in losses[:-1] if math.isfinite(x)]
    if ratio <= 0.0 or not losses or not earlier:
        return True
    return losses[-1] > ratio * min(earlier)


def guard_factor(losses: Sequence[float], scores: Sequence[float], settings: GuardSettings,
                 ready: bool) -> tuple[float, str] | None:
    """The lr multiplier a guard demands, with its reason, or None.

    ``losses`` is the training loss, ``scores`` the lower-is-better objective, both
    starting at the model's last change.

    Divergence is checked on every round (it cannot wait for a cool-down); a plateau only
    when the model is ready, i.e. its last change had time to show an effect.
    """
    # A non-finite training loss is always divergence; a *rising* one is judged on the
    # objective instead: a round's mean minibatch loss is too noisy near convergence (it
    # can double by chance), while an evaluation on a fixed set is not.
    nonfinite = bool(losses) and not math.isfinite(losses[-1])
    if nonfinite or (is_diverging(scores, settings.divergence_ratio)
                     and _training_rose(losses, settings.train_rise)):
        last = losses[-1] if nonfinite else scores[-1]
        why = "non-finite loss" if not math.isfinite(last) else f"loss rose to {last:.4g}"
        return settings.divergence_factor, f"divergence ({why})"
    if ready and is_plateau(scores, settings.patience, settings.plateau_threshold):
        return settings.plateau_factor, f"plateau: no progress in {settings.patience} rounds"
    return None
