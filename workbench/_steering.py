"""Steering: how commands and replayed changes reach the driver's copy and the trainers.

The :class:`Steering` half of the :class:`~workbench.coordinator.Coordinator`: any thread
submits a :class:`~workbench.commands.Command`; ``set``, ``pause`` and ``stop`` go at once
into the trainer's mailbox (read between steps) and every command is applied to the
driver's copy by the driver thread (:meth:`Steering._drain`), recorded with its ``id`` and
``client``. Replayed changes never use the mailbox: they ride in ``SegmentSpec.changes``
(applied at their exact step) and enter the copy when :class:`~workbench.replay.ReplayQueue`
says so.
"""
from __future__ import annotations

import logging
import queue
from typing import Any

from . import _worker
from .commands import Command, CommandOp
from .events import EventKind
from .replay import ScheduledChange
from .states import ModelState, RunState

__all__ = ["Steering"]

log = logging.getLogger(__name__)
K = EventKind


class Steering:
    """Mixed into the coordinator, whose state it uses: ``models``, ``client``, ``run_id``,
    ``commands`` (a queue), ``_lock``, ``_next_id``, ``_delivered``, ``state``, ``round``,
    ``_replay``/``_replay_of``/``_replay_ids``, ``_event`` and ``_save_model``."""

    def submit(self, command: Command) -> int:
        """Queue a command (applied by the driver thread) and push ``set``/``pause``/``stop``
        into the trainers' mailboxes at once. Keeps an id a store gave it; returns the id."""
        with self._lock:
            if command.id > 0:
                self._next_id = max(self._next_id, command.id)
            else:
                self._next_id += 1
                command.id = self._next_id
        if command.op == CommandOp.SET:
            self._deliver(command)
        elif command.op in (CommandOp.PAUSE, CommandOp.STOP):
            for name in [command.instance] if command.instance else list(self.models):
                m = self.models.get(name)
                if m is not None and m.future is not None and m.worker:
                    self._send(m, command.mailbox())
        self.commands.put(command)
        return command.id

    def _send(self, m, command: tuple) -> None:
        try:
            self.client.run(_worker.deliver, self.run_id, m.name, command, workers=[m.worker])
        except Exception:  # the worker may be gone; the coordinator's copy still applies next segment
            log.debug("could not deliver %s to %s", command, m.name, exc_info=True)

    def _deliver(self, c: Command) -> None:
        """Into the mailbox of a model that is training, so the change lands at its next step."""
        m = self.models.get(c.instance)
        if m is None or c.name not in m.hparams:
            return
        if m.future is not None and m.worker:
            self._send(m, c.mailbox())
            self._delivered.add(c.id)

    def _drain(self) -> None:
        while True:
            try:
                c = self.commands.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                problem = self._problem(c)
                if problem:  # from a channel that did not check it (the API checks before submitting)
                    self._event(c.instance if c.instance in self.models else None, K.ERROR,
                                {"error": problem, "op": c.op.value, **c.origin()})
                elif c.op == CommandOp.SET:
                    if c.id not in self._delivered:  # submitted between segments, and one started since
                        self._deliver(c)
                    self._delivered.discard(c.id)
                    self._apply_set(c)
                elif c.op == CommandOp.RELEASE:
                    self._apply_release(c)
                elif c.op in (CommandOp.PAUSE, CommandOp.RESUME):
                    self._apply_pause(c)
                elif c.op == CommandOp.STOP and self.state == RunState.RUNNING:
                    self.state = RunState.STOPPING
                    self._event(None, K.STOPPING, c.origin())

    def _problem(self, c: Command) -> str | None:
        if c.instance is not None and c.instance not in self.models:
            return f"{c.op.value}: no model '{c.instance}' in this run"
        if c.op in (CommandOp.SET, CommandOp.RELEASE):
            if c.instance is None:
                return f"{c.op.value}: which model? (no instance given)"
            if c.name not in self.models[c.instance].hparams:
                return f"{c.op.value}: '{c.name}' is not a hyperparameter of {c.instance}"
        return None

    def _apply_set(self, c: Command, step: int | None = None, extra: dict[str, Any] | None = None) -> None:
        m = self.models[c.instance]
        if c.source == "controller" and c.name in m.pinned:
            self._event(c.instance, K.HPARAM_SKIPPED, {"name": c.name, "value": c.value, "reason": "pinned by a user"})
            return
        old = m.hparams.get(c.name)
        m.hparams[c.name] = c.value
        if c.source in ("user", "replay") and c.pin:
            m.pinned.add(c.name)
        if c.source == "user" and c.id and c.id not in self._acknowledged:  # acknowledged at the latest when
            m.unacknowledged[c.name] = c.id  # the next segment starts with it

        self._event(c.instance, K.HPARAM, {
            "name": c.name, "old": old, "new": c.value, "source": c.source, "step": m.step if step is None else step,
            "epoch": m.completed, "round": self.round, "pinned": c.name in m.pinned, "requested": c.requested,
            **c.origin(), **(extra or {})})
        self._save_model(c.instance, hparams=m.hparams, pinned=sorted(m.pinned))

    def _apply_release(self, c: Command, extra: dict[str, Any] | None = None) -> None:
        m = self.models[c.instance]
        m.pinned.discard(c.name)
        self._event(c.instance, K.RELEASE, {"name": c.name, "round": self.round, **c.origin(), **(extra or {})})
        self._save_model(c.instance, pinned=sorted(m.pinned))

    def _apply_pause(self, c: Command) -> None:
        before, after, kind = ((ModelState.RUNNING, ModelState.PAUSED, K.PAUSED) if c.op == CommandOp.PAUSE
                               else (ModelState.PAUSED, ModelState.RUNNING, K.RESUMED_MODEL))
        for name in [c.instance] if c.instance else list(self.models):
            m = self.models[name]
            if m.state == before:
                m.state = after
                self._event(name, kind, {"epoch": m.completed, "step": m.step, **c.origin()})
                self._save_model(name, state=m.state.value)

    # -- replay -----------------------------------------------------------------------------
    def _replay_due(self, next_round: int | None = None) -> None:
        """Recorded changes whose time has come into the copy (see :class:`ReplayQueue`)."""
        if self._replay is None:
            return
        steps = {n: m.step for n, m in self.models.items()}
        idle = [n for n, m in self.models.items() if m.future is None]
        self._apply_replayed(self._replay.due(steps, idle, next_round))

    def _apply_replayed(self, items) -> None:
        for item in items:
            extra = {"replay_of": self._replay_of}
            if isinstance(item, ScheduledChange):
                c = Command(CommandOp.SET, item.model, item.name, item.value, source="replay", pin=item.pinned,
                            id=self._replay_id(item), client="replay")
                self._apply_set(c, step=item.step, extra={**extra, "original_id": item.original_id})
            else:
                self._apply_release(Command(CommandOp.RELEASE, item.model, item.name, source="replay",
                                            client="replay"), extra)

    def _replay_id(self, item: ScheduledChange) -> int:
        with self._lock:
            if item.order not in self._replay_ids:
                self._next_id += 1
                self._replay_ids[item.order] = self._next_id
            return self._replay_ids[item.order]

    def _replayed_in_segment(self, m) -> tuple[tuple[int, str, Any, int], ...]:
        if self._replay is None:
            return ()
        return tuple((c.step, c.name, c.value, self._replay_id(c)) for c in self._replay.for_segment(m.name, m.step))
