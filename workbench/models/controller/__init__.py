"""The adaptive learning controller (registry name ``adaptive_learning_controller``).

A :class:`~workbench.control.Controller` that steers the other models' live
hyperparameters: population-based training inside population groups, an lr range test
(search, hold, anneal) for a model steered alone, and guards on the learning rate (undo a
change that made it worse, divergence, plateau). See
``docs/models/adaptive_learning_controller.md``.
"""
from __future__ import annotations

from ._controller import AdaptiveLearningController
from ._evaluate import improvement_vs_fixed
from ._guards import GuardSettings, guard_factor, is_diverging, is_plateau
from ._pbt import exploit_pairs, explore, rank

__all__ = [
    "AdaptiveLearningController",
    "GuardSettings",
    "exploit_pairs",
    "explore",
    "guard_factor",
    "improvement_vs_fixed",
    "is_diverging",
    "is_plateau",
    "rank",
]
