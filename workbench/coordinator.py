"""The driver: turns a plan into Dask tasks and applies every decision between segments.

Policy lives elsewhere (checkpoint timing, readiness, placement, the controller); this
module does the Dask work. It runs in one thread of the process that owns the run (the
notebook kernel or the CLI); the public API talks to it through :class:`Command` objects.

Determinism: a model starting epoch ``e+1`` imports its peers' knowledge exported after
their epoch ``e``, and with a controller every model waits for the controller's round
``e``. So a run, and a run resumed from a checkpoint, compute the same numbers on the CPU.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from . import _worker
from .checkpoint import DiskSaver, should_checkpoint
from .control import Exploit, ModelView, RunView, SetHParam
from .plan import ModelInstance, Plan
from .registry import get_model
from .resources import Placement, rebalance
from .states import ModelSnapshot, ModelState, RunState
from .store import RunStore

__all__ = ["Coordinator", "Command", "flow_of"]

log = logging.getLogger(__name__)

# Which preset switch (``collaboration.*``) governs a knowledge kind.
_FLOWS = {"soft_predictions/*": "mutual_learning", "causal_mask/*": "causal_mask",
          "transitions/*": "experience", "imagined_transitions/*": "experience"}
ROLLBACK_LR_FACTOR = 0.5
SEGMENT_SECONDS = 1.0


def flow_of(kind: str) -> str:
    for pattern, flow in _FLOWS.items():
        if fnmatch(kind, pattern):
            return flow
    return kind.split("/", 1)[0]


@dataclasses.dataclass
class Command:
    op: str  # set | release | pause | resume | stop
    instance: str | None = None
    name: str | None = None
    value: Any = None
    source: str = "user"
    pin: bool = True
    requested: float = dataclasses.field(default_factory=time.time)
    id: int = 0  # the store's command id when the command came through the control channel
    client: str = ""  # who sent it (kind:host:pid)


@dataclasses.dataclass
class _Model:
    spec: ModelInstance
    placement: Placement
    worker: str | None = None
    state: ModelState = ModelState.PENDING
    completed: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    pinned: set[str] = dataclasses.field(default_factory=set)
    unacknowledged: dict[str, int] = dataclasses.field(default_factory=dict)  # hparam -> command id not yet applied
    produces: set[str] = dataclasses.field(default_factory=set)
    consumes: set[str] = dataclasses.field(default_factory=set)
    failures: int = 0
    future: Any = None
    deps: list[Any] = dataclasses.field(default_factory=list)
    exports: dict[int, Any] = dataclasses.field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    last_eval: dict[str, float] = dataclasses.field(default_factory=dict)
    last_error: str | None = None
    steps_per_s: float | None = None
    epoch_seconds: float | None = None


class Coordinator:
    def __init__(self, run_id: str, run_dir: Path, plan: Plan, placements: dict[str, Placement], cluster,
                 store: RunStore, resume: dict[str, Any] | None = None, *, code: dict[str, bytes] | None = None):
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.plan = plan
        self.cluster = cluster
        self.client = cluster.client
        self.store = store
        self.saver = DiskSaver(self.run_dir / "checkpoints")
        self.topic = f"workbench-{run_id}"
        self.collab = plan.preset.get("enable_collaborative_training", False)
        self.flows = dict(plan.preset.get("collaboration", {}))
        self.interval = int(plan.preset["checkpoint_interval"])
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
        self._lock = threading.RLock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-ckpt")
        self._resume = resume or {}
        self._acknowledged: set[int] = set()  # command ids a trainer reported applied
        self.code = dict(code or {})  # registry name -> pickled class shipped to workers
        self._next_id = 0
        self._pending_checkpoints: list[tuple[Any, _Model, int, dict[str, Any]]] = []
        self._lost_inputs = False  # a worker died: look for segments stuck on its knowledge
        self.started = time.time()

    # -- public (any thread) ----------------------------------------------------------------
    def submit(self, command: Command) -> int:
        with self._lock:
            if command.id <= 0:
                self._next_id += 1
                command.id = self._next_id
        if command.op == "set":
            self._deliver_now(command)
        elif command.op in ("pause", "stop"):
            targets = [command.instance] if command.instance else list(self.models)
            for name in targets:
                m = self.models.get(name)
                if m is not None and m.future is not None and m.worker:
                    self._send(m, (command.op,))
        self.commands.put(command)
        return command.id

    def snapshot(self) -> dict[str, ModelSnapshot]:
        with self._lock:
            out = {}
            for name, m in self.models.items():
                remaining = (m.spec.epochs - m.completed) * (m.epoch_seconds or 0)
                out[name] = ModelSnapshot(
                    name, m.spec.model, m.spec.dataset["name"] if m.spec.dataset else None, m.state, m.completed,
                    m.spec.epochs, m.step, m.steps_per_epoch, dict(m.hparams), frozenset(m.pinned), m.steps_per_s,
                    remaining if m.epoch_seconds else None, m.last_error, dict(m.last_eval))
            return out

    # -- events -----------------------------------------------------------------------------
    def _event(self, model: str | None, kind: str, payload: dict[str, Any] | None = None) -> None:
        payload = payload or {}
        now = time.time()
        self.store.add_event(model, kind, payload, wall_time=now)
        for callback in list(self.subscribers):
            try:
                callback({"type": "event", "model": model, "kind": kind, "payload": payload, "wall_time": now})
            except Exception:  # a broken subscriber must not stop training
                log.exception("event subscriber failed")

    def _on_stream(self, event) -> None:
        _, msg = event
        if msg.get("kind") == "metrics":
            rows = msg["rows"]
            if rows:
                self.store.add_metrics(rows)
                for callback in list(self.subscribers):
                    try:
                        callback({"type": "metrics", "rows": rows})
                    except Exception:
                        log.exception("metrics subscriber failed")
            for applied in msg.get("applied", ()):
                model = next((n for n, m in self.models.items() if m.unacknowledged.get(applied["name"]) ==
                              applied.get("id")), rows[0][0] if rows else None)
                self._acknowledged.add(applied.get("id"))
                if model in self.models:
                    self.models[model].unacknowledged.pop(applied["name"], None)
                self._event(model, "hparam_applied", applied)
        elif msg.get("kind") == "log":
            self._log(msg["model"], msg["text"])

    def _log(self, instance: str, text: str) -> None:
        folder = self.run_dir / "logs"
        folder.mkdir(exist_ok=True)
        with open(folder / f"{instance}.log", "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    # -- delivery ---------------------------------------------------------------------------
    def _send(self, m: _Model, command: tuple) -> None:
        try:
            self.client.run(_worker.deliver, self.run_id, m.spec.instance, command, workers=[m.worker])
        except Exception:  # the worker may be gone; the coordinator's copy still applies next segment
            log.debug("could not deliver %s to %s", command, m.spec.instance, exc_info=True)

    def _deliver_now(self, c: Command) -> None:
        m = self.models.get(c.instance)
        if m is None or c.name not in m.hparams:
            return
        if m.future is not None and m.worker:
            self._send(m, ("set", c.name, c.value, c.id))

    def _apply_set(self, c: Command) -> None:
        m = self.models[c.instance]
        if c.source == "controller" and c.name in m.pinned:
            self._event(c.instance, "hparam_skipped", {"name": c.name, "value": c.value, "reason": "pinned by a user"})
            return
        old = m.hparams.get(c.name)
        m.hparams[c.name] = c.value
        if c.source == "user" and c.pin:
            m.pinned.add(c.name)
        if c.id and c.id not in self._acknowledged:  # the trainer may have applied it already
            m.unacknowledged[c.name] = c.id
        self._event(c.instance, "hparam", {"name": c.name, "old": old, "new": c.value, "source": c.source,
                                           "step": m.step, "epoch": m.completed, "pinned": c.name in m.pinned,
                                           "id": c.id, "client": c.client, "requested": c.requested})
        self.store.set_model(c.instance, hparams=m.hparams, pinned=sorted(m.pinned))

    def _drain(self) -> None:
        while True:
            try:
                c = self.commands.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                if c.op == "set":
                    self._apply_set(c)
                elif c.op == "release":
                    m = self.models[c.instance]
                    m.pinned.discard(c.name)
                    self._event(c.instance, "release", {"name": c.name, "id": c.id, "client": c.client})
                    self.store.set_model(c.instance, pinned=sorted(m.pinned))
                elif c.op in ("pause", "resume"):
                    before, after, kind = ((ModelState.RUNNING, ModelState.PAUSED, "paused") if c.op == "pause"
                                           else (ModelState.PAUSED, ModelState.RUNNING, "resumed_model"))
                    for name in [c.instance] if c.instance else list(self.models):
                        m = self.models[name]
                        if m.state == before:
                            m.state = after
                            self._event(name, kind, {"epoch": m.completed, "step": m.step, "id": c.id,
                                                     "client": c.client})
                            self.store.set_model(name, state=m.state.value)
                elif c.op == "stop":
                    if self.state == RunState.RUNNING:
                        self.state = RunState.STOPPING
                        self._event(None, "stopping", {"id": c.id, "client": c.client})

    # -- setup ------------------------------------------------------------------------------
    def _assign_workers(self) -> None:
        addresses = sorted(self.cluster.workers)
        gpu = {spec.gpu_index: addr for addr, spec in self.cluster.workers.items() if spec.gpu_index is not None}
        cpu = [a for a in addresses if self.cluster.workers[a].gpu_index is None] or addresses
        slots = {name: addr for addr, spec in self.cluster.workers.items() for name in self.models
                 if f"slot-{name}" in dict(spec.resources)}
        # GPU shares have a worker each; CPU models go to the CPU worker with the fewest models.
        load = collections.Counter()
        for name, m in self.models.items():
            if name in slots:
                m.worker = slots[name]
            elif m.placement.gpu_index is not None and m.placement.gpu_index in gpu:
                m.worker = gpu[m.placement.gpu_index]
            else:
                m.worker = min(cpu, key=lambda a: (load[a], a))
                load[m.worker] += 1

    def _build(self, names: list[str], checkpoints: dict[str, dict[str, Any]]) -> None:
        futures = {}
        for name in names:
            m = self.models[name]
            s = m.spec
            futures[name] = self.client.submit(
                _worker.build, self.run_id, name, s.model, m.hparams, s.dataset, s.seed, m.placement.threads,
                m.placement.device, m.placement.gpu_fraction, checkpoints.get(name), s.data_seed, self.code.get(s.model), workers=[m.worker],
                allow_other_workers=False, pure=False, key=f"build-{self.run_id}-{name}-{time.time_ns()}")
        for name, fut in futures.items():
            m = self.models[name]
            try:
                info = fut.result()
            except Exception as exc:
                self._fail(m, f"could not build: {exc}", "".join(traceback.format_exception(exc)))
                continue
            m.steps_per_epoch = info["steps_per_epoch"]
            m.produces, m.consumes = set(info["produces"]), set(info["consumes"])
            m.hparams.update({k: v for k, v in info["hparams"].items() if k in m.hparams})
            if m.state == ModelState.PENDING:
                m.state = ModelState.RUNNING
            self.store.set_model(name, registry_name=m.spec.model,
                                 dataset=m.spec.dataset["name"] if m.spec.dataset else None, state=m.state.value,
                                 epoch=m.completed, total_epochs=m.spec.epochs, hparams=m.hparams,
                                 pinned=sorted(m.pinned))

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> RunState:
        from distributed import wait

        self.state = RunState.RUNNING
        self.client.subscribe_topic(self.topic, self._on_stream)
        self._assign_workers()
        checkpoints = self._restore()
        self._build(list(self.models), checkpoints)
        for name, m in self.models.items():
            if m.state == ModelState.RUNNING and m.completed >= m.spec.epochs:
                m.state = ModelState.FINISHED
            if m.completed > 0:  # resumed: peers need what it exported after that epoch
                self._export(m)
        self._event(None, "resumed" if self._resume else "started",
                    {"models": list(self.models), "controllers": list(self.controllers),
                     "from_epoch": {n: m.completed for n, m in self.models.items()}})
        try:
            while True:
                self._drain()
                self._write_checkpoints()
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
                try:
                    done = wait(in_flight, timeout=0.1, return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    continue
                for m in list(self.models.values()):
                    if m.future is not None and m.future in done:
                        self._finish_segment(m)
        except BaseException:
            log.exception("the coordinator loop failed")
            raise
        finally:
            self._finalize()
        return self.state

    def _check_workers(self, every: float = 1.0) -> bool:
        """A task pinned to a worker that died waits forever: find such models and rebuild them."""
        now = time.time()
        if now - getattr(self, "_last_worker_check", 0.0) < every:
            return False
        self._last_worker_check = now
        alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
        recovered = False
        for m in self.models.values():
            if m.future is not None and m.worker not in alive:
                fut, m.future = m.future, None
                fut.cancel()
                self._recover(m, RuntimeError(f"worker {m.worker} died during epoch {m.completed + 1}"))
                recovered = True
        if self._lost_inputs:  # from the first lost worker on, once a second
            recovered |= self._unblock_consumers()
        return recovered

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
            self._event(m.spec.instance, "knowledge_lost", {"epoch": m.completed + 1})
        return bool(stuck)

    def _ready(self, m: _Model) -> bool:
        if m.state != ModelState.RUNNING or m.future is not None or m.completed >= m.spec.epochs:
            return False
        c = m.completed
        if self.controllers and self.round < c:
            return False
        for peer in self._peers(m):
            if peer.state in (ModelState.RUNNING, ModelState.PAUSED) and peer.completed < c:
                return False
        return True

    def _peers(self, m: _Model) -> list[_Model]:
        if not self.collab:
            return []
        out = []
        for p in self.models.values():
            if p is m:
                continue
            kinds = {k for k in p.produces & m.consumes if self.flows.get(flow_of(k), True)}
            if kinds:
                out.append(p)
        return out

    def _knowledge(self, m: _Model) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        for p in self._peers(m):
            epochs = [e for e in p.exports if e <= m.completed]
            if not epochs:
                continue
            fut = p.exports[max(epochs)]
            for kind in p.produces & m.consumes:
                if self.flows.get(flow_of(kind), True):
                    out[kind][p.spec.instance] = (fut, kind)
        return out

    def _schedule(self) -> None:
        for m in self.models.values():
            if not self._ready(m):
                continue
            routed = self._knowledge(m)
            knowledge = {kind: {src: self.client.submit(_pick, fut, kind, pure=False, workers=[m.worker],
                                                        allow_other_workers=True)
                                for src, (fut, kind) in srcs.items()} for kind, srcs in routed.items()}
            epoch = m.completed + 1
            profile = None
            if self.plan.preset.get("profile_epoch") == epoch:
                profile = str(self.run_dir / "profiles" / f"{m.spec.instance}-epoch{epoch}.json")
            spec = _worker.SegmentSpec(self.run_id, m.spec.instance, epoch, m.spec.epochs, self.topic,
                                       dict(m.hparams), m.placement.threads, m.placement.gpu_fraction,
                                       profile_path=profile, epochs=self._segment_epochs(m))
            m.future = self.client.submit(_worker.run_segment, spec, knowledge or None, *m.deps,
                                          workers=[m.worker], allow_other_workers=False, pure=False,
                                          key=f"segment-{self.run_id}-{m.spec.instance}-{m.completed + 1}-{time.time_ns()}")
            m.deps = []
            for hp, command_id in list(m.unacknowledged.items()):  # in force from this segment's first step
                self._event(m.spec.instance, "hparam_applied", {"name": hp, "value": m.hparams.get(hp), "id": command_id,
                                                           "step": m.step, "at": "segment start",
                                                           "wall_time": time.time()})
            m.unacknowledged.clear()
            if routed:
                self._event(m.spec.instance, "knowledge", {
                    "epoch": m.completed + 1, "kinds": {k: sorted(v) for k, v in routed.items()}})

    def _segment_epochs(self, m: _Model) -> int:
        """Epochs in the next segment: one, unless nothing needs the coordinator between epochs
        (no knowledge flow, no controller, no checkpoint or profile due) and epochs are short,
        then as many as make about ``SEGMENT_SECONDS`` (DESIGN.md 3: segments of a second or two)."""
        if (self.controllers or not m.epoch_seconds or self.plan.preset.get("profile_epoch")
                or self._peers(m) or any(m in self._peers(p) for p in self.models.values() if p is not m)):
            return 1
        remaining = m.spec.epochs - m.completed
        until_checkpoint = next(k for k in range(1, remaining + 1)
                                if should_checkpoint(m.completed + k, self.interval, m.spec.epochs))
        wanted = int(SEGMENT_SECONDS / max(m.epoch_seconds, 1e-3))
        return max(1, min(wanted, until_checkpoint, remaining))

    def _finish_segment(self, m: _Model) -> None:
        fut, m.future = m.future, None
        name = m.spec.instance
        try:
            result = fut.result()
        except Exception as exc:  # the worker died or the task could not run
            self._recover(m, exc)
            return
        m.step = result["step"]
        status = result["status"]
        for i, record in enumerate(result["epochs"]):
            if record["status"] == "done":
                self._epoch_done(m, record, result["knowledge_used"] if i == 0 else {})
        if status == "done":
            pass
        elif status == "paused":
            self.store.set_model(name, state=m.state.value)
        elif status == "stopped":
            pass
        elif status in ("nonfinite", "error"):
            m.failures += 1
            if result["error"]:
                self._log(name, result["error"])
            m.last_error = (result["error"] or "non-finite loss").strip().splitlines()[-1]
            self._event(name, "error", {"epoch": m.completed + 1, "step": m.step, "kind": status,
                                        "error": m.last_error, "failures": m.failures})
            if m.failures > self.max_failures:
                self._fail(m, f"failed {m.failures} times; last: {m.last_error}")
                return
            old_lr = m.hparams.get("lr")
            restored = self.client.submit(_worker.rollback, self.run_id, name, ROLLBACK_LR_FACTOR,
                                          workers=[m.worker], allow_other_workers=False, pure=False).result()
            if restored is not None:
                m.hparams.update({k: v for k, v in restored.items() if k in m.hparams})
            self._event(name, "rollback", {"epoch": m.completed + 1, "old_lr": old_lr, "new_lr": m.hparams.get("lr"),
                                           "reason": status})
            self.store.set_model(name, hparams=m.hparams, last_error=m.last_error)

    def _epoch_done(self, m: _Model, result: dict[str, Any], knowledge_used: dict[str, Any]) -> None:
        name = m.spec.instance
        m.completed += 1
        e = m.completed
        m.failures = max(0, m.failures - 1) if m.failures else 0
        now = time.time()
        m.step = result["step"]
        m.epoch_seconds = result["seconds"]
        m.steps_per_s = result["sys"]["sys/steps_per_s"]
        values = {**result["metrics"], **result["timing"], **result["sys"], **result.get("train_means", {})}
        self.store.add_metrics([(name, e, m.step, k, float(v), now) for k, v in values.items()])
        for k, v in values.items():
            m.history[k].append((e, float(v)))
        m.last_eval = {k: v for k, v in result["metrics"].items() if k.startswith("eval/")}
        if knowledge_used:
            self._event(name, "knowledge_used", {"epoch": e, **knowledge_used})
        self._event(name, "segment", {"epoch": e, "step": m.step, "seconds": m.epoch_seconds,
                                      "timing": result["timing"]})
        for callback in list(self.subscribers):
            try:
                callback({"type": "epoch", "model": name, "epoch": e, "metrics": values})
            except Exception:
                log.exception("epoch subscriber failed")
        deps = [fut] if (fut := self._export(m)) is not None else []
        if should_checkpoint(e, self.interval, m.spec.epochs):
            fut = self.client.submit(_worker.state, self.run_id, name, workers=[m.worker],
                                     allow_other_workers=False, pure=False)
            deps.append(fut)
            extra = {"hparams": dict(m.hparams), "pinned": sorted(m.pinned), "completed": e}
            self._pending_checkpoints.append((fut, m, e, extra))
        m.deps = deps
        if e >= m.spec.epochs:
            m.state = ModelState.FINISHED
            self._event(name, "finished", {"epoch": e, "eval": m.last_eval})
            if m.placement.gpu_index is not None:
                self._release_share(m)
        self.store.set_model(name, state=m.state.value, epoch=e, hparams=m.hparams, last_error=m.last_error)

    def _export(self, m: _Model) -> Any:
        """Ask for ``m``'s knowledge after its last completed epoch, if anyone consumes it."""
        if not (self.collab and m.state != ModelState.FAILED
                and any(p is not m and m in self._peers(p) for p in self.models.values())):
            return None
        fut = self.client.submit(_worker.export, self.run_id, m.spec.instance, workers=[m.worker],
                                 allow_other_workers=False, pure=False)
        m.exports[m.completed] = fut
        for old in [k for k in m.exports if k < m.completed - 1]:
            del m.exports[old]
        return fut

    def _write_checkpoints(self, wait: bool = False) -> None:
        """Hand finished state futures to the writer thread (all of them when ``wait``)."""
        keep = []
        for item in self._pending_checkpoints:
            if wait or item[0].done():
                self._writer.submit(self._save, *item)
            else:
                keep.append(item)
        self._pending_checkpoints = keep

    def _save(self, fut, m: _Model, epoch: int, extra: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        if fut.status in ("lost", "cancelled", "error"):  # its worker died: the state is gone
            self._event(m.spec.instance, "error", {"epoch": epoch, "error": f"checkpoint lost ({fut.status})"})
            return
        try:
            payload = fut.result(timeout=60)
            payload["coordinator"] = extra
            path = self.saver.save(m.spec.instance, epoch, payload)
        except Exception as exc:
            self._event(m.spec.instance, "error", {"epoch": epoch, "error": f"checkpoint failed: {exc}"})
            return
        seconds = time.perf_counter() - t0
        self.store.add_metrics([(m.spec.instance, epoch, m.step, "time/checkpoint_s", seconds, time.time()),
                                (m.spec.instance, epoch, m.step, "time/checkpoint_state_s",
                                 float(payload["engine"].get("state_seconds", 0.0)), time.time())])
        self._event(m.spec.instance, "checkpoint", {"epoch": epoch, "path": str(path.relative_to(self.run_dir)),
                                                    "seconds": seconds, "bytes": path.stat().st_size})

    def _release_share(self, m: _Model) -> None:
        """Give a finished model's GPU share to the models still running on that GPU."""
        done = {n for n, p in self.models.items() if p.state.is_finished()}
        for placement in rebalance([p.placement for p in self.models.values()], done):
            other = self.models[placement.instance]
            if other.placement.gpu_fraction != placement.gpu_fraction:
                self._event(other.spec.instance, "resources", {"gpu": placement.gpu_index, "from": m.spec.instance,
                                                               "gpu_fraction": placement.gpu_fraction})
                other.placement = placement

    def _fail(self, m: _Model, reason: str, details: str | None = None) -> None:
        m.state = ModelState.FAILED
        m.last_error = reason
        if details:
            self._log(m.spec.instance, details)
        self._event(m.spec.instance, "failed", {"reason": reason, "epoch": m.completed})
        self.store.set_model(m.spec.instance, state=m.state.value, last_error=reason)

    def _recover(self, m: _Model, exc: BaseException) -> None:
        """The worker died (or the task was lost): rebuild from the last checkpoint elsewhere."""
        m.failures += 1
        self._log(m.spec.instance, "".join(traceback.format_exception(exc)))
        self._event(m.spec.instance, "error", {"epoch": m.completed + 1, "error": f"{type(exc).__name__}: {exc}",
                                               "kind": "worker", "failures": m.failures})
        if m.failures > self.max_failures:
            self._fail(m, f"lost its worker {m.failures} times")
            return
        deadline = time.time() + 60  # a nanny restarts a dead worker within seconds
        alive = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        while not alive and time.time() < deadline:
            time.sleep(0.5)
            alive = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        if m.worker not in alive and alive:
            load = collections.Counter(p.worker for p in self.models.values() if p is not m)
            m.worker = min(alive, key=lambda a: (load[a], a))
        loaded = self.saver.load_latest(m.spec.instance)
        checkpoint = None
        m.completed, m.exports, m.deps = 0, {}, []
        self._lost_inputs = True
        if loaded is not None:
            epoch, checkpoint = loaded
            m.completed = epoch
            m.hparams.update(checkpoint.get("coordinator", {}).get("hparams", {}))
        self._build([m.spec.instance], {m.spec.instance: checkpoint} if checkpoint else {})
        if m.completed > 0:
            self._export(m)
        self._event(m.spec.instance, "restored", {"epoch": m.completed, "worker": m.worker})

    # -- the controller ---------------------------------------------------------------------
    def _view(self) -> RunView:
        views = {}
        for name, m in self.models.items():
            cls = get_model(m.spec.model)
            schema = {k: v for k, v in cls.hyperparameters.items() if v.live}
            views[name] = ModelView(name, m.spec.model, m.spec.dataset["name"] if m.spec.dataset else None,
                                    m.spec.group, m.completed, m.spec.epochs, m.state.value, dict(m.hparams),
                                    frozenset(m.pinned), schema,
                                    {k: tuple(v) for k, v in m.history.items()})
        return RunView(self.round, views)

    def _maybe_control(self) -> None:
        if not self.controllers:
            return
        active = [m for m in self.models.values() if m.state in (ModelState.RUNNING,)]
        if not active or any(m.future is not None for m in active):
            return
        target = self.round + 1
        if not all(m.completed >= target for m in active):
            return
        self.round = target
        view = self._view()
        for cname, controller in self.controllers.items():
            decisions = controller.decide(view)
            for d in decisions:
                if isinstance(d, Exploit):
                    self._exploit(d, cname)
                elif isinstance(d, SetHParam):
                    if d.instance in self.models:
                        self._apply_set(Command("set", d.instance, d.name, d.value, source="controller"))
                        self._event(d.instance, "decision", {"controller": cname, "name": d.name,
                                                             "value": d.value, "reason": d.reason})
            now = time.time()
            rows = [(cname, self.round, self.round, k, float(v), now) for k, v in controller.metrics_for_round().items()]
            self.store.add_metrics(rows)
            if should_checkpoint(self.round, self.interval, max(m.spec.epochs for m in self.models.values())):
                state = {"controller": controller.state_dict(), "round": self.round}
                self._writer.submit(self.saver.save, cname, self.round, state)

    def _exploit(self, d: Exploit, controller: str) -> None:
        target, source = self.models.get(d.target), self.models.get(d.source)
        if target is None or source is None or source.state.is_finished() or target.state.is_finished():
            return
        state = self.client.submit(_worker.state, self.run_id, source.spec.instance, workers=[source.worker],
                                   allow_other_workers=False, pure=False)
        hparams = {k: v for k, v in source.hparams.items() if k not in target.pinned}
        target.deps.append(self.client.submit(_worker.load_state, self.run_id, target.spec.instance, state, hparams,
                                              *target.deps, workers=[target.worker], allow_other_workers=False,
                                              pure=False))
        old = dict(target.hparams)
        target.hparams.update(hparams)
        self._event(d.target, "exploit", {"controller": controller, "source": d.source, "reason": d.reason,
                                          "old": old, "new": hparams, "epoch": target.completed})
        self.store.set_model(d.target, hparams=target.hparams)

    # -- resume and the end -----------------------------------------------------------------
    def _restore(self) -> dict[str, dict[str, Any]]:
        if not self._resume:
            return {}
        epochs = {name: set(self.saver.valid_epochs(name)) for name in self.models}
        common = set.intersection(*epochs.values()) if epochs else set()
        checkpoints = {}
        for name, m in self.models.items():
            usable = sorted(common) or sorted(epochs[name])
            if not usable:
                continue
            loaded = self.saver.load_latest(name, max_epoch=usable[-1])
            if loaded is None:
                continue
            epoch, payload = loaded
            checkpoints[name] = payload
            m.completed = epoch
            coord = payload.get("coordinator", {})
            m.hparams.update(coord.get("hparams", {}))
            m.pinned = set(coord.get("pinned", []))
            m.step = int(payload["engine"]["step"])
        for name, value in self._resume.get("overrides", {}).items():
            inst, hp = name
            if inst in self.models:
                self._apply_set(Command("set", inst, hp, value, source="user"))
        start = min((m.completed for m in self.models.values()), default=0)
        self.round = start
        for cname, controller in self.controllers.items():
            loaded = self.saver.load_latest(cname, max_epoch=start)
            if loaded is not None:
                controller.load_state_dict(loaded[1]["controller"])
        return checkpoints

    def _finalize(self) -> None:
        if self.state == RunState.STOPPING:
            self.state = RunState.STOPPED
            for m in self.models.values():
                if not m.state.is_finished():
                    m.state = ModelState.STOPPED
                    self.store.set_model(m.spec.instance, state=m.state.value)
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
                rows = [(cname, self.round, self.round, k, float(v), now) for k, v in controller.evaluate(view).items()]
                self.store.add_metrics(rows)
                self._writer.submit(self.saver.save, cname, self.round, {"controller": controller.state_dict(),
                                                                         "round": self.round})
        self._write_checkpoints(wait=True)
        self._writer.shutdown(wait=True)
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:
            pass
        try:
            for m in self.models.values():
                if m.worker:
                    self.client.run(_worker.drop, self.run_id, m.spec.instance, workers=[m.worker])
        except Exception:
            pass
        self._event(None, self.state.value, {"models": {n: m.state.value for n, m in self.models.items()},
                                             "seconds": time.time() - self.started})
        self.store.set_run(state=self.state.value, finished=time.time())


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
