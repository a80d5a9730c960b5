"""Handles on a run: read its record, steer it, follow it, whoever drives it.

:class:`RunRecord` reads a run directory. :class:`Run` adds the control API
(set/release/pause/resume/stop, subscribe, wait), with two transports: :class:`DrivenRun`
when this process drives the run (the coordinator is in a thread here) and
:class:`AttachedRun` when another process does (commands through the store's
``commands`` table, messages by following the store). :mod:`workbench.run` makes them.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .channel import StoreTail, client_name, send_command
from .errors import WorkbenchError
from .lease import Lease, current_lease
from .states import ModelSnapshot, ModelState, RunSnapshot, RunState
from .store import RunStore, read_store

__all__ = ["RunRecord", "Run", "DrivenRun", "AttachedRun"]

log = logging.getLogger(__name__)


def _driver() -> dict[str, Any]:
    """Which process drives a run (also kept in the ``run`` table for runs made before leases)."""
    return {"host": platform.node(), "pid": os.getpid()}


def _stored_state(info: dict[str, Any], store_path: Path) -> RunState:
    """The recorded state, except that a running run whose driver is gone is ``interrupted``."""
    state = RunState(info.get("state", "running"))
    if state != RunState.RUNNING:
        return state
    lease = current_lease(store_path)
    if lease is not None:
        return state if lease.alive() else RunState.INTERRUPTED
    if info.get("host") == platform.node() and info.get("pid"):  # a run without lease (older) or just ended
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return RunState.INTERRUPTED
        except PermissionError:  # alive, another user's
            pass
    return state


def _int(value: Any) -> int:
    """An INTEGER column's value; a model that never started has NULL there (NaN in pandas)."""
    return 0 if value is None or value != value else int(value)


class RunRecord:
    """Read-only view of a run directory (finished, or written by another process)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.id = self.dir.name
        self._reader = read_store(self.dir / "store.sqlite")

    @property
    def preset(self) -> dict[str, Any]:
        path = self.dir / "preset.json"
        try:
            preset = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:  # missing, not UTF-8, not JSON
            raise WorkbenchError(f"run {self.id}: {path} cannot be read ({getattr(exc, 'strerror', None) or exc})"
                                 "; it is the run's resolved preset, so the run cannot continue") from None
        if not isinstance(preset, dict):
            raise WorkbenchError(f"run {self.id}: {path} must hold a JSON object; it cannot continue")
        return preset

    def metrics(self, model: str | None = None, name: str | None = None):
        """Tidy DataFrame: model, epoch, step, name, value, wall_time."""
        return self._reader.metrics(model, name)

    def metric_names(self) -> list[str]:
        """The names of the metrics recorded so far, sorted."""
        return self._reader.metric_names()

    def epoch_series(self, name: str, model: str | None = None):
        """``name``'s last value in each model's epoch (what charts plot), columns as :meth:`metrics`."""
        return self._reader.epoch_series(name, model)

    def events(self, kind: str | Sequence[str] | None = None, model: str | None = None):
        """Events in write order; ``kind``: one kind, a ``%`` pattern, or several kinds."""
        return self._reader.events(kind, model)

    def models(self):
        return self._reader.models()

    @property
    def state(self) -> RunState:
        return _stored_state(self._reader.run_info(), self.dir / "store.sqlite")

    def snapshot(self) -> RunSnapshot:
        frame = self.models()
        models = {}
        for row in frame.to_dict("records"):
            def num(key, cast=float):
                value = row.get(key)
                return cast(value) if value is not None and value == value else None

            models[row["model"]] = ModelSnapshot(
                row["model"], row["registry_name"], row["dataset"], ModelState(row["state"] or "pending"),
                _int(row["epoch"]), _int(row["total_epochs"]), num("step", int) or 0,
                num("steps_per_epoch", int) or 0, row["hparams"] or {}, frozenset(row["pinned"] or ()),
                num("steps_per_s"), num("eta_s"), row["last_error"], row.get("last_eval") or {},
                row.get("waiting") if isinstance(row.get("waiting"), str) else None)
        return RunSnapshot(self.id, self.state, models, time.time())

    def report(self, out_dir: str | Path | None = None) -> dict[str, Path]:
        from .report import write_report

        return write_report(self.dir, out_dir)

    def failures(self) -> list[str]:
        """One line per failed model: its reason and where its log with the traceback is."""
        frame = self.models()
        lines = []
        for row in frame[frame["state"] == ModelState.FAILED.value].itertuples():
            reason = (row.last_error or "no reason recorded").strip().splitlines()[0]
            log = self.dir / "logs" / f"{row.model}.log"
            lines.append(f"{row.model} failed: {reason}" + (f" (log: {log})" if log.exists() else ""))
        return lines

    def __repr__(self) -> str:
        return f"<RunRecord {self.id} {self.state.value}>"


class Run(RunRecord):
    """A run you can steer, whether this process drives it or another one does.

    :func:`start_run` (attached) returns one driven by this process; :func:`attach` and
    ``start_run(detach=True)`` return one driven elsewhere. Both have the same methods.
    Every command is recorded in the store with its source and client, and acknowledged by
    events carrying its id (``hparam_applied`` gives the step the trainer applied it at).
    """

    client_kind = "api"

    # -- control (any thread) --------------------------------------------------------------
    def _registry_names(self) -> dict[str, str]:
        """instance -> registry name of every model of the run."""
        frame = self.models()
        return {m: r for m, r in zip(frame["model"], frame["registry_name"]) if r}

    def _check_model(self, instance: str) -> str:
        names = self._registry_names()
        if instance not in names:
            close = difflib.get_close_matches(instance, list(names), n=1)
            hint = f", did you mean '{close[0]}'?" if close else f"; models: {', '.join(names) or 'none yet'}"
            raise WorkbenchError(f"run {self.id} has no model '{instance}'{hint}")
        return names[instance]

    def hparam_schema(self, instance: str) -> dict[str, Any]:
        from ._staging import describe_model

        return describe_model(self._check_model(instance), self.dir).hyperparameters

    @property
    def model_names(self) -> list[str]:
        return list(self._registry_names())

    def set_hparam(self, instance: str, name: str, value: Any, pin: bool = True) -> int:
        """Change a live hyperparameter; applied at the trainer's next step boundary.

        A value set here is pinned (the controller leaves it alone) until :meth:`release`.
        Returns the command id, found again in the ``hparam`` and ``hparam_applied`` events.
        """
        from ._staging import describe_model

        cls = describe_model(self._check_model(instance), self.dir)
        spec = cls.hyperparameters.get(name)
        if spec is None or not spec.live:
            live = ", ".join(cls.live_hparams())
            raise WorkbenchError(f"'{name}' is not a live hyperparameter of {cls.name}; live ones: {live}")
        value, problem = spec.check(name, value)
        if problem:
            raise WorkbenchError(problem)
        return self._send("set", instance, name, value, pin)

    def release(self, instance: str, name: str) -> int:
        """Hand a pinned hyperparameter back to the adaptive controller."""
        self._check_model(instance)
        return self._send("release", instance, name)

    def pause(self, instance: str | None = None) -> int:
        if instance:
            self._check_model(instance)
        return self._send("pause", instance)

    def resume_model(self, instance: str | None = None) -> int:
        """Continue a paused model (every paused model when ``instance`` is None)."""
        if instance:
            self._check_model(instance)
        return self._send("resume", instance)

    def stop(self) -> int:
        """Stop every model at its next step boundary; resume later from the checkpoints."""
        return self._send("stop")

    def _send(self, op: str, instance: str | None = None, name: str | None = None, value: Any = None,
              pin: bool = True) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.state.value}>"


class DrivenRun(Run):
    """A run whose coordinator runs in a thread of this process (attached mode)."""

    def __init__(self, run_dir: Path, coordinator, cluster, store: RunStore, lease: Lease):
        super().__init__(run_dir)
        self._coordinator = coordinator
        self._cluster = cluster
        self._store = store
        self._lease = lease
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._client = client_name(self.client_kind)
        self._published: dict[str, dict[str, Any]] = {}  # model -> the live row last written
        from .channel import Inbox

        self._inbox = Inbox(run_dir / "store.sqlite", self._deliver, tick=self._publish)

    # -- lifecycle ------------------------------------------------------------------------
    def _start(self) -> "DrivenRun":
        self._inbox.start()
        self._thread = threading.Thread(target=self._main, name=f"workbench-run-{self.id}", daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            self._coordinator.run()
        except BaseException as exc:  # surfaced by wait()
            self._error = exc
            self._store.add_event(None, "error", {"error": f"{type(exc).__name__}: {exc}"})
            self._store.set_run(state=RunState.FAILED.value)
        finally:
            try:
                self._inbox.stop()
                self._publish()
                self._store.flush()
            except RuntimeError:  # the store cannot be written (disk full): the coordinator said why
                log.debug("run %s: %s", self.id, self._store.failure)
            finally:
                self._lease.release()
                self._store.close()
                self._cluster.close()  # our client always; the cluster only when we started it
                self._done.set()

    def failures(self) -> list[str]:
        """As :meth:`RunRecord.failures`, led by why the run failed as a whole (a write)."""
        fatal = self._coordinator.fatal
        return ([f"run failed: {fatal}"] if fatal else []) + super().failures()

    def wait(self, timeout: float | None = None) -> RunState:
        """Block until the run ends; returns its state (raises what crashed the engine)."""
        if not self._done.wait(timeout):
            return self.state
        if self._error is not None:
            raise self._error
        return self._coordinator.state

    @property
    def state(self) -> RunState:
        return self._coordinator.state

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def dashboard_link(self) -> str | None:
        return self._cluster.dashboard_link

    # -- the control channel --------------------------------------------------------------
    def _registry_names(self) -> dict[str, str]:
        return {name: m.spec.model for name, m in self._coordinator.models.items()}

    def _send(self, op: str, instance: str | None = None, name: str | None = None, value: Any = None,
              pin: bool = True) -> int:
        command_id = send_command(self.dir / "store.sqlite", op, instance, name, value, pin, self._client,
                                  status="accepted")
        self._submit(op, instance, name, value, pin, command_id, self._client)
        return command_id

    def _submit(self, op, instance, name, value, pin, command_id, client) -> None:
        from .coordinator import Command

        self._coordinator.submit(Command(op, instance, name, value, pin=pin, id=command_id, client=client))

    def _deliver(self, record) -> None:
        """A command another process put into the store (see :mod:`workbench.channel`)."""
        if record.model is not None and record.model not in self._coordinator.models:
            raise WorkbenchError(f"no model '{record.model}'")
        self._submit(record.op, record.model, record.name, record.value, record.pin, record.id, record.client)

    def _publish(self) -> None:
        """Live progress for readers in other processes (steps/s, ETA, last evaluation, what it waits for).

        Only the rows that changed since the last call are written: with 64 models of which a
        few finished a segment this second, rewriting all 64 rows every second was most of the
        store's work."""
        for name, snap in self._coordinator.snapshot().items():
            row = dict(registry_name=snap.model, dataset=snap.dataset, total_epochs=snap.total_epochs,
                       step=snap.step, steps_per_epoch=snap.steps_per_epoch, steps_per_s=snap.steps_per_s,
                       eta_s=snap.eta_s, last_eval=dict(snap.last_eval), waiting=snap.waiting)
            if self._published.get(name) != row:
                self._published[name] = row
                self._store.set_model(name, **row)

    def subscribe(self, callback) -> Any:
        """Call ``callback(message)`` for every event, metric batch and finished epoch.

        Messages are dicts with ``type`` in {"event", "metrics", "epoch"}. Called from the
        engine's threads: keep it quick. Returns a function that unsubscribes.
        """
        self._coordinator.subscribers.append(callback)
        return lambda: self._coordinator.subscribers.remove(callback)

    def snapshot(self) -> RunSnapshot:
        return RunSnapshot(self.id, self.state, self._coordinator.snapshot(), time.time())

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.state.value} (driven here)>"


class AttachedRun(Run):
    """A run driven by another process (a detached driver, a terminal, another kernel).

    Commands go into the store's ``commands`` table, which the driver polls; messages come
    from following the store. Works from any process that can open the run directory.
    """

    client_kind = "attach"

    def __init__(self, run_dir: Path, poll: float = 0.5):
        super().__init__(run_dir)
        self._poll = poll
        self._client = client_name(self.client_kind)
        self._tails: list[StoreTail] = []

    def _send(self, op: str, instance: str | None = None, name: str | None = None, value: Any = None,
              pin: bool = True) -> int:
        state = self.state
        if state.is_finished():
            hint = f"; continue it with `workbench resume {self.id}`" if state != RunState.FINISHED else ""
            raise WorkbenchError(f"run {self.id} is {state.value}: nothing drives it{hint}")
        return send_command(self.dir / "store.sqlite", op, instance, name, value, pin, self._client)

    def wait(self, timeout: float | None = None) -> RunState:
        """Block until the run ends (or ``timeout`` seconds); returns its state."""
        deadline = None if timeout is None else time.time() + timeout
        while True:
            state = self.state
            if state.is_finished() or (deadline is not None and time.time() >= deadline):
                return state
            time.sleep(self._poll if deadline is None else max(0.0, min(self._poll, deadline - time.time())))

    @property
    def done(self) -> bool:
        return self.state.is_finished()

    @property
    def dashboard_link(self) -> str | None:
        return None  # the driver's cluster listens on its own host's loopback

    def subscribe(self, callback) -> Any:
        """Like :meth:`DrivenRun.subscribe`, by following the store (about twice a second)."""
        tail = StoreTail(self.dir / "store.sqlite", callback, interval=self._poll)
        self._tails.append(tail)

        def unsubscribe() -> None:
            tail.stop()
            if tail in self._tails:
                self._tails.remove(tail)

        return unsubscribe

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.state.value} (attached)>"
