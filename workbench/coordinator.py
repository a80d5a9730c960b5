"""The driver: turns a plan into Dask tasks around the decisions of ``_policy``.

Every decision (readiness, knowledge routing, segment length, checkpoint and controller
round due, roll-back or fail, restore point, worker choice) is a pure function in
:mod:`workbench._policy` over a frozen ledger that :meth:`Coordinator._ledger` takes of the
models' records; this module does what those answers need of Dask: submit builds,
segments, exports and states pinned to a model's worker, collect results, rebuild models
whose worker died. Everything it reports goes through one :class:`~workbench.events.EventBus`
whose handlers are the store, the per-model log files and the API's subscribers.

It runs in one thread of the process that owns the run (the notebook kernel, the CLI or a
driver process); other threads and processes steer it with :class:`Command` objects
through :meth:`Coordinator.submit`.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _faults
from . import _policy as policy
from . import _worker
from ._policy import flow_of
from ._steering import Steering
from .checkpoint import CheckpointWriter, DiskSaver, should_checkpoint
from .commands import Command, CommandOp
from .control import Exploit, ModelView, RunView, SetHParam
from .events import EpochEnd, Event, EventBus, EventKind, LogFiles, LogLine, Metrics, StoreHandler, Subscribers
from .plan import ModelInstance, Plan
from .presets import DEFAULTS
from .registry import _REGISTRY, describe, get_model
from .replay import ReplayQueue, ReplaySchedule
from .resources import Placement, rebalance
from .states import ModelSnapshot, ModelState, RunState
from .store import RunStore

__all__ = ["Coordinator", "Command", "CommandOp", "flow_of"]

log = logging.getLogger(__name__)

ROLLBACK_LR_FACTOR = 0.5
K = EventKind
# Segments of models that need nothing between their epochs, ready together on one worker,
# go as one task (``_worker.run_segments``; docs/engine.md, "Packed segments"), from
# PACK_MIN of them: two models a worker save one task in two seconds, nothing measurable,
# and a pack holds back the first model's records until the second's segment ends.
PACK_SEGMENTS = True
PACK_MIN = 3


@dataclasses.dataclass
class _Model:
    """The driver's mutable record of one trainer (frozen into a ledger entry for decisions)."""

    spec: ModelInstance
    placement: Placement
    worker: str | None = None
    state: ModelState = ModelState.PENDING
    completed: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    pinned: set[str] = dataclasses.field(default_factory=set)
    produces: set[str] = dataclasses.field(default_factory=set)
    consumes: set[str] = dataclasses.field(default_factory=set)
    failures: int = 0
    lost_at: int = 0  # the epoch it last lost its worker in (failures are forgiven only past it)
    future: Any = None
    deps: list[Any] = dataclasses.field(default_factory=list)
    exports: dict[int, Any] = dataclasses.field(default_factory=dict)  # epoch -> export future
    history: dict[str, list[tuple[int, float]]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    last_eval: dict[str, float] = dataclasses.field(default_factory=dict)
    last_error: str | None = None
    steps_per_s: float | None = None
    epoch_seconds: float | None = None
    unacknowledged: dict[str, int] = dataclasses.field(default_factory=dict)  # hparam -> command id not yet applied
    checkpoint_floor: float = 0.0  # the time floor its segment in flight applies to checkpoints

    @property
    def name(self) -> str:
        return self.spec.instance

    def entry(self) -> policy.ModelEntry:
        return policy.ModelEntry(self.name, self.state, self.completed, self.spec.epochs, self.step,
                                 self.future is not None, frozenset(self.produces), frozenset(self.consumes),
                                 frozenset(self.exports), self.failures, frozenset(self.pinned), self.worker,
                                 self.placement.gpu_index, self.epoch_seconds)


class Coordinator(Steering):
    """Drives one run. ``code``: registry name -> cloudpickled class for models defined
    outside any module (a notebook cell); ``replay``: a recorded run's changes to re-apply."""

    def __init__(self, run_id: str, run_dir: Path, plan: Plan, placements: dict[str, Placement], cluster,
                 store: RunStore, resume: dict[str, Any] | None = None, *, code: Mapping[str, bytes] | None = None,
                 replay: ReplaySchedule | None = None):
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.plan = plan
        self.cluster = cluster
        self.client = cluster.client
        self.store = store
        self.topic = f"workbench-{run_id}"
        self.code = dict(code or {})
        for model, blob in self.code.items():  # controllers run here; trainers' schemas are read here
            if model not in _REGISTRY:
                _worker.register_code(model, blob)
        self.collab = plan.preset.get("enable_collaborative_training", False)
        self.flows = dict(plan.preset.get("collaboration", {}))
        self.interval = int(plan.preset["checkpoint_interval"])
        self.checkpoint_floor = float(plan.preset.get("checkpoint_seconds", DEFAULTS["checkpoint_seconds"]))
        self.max_failures = int(plan.preset.get("max_failures", 3))
        self.models = {i.instance: _Model(i, placements[i.instance], hparams=dict(i.hparams))
                       for i in plan.trainers}
        self.controllers = {i.instance: get_model(i.model)(dict(i.hparams), i.seed) for i in plan.controllers}
        if not self.flows.get("controller", True) or not self.collab:
            self.controllers = {}
        self.round = 0  # last round the controllers decided
        self.commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self.state = RunState.PENDING
        self.subscribers: list = []
        self.bus = EventBus([StoreHandler(store), LogFiles(self.run_dir / "logs"), Subscribers(self.subscribers)])
        self.saver = DiskSaver(self.run_dir / "checkpoints")
        self.checkpoints = CheckpointWriter(self.saver, self.run_dir, self.bus.emit)
        self._lock = threading.RLock()
        self._resume = resume or {}
        self._replay = ReplayQueue(replay) if replay is not None else None
        self._replay_of = replay.run_id if replay is not None else None
        self._replay_ids: dict[int, int] = {}  # scheduled change (by its order) -> command id here
        self._next_id = 0
        self._delivered: set[int] = set()  # set commands already in a trainer's mailbox
        self._acknowledged: set[int] = set()  # set commands a trainer reported applied
        self._lost_inputs = False  # a worker died: look for segments stuck on its knowledge
        self._last_worker_check = 0.0
        # worker address -> name (a nanny restarts a dead worker under its name, at a new address)
        self._names = {addr: str(getattr(spec, "name", addr)) for addr, spec in (cluster.workers or {}).items()}
        self.watchdog = _faults.Watchdog()  # hung segments, failed writes
        self._ended: queue.SimpleQueue[str] = queue.SimpleQueue()  # keys of segments that ended
        self._watched: set[str] = set()  # keys with a done-callback
        self.started = time.time()

    # -- public (any thread) ----------------------------------------------------------------
    def snapshot(self) -> dict[str, ModelSnapshot]:
        with self._lock:
            out = {}
            ledger = self._ledger()
            for name, m in self.models.items():
                remaining = (m.spec.epochs - m.completed) * (m.epoch_seconds or 0)
                out[name] = ModelSnapshot(
                    name, m.spec.model, m.spec.dataset["name"] if m.spec.dataset else None, m.state, m.completed,
                    m.spec.epochs, m.step, m.steps_per_epoch, dict(m.hparams), frozenset(m.pinned), m.steps_per_s,
                    remaining if m.epoch_seconds else None, m.last_error, dict(m.last_eval),
                    policy.waiting_for(ledger, name))
            return out

    # -- the ledger and the event stream ----------------------------------------------------------
    def _ledger(self) -> policy.Ledger:
        return policy.Ledger.of((m.entry() for m in self.models.values()), collaborate=self.collab,
                                flows=self.flows, controllers=bool(self.controllers), round=self.round,
                                checkpoint_interval=self.interval, checkpoint_seconds=self.checkpoint_floor,
                                max_failures=self.max_failures,
                                profile_epoch=self.plan.preset.get("profile_epoch"))

    def _event(self, model: str | None, kind: EventKind, payload: dict[str, Any] | None = None) -> None:
        self.bus.emit(Event(kind, model, payload or {}))

    def _save_model(self, name: str, **fields: Any) -> None:
        """The ``models`` table: the latest state of a model, for status and late attachers."""
        self.store.set_model(name, **fields)

    def _on_stream(self, event) -> None:
        """What trainers publish while they train (Dask's event log): metrics, applied changes,
        logs; a pack's segments send their metrics as one ``batch``."""
        _, msg = event
        for one in msg["messages"] if msg.get("kind") == "batch" else (msg,):
            self._on_message(one)

    def _on_message(self, msg: dict[str, Any]) -> None:
        if msg.get("kind") == "metrics":
            rows = _worker.unpack(msg["packed"])
            if rows:
                self.bus.emit(Metrics(tuple(rows), live=True))
            model = msg["model"]
            for applied in msg.get("applied", ()):
                with self._lock:
                    self._acknowledged.add(applied.get("id"))
                    if model in self.models:
                        self.models[model].unacknowledged.pop(applied["name"], None)
                self._event(model, K.HPARAM_APPLIED, applied)
        elif msg.get("kind") == "log":
            self.bus.emit(LogLine(msg["model"], msg["text"]))
        elif msg.get("kind") == "event":  # from a worker, e.g. oom_retry
            self._event(msg["model"], EventKind(msg["event"]), msg["payload"])

    # -- setup ------------------------------------------------------------------------------
    def _assign_workers(self) -> None:
        workers = {addr: (spec.gpu_index, frozenset(n for n in self.models if f"slot-{n}" in dict(spec.resources)))
                   for addr, spec in self.cluster.workers.items()}
        chosen = policy.assign_workers({n: m.placement.gpu_index for n, m in self.models.items()}, workers)
        for name, addr in chosen.items():
            self.models[name].worker = addr

    def _build(self, names: list[str], checkpoints: dict[str, bytes]) -> None:
        futures = {}
        for name in names:
            m = self.models[name]
            s = m.spec
            futures[name] = self.client.submit(
                _worker.build, self.run_id, name, s.model, m.hparams, s.dataset, s.seed, m.placement.threads,
                m.placement.device, m.placement.gpu_fraction, checkpoints.get(name), s.data_seed,
                code=self.code.get(s.model), workers=[m.worker], allow_other_workers=False, pure=False,
                key=f"build-{self.run_id}-{name}-{time.time_ns()}")
        for name, fut in futures.items():
            m = self.models[name]
            try:
                info = _faults.result_unless_lost(self.client, fut, m.worker)
            except Exception as exc:
                self._fail(m, f"could not build: {exc}", "".join(traceback.format_exception(exc)))
                continue
            m.steps_per_epoch = info["steps_per_epoch"]
            m.produces, m.consumes = set(info["produces"]), set(info["consumes"])
            m.hparams.update({k: v for k, v in info["hparams"].items() if k in m.hparams})
            if m.state == ModelState.PENDING:
                m.state = ModelState.RUNNING
            self._save_model(name, registry_name=m.spec.model,
                             dataset=m.spec.dataset["name"] if m.spec.dataset else None, state=m.state.value,
                             epoch=m.completed, total_epochs=m.spec.epochs, hparams=m.hparams,
                             pinned=sorted(m.pinned))

    # -- the loop ---------------------------------------------------------------------------
    def _completed(self, in_flight: list[Any], timeout: float) -> set[str]:
        """Keys of segments that ended (done, failed or cancelled), waiting up to ``timeout``.

        Each future reports itself once through a done-callback: a wake-up costs the same
        with 128 segments in flight as with one (``distributed.wait`` on every in-flight
        future at each wake-up made the driver's work grow with the square of the models)."""
        for fut in in_flight:
            if fut.key not in self._watched:
                self._watched.add(fut.key)
                fut.add_done_callback(lambda f: self._ended.put(f.key))
        keys = set()
        try:
            keys.add(self._ended.get(timeout=timeout))
            while True:
                keys.add(self._ended.get_nowait())
        except queue.Empty:
            pass
        self._watched -= keys
        return keys

    def run(self) -> RunState:
        self.state = RunState.RUNNING
        self.client.subscribe_topic(self.topic, self._on_stream)
        self._assign_workers()
        checkpoints = self._restore()
        self._build(list(self.models), checkpoints)
        for m in self.models.values():
            if m.state == ModelState.RUNNING and m.completed >= m.spec.epochs:
                m.state = ModelState.FINISHED
            if m.completed > 0:  # resumed: peers need what it exported after that epoch, before any exploit loads
                m.deps = [fut] if (fut := self._export(m)) is not None else []
        started = {"models": list(self.models), "controllers": list(self.controllers),
                   "from_epoch": {n: m.completed for n, m in self.models.items()}}
        if self._replay_of:
            started["replay_of"] = self._replay_of
        self._event(None, K.RESUMED if self._resume else K.STARTED, started)
        try:
            while True:
                self._drain()
                if self.state == RunState.STOPPING:
                    if not any(m.future for m in self.models.values()):
                        break
                else:
                    self._maybe_control()
                    self._schedule()
                in_flight = [m.future for m in self.models.values() if m.future is not None]
                if not in_flight:
                    if all(m.state.is_finished() for m in self.models.values()):
                        break
                    time.sleep(0.05)  # only paused models left: wait for a command
                    continue
                if self._check_workers():
                    continue
                done = self._completed(in_flight, timeout=0.1)
                outcomes: dict[str, Any] = {}  # a pack's result is fetched once for all its models
                for m in list(self.models.values()):
                    if m.future is not None and m.future.key in done:
                        if m.future.key not in outcomes:
                            outcomes[m.future.key] = _outcome(m.future)
                        self._finish_segment(m, outcomes[m.future.key])
        except BaseException:
            log.exception("the coordinator loop failed")
            raise
        finally:
            self._finalize()
        return self.state

    def _schedule(self) -> None:
        """Submit a segment for every model the policy finds ready, with its routed knowledge;
        the segments of models alone on a worker together, as one pack."""
        self._replay_due()
        if all(m.future is not None or m.state != ModelState.RUNNING for m in self.models.values()):
            return  # none idle, none can be ready: skip building the ledger (the loop turns per segment)
        ledger = self._ledger()
        packs: dict[str, list[tuple[_Model, _worker.SegmentSpec]]] = collections.defaultdict(list)
        for name in policy.ready_models(ledger):
            m = self.models[name]
            routed = policy.route_knowledge(ledger, name)
            knowledge = {kind: {src: self.client.submit(_pick, self.models[src].exports[epoch], kind, pure=False,
                                                        workers=[m.worker], allow_other_workers=True)
                                for src, epoch in srcs.items()} for kind, srcs in routed.items()}
            spec = self._segment_spec(m, ledger)
            # alone: no knowledge to route, no controller, no profile. A pack carries no inputs
            # (deps) and no replayed steps: a model with either keeps a task of its own.
            if PACK_SEGMENTS and policy.alone(ledger, name) and not m.deps and not spec.changes:
                packs[m.worker].append((m, spec))
                continue
            self._submit_segment(m, spec, knowledge)
            if routed:
                kinds = {k: sorted(v) for k, v in routed.items()}
                self._event(name, K.KNOWLEDGE, {"epoch": spec.epoch, "kinds": kinds})
        for worker, members in packs.items():
            if len(members) >= PACK_MIN:
                self._submit_pack(worker, members)
            else:
                for m, spec in members:
                    self._submit_segment(m, spec)

    def _submit_segment(self, m: _Model, spec: _worker.SegmentSpec, knowledge: dict | None = None) -> None:
        m.future = self.client.submit(_worker.run_segment, spec, knowledge or None, *m.deps,
                                      workers=[m.worker], allow_other_workers=False, pure=False,
                                      key=f"segment-{self.run_id}-{m.name}-{spec.epoch}-{time.time_ns()}")
        self._submitted(m)

    def _submit_pack(self, worker: str, members: list[tuple[_Model, _worker.SegmentSpec]]) -> None:
        """One task for the segments of ``members`` (docs/engine.md, "Packed segments")."""
        # The models furthest behind first: those a pack did not reach lead the next one.
        members = sorted(members, key=lambda pair: pair[0].completed)
        share = policy.SEGMENT_SECONDS / len(members)
        specs = [dataclasses.replace(spec, seconds=share) if spec.seconds is not None else spec for _, spec in members]
        fut = self.client.submit(_worker.run_segments, specs, policy.SEGMENT_SECONDS, workers=[worker],
                                 allow_other_workers=False, pure=False,
                                 key=f"segments-{self.run_id}-{len(specs)}-{time.time_ns()}")
        for m, _ in members:
            m.future = fut
            self._submitted(m)

    def _segment_spec(self, m: _Model, ledger: policy.Ledger) -> _worker.SegmentSpec:
        epoch = m.completed + 1
        epochs = policy.segment_epochs(ledger, m.name)
        m.checkpoint_floor = policy.checkpoint_seconds(ledger, m.name)
        profile = None
        if self.plan.preset.get("profile_epoch") == epoch:
            profile = str(self.run_dir / "profiles" / f"{m.name}-epoch{epoch}.json")
        return _worker.SegmentSpec(self.run_id, m.name, epoch, m.spec.epochs, self.topic, dict(m.hparams),
                                   m.placement.threads, m.placement.gpu_fraction, profile_path=profile,
                                   epochs=epochs, max_failures=self.max_failures,
                                   checkpoint_interval=self.interval, checkpoint_seconds=m.checkpoint_floor,
                                   seconds=policy.SEGMENT_SECONDS if epochs > 1 else None,
                                   changes=self._replayed_in_segment(m))

    def _submitted(self, m: _Model) -> None:
        m.deps = []
        self._acknowledge_at_start(m)

    def _acknowledge_at_start(self, m: _Model) -> None:
        """Changes taken while the model was between segments are in force from the first step
        of the one just submitted (they ride in its hyperparameters): acknowledge them there."""
        with self._lock:
            pending, m.unacknowledged = m.unacknowledged, {}
        for hp, command_id in pending.items():
            self._event(m.name, K.HPARAM_APPLIED, {"name": hp, "value": m.hparams.get(hp), "id": command_id,
                                                   "step": m.step, "at": "segment start", "wall_time": time.time()})

    def _finish_segment(self, m: _Model, outcome: Any) -> None:
        """``outcome``: the segment's result, its pack's, or the exception that ended it."""
        m.future = None
        name = m.name
        result = outcome["results"][name] if isinstance(outcome, dict) and "results" in outcome else outcome
        if isinstance(result, dict) and "raised" in result:
            result = result["raised"]
        if isinstance(result, BaseException):  # the worker died or the task could not run
            self._recover(m, result)
            return
        if result.get("skipped"):  # its pack ran out of time before it: untouched, it leads the next one
            return
        m.step = result["step"]
        status = result["status"]
        for key in ("batch_size", "grad_accumulation"):  # lowered by the worker after an out-of-memory error
            if key in m.hparams and key in result["hparams"]:
                m.hparams[key] = result["hparams"][key]
        done = [record for record in result["epochs"] if record["status"] == "done"]
        for i, record in enumerate(done):
            self._epoch_done(m, record, result["knowledge_used"] if i == 0 else {}, save=i == len(done) - 1,
                             pack=result.get("pack", 1))
        if status == "paused":
            self._save_model(name, state=m.state.value)
        elif status in ("nonfinite", "error"):
            m.failures += 1
            if result["error"]:
                self.bus.emit(LogLine(name, result["error"]))
            m.last_error = (result["error"] or "non-finite loss").strip().splitlines()[-1]
            self._event(name, K.ERROR, {"epoch": m.completed + 1, "step": m.step, "kind": status,
                                        "error": m.last_error, "failures": m.failures})
            if policy.after_failure(m.failures, self.max_failures) == policy.FailureAction.FAIL:
                self._fail(m, f"failed {m.failures} times; last: {m.last_error}")
                return
            old_lr = m.hparams.get("lr")
            restored = self.client.submit(_worker.rollback, self.run_id, name, ROLLBACK_LR_FACTOR,
                                          workers=[m.worker], allow_other_workers=False, pure=False).result()
            if restored is not None:
                m.hparams.update({k: v for k, v in restored["hparams"].items() if k in m.hparams})
                m.step = restored["step"]
            self._event(name, K.ROLLBACK, {"epoch": m.completed + 1, "old_lr": old_lr, "new_lr": m.hparams.get("lr"),
                                           "reason": status})
            self._save_model(name, hparams=m.hparams, last_error=m.last_error)

    def _epoch_done(self, m: _Model, result: dict[str, Any], knowledge_used: dict[str, Any],
                    save: bool = True, pack: int = 1) -> None:
        """Record a finished epoch; ``save``: write the model's row (the last epoch of a
        segment: its epochs arrive together, so one row write per segment says the same);
        ``pack``: how many models' segments shared the task of this one."""
        name = m.name
        m.completed += 1
        e = m.completed
        if _faults.progressed(e, m.lost_at):
            m.failures = policy.forgive(m.failures)
        m.step = result["step"]
        m.epoch_seconds = result["seconds"]
        m.steps_per_s = result["sys"]["sys/steps_per_s"]
        values = {**result["metrics"], **result["timing"], **result["sys"], **result.get("train_means", {})}
        for k, v in values.items():
            m.history[k].append((e, float(v)))
        m.last_eval = {k: v for k, v in result["metrics"].items() if k.startswith("eval/")}
        if knowledge_used:
            self._event(name, K.KNOWLEDGE_USED, {"epoch": e, **knowledge_used})
        self._event(name, K.SEGMENT, {"epoch": e, "step": m.step, "seconds": m.epoch_seconds,
                                      "timing": result["timing"], "pack": pack})
        self.bus.emit(EpochEnd(name, e, m.step, {k: float(v) for k, v in values.items()}))
        deps = [fut] if (fut := self._export(m)) is not None else []
        # The segment takes the state at the end of every epoch whose checkpoint is due (past
        # the time floor, if any) and returns it with the epoch's record.
        if "state" in result:
            extra = {"hparams": dict(m.hparams), "pinned": sorted(m.pinned), "completed": e,
                     "last_eval": dict(m.last_eval)}
            if self.controllers:  # a resumed controller must see the same histories it saw here
                extra["history"] = {k: [[int(x), float(v)] for x, v in points] for k, points in m.history.items()}
            self.checkpoints.add(result.pop("state"), name, e, m.step, extra)
        m.deps = deps
        if e >= m.spec.epochs:
            m.state = ModelState.FINISHED
            self._event(name, K.FINISHED, {"epoch": e, "eval": m.last_eval})
            if m.placement.gpu_index is not None:
                self._release_share(m)
        if save or m.state == ModelState.FINISHED:
            self._save_model(name, state=m.state.value, epoch=e, hparams=m.hparams, last_error=m.last_error)

    def _export(self, m: _Model) -> Any:
        """Ask for ``m``'s knowledge after its last completed epoch, if anyone consumes it."""
        if not self.collab or not policy.should_export(self._ledger(), m.name):  # no ledger (O(models)) per epoch
            return None
        fut = self.client.submit(_worker.export, self.run_id, m.name, workers=[m.worker],
                                 allow_other_workers=False, pure=False)
        m.exports[m.completed] = fut
        for old in [k for k in m.exports if k < m.completed - 1]:
            del m.exports[old]
        return fut

    def _release_share(self, m: _Model) -> None:
        """Give a finished model's GPU share to the models still running on that GPU."""
        done = {n for n, p in self.models.items() if p.state.is_finished()}
        for placement in rebalance([p.placement for p in self.models.values()], done):
            other = self.models[placement.instance]
            if other.placement.gpu_fraction != placement.gpu_fraction:
                self._event(other.name, K.RESOURCES, {"gpu": placement.gpu_index, "from": m.name,
                                                      "gpu_fraction": placement.gpu_fraction})
                other.placement = placement

    def _fail(self, m: _Model, reason: str, details: str | None = None) -> None:
        m.state = ModelState.FAILED
        m.last_error = reason
        if details:
            self.bus.emit(LogLine(m.name, details))
        self._event(m.name, K.FAILED, {"reason": reason, "epoch": m.completed})
        self._save_model(m.name, state=m.state.value, last_error=reason)

    @property
    def fatal(self) -> str | None:
        """Why the run failed as a whole (a store or checkpoint write), or None."""
        return self.watchdog.fatal

    # -- lost workers -----------------------------------------------------------------------
    def _check_workers(self, every: float = 1.0) -> bool:
        """A task pinned to a worker that died waits forever: find such models and rebuild them."""
        now = time.time()
        if now - self._last_worker_check < every:
            return False
        self._last_worker_check = now
        self.watchdog.check_writes(self)
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        self._names.update({addr: str(w.get("name", addr)) for addr, w in info.items()})
        alive = set(info)
        suspects = [m for m in self.models.values() if m.future is not None and m.worker not in alive]
        if suspects:  # the client's copy of the worker list can lag under load: ask the scheduler itself
            alive = set(self.client.run_on_scheduler(_faults.scheduler_workers))
        recovered = False
        for m in suspects:
            if m.worker not in alive:
                fut, m.future = m.future, None
                fut.cancel()
                self._recover(m, RuntimeError(f"worker {m.worker} died during epoch {m.completed + 1}"))
                recovered = True
        if self._lost_inputs:  # from the first lost worker on, once a second
            recovered |= self._unblock_consumers()
        return self.watchdog.check_hung(self, now) or recovered

    def _unblock_consumers(self) -> bool:
        """Segments that never started because a peer's knowledge died with its worker wait
        forever (the export is pinned to the dead worker): cancel them, to be rescheduled once
        the rebuilt peer exports again. A segment already running is left alone."""
        in_flight = {m.future.key: m for m in self.models.values() if m.future is not None}
        stuck = self.client.run_on_scheduler(_stuck_tasks, list(in_flight)) if in_flight else []
        for key in stuck:
            m = in_flight[key]
            fut, m.future = m.future, None
            fut.cancel()
            self._event(m.name, K.KNOWLEDGE_LOST, {"epoch": m.completed + 1})
        return bool(stuck)

    def _recover(self, m: _Model, exc: BaseException) -> None:
        """The worker died (or the task was lost): rebuild from the last checkpoint elsewhere."""
        m.failures += 1
        m.lost_at = max(m.lost_at, m.completed + 1)
        self.bus.emit(LogLine(m.name, "".join(traceback.format_exception(exc))))
        self._event(m.name, K.ERROR, {"epoch": m.completed + 1, "error": f"{type(exc).__name__}: {exc}",
                                      "kind": "worker", "failures": m.failures})
        if policy.after_failure(m.failures, self.max_failures) == policy.FailureAction.FAIL:
            self._fail(m, f"lost its worker {m.failures} times")
            return
        # Its own worker's replacement, never a healthy model's worker while one may come:
        # a model that kills its worker would take the healthy one (and its states) with it.
        dead = m.worker
        # A local cluster's nanny always brings it back (slowly on a loaded machine): wait
        # for it; an external cluster may not, so after a minute take another worker.
        wait = _faults.RESTART_WAIT if self.cluster.external else _faults.NO_WORKER_WAIT
        back, alive = _faults.replacement_worker(self.client, self._names.get(dead), dead, wait=wait)
        if back is not None:  # named now, not at the next _check_workers: a model that kills the
            self._names[back] = self._names[dead]  # replacement at once must find the next one by name
        m.worker = back or policy.choose_worker(self._ledger(), m.name, alive)
        if m.worker is None or m.worker == dead:  # no worker left: fail now, never wait on zero workers
            m.worker = dead
            self._fail(m, f"lost its worker and no worker is left to rebuild it on ({exc})")
            return
        skipped: dict[int, str] = {}
        loaded = self.saver.read_latest(m.name, skipped=skipped)
        if skipped:
            _faults.report_fallback(self, m.name, loaded[0] if loaded else 0, skipped)
        checkpoint = None
        m.completed, m.step, m.exports, m.deps = 0, 0, {}, []
        self._lost_inputs = True
        if loaded is not None:
            m.completed, checkpoint, record = loaded
            m.step = int(record["step"])
            m.hparams.update(record["coordinator"].get("hparams", {}))
        self._build([m.name], {m.name: checkpoint} if checkpoint is not None else {})
        if m.completed > 0:
            self._export(m)
        self._event(m.name, K.RESTORED, {"epoch": m.completed, "worker": m.worker})

    # -- the controller ---------------------------------------------------------------------
    def _view(self) -> RunView:
        views = {}
        for name, m in self.models.items():
            schema = {k: v for k, v in describe(m.spec.model).hyperparameters.items() if v.live}
            views[name] = ModelView(name, m.spec.model, m.spec.dataset["name"] if m.spec.dataset else None,
                                    m.spec.group, m.completed, m.spec.epochs, m.state.value, dict(m.hparams),
                                    frozenset(m.pinned), schema,
                                    {k: tuple(v) for k, v in m.history.items()})
        return RunView(self.round, views)

    def _maybe_control(self) -> None:
        if not self.controllers:  # no ledger to build (O(models)) on every turn of the loop
            return
        target = policy.controller_round_due(self._ledger())
        if target is None:
            return
        self._replay_due(next_round=target)
        self.round = target
        view = self._view()
        for cname, controller in self.controllers.items():
            # Saved as it enters round r, next to the models' epoch-r states (taken before this
            # round's decisions): a resume from epoch r decides round r again, as it was decided.
            if should_checkpoint(self.round, self.interval, max(m.spec.epochs for m in self.models.values())):
                self.checkpoints.save(cname, self.round, {"controller": controller.state_dict(), "round": self.round})
            for d in controller.decide(view):
                if isinstance(d, Exploit):
                    self._exploit(d, cname)
                elif isinstance(d, SetHParam) and d.instance in self.models:
                    self._apply_set(Command(CommandOp.SET, d.instance, d.name, d.value, source="controller"))
                    self._event(d.instance, K.DECISION, {"controller": cname, "name": d.name, "value": d.value,
                                                         "reason": d.reason})
            now = time.time()
            self.bus.emit(Metrics(tuple((cname, self.round, self.round, k, float(v), now)
                                        for k, v in controller.metrics_for_round().items())))

    def _exploit(self, d: Exploit, controller: str) -> None:
        target, source = self.models.get(d.target), self.models.get(d.source)
        if target is None or source is None or source.state.is_finished() or target.state.is_finished():
            return
        state = self.client.submit(_worker.state, self.run_id, source.name, workers=[source.worker],
                                   allow_other_workers=False, pure=False)
        source.deps.append(state)  # copied before the source trains on: else it depends on the worker's order
        hparams = {k: v for k, v in source.hparams.items() if k not in target.pinned}
        target.deps.append(self.client.submit(_worker.load_state, self.run_id, target.name, state, hparams,
                                              *target.deps, workers=[target.worker], allow_other_workers=False,
                                              pure=False))
        old = dict(target.hparams)
        target.hparams.update(hparams)
        self._event(d.target, K.EXPLOIT, {"controller": controller, "source": d.source, "reason": d.reason,
                                          "old": old, "new": hparams, "epoch": target.completed})
        self._save_model(d.target, hparams=target.hparams)

    # -- resume and the end -----------------------------------------------------------------
    def _restore(self) -> dict[str, bytes]:
        """Load models and controllers from their checkpoints (see :func:`policy.resume_epochs`:
        models coupled by knowledge or a controller resume from one epoch)."""
        if not self._resume:
            return {}
        from ._restore import knowledge_links, plan_restore

        self.saver.sweep()  # what an interrupted write left behind

        restore = self._resume.get("restore") or plan_restore(  # resume_run plans it before the cluster
            self.saver, {n: m.spec.epochs for n, m in self.models.items()}, self.controllers,
            knowledge_links(self.run_dir) if self.collab and not self.controllers else [])
        starts = dict(restore.starts)
        for fallback in restore.fallbacks:
            self._event(fallback["model"], K.CHECKPOINT_FALLBACK, fallback)
        checkpoints = {}
        for name, m in self.models.items():
            loaded = self.saver.read_latest(name, max_epoch=starts[name]) if starts[name] else None
            if loaded is None:
                continue
            epoch, checkpoints[name], record = loaded
            m.completed = epoch
            coord = record["coordinator"]
            m.hparams.update(coord.get("hparams", {}))
            m.pinned = set(coord.get("pinned", []))
            m.history.update({k: [(int(e), float(v)) for e, v in points]
                              for k, points in coord.get("history", {}).items()})
            m.last_eval = dict(coord.get("last_eval", {}))
            m.step = int(record["step"])
        for (inst, hp), value in self._resume.get("overrides", {}).items():
            if inst in self.models:
                self._apply_set(Command(CommandOp.SET, inst, hp, value, source="user", client="resume"))
        # The controllers decide round ``start`` again (their state entering it is loaded).
        start = min(starts.values(), default=0)
        self.round = max(start - 1, 0)
        for cname, controller in self.controllers.items():
            loaded = self.saver.load_latest(cname, max_epoch=start) if start else None
            if loaded is not None:
                controller.load_state_dict(loaded[1]["controller"])
        return checkpoints

    def _finalize(self) -> None:
        if self._replay is not None:  # changes never reached (a model ended first) still end in the copy
            self._apply_replayed(self._replay.drain())
        if self.state == RunState.STOPPING:
            self.state = RunState.STOPPED
            for m in self.models.values():
                if not m.state.is_finished():
                    m.state = ModelState.STOPPED
                    self._save_model(m.name, state=m.state.value)
        elif all(m.state == ModelState.FAILED for m in self.models.values()):
            self.state = RunState.FAILED
        elif any(m.state == ModelState.FAILED for m in self.models.values()):
            self.state = RunState.FINISHED_WITH_FAILURES
        else:
            self.state = RunState.FINISHED
        if self.state == RunState.FINISHED and self.controllers:
            view = self._view()
            now = time.time()
            for cname, controller in self.controllers.items():
                self.bus.emit(Metrics(tuple((cname, self.round, self.round, k, float(v), now)
                                            for k, v in controller.evaluate(view).items())))
                self.checkpoints.save(cname, self.round + 1, {"controller": controller.state_dict(),
                                                              "round": self.round + 1})
        self.checkpoints.close()
        self.watchdog.check_writes(self)  # the last checkpoints, written just now
        if self.fatal is not None:
            self.state = RunState.FAILED
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:
            pass
        try:
            alive = set(_faults.worker_names(self.client))  # a dead worker's address costs a 30 s timeout
            used = sorted({m.worker for m in self.models.values() if m.worker in alive})
            if used:  # one call for every worker (not one round trip per model: 64 models, 64 trips)
                self.client.run(_worker.drop_run, self.run_id, workers=used)
        except Exception:
            pass
        self._event(None, K(self.state.value), {"models": {n: m.state.value for n, m in self.models.items()},
                                                "seconds": time.time() - self.started,
                                                **({"reason": self.fatal} if self.fatal else {})})
        self.store.set_run(state=self.state.value, finished=time.time())


def _outcome(future: Any) -> Any:
    """A finished segment's result, or the exception it ended with."""
    try:
        return future.result()
    except Exception as exc:
        return exc


def _stuck_tasks(keys: list[str], dask_scheduler=None) -> list[str]:
    """Keys (run on the scheduler) waiting on an input that no worker can compute."""

    def blocked(ts, depth: int) -> bool:
        return ts.state == "no-worker" or (depth > 0 and ts.state in ("waiting", "released") and
                                           any(blocked(d, depth - 1) for d in ts.dependencies))

    tasks = dask_scheduler.tasks
    return [k for k in keys if k in tasks and tasks[k].state == "waiting" and blocked(tasks[k], 3)]


def _pick(artifacts: dict[str, Any], kind: str) -> Any:
    """One kind out of a trainer's exported artifacts (runs where the consumer lives)."""
    return artifacts.get(kind)
