"""The Python API: start, resume, attach to, steer and read runs. The CLI and the widgets use only this.

A run lives in its run directory. One process drives it (its *driver*: the coordinator,
holding the run's lease), in the process that started it (attached mode, what papermill and
scripts that wait for their run use) or in a process of its own (``detach=True``: the run
survives the end of the notebook kernel or terminal that started it). Every other process
reaches it the same way: ``wb.attach(RUN_ID)`` returns the same :class:`Run` API, whose
commands go through the store's control channel (:mod:`workbench.channel`).

Example::

    import workbench as wb
    run = wb.start_run("quick", overrides={"epochs": 3}, detach=True)
    # ... later, in another kernel or process:
    run = wb.attach(run.id)
    run.set_hparam("digits_mlp@digits", "lr", 0.01)   # pinned against the controller
    run.wait()
    run.metrics(name="eval/accuracy")
"""
from __future__ import annotations

import difflib
import json
import os
import platform
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .channel import StoreTail, client_name, send_command
from .checkpoint import check_name
from .errors import RunNotFoundError, WorkbenchError
from .lease import Lease, current_lease
from .limits import check_writable_dir
from .states import ModelSnapshot, ModelState, RunSnapshot, RunState
from .store import RunStore, read_store

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Run", "RunRecord", "start_run", "resume_run", "open_run", "attach", "list_runs", "runs_dir"]


def runs_dir(path: str | Path | None = None) -> Path:
    """``path``, else ``$WORKBENCH_RUNS_DIR``, else ``./runs``."""
    return Path(path or os.environ.get("WORKBENCH_RUNS_DIR") or "runs").expanduser().resolve()


def _new_run_id(preset: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{check_name(preset.replace('_', '-'), 'preset name')[:24]}-{uuid.uuid4().hex[:4]}"


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

    def events(self, kind: str | None = None, model: str | None = None):
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
                num("steps_per_s"), num("eta_s"), row["last_error"], row.get("last_eval") or {})
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
        from ._staging import model_class

        return model_class(self._check_model(instance), self.dir).hyperparameters

    @property
    def model_names(self) -> list[str]:
        return list(self._registry_names())

    def set_hparam(self, instance: str, name: str, value: Any, pin: bool = True) -> int:
        """Change a live hyperparameter; applied at the trainer's next step boundary.

        A value set here is pinned (the controller leaves it alone) until :meth:`release`.
        Returns the command id, found again in the ``hparam`` and ``hparam_applied`` events.
        """
        from ._staging import model_class

        cls = model_class(self._check_model(instance), self.dir)
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
            finally:
                self._lease.release()
                self._store.close()
                self._cluster.close()  # our client always; the cluster only when we started it
                self._done.set()

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
        """Live progress for readers in other processes (steps/s, ETA, last evaluation)."""
        for name, snap in self._coordinator.snapshot().items():
            self._store.set_model(name, registry_name=snap.model, dataset=snap.dataset, total_epochs=snap.total_epochs,
                                  step=snap.step, steps_per_epoch=snap.steps_per_epoch,
                                  steps_per_s=snap.steps_per_s, eta_s=snap.eta_s, last_eval=dict(snap.last_eval))

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


def _environment(plan_dict: dict[str, Any], inventory, placements, cluster) -> dict[str, Any]:
    import dask
    import distributed
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "dask": dask.__version__,
            "distributed": distributed.__version__, "host": platform.node(), "platform": platform.platform(),
            "devices": inventory.as_dict(), "placements": [p.__dict__ for p in placements],
            "scheduler": cluster.client.scheduler.address if cluster else None,
            "workers": {a: s.__dict__ for a, s in cluster.workers.items()} if cluster else {},
            "plan": plan_dict}


def _prepare(preset: str, overrides: dict[str, Any] | None, replay=None, local: bool = True):
    from .plan import make_plan
    from .presets import resolve_preset

    name, resolved = (replay.preset_name, dict(replay.preset)) if replay else resolve_preset(preset, overrides)
    plan = make_plan(name, resolved)
    return (name, resolved, plan, *(_place(plan) if local else (None, None)))


def _place(plan, inventory=None):
    """The devices (this machine's, or an external cluster's ``inventory``) and the
    placement of the plan's trainers on them."""
    from .resources import Request, detect_inventory, plan_placement

    inventory = inventory or detect_inventory()
    requests = [Request(i.instance, i.resources.get("device", "auto"), i.resources.get("gpu_fraction"),
                        i.resources.get("threads")) for i in plan.trainers]
    return inventory, plan_placement(requests, inventory)


def _open_cluster(plan, inventory, placements, scheduler: str | Client | None, security: Any = None):
    from .cluster import connect, start_local_cluster
    from .resources import layout_workers

    if scheduler is not None and scheduler != "":
        cluster = connect(scheduler, security)
        try:  # its workers may not see this machine's files
            from .data.remote import ship_user_files

            ship_user_files(cluster.client, [i.dataset for i in plan.trainers if i.dataset])
        except BaseException:
            cluster.close()
            raise
        return cluster
    specs = layout_workers(placements, inventory)
    workers = plan.preset.get("workers")
    if workers:
        from dataclasses import replace

        specs = [s for s in specs if s.gpu_index is not None] + [
            replace(next(s for s in specs if s.gpu_index is None), name=f"cpu-{i}") for i in range(workers)]
    preload = sorted({f"model={i.model}" for i in plan.trainers} |
                     {f"data={i.dataset['name']}:{i.data_seed}" for i in plan.trainers
                      if i.dataset and not i.dataset.get("path")})
    return start_local_cluster(specs, preload=preload)


def start_run(preset: str = "quick", overrides: dict[str, Any] | None = None, runs_dir_: str | Path | None = None,
              scheduler: str | Client | None = None, security: Any = None, run_id: str | None = None, *,
              detach: bool = False, datasets: dict[str, Any] | None = None,
              replay: str | Path | None = None) -> Run:
    """Validate, plan, start a cluster and begin training.

    ``detach=False`` (attached): the coordinator runs in a thread of this process, which
    must live until the run ends (``run.wait()``); what papermill and scripts use.
    ``detach=True``: a driver process of its own owns the cluster and the run, and outlives
    this process (kernel restart, terminal closed); the returned run is attached to it.

    ``datasets`` passes data held in memory: ``{"name": frame}`` (a pandas DataFrame,
    tabular), ``{"name": (frame, "target_column")}`` or ``{"name": (X, y)}`` (numpy
    arrays); each is saved into the run directory (so resume and replay find it) and named
    in the preset's ``datasets`` like any catalog dataset.

    Trainer and controller classes defined in a notebook cell or a script are shipped to
    the workers by value and kept in the run directory (``code/``) for resume.

    ``scheduler``: None for a local cluster laid out from the plan, or an existing one: an
    address (``tcp://host:8786``), a ``distributed.Client`` (left open at the end) or a
    Dask cluster object (a detached driver gets its address). User data files missing on
    its workers are sent to them.

    ``replay``: a run id or directory to re-run with its recorded live changes (the
    preset is the replayed run's: ``preset`` is ignored, ``overrides`` refused).

    Bad input raises a :class:`~workbench.errors.WorkbenchError` before anything is
    written. Returns the :class:`Run` once training has started.
    """
    from ._staging import code_for_plan, load_code, save_code, stage_datasets
    from .replay import replay_plan

    if replay is not None and (overrides or datasets):
        raise WorkbenchError("a replay runs the replayed run's own preset: leave out overrides")
    schedule = replay_plan(replay, runs_dir_) if replay is not None else None
    if schedule is not None:
        load_code(_replayed_dir(replay, runs_dir_))  # models the replayed run defined in a notebook
        preset = schedule.preset_name
    root = runs_dir(runs_dir_)
    run_id = check_name(run_id, "run id") if run_id else _new_run_id(Path(preset).stem if preset.endswith(".json")
                                                                      else preset)
    run_dir = root / run_id
    if run_dir.exists():
        raise WorkbenchError(f"run directory {run_dir} exists already; choose another run id")
    check_writable_dir(root, "runs directory")  # before the cluster: a bad --runs-dir costs no worker start
    overrides = dict(overrides or {})
    try:
        if datasets:
            overrides.update(stage_datasets(run_dir, datasets))
        # On an external cluster, placement waits for its workers: their GPUs, not this machine's.
        name, resolved, plan, inventory, placements = _prepare(preset, overrides, schedule, local=scheduler is None)
        if detach:  # the user's own files before a driver process and its workers start
            _assess_data(plan, user_files=True)
        code = code_for_plan(plan)
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "logs").mkdir()
        save_code(run_dir, code)
        (run_dir / "preset.json").write_text(json.dumps({"name": name, **resolved}, indent=2))
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if detach:
        from ._driver import spawn

        replayed = str(_replayed_dir(replay, runs_dir_)) if replay is not None else None
        return spawn(run_dir, "start", scheduler=_address(scheduler), replay=replayed)
    return _drive_new(run_dir, plan, inventory, placements, scheduler, security, code, schedule)


def _replayed_dir(replay: str | Path, runs_dir_: str | Path | None) -> Path:
    path = Path(replay)
    return path if path.is_dir() else runs_dir(runs_dir_) / str(replay)


def _address(scheduler: Any) -> str | None:
    """A scheduler address for another process (a ``distributed.Client`` or cluster gives its own)."""
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    return getattr(scheduler, "scheduler_address", None) or scheduler.scheduler.address


def _drive_new(run_dir: Path, plan, inventory, placements, scheduler, security, code: dict[str, bytes],
               schedule=None) -> Run:
    """Start the cluster and the coordinator of a run whose directory is staged."""
    from .coordinator import Coordinator

    try:
        quality = _assess_data(plan, user_files=True)  # the user's own files before any worker starts
        # Workers start (seconds: processes, torch) while this process checks the built-in data.
        with ThreadPoolExecutor(max_workers=1) as pool:
            starting = pool.submit(_open_cluster, plan, inventory, placements, scheduler, security)
            try:
                quality += _assess_data(plan, user_files=False)
            except BaseException:
                _close_when_started(starting)
                raise
            cluster = starting.result()
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    store = lease = None
    try:
        if cluster.inventory is not None:  # an external cluster's own workers and GPUs
            inventory, placements = _place(plan, cluster.inventory)
        (run_dir / "environment.json").write_text(json.dumps(
            _environment(plan.as_dict(), inventory, placements, cluster), indent=2, default=str))
        store = RunStore(run_dir / "store.sqlite")
        lease = Lease(run_dir / "store.sqlite", run_dir.name, "run").acquire()
        store.set_run(state=RunState.RUNNING.value, preset=plan.preset_name, started=time.time(),
                      run_id=run_dir.name, **_driver())
        for payload in quality:
            store.add_event(None, "data_quality", payload)
        coordinator = Coordinator(run_dir.name, run_dir, plan, {p.instance: p for p in placements}, cluster, store,
                                  code=code, replay=schedule)
    except BaseException:
        if lease is not None:
            lease.release()
        if store is not None:
            store.close()
        cluster.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    from . import _live

    return _live.add(DrivenRun(run_dir, coordinator, cluster, store, lease)._start())


def _close_when_started(starting) -> None:
    try:
        cluster = starting.result()
    except BaseException:  # the cluster failed too: the data error is the one to report
        return
    cluster.close()


def _assess_data(plan, user_files: bool) -> list[dict[str, Any]]:
    """Assess every tabular dataset (user files, or built-in ones) once; errors stop the run.

    Returns the ``data_quality`` event payloads (findings and the fitted preprocessing).
    """
    from .data import assess, load_dataset, prepare, user_dataset
    from .errors import DataError

    seen, payloads = set(), []
    for inst in plan.trainers:
        ds = inst.dataset
        if not ds or ds["name"] in seen or bool(ds.get("path")) != user_files:
            continue
        seen.add(ds["name"])
        raw = user_dataset(ds["name"], ds["path"], ds.get("target")) if ds.get("path") else load_dataset(ds["name"], 0)
        if raw.frame is None:
            continue
        prepared, pre = prepare(raw, plan.preset.get("seed", 0))
        report = assess(prepared)
        payloads.append({"dataset": ds["name"], "score": report.score, "findings": [list(f) for f in report.findings],
                         "preprocessing": pre.to_dict() if pre else None})
        if report.errors:
            raise DataError(f"dataset '{ds['name']}' fails quality checks: " + "; ".join(report.errors))
    return payloads


def _run_dir(run_id: str, runs_dir_: str | Path | None) -> Path:
    check_name(run_id, "run id")
    run_dir = runs_dir(runs_dir_) / run_id
    if not (run_dir / "store.sqlite").exists():
        raise RunNotFoundError(f"no run '{run_id}' in {run_dir.parent} (list them with `workbench status`)")
    return run_dir


def open_run(run_id: str, runs_dir_: str | Path | None = None) -> RunRecord:
    """A run by id: the live :class:`Run` if this process drives it, else a read-only record."""
    from . import _live

    live = _live.get(run_id)
    if live is not None:
        return live
    return RunRecord(_run_dir(run_id, runs_dir_))


def attach(run_id: str, runs_dir_: str | Path | None = None) -> Run:
    """The steerable :class:`Run` of any run: driven here, by another process, or ended.

    Commands reach a run driven by another process through its store (the driver takes
    them within about 50 ms); a run that nothing drives any more refuses commands with a
    message saying how to resume it.
    """
    from . import _live

    live = _live.get(run_id)
    if live is not None and not live.done:
        return live
    return AttachedRun(_run_dir(run_id, runs_dir_))


def resume_run(run_id: str, runs_dir_: str | Path | None = None, overrides: dict[str, Any] | None = None,
               scheduler: str | Client | None = None, security: Any = None, *, detach: bool = False) -> Run:
    """Continue an interrupted or stopped run from its checkpoints, optionally with changes.

    ``overrides`` are preset overrides like ``{"models.digits_mlp.hyperparameters.lr": 0.01}``;
    changes to live hyperparameters are recorded as ``hparam`` events. A run another live
    process drives is refused (one driver per run); ``detach`` as in :func:`start_run`.
    """
    from ._staging import load_code
    from .coordinator import Coordinator
    from .lease import LeaseHeldError
    from .plan import make_plan
    from .presets import validate_preset

    record = open_run(run_id, runs_dir_)
    if isinstance(record, DrivenRun):
        if not record.done:
            raise WorkbenchError(f"run {run_id} is still running in this process; stop it first")
        record = RunRecord(record.dir)
    store_path = record.dir / "store.sqlite"
    held = current_lease(store_path)
    if held is not None and held.alive():
        raise LeaseHeldError(f"run {run_id} is already driven by {held.describe()}; steer it with "
                             f"`workbench set|pause|continue|stop {run_id}`, or wait for it to end")
    ended = record.state  # reads the store: a corrupt one stops us here, untouched
    if ended in (RunState.FINISHED, RunState.FINISHED_WITH_FAILURES):
        how = " with failures" if ended == RunState.FINISHED_WITH_FAILURES else ""
        raise WorkbenchError(f"run {record.id} has finished{how}; nothing to resume (replay it with "
                             f"`workbench run --replay {record.id}`, or start a new one with `workbench run`)")
    check_writable_dir(record.dir, "run folder")  # resume writes its store and checkpoints
    code = load_code(record.dir)
    stored = record.preset
    name = stored.pop("name", "resumed")
    if not overrides and (problems := validate_preset(name, stored)):
        from .errors import PresetError

        raise PresetError(problems, source=f"{record.dir / 'preset.json'}")
    if overrides:
        from .presets import apply_overrides

        stored, problems = apply_overrides(stored, overrides)
        problems += validate_preset(name, stored)
        if problems:
            from .errors import PresetError

            raise PresetError(problems, source="--set")
    plan = make_plan(name, stored)
    hp_changes: dict[tuple[str, str], Any] = {}
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "models" and parts[2] == "hyperparameters":
            for inst in plan.trainers:
                if inst.model == parts[1]:
                    hp_changes[(inst.instance, parts[3])] = value
    if detach:
        from ._driver import spawn

        return spawn(record.dir, "resume", scheduler=_address(scheduler), overrides=overrides)
    lease = Lease(store_path, record.id, "resume").acquire()  # before the cluster: two resumes, one wins
    try:
        if scheduler:  # an external cluster: place on its workers, GPUs included
            cluster = _open_cluster(plan, None, None, scheduler, security)
            try:
                inventory, placements = _place(plan, cluster.inventory)
            except BaseException:
                cluster.close()
                raise
        else:
            inventory, placements = _place(plan)
            cluster = _open_cluster(plan, inventory, placements, scheduler, security)
    except BaseException:
        lease.release()
        raise
    store = None
    try:
        if overrides:
            (record.dir / "preset.json").write_text(json.dumps({"name": name, **stored}, indent=2))
        store = RunStore(store_path)
        store.set_run(state=RunState.RUNNING.value, resumed=time.time(), **_driver())
        coordinator = Coordinator(record.id, record.dir, plan, {p.instance: p for p in placements}, cluster, store,
                                  resume={"overrides": hp_changes}, code=code)
    except BaseException:
        lease.release()
        if store is not None:
            store.close()
        cluster.close()
        raise
    from . import _live

    return _live.add(DrivenRun(record.dir, coordinator, cluster, store, lease)._start())


def list_runs(runs_dir_: str | Path | None = None):
    """DataFrame of the runs in a runs directory: id, state, preset, models, started.

    ``started`` is an aware datetime in this machine's zone (run ids use local time too).
    """
    import pandas as pd

    from .listing import local_time

    rows = []
    root = runs_dir(runs_dir_)
    for path in sorted(root.glob("*/store.sqlite")) if root.exists() else []:
        try:
            record = RunRecord(path.parent)
            info = record._reader.run_info()
            models = record.models()
        except Exception:  # a half-written run directory: listed as unreadable
            rows.append({"run": path.parent.name, "state": "unreadable"})
            continue
        rows.append({"run": record.id, "state": _stored_state(info, path).value, "preset": info.get("preset"),
                     "models": len(models), "finished_models": int((models["state"] == "finished").sum()),
                     "started": local_time(info.get("started"))})
    return pd.DataFrame(rows, columns=["run", "state", "preset", "models", "finished_models", "started"])
