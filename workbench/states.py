"""States are enums, records are immutable: what monitors and panels receive."""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

__all__ = ["RunState", "ModelState", "ModelSnapshot", "RunSnapshot"]


class RunState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FINISHED = "finished"
    FINISHED_WITH_FAILURES = "finished_with_failures"  # the others finished; at least one model failed
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its process died (killed, crashed): `workbench resume` continues it

    def is_finished(self) -> bool:
        return self in (RunState.STOPPED, RunState.FINISHED, RunState.FINISHED_WITH_FAILURES, RunState.FAILED,
                        RunState.INTERRUPTED)

    @property
    def ok(self) -> bool:
        """Ended with nothing lost: every model finished, or the run was stopped on request."""
        return self in (RunState.FINISHED, RunState.STOPPED)

    @property
    def reportable(self) -> bool:
        """Has results to report: it ended on its own or on request, whatever its models did."""
        return self in (RunState.FINISHED, RunState.STOPPED, RunState.FINISHED_WITH_FAILURES)


class ModelState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    def is_finished(self) -> bool:
        return self in (ModelState.FINISHED, ModelState.FAILED, ModelState.STOPPED)


@dataclasses.dataclass(frozen=True)
class ModelSnapshot:
    instance: str
    model: str
    dataset: str | None
    state: ModelState
    epoch: int  # completed epochs
    total_epochs: int
    step: int
    steps_per_epoch: int
    hparams: Mapping[str, Any]
    pinned: frozenset[str]
    steps_per_s: float | None
    eta_s: float | None
    last_error: str | None
    last_eval: Mapping[str, float]
    waiting: str | None = None  # what a running model between epochs waits for ("peer x", "controller round 3")

    @property
    def progress(self) -> float:
        return self.epoch / self.total_epochs if self.total_epochs else 1.0


@dataclasses.dataclass(frozen=True)
class RunSnapshot:
    run_id: str
    state: RunState
    models: Mapping[str, ModelSnapshot]
    wall_time: float
