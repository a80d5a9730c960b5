"""A learning-rate schedule found on the live trainer: search, hold, anneal.

A single model (no population to copy from) cannot afford to explore its learning rate at
random: every round spent at a bad rate is lost, and one-round improvements are too noisy
for a bandit to tell close rates apart. Instead its lr follows three phases:

1. **Search** (at most ``search_fraction`` of training): an lr range test on the live
   trainer. After each round the lr is doubled while the objective improves faster than
   it did at the previous lr, and halved while it gets worse; the search ends at the
   first round where doubling no longer paid (hold there) or a back-off helped.
   Improvement rates fall naturally as training goes on, so "faster than at the previous
   lr" is only met while doubling the lr more than makes up for that: far below the
   best rate it does (progress is roughly proportional to the lr), near it it does not.
2. **Hold**: the guards watch it (divergence cuts, plateau reductions).
3. **Anneal** (the last ``anneal_fraction``): the lr decays every round. Fixed-rate SGD
   ends wherever the noise of its last steps left it; decaying the step size settles it
   (the cool-down of warmup-stable-decay schedules), which lets the hold phase run at
   the fast, noisy end of the stable range.

The phase decisions are plain functions of the metric series so they are tested on
scripted histories; the controller keeps the little state they need.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ._values import relative_improvement

__all__ = ["SearchStep", "anneal_rounds", "in_anneal", "round_trend", "search_step"]


@dataclasses.dataclass(frozen=True)
class SearchStep:
    factor: float  # lr multiplier to apply now (1.0: none)
    done: bool  # the search is over; the model holds from now on
    rate: float | None  # improvement rate of the round just finished (None: not measurable)
    why: str


def round_trend(step_losses: Sequence[float]) -> float | None:
    """Relative fall of the training loss within one round: first third vs last third.

    The only signal available after the first round, before any round-to-round rate
    exists. Positive: the loss fell. Non-finite losses count as a rise; None: fewer than
    three steps reported, nothing to judge.
    """
    values = list(step_losses)
    if not all(math.isfinite(v) for v in values):
        return -1.0
    if len(values) < 3:
        return None
    k = max(1, len(values) // 3)
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    return relative_improvement(first, last)


def search_step(scores: Sequence[float], first_round_trend: float | None, last_factor: float | None,
                prev_rate: float | None, up: float = 2.0, down: float = 0.5,
                settle: float = 1.0) -> SearchStep:
    """The next move of the lr range test.

    ``scores``: lower-is-better objective per round (all rounds so far);
    ``first_round_trend``: :func:`round_trend` of the newest round's training losses;
    ``last_factor``: the search's previous move (None before the first, 1.0 after a
    baseline round); ``prev_rate``: the improvement rate measured at the previous lr;
    ``settle``: the move when raising the lr stopped paying (1.0 stays, ``1/up`` goes back).

    The first round only measures (a loss falls from its initial value at almost any lr,
    so that fall says nothing), unless its loss did not even fall within the round.
    """
    if len(scores) < 2 or last_factor is None:
        if first_round_trend is None or first_round_trend > 0.0:
            return SearchStep(1.0, False, None, "lr search: baseline round")
        return SearchStep(down, False, None, f"lr search: loss not falling, x{down:.3g}")
    rate = relative_improvement(scores[-2], scores[-1])
    if last_factor == 1.0:
        if rate <= 0.0:
            return SearchStep(down, False, rate, f"lr search: not improving, x{down:.3g}")
        return SearchStep(up, False, rate, f"lr search: improving {rate:.3g}/round, try x{up:.3g}")
    if last_factor < 1.0:
        if rate <= 0.0:
            return SearchStep(down, False, rate, f"lr search: still worse after a back-off, x{down:.3g}")
        return SearchStep(1.0, True, rate, "lr search: improving after a back-off, hold")
    if rate <= 0.0:
        return SearchStep(1.0 / last_factor, True, rate, "lr search: worse at the raised lr, back and hold")
    if prev_rate is None or rate > prev_rate:
        return SearchStep(up, False, rate, f"lr search: faster ({rate:.3g} vs {prev_rate:.3g}/round), "
                                           f"try x{up:.3g}")
    return SearchStep(settle, True, rate, f"lr search: no faster ({rate:.3g} vs {prev_rate:.3g}), hold")


def anneal_rounds(total_epochs: int, fraction: float) -> int:
    return int(round(fraction * total_epochs))


def in_anneal(epoch: int, total_epochs: int, fraction: float) -> bool:
    """True in the last ``fraction`` of training (``epoch`` = rounds completed)."""
    rounds = anneal_rounds(total_epochs, fraction)
    return rounds > 0 and total_epochs - epoch <= rounds
