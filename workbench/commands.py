"""Commands: the one way anything (a user, a panel, another process, replay) steers a run.

A :class:`Command` goes to :meth:`Coordinator.submit`; the driver applies it between
segments and, for ``set``/``pause``/``stop``, also pushes a compact tuple into the
trainer's mailbox so it takes effect at the trainer's next step boundary.
"""
from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any

__all__ = ["CommandOp", "Command"]


class CommandOp(str, enum.Enum):
    SET = "set"  # a live hyperparameter (instance, name, value)
    RELEASE = "release"  # hand a pinned hyperparameter back to the controller
    PAUSE = "pause"  # one model (instance) or all (instance None)
    RESUME = "resume"
    STOP = "stop"  # the whole run, at the next step boundary

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass
class Command:
    """One instruction. ``id`` is assigned by :meth:`Coordinator.submit` unless already set
    (> 0, an id a store-backed channel gave it); ``client`` says who sent it (for example
    ``"cli:host:pid"``). Both are copied into the events the command causes."""

    op: CommandOp
    instance: str | None = None
    name: str | None = None
    value: Any = None
    source: str = "user"  # user | controller | replay
    pin: bool = True
    requested: float = dataclasses.field(default_factory=time.time)
    id: int = 0
    client: str = ""

    def __post_init__(self) -> None:
        self.op = CommandOp(self.op)

    def mailbox(self) -> tuple:
        """The compact form a trainer's mailbox holds."""
        if self.op == CommandOp.SET:
            return ("set", self.name, self.value, self.id)
        return (self.op.value,)

    def origin(self) -> dict[str, Any]:
        """What every event caused by this command carries."""
        return {"id": self.id, "client": self.client}
