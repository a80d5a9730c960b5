"""The control surface shared by humans (sliders, CLI) and the adaptive controller.

Controllers are policies: :meth:`Controller.decide` maps a frozen :class:`RunView` (what
every model has reported so far) to a list of instructions (:class:`SetHParam`,
:class:`Exploit`). The coordinator applies them through the same path as a user's
change, records each as an event with ``source="controller"``, and skips any change to a
value a human pinned. Controllers never touch trainers or Dask.
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from .trainer import HParam, HParamSchema

__all__ = ["ModelView", "RunView", "SetHParam", "Exploit", "Decision", "Controller"]


@dataclasses.dataclass(frozen=True)
class ModelView:
    """What a controller may know about one model instance of the run."""

    instance: str  # the model's id in the run, e.g. "digits_mlp@digits#1"
    model: str  # registry name, e.g. "digits_mlp"
    dataset: str | None
    group: str  # population group: members of one group are comparable (same model+data)
    epoch: int  # epochs completed
    total_epochs: int
    state: str  # ModelState value
    hparams: Mapping[str, Any]  # in force now
    pinned: frozenset[str]  # names a human pinned; decisions on them are dropped
    schema: Mapping[str, HParam]  # the model's live hyperparameters only
    history: Mapping[str, tuple[tuple[int, float], ...]]  # metric name -> ((epoch, value), ...)

    def last(self, metric: str, default: float | None = None) -> float | None:
        points = self.history.get(metric, ())
        return points[-1][1] if points else default


@dataclasses.dataclass(frozen=True)
class RunView:
    epoch: int  # the round just finished (min epoch over running models)
    models: Mapping[str, ModelView]

    def groups(self) -> dict[str, list[ModelView]]:
        out: dict[str, list[ModelView]] = {}
        for view in self.models.values():
            out.setdefault(view.group, []).append(view)
        return out


@dataclasses.dataclass(frozen=True)
class SetHParam:
    instance: str
    name: str
    value: Any
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Exploit:
    """Copy ``source``'s weights, optimiser state and (unpinned) hyperparameters into ``target``."""

    target: str
    source: str
    reason: str = ""


Decision = SetHParam | Exploit


class Controller(HParamSchema, abc.ABC):
    """A registered model that steers the others instead of training on data.

    Constructor: ``(hparams, seed)``. It runs in the coordinator's process once per round
    (after every model finished the same epoch). Its own metrics come from
    :meth:`metrics_for_round` and :meth:`evaluate`, and it is checkpointed like any model.
    """

    name: ClassVar[str] = ""
    role: ClassVar[str] = "controller"
    accepts: ClassVar[tuple[str, ...]] = ()
    hyperparameters: ClassVar[dict[str, HParam]] = {}
    metrics: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def __init__(self, hparams: dict[str, Any], seed: int):
        self.hparams = dict(hparams)
        self.seed = seed

    @abc.abstractmethod
    def decide(self, view: RunView) -> list[Decision]:
        """Instructions for this round; must be a deterministic function of view and state."""

    def metrics_for_round(self) -> Mapping[str, float]:
        """Metrics of the last :meth:`decide` (recorded under the controller's name)."""
        return {}

    def evaluate(self, view: RunView) -> Mapping[str, float]:
        """Final ``eval/`` metrics, given the finished run."""
        return {}

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
