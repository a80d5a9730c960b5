"""The Python API: start, resume, attach to, steer and read runs. The CLI and the widgets use only this.

A run lives in its run directory. One process drives it (its *driver*: the coordinator,
holding the run's lease), in the process that started it (attached mode, what papermill and
scripts that wait for their run use) or in a process of its own (``detach=True``: the run
survives the end of the notebook kernel or terminal that started it). Every other process
reaches it the same way: ``wb.attach(RUN_ID)`` returns the same :class:`~workbench.handles.Run` API, whose
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

import json
import os
import platform
import shutil
import time
import uuid
from pathlib import Path
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .checkpoint import check_name
from .errors import RunNotFoundError, WorkbenchError
from .handles import AttachedRun, DrivenRun, Run, RunRecord, _driver, _stored_state
from .lease import Lease, current_lease
from .limits import check_writable_dir
from .states import RunState
from .store import RunStore

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Run", "RunRecord", "start_run", "resume_run", "open_run", "attach", "list_runs", "runs_dir"]


def runs_dir(path: str | Path | None = None) -> Path:
    """``path``, else ``$WORKBENCH_RUNS_DIR``, else ``./runs``."""
    return Path(path or os.environ.get("WORKBENCH_RUNS_DIR") or "runs").expanduser().resolve()


def _new_run_id(preset: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{check_name(preset.replace('_', '-'), 'preset name')[:24]}-{uuid.uuid4().hex[:4]}"


def _environment(plan_dict: dict[str, Any], inventory, placements, cluster) -> dict[str, Any]:
    from importlib.metadata import version

    import dask
    import distributed

    # torch's version as installed, not imported: the driver plans and checkpoints without torch
    return {"python": platform.python_version(), "torch": version("torch"), "dask": dask.__version__,
            "distributed": distributed.__version__, "host": platform.node(), "platform": platform.platform(),
            "devices": inventory.as_dict(), "placements": [p.__dict__ for p in placements],
            "scheduler": cluster.client.scheduler.address if cluster else None,
            "workers": {a: s.__dict__ for a, s in cluster.workers.items()} if cluster else {},
            "plan": plan_dict}


def _prepare(preset: str, overrides: dict[str, Any] | None, replay=None, local: bool = True, warm: bool = False):
    """Resolve and plan the preset; ``warm``: start the local cluster it will most likely
    need first, so its workers import torch while this process plans."""
    from .plan import make_plan
    from .presets import resolve_preset

    name, resolved = (replay.preset_name, dict(replay.preset)) if replay else resolve_preset(preset, overrides)
    if warm:
        _warm_up(resolved)
    plan = make_plan(name, resolved)
    return (name, resolved, plan, *(_place(plan) if local else (None, None)))


def _warm_up(preset: dict[str, Any]) -> None:
    """Start the local cluster of a preset whose worker layout is plain to see (see
    :func:`workbench.cluster.warm_up`): CPU only, built-in trainers at their default threads,
    at least as many of them as workers, every name known. Anything else (a GPU, a plugin
    model, a controller, resources set per model) leaves the start to the plan, as before."""
    from .cluster import warm_up
    from .data import list_datasets
    from .registry import _BUILTIN
    from .resources import Placement, _nvidia_present, detect_inventory

    models = preset.get("models", {})
    targets = list(preset.get("target_models", []))
    trainers = [m for m in targets if _BUILTIN.get(m) not in (None, "workbench.models.controller")]
    names = list(preset.get("datasets", []))
    if (_nvidia_present() or not trainers or len(trainers) != len(targets) or preset.get("data")
            or any(models.get(m, {}).get("resources") or models.get(m, {}).get("datasets") for m in trainers)
            or not set(names) <= set(list_datasets())):
        return
    inventory = detect_inventory()
    at_least = sum(int(models.get(m, {}).get("population", 1)) for m in trainers)  # each has >= 1 dataset
    if at_least < inventory.cpus and not preset.get("workers"):
        return  # fewer trainers than cores: the layout depends on which datasets each accepts
    guess = [Placement(f"guess-{i}", "cpu", 1, None, None) for i in range(max(at_least, 1))]
    specs = _worker_specs(guess, inventory, preset.get("workers"))
    seed = int(preset.get("seed", 0))
    warm_up(specs, preload=sorted({f"model={m}" for m in trainers} | {f"data={d}:{seed}" for d in names}))


def _worker_specs(placements, inventory, workers: int | None):
    """The local cluster's workers: the placement's layout, or ``workers`` CPU workers
    (the preset's ``workers``) beside the GPU ones."""
    from dataclasses import replace

    from .resources import layout_workers

    specs = layout_workers(placements, inventory)
    if workers:
        specs = [s for s in specs if s.gpu_index is not None] + [
            replace(next(s for s in specs if s.gpu_index is None), name=f"cpu-{i}") for i in range(workers)]
    return specs


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

    if scheduler is not None and scheduler != "":
        cluster = connect(scheduler, security)
        try:  # its workers may not see this machine's files
            from .data.remote import ship_user_files

            ship_user_files(cluster.client, [i.dataset for i in plan.trainers if i.dataset])
        except BaseException:
            cluster.close()
            raise
        return cluster
    specs = _worker_specs(placements, inventory, plan.preset.get("workers"))
    preload = sorted({f"model={i.model}" for i in plan.trainers} |
                     {f"data={i.dataset['name']}:{i.data_seed}" for i in plan.trainers
                      if i.dataset and not i.dataset.get("path")})
    return start_local_cluster(specs, preload=preload, security=security)


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
    from ._security import load_security, security_path
    from ._staging import code_for_plan, load_code, save_code, stage_datasets
    from .replay import replay_plan

    given, security = security, load_security(security)  # a bad path: one line, nothing made
    if detach and security is not None and security_path(given) is None:
        raise WorkbenchError("a detached run takes security as a path (a folder or YAML file), not an object")

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
        name, resolved, plan, inventory, placements = _prepare(
            preset, overrides, schedule, local=scheduler is None,
            warm=scheduler is None and not detach and security is None)
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
        return spawn(run_dir, "start", scheduler=_address(scheduler), replay=replayed, security=security_path(given))
    return _drive_new(run_dir, plan, inventory, placements, scheduler, security, code, schedule)


def _batch_tag() -> dict[str, Any]:
    """The batch job this run belongs to, when ``workbench batch`` executes the notebook that
    starts it (``$WORKBENCH_BATCH_JOB``: the job's folder, ``OUT/job-NNN``); else nothing."""
    job = os.environ.get("WORKBENCH_BATCH_JOB")
    if not job:
        return {}
    folder = Path(job)
    index = folder.name.rsplit("-", 1)[-1]
    return {"batch": folder.parent.name, "batch_dir": str(folder.parent),
            "batch_job": int(index) if index.isdigit() else None}


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
        cluster = _open_cluster(plan, inventory, placements, scheduler, security)
        try:
            quality += _assess_builtin_data(cluster, plan)
        except BaseException:
            cluster.close()
            raise
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
                      run_id=run_dir.name, **_driver(), **_batch_tag())
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


def _assess_data(plan, user_files: bool) -> list[dict[str, Any]]:
    """The user's own files (``user_files``) or the built-in datasets, checked here."""
    from .data.quality import assess_plan

    return assess_plan(plan.trainers, user_files)


def _assess_builtin_data(cluster, plan) -> list[dict[str, Any]]:
    """The built-in datasets' checks, run on a worker: it has loaded them already (the
    preload), and the driver never imports pandas to load them (0.4-0.5 s of CPU at the
    start of every run, docs/benchmarks.md)."""
    from . import _worker

    if not any(i.dataset and not i.dataset.get("path") for i in plan.trainers):
        return []
    return cluster.client.submit(_worker.assess_builtin_data, plan.trainers, pure=False).result()


def _run_dir(run_id: str, runs_dir_: str | Path | None) -> Path:
    check_name(run_id, "run id")
    run_dir = runs_dir(runs_dir_) / run_id
    if not (run_dir / "store.sqlite").exists():
        raise RunNotFoundError(f"no run '{run_id}' in {run_dir.parent} (list them with `workbench status`)")
    return run_dir


def _driven_here(run_id: str, runs_dir_: str | Path | None):
    """The :class:`Run` this process drives as ``run_id`` in that runs folder, or None (a
    run of the same id in another folder is another run)."""
    from . import _live

    live = _live.get(run_id)
    if live is not None and live.dir.resolve() == (runs_dir(runs_dir_) / run_id).resolve():
        return live
    return None


def open_run(run_id: str, runs_dir_: str | Path | None = None) -> RunRecord:
    """A run by id: the live :class:`Run` if this process drives it, else a read-only record."""
    live = _driven_here(run_id, runs_dir_)
    if live is not None:
        return live
    return RunRecord(_run_dir(run_id, runs_dir_))


def attach(run_id: str, runs_dir_: str | Path | None = None) -> Run:
    """The steerable :class:`Run` of any run: driven here, by another process, or ended.

    Commands reach a run driven by another process through its store (the driver takes
    them within about 50 ms); a run that nothing drives any more refuses commands with a
    message saying how to resume it.
    """
    live = _driven_here(run_id, runs_dir_)
    if live is not None and not live.done:
        return live
    return AttachedRun(_run_dir(run_id, runs_dir_))


def resume_run(run_id: str, runs_dir_: str | Path | None = None, overrides: dict[str, Any] | None = None,
               scheduler: str | Client | None = None, security: Any = None, *, detach: bool = False,
               allow_restart: Iterable[str] = ()) -> Run:
    """Continue an interrupted or stopped run from its checkpoints, optionally with changes.

    Models coupled by knowledge or a controller resume from one common epoch. A model that
    would start over at epoch 0 (every checkpoint corrupt, or none at an epoch its peers
    share) is refused with a :class:`~workbench.errors.CheckpointError` naming it, unless
    listed in ``allow_restart``; a model resumed from an older checkpoint than its newest
    file is reported as a warning and a ``checkpoint_fallback`` event.

    ``overrides`` are preset overrides like ``{"models.digits_mlp.hyperparameters.lr": 0.01}``;
    changes to live hyperparameters are recorded as ``hparam`` events. A run another live
    process drives is refused (one driver per run); ``detach`` as in :func:`start_run`.
    """
    from ._security import load_security, security_path
    from ._staging import load_code
    from .coordinator import Coordinator
    from .lease import LeaseHeldError

    given, security = security, load_security(security)
    if detach and security is not None and security_path(given) is None:
        raise WorkbenchError("a detached run takes security as a path (a folder or YAML file), not an object")
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
    restore = _plan_restore(record.dir, plan, allow_restart)  # refuses before any worker starts
    if detach:
        from ._driver import spawn

        return spawn(record.dir, "resume", scheduler=_address(scheduler), overrides=overrides,
                     allow_restart=sorted(set(allow_restart)), security=security_path(given))
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
                                  resume={"overrides": hp_changes, "restore": restore}, code=code)
    except BaseException:
        lease.release()
        if store is not None:
            store.close()
        cluster.close()
        raise
    from . import _live

    return _live.add(DrivenRun(record.dir, coordinator, cluster, store, lease)._start())


def _plan_restore(run_dir: Path, plan, allow_restart: Iterable[str]):
    """Where each model resumes (see :mod:`workbench._restore`); each fallback is warned."""
    import warnings

    from ._restore import knowledge_links, plan_restore
    from .checkpoint import DiskSaver

    collab = plan.preset.get("enable_collaborative_training", False)
    controllers = [i.instance for i in plan.controllers]
    if not plan.preset.get("collaboration", {}).get("controller", True) or not collab:
        controllers = []
    links = knowledge_links(run_dir) if collab and not controllers else []
    restore = plan_restore(DiskSaver(run_dir / "checkpoints"), {i.instance: i.epochs for i in plan.trainers},
                           controllers, links, allow_restart)
    for line in restore.lines():
        warnings.warn(line, stacklevel=3)
    return restore


def list_runs(runs_dir_: str | Path | None = None):
    """DataFrame of the runs in a runs directory: id, state, preset, models, started, batch.

    ``batch`` names the ``workbench batch`` folder whose job made the run (else None).
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
                     "started": local_time(info.get("started")), "batch": info.get("batch")})
    return pd.DataFrame(rows, columns=["run", "state", "preset", "models", "finished_models", "started", "batch"])
