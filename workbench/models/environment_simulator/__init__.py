"""Environment simulator: a learned world model for gymnasium classic-control tasks.

Registers the trainer ``environment_simulator`` (data kind ``environment``: the built-in
``cartpole`` and ``pendulum`` datasets). See ``docs/models/environment_simulator.md``.
"""
from __future__ import annotations

from ...registry import register_model
from ._collect import EnvSpec, env_spec
from ._ensemble import ProbabilisticEnsemble
from ._planner import CEMPlanner
from ._trainer import EnvironmentSimulator

register_model("environment_simulator")(EnvironmentSimulator)

__all__ = ["EnvironmentSimulator", "ProbabilisticEnsemble", "CEMPlanner", "EnvSpec", "env_spec"]
