"""Replay: re-run a recorded run with its live changes at the same trainer steps.

``workbench run --replay RUN`` (``start_run(replay=RUN)``) trains a new run from RUN's
``preset.json`` (seed included) and applies every hyperparameter change a user made,
at the global step where the trainer applied it: the ``hparam_applied`` event's step,
or, for a change taken between segments, its ``hparam`` event's step (the next
segment's start). Controller decisions are not replayed but recomputed; on the CPU they
come out the same because the controller sees the same values and pins at each round:
a change reaches the driver's copy (and its pin) once its step is reached, and never
before the controller round after the one recorded with it. Pauses do not change the
numbers and are not replayed.

:func:`replay_plan` reads a run into a :class:`ReplaySchedule`; :class:`ReplayQueue`
decides (without Dask) which changes a segment carries and when the driver's copy
takes them.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import RunNotFoundError, WorkbenchError

__all__ = ["ScheduledChange", "ScheduledRelease", "ReplaySchedule", "ReplayQueue", "replay_plan",
           "schedule_from_events"]


@dataclasses.dataclass(frozen=True)
class ScheduledChange:
    model: str
    name: str
    value: Any
    step: int  # the trainer applies it when its global step reaches this, before that step runs
    round: int  # the controller round last decided when the original driver took the change
    pinned: bool
    original_id: int
    order: int  # position in the original event stream


@dataclasses.dataclass(frozen=True)
class ScheduledRelease:
    model: str
    name: str
    round: int
    order: int


@dataclasses.dataclass(frozen=True)
class ReplaySchedule:
    run_id: str  # the replayed run
    preset_name: str
    preset: Mapping[str, Any]  # its resolved preset, exactly what ran
    changes: tuple[ScheduledChange, ...]
    releases: tuple[ScheduledRelease, ...] = ()


def schedule_from_events(rows: Iterable[tuple[str | None, str, Mapping[str, Any]]]
                         ) -> tuple[tuple[ScheduledChange, ...], tuple[ScheduledRelease, ...]]:
    """The user's changes and releases out of a run's events ``(model, kind, payload)``, in order.

    A run that was killed and resumed redid the work since its checkpoints: changes made
    after the restore point were lost then, so they are dropped here too.
    """
    changes: list[dict[str, Any]] = []
    releases: list[ScheduledRelease] = []
    segment_step: dict[tuple[str, int], int] = {}
    for order, (model, kind, p) in enumerate(rows):
        if kind == "hparam" and p.get("source") in ("user", "replay") and model:
            if p.get("client") == "resume":
                raise WorkbenchError(f"the run was resumed with changed settings (--set {p.get('name')}); its "
                                     "preset.json no longer says what it started with, so it cannot be replayed "
                                     "exactly: replay a run resumed without --set")
            changes.append({"model": model, "name": p["name"], "value": p["new"], "step": int(p.get("step") or 0),
                            "round": int(p.get("round", p.get("epoch", 0)) or 0), "pinned": bool(p.get("pinned", True)),
                            "original_id": int(p.get("id") or 0), "order": order, "acked": False})
        elif kind == "hparam_applied":
            for c in reversed(changes):
                if c["original_id"] == p.get("id") and not c["acked"] and model in (None, c["model"]):
                    c["step"], c["acked"] = int(p["step"]), True
                    break
        elif kind == "release" and model:
            releases.append(ScheduledRelease(model, p["name"], int(p.get("round", p.get("epoch", 0)) or 0), order))
        elif kind == "segment" and model:
            segment_step[(model, int(p["epoch"]))] = int(p["step"])
        elif kind == "resumed":
            start = {m: (segment_step.get((m, int(e)), 0) if e else 0) for m, e in p.get("from_epoch", {}).items()}
            changes = [c for c in changes if c["step"] <= start.get(c["model"], 0)]
            first = min(p.get("from_epoch", {}).values(), default=0)
            releases = [r for r in releases if r.round < first]
    out = tuple(ScheduledChange(**{k: v for k, v in c.items() if k != "acked"}) for c in changes)
    return out, tuple(releases)


def replay_plan(run: str | Path, runs_dir: str | Path | None = None) -> ReplaySchedule:
    """Read a run (an id in ``runs_dir``, or its directory) into a :class:`ReplaySchedule`."""
    from .checkpoint import check_name
    from .run import runs_dir as default_runs_dir
    from .store import read_store

    path = Path(run)
    if not (path / "store.sqlite").exists():
        path = default_runs_dir(runs_dir) / check_name(str(run), "run id")
    if not (path / "store.sqlite").exists() or not (path / "preset.json").exists():
        raise RunNotFoundError(f"no run '{run}' to replay in {path.parent} (list them with `workbench status`)")
    preset = json.loads((path / "preset.json").read_text())
    name = preset.pop("name", path.name)
    events = read_store(path / "store.sqlite").events()
    rows = zip(events["model"].where(events["model"].notna(), None), events["kind"], events["payload"])
    changes, releases = schedule_from_events(rows)
    return ReplaySchedule(path.name, name, preset, changes, releases)


class ReplayQueue:
    """The changes not yet in the driver's copy, and the rule for when they get there.

    A change enters the copy (and sets its pin) once its model is idle at or past its step,
    and, when the copy is read for a controller round, only if the original driver had it
    before that round. A release waits for the earlier changes of the same hyperparameter
    and for its round. Until then a change rides in its model's segments, applied by the
    trainer at its exact step.
    """

    def __init__(self, schedule: ReplaySchedule):
        self.pending: list[ScheduledChange | ScheduledRelease] = sorted(
            [*schedule.changes, *schedule.releases], key=lambda item: item.order)

    def due(self, steps: Mapping[str, int], idle: Iterable[str], next_round: int | None = None
            ) -> list[ScheduledChange | ScheduledRelease]:
        """Take out what the copy gets now. ``steps``: each model's global step; ``idle``: the
        models without a segment in flight; ``next_round``: the controller round about to be
        decided (None: a segment is about to be scheduled)."""
        idle = set(idle)
        out, keep = [], []
        waiting: set[tuple[str, str]] = set()  # hyperparameters with an earlier change still pending
        for item in self.pending:
            key = (item.model, item.name)
            if isinstance(item, ScheduledChange):
                ok = (item.model in idle and steps.get(item.model, -1) >= item.step and key not in waiting
                      and (next_round is None or item.round < next_round))
            else:
                ok = next_round is not None and item.round < next_round and key not in waiting
            if ok:
                out.append(item)
            else:
                keep.append(item)
                if isinstance(item, ScheduledChange):
                    waiting.add(key)
        self.pending = keep
        return out

    def for_segment(self, model: str, start_step: int) -> list[ScheduledChange]:
        """The changes a segment of ``model`` starting at ``start_step`` carries."""
        return [c for c in self.pending if isinstance(c, ScheduledChange) and c.model == model
                and c.step >= start_step]

    def drain(self) -> list[ScheduledChange | ScheduledRelease]:
        """Everything left (at the end of the run: the copy ends as the original's did)."""
        out, self.pending = self.pending, []
        return out
