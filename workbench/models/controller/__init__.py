"""The adaptive learning controller (registry name ``adaptive_learning_controller``).

A :class:`~workbench.control.Controller` that steers the other models' live
hyperparameters: population-based training inside population groups, divergence and
plateau guards on the learning rate, and a Thompson-sampling bandit over learning-rate
adjustments that learns from the improvements it observes. See
``docs/models/adaptive_learning_controller.md``.
"""
from __future__ import annotations

from ._bandit import AdjustmentBandit, parse_actions
from ._controller import AdaptiveLearningController
from ._evaluate import improvement_vs_fixed
from ._guards import GuardSettings, guard_factor, is_diverging, is_plateau
from ._pbt import exploit_pairs, explore, rank

__all__ = [
    "AdaptiveLearningController",
    "AdjustmentBandit",
    "GuardSettings",
    "exploit_pairs",
    "explore",
    "guard_factor",
    "improvement_vs_fixed",
    "is_diverging",
    "is_plateau",
    "parse_actions",
    "rank",
]
