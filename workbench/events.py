"""The engine's event stream: typed messages, one ``emit`` that fans out to handlers.

Everything the driver reports (lifecycle events, streamed step metrics, finished epochs,
model log lines) is one message passed to :meth:`EventBus.emit`. The store, the per-model
log files and the API's subscribers are handlers of that stream; the driver names none of
them (CONVENTIONS 4). A handler that raises is logged and skipped: watching must never stop
training.

The ``kind`` of an :class:`Event` is an :class:`EventKind`, a ``str`` enum whose values are
what ``store.sqlite``'s ``events.kind`` column holds (a contract: docs/contracts.md).
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Mapping, MutableSequence
from pathlib import Path
from typing import Any

__all__ = ["EventKind", "Event", "Metrics", "EpochEnd", "LogLine", "Message", "EventBus", "StoreHandler",
           "LogFiles", "Subscribers"]

log = logging.getLogger(__name__)


class EventKind(str, enum.Enum):
    """Every kind of event the engine writes; the value is the stored string."""

    STARTED = "started"  # a run began (payload: models, controllers, from_epoch, replay_of?)
    RESUMED = "resumed"  # a run continued from its checkpoints
    DATA_QUALITY = "data_quality"  # a dataset's assessment before training
    SEGMENT = "segment"  # a model finished an epoch
    CHECKPOINT = "checkpoint"  # a checkpoint file was written
    HPARAM = "hparam"  # the coordinator's copy of a hyperparameter changed (user, controller, replay)
    HPARAM_APPLIED = "hparam_applied"  # a trainer applied a change at a step (the acknowledgement)
    HPARAM_SKIPPED = "hparam_skipped"  # a controller change to a pinned value was dropped
    RELEASE = "release"  # a pinned hyperparameter was handed back to the controller
    PAUSED = "paused"
    RESUMED_MODEL = "resumed_model"
    STOPPING = "stopping"  # the run was asked to stop
    KNOWLEDGE = "knowledge"  # knowledge routed to a model's next segment
    KNOWLEDGE_USED = "knowledge_used"  # what a trainer made of it
    KNOWLEDGE_LOST = "knowledge_lost"  # a segment's input died with a worker: rescheduled
    ERROR = "error"
    ROLLBACK = "rollback"  # back to the start of the failed epoch, lower learning rate
    EXPLOIT = "exploit"  # a controller copied one member's state into another
    DECISION = "decision"  # a controller's hyperparameter decision, with its reason
    RESTORED = "restored"  # a model rebuilt from its checkpoint after losing its worker
    RESOURCES = "resources"  # a GPU share changed hands
    FAILED = "failed"  # a model (model set) or the run (model None) failed
    FINISHED = "finished"  # a model (model set) or the run (model None) finished
    STOPPED = "stopped"  # the run stopped (model None)
    OOM_RETRY = "oom_retry"  # CUDA out of memory: the step is retried with a smaller batch
    FINISHED_WITH_FAILURES = "finished_with_failures"  # the run ended, at least one model failed (model None)
    # A model (or controller) resumed or was rebuilt from an older checkpoint than its newest
    # file (payload: epoch used, skipped {epoch: why}, restart: true for --allow-restart).
    CHECKPOINT_FALLBACK = "checkpoint_fallback"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Event:
    kind: EventKind
    model: str | None = None
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    wall_time: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Metric rows ``(model, epoch, step, name, value, wall_time)``; ``live`` ones (streamed
    while training) also go to subscribers, others (controller, checkpoint timing) only to
    the store."""

    rows: tuple[tuple[str, int, int, str, float, float], ...]
    live: bool = False


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """A model finished an epoch; ``values`` are its epoch metrics (eval, timing, system)."""

    model: str
    epoch: int
    step: int
    values: Mapping[str, float]
    wall_time: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass(frozen=True)
class LogLine:
    model: str
    text: str


Message = Event | Metrics | EpochEnd | LogLine
Handler = Callable[[Message], None]


class EventBus:
    """One :meth:`emit` for everything; handlers run in the emitting thread, in order."""

    def __init__(self, handlers: list[Handler] | None = None):
        self.handlers: list[Handler] = list(handlers or [])

    def emit(self, message: Message) -> None:
        for handler in list(self.handlers):
            try:
                handler(message)
            except Exception:  # a broken handler must not stop training
                log.exception("event handler %r failed", handler)

    def event(self, kind: EventKind, model: str | None = None, payload: Mapping[str, Any] | None = None) -> None:
        self.emit(Event(EventKind(kind), model, dict(payload or {})))


class StoreHandler:
    """Events and metric rows into ``store.sqlite`` (batched by the store's writer thread)."""

    def __init__(self, store: Any):
        self.store = store

    def __call__(self, message: Message) -> None:
        if isinstance(message, Event):
            self.store.add_event(message.model, message.kind.value, dict(message.payload), wall_time=message.wall_time)
        elif isinstance(message, Metrics):
            if message.rows:
                self.store.add_metrics(message.rows)
        elif isinstance(message, EpochEnd):
            self.store.add_metrics([(message.model, message.epoch, message.step, k, float(v), message.wall_time)
                                    for k, v in message.values.items()])


class LogFiles:
    """``logs/<model>.log``: the model's own log lines and the tracebacks of its failures."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __call__(self, message: Message) -> None:
        if isinstance(message, LogLine):
            self.folder.mkdir(exist_ok=True)
            with open(self.folder / f"{message.model}.log", "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message.text}\n")


class Subscribers:
    """The API's subscribers (``Run.subscribe``): plain dicts of ``type`` event, metrics or epoch.

    ``callbacks`` is the caller's list, so adding to it later subscribes.
    """

    def __init__(self, callbacks: MutableSequence[Callable[[dict[str, Any]], None]]):
        self.callbacks = callbacks

    def __call__(self, message: Message) -> None:
        if isinstance(message, Event):
            out = {"type": "event", "model": message.model, "kind": message.kind.value,
                   "payload": dict(message.payload), "wall_time": message.wall_time}
        elif isinstance(message, Metrics) and message.live and message.rows:
            out = {"type": "metrics", "rows": list(message.rows)}
        elif isinstance(message, EpochEnd):
            out = {"type": "epoch", "model": message.model, "epoch": message.epoch, "metrics": dict(message.values)}
        else:
            return
        for callback in list(self.callbacks):
            try:
                callback(out)
            except Exception:  # one broken subscriber must not starve the others
                log.exception("subscriber %r failed", callback)
