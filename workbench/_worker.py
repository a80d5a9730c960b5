"""What runs inside a Dask worker: live trainers, their mailboxes, and one segment at a time.

Trainers stay in the worker's memory between segments (``_SLOTS``), so weights never
travel between segments. The coordinator talks to a slot through small tasks pinned to
its worker (build, segment, export, state, exploit) and delivers live commands straight
into its mailbox with ``Client.run`` (a few milliseconds), which the training loop reads
between steps.
"""
from __future__ import annotations

import array
import collections
import copy
import dataclasses
import functools
import io
import math
import random
import threading
import time
import traceback
from typing import Any

from . import _device, _oom

__all__ = ["SegmentSpec", "SlotLost", "build", "run_segment", "run_segments", "export", "state", "checkpoint_state",
           "load_state", "deliver", "drop", "drop_run", "unpack", "to_wire", "from_wire"]


@dataclasses.dataclass
class _Slot:
    trainer: Any
    mailbox: collections.deque = dataclasses.field(default_factory=collections.deque)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    rng: dict[str, Any] = dataclasses.field(default_factory=dict)
    snapshot: dict[str, Any] | None = None
    step: int = 0  # global step counter of this model
    step_in_epoch: int = 0
    oom_failures: int = 0  # CUDA out-of-memory errors so far (workbench._oom)
    # When its state was last taken for a checkpoint, or it was built (restored from one):
    # the time floor of ``SegmentSpec.checkpoint_seconds`` counts from here.
    checkpointed: float = dataclasses.field(default_factory=time.perf_counter)


_SLOTS: dict[tuple[str, str], _Slot] = {}
_ENDED: set[str] = set()  # runs whose trainers this worker dropped at their end (drop_run)


@dataclasses.dataclass(frozen=True)
class SegmentSpec:
    run_id: str
    instance: str
    epoch: int  # the first epoch this segment trains (1-based)
    total_epochs: int
    topic: str
    hparams: dict[str, Any]  # in force at segment start (the coordinator's authoritative copy)
    threads: int = 1
    gpu_fraction: float | None = None
    # Step metrics leave the worker once a second, packed (see _Packer): each message costs
    # work in the worker's event loop thread, which contends with training for the GIL.
    flush_interval: float = 1.0
    snapshot: bool = True  # keep a copy of the state at segment start for NaN roll-back
    profile_path: str | None = None  # run this segment under torch.profiler, trace written here
    epochs: int = 1  # epochs in this segment (more when nothing needs the coordinator between them)
    max_failures: int = 3  # out-of-memory retries at a smaller batch before the step fails
    # The trainer's checkpoint state is taken inside the segment and returned with its
    # epoch's record (no separate task, no round trip before the next segment) every
    # ``checkpoint_interval`` epochs and at the last epoch (0: never); the segment ends there.
    checkpoint_interval: int = 0
    # A due checkpoint (other than the last epoch's) is skipped when the model's previous
    # one was taken less than this many seconds ago (docs/engine.md, "Checkpoints").
    checkpoint_seconds: float = 0.0
    # Stop after the first epoch that ends this many seconds after the segment started (at
    # most ``epochs``): the segment's length adapts to the epochs' length, known or not.
    seconds: float | None = None
    # Replayed changes, applied when the global step reaches ``step`` (before that step runs):
    # ``(step, name, value, command_id)``. Carried here, never through the mailbox, so the
    # step is exact whatever the timing.
    changes: tuple[tuple[int, str, Any, int], ...] = ()


@functools.lru_cache(maxsize=8)
def _prepared(name: str, seed: int, path: str | None, target: str | None):
    """(dataset, preprocessing) as :func:`workbench.data.prepare.load_prepared`, once per worker."""
    from .data.prepare import load_prepared

    return load_prepared(name, seed, path, target)


def _dataset(name: str | None, seed: int, path: str | None, target: str | None):
    return None if name is None else _prepared(name, seed, path, target)[0]


def assess_builtin_data(trainers) -> list[dict[str, Any]]:
    """The built-in datasets' quality checks (:func:`workbench.data.quality.assess_plan`) on
    the data this worker loaded already for its trainers (the preload)."""
    from .data.quality import assess_plan

    return assess_plan(trainers, user_files=False, load=_prepared)


def _set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _capture_rng() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _restore_rng(rng: dict[str, Any]) -> None:
    import numpy as np
    import torch

    if rng:
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])


def rng_to_tensors(rng: dict[str, Any]) -> dict[str, Any]:
    """The global RNG states as weights_only-loadable values."""
    import torch

    name, keys, pos, has_gauss, cached = rng["numpy"]
    py_version, py_state, py_gauss = rng["python"]
    return {"torch": rng["torch"], "numpy": [name, torch.as_tensor(keys.astype("int64")), int(pos), int(has_gauss),
                                             float(cached)],
            "python": [int(py_version), torch.tensor(py_state, dtype=torch.int64), py_gauss]}


def rng_from_tensors(rng: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    name, keys, pos, has_gauss, cached = rng["numpy"]
    py_version, py_state, py_gauss = rng["python"]
    return {"torch": rng["torch"], "numpy": (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached),
            "python": (py_version, tuple(int(x) for x in py_state.tolist()), py_gauss)}


def register_code(model: str, code: bytes | None) -> None:
    """Register a model class shipped by value (cloudpickled, e.g. defined in a notebook cell)."""
    if code is None:
        return
    import cloudpickle

    from .registry import register_model

    register_model(model)(cloudpickle.loads(code))


def build(run_id: str, instance: str, model: str, hparams: dict[str, Any], dataset: dict[str, Any] | None,
          seed: int, threads: int, device: str = "cpu", gpu_fraction: float | None = None,
          checkpoint: bytes | None = None, data_seed: int = 0, code: bytes | None = None) -> dict[str, Any]:
    """Construct (or restore) a trainer in this worker; return what the coordinator needs.

    ``checkpoint``: a checkpoint file's verified bytes (``torch.save`` format), loaded here
    on the host, as the driver reads none of them.

    ``code``: the model's class as cloudpickled bytes (a trainer defined in a notebook
    exists in no worker's modules); it is used as it came, whatever this long-lived worker
    may have registered under the same name for an earlier run.
    """
    import numpy as np
    import torch

    from .registry import get_model
    from .trainer import Resources

    _set_threads(threads)
    if device.startswith("cuda") and gpu_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(gpu_fraction, 0)
    data = _dataset(dataset["name"], data_seed, dataset.get("path"), dataset.get("target")) if dataset else None
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    cls = _shipped(code) if code is not None else get_model(model)
    resources = Resources(device=_device.planned_device(device), threads=threads, gpu_fraction=gpu_fraction)
    trainer = cls(dict(hparams), data, resources, seed)
    slot = _Slot(trainer=trainer)
    slot.rng = _capture_rng()
    if checkpoint is not None:
        checkpoint = torch.load(io.BytesIO(checkpoint), weights_only=True, map_location="cpu")
        trainer.load_state_dict(checkpoint["trainer"])
        slot.rng = rng_from_tensors(checkpoint["engine"]["rng"])
        slot.step = int(checkpoint["engine"]["step"])
    _device.check_placement(trainer, resources.device, instance)  # refuse a model training on the wrong device
    _SLOTS[(run_id, instance)] = slot
    _ENDED.discard(run_id)  # the same run resumed on this (parked) worker
    return {"steps_per_epoch": int(trainer.steps_per_epoch), "hparams": dict(trainer.hparams),
            "produces": sorted(trainer.produces()), "consumes": sorted(trainer.consumes())}


@functools.lru_cache(maxsize=16)
def _shipped(code: bytes) -> type:
    """A class shipped by value (one unpickling per distinct class in this worker)."""
    import cloudpickle

    return cloudpickle.loads(code)


def deliver(run_id: str, instance: str, command: tuple) -> bool:
    """Put a live command into a trainer's mailbox (called through ``Client.run``)."""
    slot = _SLOTS.get((run_id, instance))
    if slot is None:
        return False
    slot.mailbox.append(command)
    return True


def drop(run_id: str, instance: str) -> None:
    _SLOTS.pop((run_id, instance), None)


def drop_run(run_id: str) -> None:
    """Forget every trainer of a run that ended (this worker outlives it when parked)."""
    _ENDED.add(run_id)
    for key in [k for k in _SLOTS if k[0] == run_id]:
        _SLOTS.pop(key, None)


def _parallel_map():
    """Dask tasks from inside a task (seceding while they run), else a plain loop."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return lambda fn, items: [fn(x) for x in items]

    def pmap(fn, items):
        with worker_client(separate_thread=True) as client:
            return client.gather(client.map(fn, list(items), pure=False))

    return pmap


def _emitter(topic: str):
    try:
        from distributed import get_worker

        worker = get_worker()
        return lambda msg: worker.log_event(topic, msg)
    except (ImportError, ValueError):
        return lambda msg: None


def run_segment(spec: SegmentSpec, knowledge: dict[str, dict[str, Any]] | None = None, *deps: Any) -> dict[str, Any]:
    """Train ``spec.epochs`` epochs (the first may finish one a pause interrupted).

    Returns ``{"status": "done"|"paused"|"stopped"|"nonfinite"|"error", "epochs": [...]}``
    with one record per epoch that ran (the last one may be incomplete). Step metrics are
    streamed on ``spec.topic`` while training; each epoch's ``eval/`` metrics come back.
    """
    return _run_segment(spec, knowledge, _emitter(spec.topic))


def run_segments(specs: list[SegmentSpec], seconds: float) -> dict[str, Any]:
    """Several models' segments in one task, one after another: ``{"results": {instance: result}}``.

    For models that need nothing of the driver between their epochs (``_policy.alone``) and
    share this worker: one task, one result and one stream of step metrics a second for all
    of them, where each segment cost the driver and its scheduler a task of its own. Each
    ``spec.seconds`` is the pack's share of its model; a segment is started only while the
    pack has run less than ``seconds``, so a pack of slow models still hands its records
    back within about that long: the models it did not start come back as ``{"skipped":
    True}``, untouched, and the coordinator puts them first in the next pack. A model's
    exception (its slot lost) comes back as ``{"raised": exc}``, the others' results intact;
    each result says the pack's size (``pack``), which its epochs' ``segment`` events carry.
    """
    emit = _Batched(_emitter(specs[0].topic), specs[0].flush_interval)
    start = time.perf_counter()
    out: dict[str, Any] = {}
    for spec in specs:
        if out and time.perf_counter() - start >= seconds:
            out[spec.instance] = {"skipped": True}
            continue
        try:
            out[spec.instance] = {**_run_segment(spec, None, emit), "pack": len(specs)}
        except Exception as exc:
            out[spec.instance] = {"raised": exc}
    emit.flush()
    return {"results": out}


class _Batched:
    """A pack's emitter: the step-metrics messages of its segments leave together, once per
    ``interval`` (one Dask event, not one per model); anything else (a log line, a change
    applied, which the panel waits on) leaves at once, after what is held."""

    def __init__(self, emit, interval: float) -> None:
        self.emit, self.interval = emit, interval
        self.held: list[dict[str, Any]] = []
        self.sent = time.perf_counter()

    def __call__(self, msg: dict[str, Any]) -> None:
        if msg.get("kind") == "metrics" and not msg.get("applied"):
            self.held.append(msg)
            if time.perf_counter() - self.sent > self.interval:
                self.flush()
            return
        self.flush()
        self.emit(msg)

    def flush(self) -> None:
        if self.held:
            self.emit(self.held[0] if len(self.held) == 1 else {"kind": "batch", "messages": self.held})
            self.held = []
        self.sent = time.perf_counter()


def _run_segment(spec: SegmentSpec, knowledge: dict[str, dict[str, Any]] | None, emit) -> dict[str, Any]:
    from .trainer import StepContext

    slot = _SLOTS[(spec.run_id, spec.instance)]
    trainer = slot.trainer
    with slot.lock:
        _set_threads(spec.threads)
        if spec.gpu_fraction is not None and trainer.resources.device.startswith("cuda"):
            import torch  # a share freed by a finished model may have grown this one's cap

            torch.cuda.set_per_process_memory_fraction(spec.gpu_fraction, 0)
        _restore_rng(slot.rng)
        t0 = time.perf_counter()
        for name, value in spec.hparams.items():
            if trainer.hparams.get(name) != value:
                trainer.set_hparam(name, value)
        if slot.step_in_epoch == 0 and spec.snapshot:
            slot.snapshot = {"trainer": _copy_state(trainer.state_dict()), "rng": slot.rng, "step": slot.step}
        used = trainer.import_knowledge(knowledge) if (knowledge and slot.step_in_epoch == 0) else {}
        knowledge_s = time.perf_counter() - t0
        pmap = _parallel_map()
        scheduled = {}
        for step, name, value, command_id in spec.changes:
            scheduled.setdefault(step, []).append((name, value, command_id))
        records = []
        packer = _Packer(spec.instance)  # step metrics, sent once a second across the segment's epochs
        for epoch in range(spec.epoch, spec.epoch + spec.epochs):
            if records and spec.seconds is not None and time.perf_counter() - t0 >= spec.seconds:
                break
            if records and spec.snapshot:  # the roll-back point of each epoch
                slot.snapshot = {"trainer": _copy_state(trainer.state_dict()), "rng": _capture_rng(),
                                 "step": slot.step}
            ctx = StepContext(epoch=epoch, total_epochs=spec.total_epochs, parallel_map=pmap,
                              log=lambda msg: emit({"kind": "log", "model": spec.instance, "text": msg}))
            record = _train_epoch(slot, spec, epoch, ctx, emit, scheduled, packer)
            record["timing"]["time/knowledge_s"] = knowledge_s if not records else 0.0
            if record["status"] == "done" and _checkpoint_now(spec, slot, epoch):
                record["state"] = checkpoint_state(slot, _capture_rng())
                slot.checkpointed = time.perf_counter()
            records.append(record)
            # A checkpoint ends the segment: its state then reaches the driver's disk now, not
            # lost with a later epoch of the segment that hangs or kills its worker. With the
            # time floor (checkpoint_seconds) that is one more segment every ten seconds or so.
            if record["status"] != "done" or "state" in record:
                break
        if packer:
            packer.send(emit, [])
        slot.rng = _capture_rng()
        last = records[-1]
        return {"status": last["status"], "epochs": records, "step": slot.step, "knowledge_used": used,
                "error": last["error"], "hparams": dict(trainer.hparams)}


def _checkpoint_now(spec: SegmentSpec, slot: _Slot, epoch: int) -> bool:
    """Take the checkpoint state at the end of ``epoch``? (``SegmentSpec.checkpoint_interval``)"""
    from .checkpoint import should_checkpoint

    if not spec.checkpoint_interval:
        return False
    return should_checkpoint(epoch, spec.checkpoint_interval, spec.total_epochs,
                             since=time.perf_counter() - slot.checkpointed, min_seconds=spec.checkpoint_seconds)


def _train_epoch(slot: _Slot, spec: SegmentSpec, epoch: int, ctx, emit,
                 scheduled: dict[int, list[tuple[str, Any, int]]] | None = None,
                 packer: "_Packer | None" = None) -> dict[str, Any]:
    """The steps of one epoch (from where a pause left it), then its end and evaluation.
    Step metrics go into ``packer`` (sent every ``spec.flush_interval``; the caller sends
    the rest), with the changes applied, which are sent at once."""
    trainer = slot.trainer
    timing: dict[str, float] = collections.defaultdict(float)
    applied: list[dict[str, Any]] = []
    buffer = packer if packer is not None else _Packer(spec.instance)
    start = time.perf_counter()
    status = "done"
    steps = trainer.steps_per_epoch
    profiler = _start_profiler() if spec.profile_path else None
    steps_run = 0
    sums: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)  # a metric may be reported at some steps only
    result_metrics: dict[str, float] = {}
    error = None
    try:
        while slot.step_in_epoch < steps:
            # Popped: applied once per segment even when a pause stops before this step runs.
            for name, value, command_id in (scheduled.pop(slot.step, ()) if scheduled else ()):
                trainer.set_hparam(name, value)
                applied.append({"name": name, "value": value, "id": command_id, "step": slot.step,
                                "wall_time": time.time(), "source": "replay"})
            while slot.mailbox:
                cmd = slot.mailbox.popleft()
                if cmd[0] == "set":
                    trainer.set_hparam(cmd[1], cmd[2])
                    applied.append({"name": cmd[1], "value": cmd[2], "id": cmd[3], "step": slot.step,
                                    "wall_time": time.time()})
                elif cmd[0] in ("pause", "stop"):
                    status = "paused" if cmd[0] == "pause" else "stopped"
            if status != "done":
                break
            metrics = _oom.guarded_step(slot, ctx, spec.max_failures, emit, spec.instance)
            slot.step += 1
            slot.step_in_epoch += 1
            steps_run += 1
            now = time.time()
            for name, value in metrics.items():
                value = float(value)
                buffer.add(epoch, slot.step, name, value, now)
                sums[name] += value
                counts[name] += 1
            loss = metrics.get("train/loss")
            if loss is not None and not math.isfinite(loss):
                status = "nonfinite"
                break
            # a change applied is acknowledged at once (the panel waits on it); metrics once a second
            if applied or time.perf_counter() - buffer.sent > spec.flush_interval:
                buffer.send(emit, applied)
                applied = []
        timing["time/compute_s"] = time.perf_counter() - start
        if status == "done":
            t1 = time.perf_counter()
            result_metrics.update({k: float(v) for k, v in trainer.on_epoch_end(ctx).items()})
            timing["time/epoch_end_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            result_metrics.update({k: float(v) for k, v in trainer.evaluate().items()})
            timing["time/eval_s"] = time.perf_counter() - t1
            slot.step_in_epoch = 0
    except Exception as exc:  # the model's own bug or crash: reported, the run goes on
        status = "error"
        result_metrics = {}
        error = "".join(traceback.format_exception(exc))
    if profiler is not None:
        _save_profile(profiler, spec.profile_path, emit, spec.instance)
    if applied or (packer is None and buffer):
        buffer.send(emit, applied)
    compute = timing.get("time/compute_s", 0.0)
    sys_metrics = {
        "sys/steps_per_s": steps_run / compute if compute > 0 else 0.0,
        "sys/step_ms": 1000 * compute / steps_run if steps_run else 0.0,
        **_process_usage(),
    }
    if trainer.resources.device.startswith("cuda"):
        import torch

        sys_metrics["sys/gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    return {"epoch": epoch, "status": status, "metrics": result_metrics, "timing": dict(timing),
            "sys": sys_metrics, "step": slot.step, "steps_run": steps_run, "error": error,
            "seconds": time.perf_counter() - start,
            "train_means": {f"{k}_epoch": v / counts[k] for k, v in sums.items()}}


class _Packer:
    """Step metrics as a few byte strings (epochs, steps, values, times, name indices): a
    message of a second of steps is then a handful of objects for Dask to carry through the
    worker's event loop, the scheduler and the client, not six per point. :func:`unpack`
    gives the rows back."""

    __slots__ = ("model", "names", "index", "epochs", "steps", "values", "times", "which", "sent")

    def __init__(self, model: str) -> None:
        self.model = model
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.sent = time.perf_counter()
        self._clear()

    def _clear(self) -> None:
        self.epochs, self.steps, self.values, self.times, self.which = (
            array.array("q"), array.array("q"), array.array("d"), array.array("d"), array.array("H"))

    def add(self, epoch: int, step: int, name: str, value: float, now: float) -> None:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        self.epochs.append(epoch)
        self.steps.append(step)
        self.values.append(value)
        self.times.append(now)
        self.which.append(i)

    def __len__(self) -> int:
        return len(self.steps)

    def pack(self) -> dict[str, Any]:
        return {"model": self.model, "names": list(self.names), "epochs": self.epochs.tobytes(),
                "steps": self.steps.tobytes(), "values": self.values.tobytes(), "times": self.times.tobytes(),
                "which": self.which.tobytes()}

    def send(self, emit, applied: list[dict[str, Any]]) -> None:
        """Emit what is buffered (and ``applied``, the changes applied since the last send)."""
        emit({"kind": "metrics", "model": self.model, "packed": self.pack(), "applied": applied})
        self._clear()
        self.sent = time.perf_counter()


def unpack(packed: dict[str, Any]) -> list[tuple[str, int, int, str, float, float]]:
    """The rows ``(model, epoch, step, name, value, wall_time)`` of a :class:`_Packer` message."""
    columns = []
    for key, code in (("epochs", "q"), ("steps", "q"), ("values", "d"), ("times", "d"), ("which", "H")):
        column = array.array(code)
        column.frombytes(packed[key])
        columns.append(column)
    model, names = packed["model"], packed["names"]
    return [(model, epoch, step, names[i], value, now) for epoch, step, value, now, i in zip(*columns)]


def _copy_state(state: Any) -> Any:
    """A deep copy of a ``state_dict``: tensors cloned, containers rebuilt, anything else
    through ``copy.deepcopy`` (several times faster than deepcopy of the whole, taken every epoch)."""
    import torch

    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if type(state) in (dict, collections.OrderedDict):
        return type(state)((k, _copy_state(v)) for k, v in state.items())
    if type(state) in (list, tuple):
        return type(state)(_copy_state(v) for v in state)
    if state is None or isinstance(state, (int, float, str, bool)):
        return state
    return copy.deepcopy(state)


_PROCESS: list[Any] = []


def _process_usage() -> dict[str, float]:
    """This worker's memory and CPU use since the previous call (one psutil handle per process,
    since ``cpu_percent`` measures between calls on the same handle)."""
    import psutil

    if not _PROCESS:
        _PROCESS.append(psutil.Process())
        _PROCESS[0].cpu_percent(interval=None)
    proc = _PROCESS[0]
    return {"sys/rss_mb": proc.memory_info().rss / 2**20, "sys/cpu_percent": proc.cpu_percent(interval=None)}


def _start_profiler():
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    import torch

    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    prof = profile(activities=activities, record_shapes=False)
    prof.__enter__()
    return prof


def _save_profile(prof, path: str, emit, instance: str) -> None:
    """Chrome trace (open in chrome://tracing or Perfetto) and the top operators as text."""
    from pathlib import Path

    prof.__exit__(None, None, None)
    try:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(target))
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        target.with_suffix(".txt").write_text(table)
        emit({"kind": "log", "model": instance, "text": f"profile written to {target}"})
    except OSError as exc:  # a remote worker without the run directory
        emit({"kind": "log", "model": instance, "text": f"could not write the profile: {exc}"})


class SlotLost(RuntimeError):
    """The trainer is not in this worker (its worker died and Dask re-ran the task elsewhere)."""


def export(run_id: str, instance: str, *deps: Any) -> dict[str, Any]:
    slot = _SLOTS.get((run_id, instance))
    if slot is None:
        if run_id in _ENDED:  # submitted before the run ended, run after: nobody will read it
            return {}
        raise SlotLost(f"{instance} is not live in this worker")
    with slot.lock:
        return _device.to_host(slot.trainer.export_knowledge())


def state(run_id: str, instance: str, *deps: Any) -> dict[str, Any]:
    """A trainer's state for another worker (population exploit): the trainer's state plus
    the engine's RNG and step counter, its tensors as numpy arrays (:func:`to_wire`; the
    receiver calls :func:`from_wire`)."""
    slot = _SLOTS[(run_id, instance)]
    with slot.lock:
        return to_wire(_state_payload(slot, slot.rng, copy=True))  # it travels while the trainer trains on


def checkpoint_state(slot: _Slot, rng: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds of a trainer (its lock held by the caller), serialized here:
    ``data`` (``torch.save`` bytes the driver writes as they are, so the driver needs no
    torch), ``files`` (its :meth:`~workbench.trainer.Trainer.output_files`) and
    ``state_seconds`` (the time both took)."""
    import torch

    t0 = time.perf_counter()
    buffer = io.BytesIO()
    torch.save(_state_payload(slot, rng, copy=False), buffer)  # serialized under the lock: no copy needed
    files = slot.trainer.output_files() if hasattr(slot.trainer, "output_files") else {}
    return {"data": buffer.getvalue(), "files": files, "state_seconds": time.perf_counter() - t0}


def _state_payload(slot: _Slot, rng: dict[str, Any], copy: bool) -> dict[str, Any]:
    """The trainer's state in host memory and the engine's part; ``rng``: the global
    generators' states as the next step would find them; ``copy``: sharing no storage
    with the live trainer."""
    return {"trainer": _device.to_host(slot.trainer.state_dict(), copy=copy),
            "engine": {"rng": rng_to_tensors(rng), "step": slot.step}}


class _Wired:
    """A host tensor carried as its numpy array. Pickling a torch tensor costs about 0.1 ms
    each way (its storage goes through torch's own reducer): a digits MLP's state with its
    optimiser, 29 tensors and 350 KB, took 3 ms to pickle and 4 ms to unpickle, against
    0.1 ms each as numpy arrays."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array

    def __reduce__(self):
        return (_Wired, (self.array,))


def to_wire(obj: Any) -> Any:
    """``obj`` with every plain host tensor numpy can hold replaced by a :class:`_Wired`
    sharing its memory (dicts, ordered dicts with their metadata, lists and tuples rebuilt).
    Other tensors (bfloat16, sparse, subclasses) stay as they are."""
    import numpy as np
    import torch

    if type(obj) is torch.Tensor:
        if obj.device.type == "cpu" and obj.layout == torch.strided and not obj.requires_grad:
            try:
                return _Wired(obj.numpy())
            except (TypeError, RuntimeError):  # a dtype numpy lacks (bfloat16), conjugate views
                return obj
        return obj
    if isinstance(obj, np.ndarray):
        return obj
    return _rebuild(obj, to_wire)


def from_wire(obj: Any) -> Any:
    """The inverse of :func:`to_wire`: every :class:`_Wired` back to a torch tensor."""
    import torch

    if isinstance(obj, _Wired):
        array = obj.array
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    return _rebuild(obj, from_wire)


def _rebuild(obj: Any, fn) -> Any:
    if isinstance(obj, dict):
        out = type(obj)((k, fn(v)) for k, v in obj.items()) if type(obj) in (dict, collections.OrderedDict) \
            else {k: fn(v) for k, v in obj.items()}
        if hasattr(obj, "_metadata"):  # a module's state_dict keeps its version metadata
            out._metadata = obj._metadata
        return out
    if type(obj) is list:
        return [fn(v) for v in obj]
    if type(obj) is tuple:
        return tuple(fn(v) for v in obj)
    return obj


def load_state(run_id: str, instance: str, payload: dict[str, Any], hparams: dict[str, Any] | None = None,
               *deps: Any) -> dict[str, Any]:
    """Load a state into a live trainer (population exploit, NaN roll-back)."""
    slot = _SLOTS[(run_id, instance)]
    with slot.lock:
        slot.trainer.load_state_dict(copy.deepcopy(from_wire(payload["trainer"])))
        if hparams:
            for name, value in hparams.items():
                slot.trainer.set_hparam(name, value)
        slot.step_in_epoch = 0
        return dict(slot.trainer.hparams)


def rollback(run_id: str, instance: str, lr_factor: float) -> dict[str, Any] | None:
    """Restore the state at the start of the failed epoch; return ``{"hparams", "step"}``."""
    slot = _SLOTS[(run_id, instance)]
    with slot.lock:
        if slot.snapshot is None:
            return None
        slot.trainer.load_state_dict(copy.deepcopy(slot.snapshot["trainer"]))
        slot.rng, slot.step, slot.step_in_epoch = slot.snapshot["rng"], slot.snapshot["step"], 0
        if "lr" in slot.trainer.hparams:
            slot.trainer.set_hparam("lr", slot.trainer.hparams["lr"] * lr_factor)
        return {"hparams": dict(slot.trainer.hparams), "step": slot.step}
