"""The driver's decisions, as plain functions over a frozen :class:`Ledger`.

The coordinator (``coordinator.py``) owns the mutable state and the Dask work; before each
decision it freezes what it knows into a :class:`Ledger` and asks a function here what to
do: which models may start a segment, which peer export each consumer gets, how many
epochs a segment spans, whether a checkpoint or a controller round is due, whether a
failure rolls back or fails the model, where to restore on resume, which worker a model
goes to. Nothing here touches Dask, the store or the clock, so every rule is tested with
scripted ledgers (``tests/workbench/test_policy.py``). The shape follows dask-ml's
``_incremental.py``: pure ``additional_calls(info)`` inside an async driver.

Determinism rests on :func:`ready`: a model starts epoch ``e+1`` only when every running
peer it learns from has finished epoch ``e`` (and, with a controller, round ``e`` is
decided), so the order in which workers finish never changes the numbers.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import types
from collections.abc import Iterable, Mapping
from fnmatch import fnmatch

from .checkpoint import should_checkpoint
from .states import ModelState

__all__ = ["ModelEntry", "Ledger", "FailureAction", "SEGMENT_SECONDS", "flow_of", "shared_kinds", "peers",
           "consumers", "ready", "waiting_for", "ready_models", "route_knowledge", "should_export", "alone", "segment_epochs",
           "checkpoint_seconds", "checkpoint_due", "controller_round_due", "after_failure", "forgive", "resume_epochs",
           "assign_workers", "choose_worker"]

# Which preset switch (``collaboration.*``) governs a knowledge kind.
_FLOWS = {"soft_predictions/*": "mutual_learning", "causal_mask/*": "causal_mask",
          "transitions/*": "experience", "imagined_transitions/*": "experience"}
# A multi-epoch segment's target length (docs/engine.md), kept by the worker. Each segment
# costs the driver and its scheduler a task, a result and its events; two seconds keep that
# a few percent of the training CPU for epochs of tens of milliseconds. Live changes reach a
# segment's steps through the mailbox whatever its length; what waits for its end is the
# epochs' records (evaluation metrics, checkpoints written, the progress table's epoch).
SEGMENT_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the driver knows about one trainer at the moment of a decision."""

    name: str
    state: ModelState = ModelState.RUNNING
    completed: int = 0  # epochs done
    total_epochs: int = 1
    step: int = 0  # global step after the last finished segment
    in_flight: bool = False  # a segment is submitted and not yet collected
    produces: frozenset[str] = frozenset()
    consumes: frozenset[str] = frozenset()
    exports: frozenset[int] = frozenset()  # epochs after which its knowledge export is available
    failures: int = 0
    pinned: frozenset[str] = frozenset()
    worker: str | None = None
    gpu_index: int | None = None
    epoch_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class Ledger:
    """A frozen picture of the run: its models and the run-wide settings decisions depend on."""

    models: Mapping[str, ModelEntry]
    collaborate: bool = False  # the preset's enable_collaborative_training
    flows: Mapping[str, bool] = dataclasses.field(default_factory=dict)  # collaboration.* switches (absent: on)
    controllers: bool = False  # a controller steers the run (rounds gate every model)
    round: int = 0  # the last controller round decided
    checkpoint_interval: int = 1
    checkpoint_seconds: float = 0.0  # the preset's floor between two checkpoints of a model alone
    max_failures: int = 3
    profile_epoch: int | None = None

    @functools.cached_property
    def edges(self) -> Mapping[tuple[str, str], frozenset[str]]:
        """``(producer, consumer) -> kinds`` for every pair knowledge flows between (computed once)."""
        if not self.collaborate:
            return {}
        out = {}
        for p in self.models.values():
            for c in self.models.values():
                kinds = frozenset(k for k in p.produces & c.consumes if self.flows.get(flow_of(k), True))
                if kinds and p.name != c.name:
                    out[(p.name, c.name)] = kinds
        return out

    @functools.cached_property
    def _sources(self) -> Mapping[str, list[str]]:
        out: dict[str, list[str]] = {name: [] for name in self.models}
        for producer, consumer in self.edges:
            out[consumer].append(producer)
        return out

    @functools.cached_property
    def _sinks(self) -> Mapping[str, list[str]]:
        out: dict[str, list[str]] = {name: [] for name in self.models}
        for producer, consumer in self.edges:
            out[producer].append(consumer)
        return out

    @classmethod
    def of(cls, entries: Iterable[ModelEntry], **settings) -> "Ledger":
        models = types.MappingProxyType({e.name: e for e in entries})
        if "flows" in settings:
            settings["flows"] = types.MappingProxyType(dict(settings["flows"]))
        return cls(models, **settings)


class FailureAction(str, enum.Enum):
    RETRY = "retry"  # roll back (a failed segment) or rebuild (a lost worker), then go on
    FAIL = "fail"  # too many failures: mark the model failed, the others go on


def flow_of(kind: str) -> str:
    """The ``collaboration.*`` switch governing a knowledge kind (its prefix by default)."""
    for pattern, flow in _FLOWS.items():
        if fnmatch(kind, pattern):
            return flow
    return kind.split("/", 1)[0]


def shared_kinds(ledger: Ledger, producer: str, consumer: str) -> frozenset[str]:
    """Knowledge kinds that flow from ``producer`` to ``consumer`` (empty when switched off)."""
    return ledger.edges.get((producer, consumer), frozenset())


def peers(ledger: Ledger, name: str) -> list[str]:
    """The models ``name`` learns from."""
    return list(ledger._sources[name])


def consumers(ledger: Ledger, name: str) -> list[str]:
    """The models that learn from ``name``."""
    return list(ledger._sinks[name])


def ready(ledger: Ledger, name: str) -> bool:
    """May ``name`` start its next segment now?

    It must be running, idle and unfinished; with a controller, the round of its last epoch
    must be decided; and every running or paused peer must have finished that epoch too, so
    the knowledge it imports is the same whatever the timing; and no running consumer of its
    knowledge may lag behind it by more than the segment it has in flight. Failed, finished or stopped
    peers no longer hold it back.
    """
    m = ledger.models[name]
    if m.state != ModelState.RUNNING or m.in_flight or m.completed >= m.total_epochs:
        return False
    if ledger.controllers and ledger.round < m.completed:
        return False
    live = (ModelState.RUNNING, ModelState.PAUSED)
    if not all(ledger.models[p].completed >= m.completed for p in peers(ledger, name)
               if ledger.models[p].state in live):
        return False
    # Nor ahead of a consumer that has yet to take its previous export: only the last two
    # exports are kept, so with a one-way flow what the consumer got would depend on timing.
    return all(ledger.models[c].completed + ledger.models[c].in_flight >= m.completed
               for c in consumers(ledger, name) if ledger.models[c].state in live)


def waiting_for(ledger: Ledger, name: str) -> str | None:
    """What holds ``name`` back from its next segment, in words, or None when nothing does.

    The reasons :func:`ready` checks, named for people: ``"controller round 3"``, ``"peer
    digits_cnn@digits"`` (with ``" (paused)"`` while that peer is paused, which holds
    ``name`` until it resumes), ``"consumer ..."`` (a model learning from ``name`` that has
    to catch up first). A model that is training, paused, finished or not built has none.
    """
    m = ledger.models[name]
    if m.state != ModelState.RUNNING or m.in_flight or m.completed >= m.total_epochs:
        return None
    if ledger.controllers and ledger.round < m.completed:
        return f"controller round {m.completed}"
    live = (ModelState.RUNNING, ModelState.PAUSED)

    def named(kind: str, other: str) -> str:
        paused = " (paused)" if ledger.models[other].state == ModelState.PAUSED else ""
        return f"{kind} {other}{paused}"

    for p in peers(ledger, name):
        peer = ledger.models[p]
        if peer.state in live and peer.completed < m.completed:
            return named("peer", p)
    for c in consumers(ledger, name):
        consumer = ledger.models[c]
        if consumer.state in live and consumer.completed + consumer.in_flight < m.completed:
            return named("consumer", c)
    return None


def ready_models(ledger: Ledger) -> list[str]:
    return [name for name in ledger.models if ready(ledger, name)]


def route_knowledge(ledger: Ledger, name: str) -> dict[str, dict[str, int]]:
    """``{kind: {peer: export_epoch}}`` for ``name``'s next segment: each peer's newest export
    made after an epoch no later than the consumer's own last epoch."""
    m = ledger.models[name]
    out: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for p in peers(ledger, name):
        epochs = [e for e in ledger.models[p].exports if e <= m.completed]
        if not epochs:
            continue
        for kind in sorted(shared_kinds(ledger, p, name)):
            out[kind][p] = max(epochs)
    return dict(out)


def should_export(ledger: Ledger, name: str) -> bool:
    """Export ``name``'s knowledge after an epoch only if it is alive and someone consumes it."""
    return ledger.models[name].state != ModelState.FAILED and bool(consumers(ledger, name))


def alone(ledger: Ledger, name: str) -> bool:
    """Does nothing need the driver between ``name``'s epochs? (no knowledge flow in or
    out, no controller, no profile): its segments may then span many epochs, and its
    checkpoints need not fall on the same epochs as any other model's."""
    return not (ledger.controllers or ledger.profile_epoch or peers(ledger, name) or consumers(ledger, name))


def segment_epochs(ledger: Ledger, name: str) -> int:
    """The most epochs ``name``'s next segment may train.

    One, unless the model is :func:`alone`; then every remaining epoch, and the worker
    ends the segment after the first epoch that finishes :data:`SEGMENT_SECONDS` after it
    started (``SegmentSpec.seconds``), so its length adapts to the epochs' length without
    a first one-epoch segment to measure it, or after an epoch it took a checkpoint state
    at (``SegmentSpec.checkpoint_interval``: the state is then on disk at once, never lost
    with a later epoch of the segment that hangs; :func:`checkpoint_seconds` keeps those rare).
    """
    m = ledger.models[name]
    if not alone(ledger, name):
        return 1
    return max(1, m.total_epochs - m.completed)


def checkpoint_seconds(ledger: Ledger, name: str) -> float:
    """The time floor between two of ``name``'s checkpoints (``checkpoint_seconds`` of the
    preset), or 0 when its checkpoints must fall every ``checkpoint_interval`` epochs:
    models coupled by knowledge or a controller resume together from an epoch every one of
    them has a checkpoint for (:func:`resume_epochs`), so theirs cannot depend on timing."""
    return ledger.checkpoint_seconds if alone(ledger, name) else 0.0


def checkpoint_due(ledger: Ledger, name: str) -> bool:
    """Checkpoint ``name`` now (its last epoch was just completed)?"""
    m = ledger.models[name]
    return should_checkpoint(m.completed, ledger.checkpoint_interval, m.total_epochs)


def controller_round_due(ledger: Ledger) -> int | None:
    """The controller round to decide now, or None: every running model has finished the
    round's epoch and none is training."""
    if not ledger.controllers:
        return None
    active = [m for m in ledger.models.values() if m.state == ModelState.RUNNING]
    if not active or any(m.in_flight for m in active):
        return None
    target = ledger.round + 1
    return target if all(m.completed >= target for m in active) else None


def after_failure(failures: int, max_failures: int) -> FailureAction:
    """After the ``failures``-th failure in a row (a segment error, a non-finite loss or a
    lost worker): retry while at most ``max_failures``, else give the model up."""
    return FailureAction.FAIL if failures > max_failures else FailureAction.RETRY


def forgive(failures: int) -> int:
    """A finished epoch takes one failure off the count, so rare failures never add up."""
    return max(0, failures - 1)


def resume_epochs(models: dict[str, tuple[list[int], int]], controllers: dict[str, list[int]],
                  links: list[tuple[str, str]] = ()) -> dict[str, int]:
    """The epoch each model resumes from (0: it starts over).

    ``models`` maps a name to its valid checkpoint epochs and its total epochs,
    ``controllers`` a controller to its valid rounds (its state entering each), ``links``
    pairs of models that exchanged knowledge. Coupled models (linked, directly or not; all
    of them under a controller) resume together from the latest epoch every one of them,
    and every controller, has a checkpoint for; a model that finished earlier counts with
    its final checkpoint. Coupled models resumed from different epochs would exchange
    knowledge from other epochs than they did the first time. Others resume from their own
    latest checkpoint.
    """
    group = {name: name for name in models}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    pairs = [(a, b) for a, b in links if a in group and b in group]
    if controllers:
        pairs += [(a, b) for a, b in zip(models, list(models)[1:])]
    for a, b in pairs:
        group[root(a)] = root(b)
    members: dict[str, list[str]] = {}
    for name in models:
        members.setdefault(root(name), []).append(name)
    out = {}
    for names in members.values():
        candidates = set().union(*(set(models[n][0]) for n in names))
        for n in names:
            epochs, total = models[n]
            last = max(epochs, default=0)
            candidates = {e for e in candidates if e in epochs or (last == total and e > last)}
        for rounds in controllers.values():
            candidates &= set(rounds)
        out.update({n: max(candidates, default=0) for n in names})
    return out


def assign_workers(models: Mapping[str, int | None], workers: Mapping[str, tuple[int | None, frozenset[str]]]
                   ) -> dict[str, str]:
    """A worker for every model at start.

    ``models``: name -> GPU index of its placement (None: CPU). ``workers``: address ->
    (its GPU index or None, the model names it has a ``slot-<name>`` resource for). A model
    with a slot goes there; a GPU model goes to its GPU's worker; a CPU model to the CPU
    worker with the fewest models so far (by address on ties), so the layout is stable.
    """
    addresses = sorted(workers)
    gpu = {g: addr for addr, (g, _) in workers.items() if g is not None}
    cpu = [a for a in addresses if workers[a][0] is None] or addresses
    slots = {name: addr for addr, (_, names) in workers.items() for name in names}
    load: collections.Counter[str] = collections.Counter()
    out = {}
    for name, gpu_index in models.items():
        if name in slots:
            out[name] = slots[name]
        elif gpu_index is not None and gpu_index in gpu:
            out[name] = gpu[gpu_index]
        else:
            out[name] = min(cpu, key=lambda a: (load[a], a))
            load[out[name]] += 1
    return out


def choose_worker(ledger: Ledger, name: str, alive: Iterable[str]) -> str | None:
    """Where to rebuild ``name`` after its worker died: its own worker if it is back, else the
    live worker holding the fewest other models. None when no worker is alive."""
    alive = sorted(alive)
    current = ledger.models[name].worker
    if current in alive or not alive:
        return current if current in alive else None
    load = collections.Counter(m.worker for m in ledger.models.values() if m.name != name)
    return min(alive, key=lambda a: (load[a], a))
