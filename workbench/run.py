"""The Python API: start, resume, steer and read runs. The CLI and the widgets use only this.

Example::

    import workbench as wb
    run = wb.start_run("quick", overrides={"epochs": 3})
    run.set_hparam("digits_mlp@digits", "lr", 0.01)   # pinned against the controller
    run.wait()
    run.metrics(name="eval/accuracy")
"""
from __future__ import annotations

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

from .checkpoint import check_name
from .errors import RunNotFoundError, WorkbenchError
from .states import ModelSnapshot, ModelState, RunSnapshot, RunState
from .store import RunStore, read_store

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Run", "RunRecord", "start_run", "resume_run", "open_run", "list_runs", "runs_dir"]


def runs_dir(path: str | Path | None = None) -> Path:
    """``path``, else ``$WORKBENCH_RUNS_DIR``, else ``./runs``."""
    return Path(path or os.environ.get("WORKBENCH_RUNS_DIR") or "runs").expanduser().resolve()


def _new_run_id(preset: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{check_name(preset.replace('_', '-'), 'preset name')[:24]}-{uuid.uuid4().hex[:4]}"


def _driver() -> dict[str, Any]:
    """Which process drives a run, so others can tell a running run from an interrupted one."""
    return {"host": platform.node(), "pid": os.getpid()}


def _stored_state(info: dict[str, Any]) -> RunState:
    state = RunState(info.get("state", "running"))
    if state == RunState.RUNNING and info.get("host") == platform.node() and info.get("pid"):
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return RunState.INTERRUPTED
        except PermissionError:  # alive, another user's
            pass
    return state


class RunRecord:
    """Read-only view of a run directory (finished, or written by another process)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.id = self.dir.name
        self._reader = read_store(self.dir / "store.sqlite")

    @property
    def preset(self) -> dict[str, Any]:
        return json.loads((self.dir / "preset.json").read_text())

    def metrics(self, model: str | None = None, name: str | None = None):
        """Tidy DataFrame: model, epoch, step, name, value, wall_time."""
        return self._reader.metrics(model, name)

    def events(self, kind: str | None = None, model: str | None = None):
        return self._reader.events(kind, model)

    def models(self):
        return self._reader.models()

    @property
    def state(self) -> RunState:
        return _stored_state(self._reader.run_info())

    def snapshot(self) -> RunSnapshot:
        frame = self.models()
        models = {}
        for row in frame.itertuples():
            models[row.model] = ModelSnapshot(
                row.model, row.registry_name, row.dataset, ModelState(row.state or "pending"), int(row.epoch or 0),
                int(row.total_epochs or 0), 0, 0, row.hparams or {}, frozenset(row.pinned or ()), None, None,
                row.last_error, {})
        return RunSnapshot(self.id, self.state, models, time.time())

    def report(self, out_dir: str | Path | None = None) -> dict[str, Path]:
        from .report import write_report

        return write_report(self.dir, out_dir)

    def __repr__(self) -> str:
        return f"<RunRecord {self.id} {self.state.value}>"


class Run(RunRecord):
    """A run driven by this process: the record plus control and subscriptions."""

    def __init__(self, run_dir: Path, coordinator, cluster, store: RunStore):
        super().__init__(run_dir)
        self._coordinator = coordinator
        self._cluster = cluster
        self._store = store
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def _start(self) -> "Run":
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
                self._store.flush()
            finally:
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

    # -- control (any thread) ------------------------------------------------------------------
    def _check_model(self, instance: str) -> None:
        if instance not in self._coordinator.models:
            import difflib

            close = difflib.get_close_matches(instance, list(self._coordinator.models), n=1)
            hint = f", did you mean '{close[0]}'?" if close else f"; models: {', '.join(self._coordinator.models)}"
            raise WorkbenchError(f"run {self.id} has no model '{instance}'{hint}")

    def set_hparam(self, instance: str, name: str, value: Any, pin: bool = True) -> int:
        """Change a live hyperparameter; applied at the trainer's next step boundary.

        A value set here is pinned (the controller leaves it alone) until :meth:`release`.
        Returns the command id, found again in the ``hparam`` and ``hparam_applied`` events.
        """
        from .coordinator import Command
        from .registry import get_model

        self._check_model(instance)
        cls = get_model(self._coordinator.models[instance].spec.model)
        spec = cls.hyperparameters.get(name)
        if spec is None or not spec.live:
            live = ", ".join(cls.live_hparams())
            raise WorkbenchError(f"'{name}' is not a live hyperparameter of {cls.name}; live ones: {live}")
        value, problem = spec.check(name, value)
        if problem:
            raise WorkbenchError(problem)
        return self._coordinator.submit(Command("set", instance, name, value, pin=pin))

    def release(self, instance: str, name: str) -> None:
        """Hand a pinned hyperparameter back to the adaptive controller."""
        from .coordinator import Command

        self._check_model(instance)
        self._coordinator.submit(Command("release", instance, name))

    def pause(self, instance: str | None = None) -> None:
        from .coordinator import Command

        if instance:
            self._check_model(instance)
        self._coordinator.submit(Command("pause", instance))

    def resume_model(self, instance: str | None = None) -> None:
        from .coordinator import Command

        if instance:
            self._check_model(instance)
        self._coordinator.submit(Command("resume", instance))

    def stop(self) -> None:
        """Stop every model at its next step boundary; resume later from the checkpoints."""
        from .coordinator import Command

        self._coordinator.submit(Command("stop"))

    def subscribe(self, callback) -> Any:
        """Call ``callback(message)`` for every event, metric batch and finished epoch.

        Messages are dicts with ``type`` in {"event", "metrics", "epoch"}. Called from the
        engine's threads: keep it quick. Returns a function that unsubscribes.
        """
        self._coordinator.subscribers.append(callback)
        return lambda: self._coordinator.subscribers.remove(callback)

    def snapshot(self) -> RunSnapshot:
        return RunSnapshot(self.id, self.state, self._coordinator.snapshot(), time.time())

    @property
    def model_names(self) -> list[str]:
        return list(self._coordinator.models)

    def hparam_schema(self, instance: str) -> dict[str, Any]:
        from .registry import get_model

        self._check_model(instance)
        return get_model(self._coordinator.models[instance].spec.model).hyperparameters

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.state.value}>"


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


def _prepare(preset: str, overrides: dict[str, Any] | None):
    from .plan import make_plan
    from .presets import resolve_preset

    name, resolved = resolve_preset(preset, overrides)
    plan = make_plan(name, resolved)
    return (name, resolved, plan, *_place(plan))


def _place(plan):
    """The machine's devices and the placement of the plan's trainers on them."""
    from .resources import Request, detect_inventory, plan_placement

    inventory = detect_inventory()
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
              scheduler: str | Client | None = None, security: Any = None, run_id: str | None = None) -> Run:
    """Validate, plan, start a cluster and begin training in a background thread.

    ``scheduler``: None for a local cluster laid out from the plan, or an existing one: an
    address (``tcp://host:8786``), a ``distributed.Client`` (left open at the end) or a
    Dask cluster object. User data files missing on its workers are sent to them.

    Bad input raises a :class:`~workbench.errors.WorkbenchError` before anything is
    written. Returns the :class:`Run` at once; ``run.wait()`` blocks until it ends.
    """
    from .coordinator import Coordinator

    name, resolved, plan, inventory, placements = _prepare(preset, overrides)
    root = runs_dir(runs_dir_)
    run_id = check_name(run_id, "run id") if run_id else _new_run_id(name)
    run_dir = root / run_id
    if run_dir.exists():
        raise WorkbenchError(f"run directory {run_dir} exists already; choose another run id")
    # Workers start (seconds: processes, torch) while this process checks the data.
    with ThreadPoolExecutor(max_workers=1) as pool:
        starting = pool.submit(_open_cluster, plan, inventory, placements, scheduler, security)
        try:
            quality = _assess_data(plan)
        except BaseException:
            _close_when_started(starting)
            raise
        cluster = starting.result()
    try:
        run_dir.mkdir(parents=True)
        (run_dir / "checkpoints").mkdir()
        (run_dir / "logs").mkdir()
        (run_dir / "preset.json").write_text(json.dumps({"name": name, **resolved}, indent=2))
        (run_dir / "environment.json").write_text(json.dumps(
            _environment(plan.as_dict(), inventory, placements, cluster), indent=2, default=str))
        store = RunStore(run_dir / "store.sqlite")
        store.set_run(state=RunState.RUNNING.value, preset=name, started=time.time(), run_id=run_id,
                      **_driver())
        for payload in quality:
            store.add_event(None, "data_quality", payload)
        coordinator = Coordinator(run_id, run_dir, plan, {p.instance: p for p in placements}, cluster, store)
    except BaseException:
        cluster.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    from . import _live

    return _live.add(Run(run_dir, coordinator, cluster, store)._start())


def _close_when_started(starting) -> None:
    try:
        cluster = starting.result()
    except BaseException:  # the cluster failed too: the data error is the one to report
        return
    cluster.close()


def _assess_data(plan) -> list[dict[str, Any]]:
    """Assess every tabular dataset once; blocking problems stop the run before training.

    Returns the ``data_quality`` event payloads (findings and the fitted preprocessing).
    """
    from .data import assess, load_dataset, prepare, user_dataset
    from .errors import DataError

    seen, payloads = set(), []
    for inst in plan.trainers:
        ds = inst.dataset
        if not ds or ds["name"] in seen:
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


def open_run(run_id: str, runs_dir_: str | Path | None = None) -> RunRecord:
    """A finished (or elsewhere running) run by id, read-only."""
    from . import _live

    live = _live.get(run_id)
    if live is not None:
        return live
    check_name(run_id, "run id")
    run_dir = runs_dir(runs_dir_) / run_id
    if not (run_dir / "store.sqlite").exists():
        raise RunNotFoundError(f"no run '{run_id}' in {run_dir.parent} (list them with `workbench status`)")
    return RunRecord(run_dir)


def resume_run(run_id: str, runs_dir_: str | Path | None = None, overrides: dict[str, Any] | None = None,
               scheduler: str | Client | None = None, security: Any = None) -> Run:
    """Continue an interrupted run from its checkpoints, optionally with changed hyperparameters.

    ``overrides`` are preset overrides like ``{"models.digits_mlp.hyperparameters.lr": 0.01}``;
    changes to live hyperparameters are recorded as ``hparam`` events.
    """
    from .coordinator import Coordinator
    from .plan import make_plan
    from .presets import validate_preset

    record = open_run(run_id, runs_dir_)
    if isinstance(record, Run):
        if not record.done:
            raise WorkbenchError(f"run {run_id} is still running in this process; stop it first")
        record = RunRecord(record.dir)
    stored = record.preset
    name = stored.pop("name", "resumed")
    hp_changes: dict[tuple[str, str], Any] = {}
    if overrides:
        from .presets import apply_overrides

        stored, problems = apply_overrides(stored, overrides)
        problems += validate_preset(name, stored)
        if problems:
            from .errors import PresetError

            raise PresetError(problems, source="--set")
    plan = make_plan(name, stored)
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "models" and parts[2] == "hyperparameters":
            for inst in plan.trainers:
                if inst.model == parts[1]:
                    hp_changes[(inst.instance, parts[3])] = value
    inventory, placements = _place(plan)
    cluster = _open_cluster(plan, inventory, placements, scheduler, security)
    if overrides:
        (record.dir / "preset.json").write_text(json.dumps({"name": name, **stored}, indent=2))
    store = RunStore(record.dir / "store.sqlite")
    store.set_run(state=RunState.RUNNING.value, resumed=time.time(), **_driver())
    coordinator = Coordinator(record.id, record.dir, plan, {p.instance: p for p in placements}, cluster, store,
                              resume={"overrides": hp_changes})
    from . import _live

    return _live.add(Run(record.dir, coordinator, cluster, store)._start())


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
        rows.append({"run": record.id, "state": _stored_state(info).value, "preset": info.get("preset"),
                     "models": len(models), "finished_models": int((models["state"] == "finished").sum()),
                     "started": local_time(info.get("started"))})
    return pd.DataFrame(rows, columns=["run", "state", "preset", "models", "finished_models", "started"])
