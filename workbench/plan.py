"""From a validated preset to a plan: which model instances train on which data, how.

Only the models' class-level declarations are read (:func:`workbench.registry.describe`:
the built-in trainers' cards), so planning imports no model module and no torch.

Wildcards resolve here: ``all_models`` is every registered model and
``all_available_datasets`` every catalog dataset (plus the preset's user files); each
model gets every listed dataset of a kind it accepts. A population of k gives k
instances of the same model and data (``name@data#1`` ...), the first at the preset's
hyperparameters, the others log-uniformly spread around them (a deterministic function
of the seed).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Any

from .errors import PresetError, WorkbenchError
from .limits import MAX_TRAINERS
from .registry import describe, describe_all, is_controller

__all__ = ["ModelInstance", "Plan", "make_plan", "derive_seed"]


@dataclasses.dataclass(frozen=True)
class ModelInstance:
    instance: str  # unique in the run, path-safe
    model: str  # registry name
    dataset: dict[str, Any] | None  # {"name", "kind", "path"?, "target"?}
    hparams: dict[str, Any]
    epochs: int
    group: str  # population group
    member: int
    seed: int
    resources: dict[str, Any]
    controller: bool = False
    data_seed: int = 0  # the run's seed: every model sees the same splits (mutual learning needs it)


@dataclasses.dataclass(frozen=True)
class Plan:
    preset_name: str
    preset: dict[str, Any]
    instances: tuple[ModelInstance, ...]
    notes: tuple[str, ...] = ()

    @property
    def trainers(self) -> list[ModelInstance]:
        return [i for i in self.instances if not i.controller]

    @property
    def controllers(self) -> list[ModelInstance]:
        return [i for i in self.instances if i.controller]

    def as_dict(self) -> dict[str, Any]:
        return {"preset_name": self.preset_name, "preset": self.preset, "notes": list(self.notes),
                "instances": [dataclasses.asdict(i) for i in self.instances]}


def derive_seed(seed: int, *parts: str) -> int:
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _datasets(preset: dict[str, Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    from .data import list_datasets

    catalog = list_datasets()
    # Absolute paths: workers (on another machine, or started elsewhere) read the same file.
    user = {name: {"name": name, "kind": "labelled_tabular" if spec.get("target") else "tabular",
                   "path": str(Path(spec["path"]).expanduser().resolve()), "target": spec.get("target")}
            for name, spec in preset.get("data", {}).items()}
    wanted: list[str] = []
    for name in preset["datasets"]:
        if name == "all_available_datasets":
            wanted += list(catalog) + list(user)
        else:
            wanted.append(name)
    out: dict[str, dict[str, Any]] = {}
    import difflib

    for name in dict.fromkeys(wanted):
        if name in user:
            out[name] = user[name]
        elif name in catalog:
            out[name] = {"name": name, "kind": catalog[name][0]}
        else:
            known = list(catalog) + list(user) + ["all_available_datasets"]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f", did you mean '{close[0]}'?" if close else f" (known: {', '.join(known)})"
            problems.append(f"datasets: unknown dataset '{name}'{hint}")
    return out


def _spread(hparams: dict[str, Any], schema: dict[str, Any], seed: int, member: int) -> dict[str, Any]:
    """Population member ``member`` > 0: live float hyperparameters spread log-uniformly x/÷ 4."""
    import random

    if member == 0:
        return dict(hparams)
    rng = random.Random(derive_seed(seed, "population", str(member)))
    out = dict(hparams)
    for name, spec in schema.items():
        if spec.live and spec.type is float and spec.log and hparams.get(name, 0) > 0:
            value = hparams[name] * math.exp(rng.uniform(-math.log(4), math.log(4)))
            lo = spec.low if spec.low is not None else -math.inf
            hi = spec.high if spec.high is not None else math.inf
            out[name] = float(min(hi, max(lo, value)))
    return out


def make_plan(preset_name: str, preset: dict[str, Any]) -> Plan:
    """Resolve wildcards, check model and dataset names and hyperparameters; all problems at once."""
    from .trainer import validate_hparams

    problems: list[str] = []
    notes: list[str] = []
    datasets = _datasets(preset, problems)
    wanted: list[str] = []
    explicit: set[str] = set()
    for name in preset["target_models"]:
        if name == "all_models":
            wanted += list(describe_all())
        else:
            wanted.append(name)
            explicit.add(name)
    per_model = preset.get("models", {})
    for name in per_model:
        try:
            describe(name)  # a built-in's card: no model module, no torch
        except WorkbenchError as exc:
            problems.append(f"models.{name}: {exc}")
    seed = int(preset.get("seed", 0))
    instances: list[ModelInstance] = []
    for name in dict.fromkeys(wanted):
        try:
            cls = describe(name)
        except WorkbenchError as exc:
            problems.append(f"target_models: {exc}")
            continue
        spec = per_model.get(name, {})
        hp_in = dict(spec.get("hyperparameters", {}))
        if "batch_size" in cls.hyperparameters and "batch_size" not in hp_in:
            hp_in["batch_size"] = preset["batch_size"]
        hparams, hp_problems = validate_hparams(cls.hyperparameters, hp_in, f"models.{name}.hyperparameters")
        if not hp_problems and hasattr(cls, "check_hparams"):  # trainers have it; controllers need not
            hparams, hp_problems = cls.check_hparams(hparams, f"models.{name}.hyperparameters")
        problems += hp_problems
        epochs = int(spec.get("epochs", preset["epochs"]))
        resources = dict(spec.get("resources", {}))
        if getattr(cls, "cpu_threads", None) and "threads" not in resources:
            resources["threads"] = cls.cpu_threads
        if is_controller(cls):
            instances.append(ModelInstance(name, name, None, hparams, epochs, name, 0,
                                           derive_seed(seed, name), resources, controller=True))
            continue
        names = spec.get("datasets") or list(datasets)
        matching = [datasets[d] for d in names if d in datasets and datasets[d]["kind"] in cls.accepts]
        if not matching:
            msg = f"model '{name}' accepts {list(cls.accepts)} but no listed dataset has such a kind"
            (problems if name in explicit else notes).append(msg)
            continue
        population = int(spec.get("population", 1))
        for ds in matching:
            group = f"{name}@{ds['name']}"
            for member in range(population):
                instance = group if member == 0 else f"{group}#{member}"
                instances.append(ModelInstance(
                    instance, name, ds, _spread(hparams, cls.hyperparameters, seed, member) if member else hparams,
                    epochs, group, member, derive_seed(seed, instance), resources, data_seed=seed))
    trainers = sum(not i.controller for i in instances)
    if not trainers and not problems:
        problems.append("no model to train: check target_models and datasets")
    if trainers > MAX_TRAINERS:
        problems.append(f"{trainers} trainers (models x datasets x population); a run holds at most "
                        f"{MAX_TRAINERS}: lower a population or list fewer models or datasets")
    if problems:
        raise PresetError(problems, source=f"preset '{preset_name}'")
    return Plan(preset_name, _resolve_controller(preset, instances, explicit, notes), tuple(instances), tuple(notes))


def _resolve_controller(preset: dict[str, Any], instances: list[ModelInstance], explicit: set[str],
                        notes: list[str]) -> dict[str, Any]:
    """``preset`` with ``collaboration.controller`` decided when the preset left it open:
    on when ``target_models`` names a controller, off when one only came with ``all_models``
    (measured, it did not pay there: docs/collaboration.md)."""
    collab = dict(preset.get("collaboration") or {})
    if collab.get("controller") is not None:
        return preset
    named = [i.model for i in instances if i.controller and i.model in explicit]
    others = [i.model for i in instances if i.controller and i.model not in explicit]
    collab["controller"] = bool(named)
    if others and not named:
        notes.append(f"{', '.join(others)} came in with all_models and steers nothing: name it in target_models "
                     f"or set collaboration.controller=true")
    return {**preset, "collaboration": collab}
