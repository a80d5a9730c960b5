"""Validation of one preset: every problem collected and named by its path."""
from __future__ import annotations

import difflib
import re
from typing import Any

from ..limits import (MAX_BATCH_SIZE, MAX_EPOCHS, MAX_FAILURES, MAX_POPULATION, MAX_SEED, MAX_SEGMENT_TIMEOUT,
                      MAX_WORKERS)

__all__ = ["DEFAULTS", "REQUIRED", "validate_preset"]

REQUIRED = ("description", "datasets", "epochs", "batch_size", "target_models",
            "checkpoint_interval", "enable_collaborative_training")

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "models": {},  # per model: hyperparameters, population, epochs, resources, datasets
    "data": {},  # user datasets: name -> {"path": ..., "target": ...}
    # A flow is on by default only where it beat its controls in most seeds; mutual learning
    # and experience did not (docs/collaboration.md). The controller (None: decided by the
    # plan) steers when target_models names it, not when it only comes in with all_models.
    "collaboration": {"mutual_learning": False, "causal_mask": True, "experience": False, "controller": None},
    "workers": None,  # Dask workers of the local cluster; None = one per core
    "max_failures": 3,  # NaN roll-backs and crashed segments before a model is marked failed
    "profile_epoch": None,  # run this epoch of every model under torch.profiler (RUN/profiles/)
    "segment_timeout": None,  # seconds before a segment that never returns fails its model; None = automatic
    # A model training alone (no knowledge flow, no controller) skips an interval's checkpoint
    # taken less than this many seconds after its previous one; 0: every checkpoint_interval.
    "checkpoint_seconds": 10,
}

_MODEL_KEYS = {"hyperparameters": dict, "population": int, "epochs": int, "resources": dict, "datasets": list}
_RESOURCE_KEYS = {"device": str, "threads": int, "gpu_fraction": (int, float)}
_COLLAB_KEYS = set(DEFAULTS["collaboration"])
_MOST = {"epochs": MAX_EPOCHS, "batch_size": MAX_BATCH_SIZE, "checkpoint_interval": MAX_EPOCHS,
         "max_failures": MAX_FAILURES, "workers": MAX_WORKERS, "profile_epoch": MAX_EPOCHS,
         "population": MAX_POPULATION}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # a user dataset's name ends up in folder names


def _unknown(path: str, key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f", did you mean '{close[0]}'?" if close else f" (known: {', '.join(sorted(known))})"
    return f"{path}: unknown key '{key}'{hint}"


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            list: "a list", dict: "an object"}.get(t, t.__name__)


def _check_type(path: str, value: Any, t, problems: list[str]) -> bool:
    ok = isinstance(value, t) and not (isinstance(value, bool) and t in (int, (int, float)))
    if not ok:
        problems.append(f"{path}: must be {_type_name(t)}, got {value!r}")
    return ok


def _positive_int(path: str, value: Any, problems: list[str], most: int) -> None:
    if _check_type(path, value, int, problems):
        if value <= 0:
            problems.append(f"{path}: must be > 0, got {value}")
        elif value > most:
            problems.append(f"{path}: must be at most {most:,}, got {value:,}")


def validate_preset(name: str, preset: Any, path: str | None = None) -> list[str]:
    """Structural problems of one preset (names of models/datasets are checked at plan time)."""
    path = path or f"presets.{name}"
    problems: list[str] = []
    if not isinstance(preset, dict):
        return [f"{path}: must be an object, got {type(preset).__name__}"]
    known = set(REQUIRED) | set(DEFAULTS)
    for key in preset:
        if key not in known:
            problems.append(_unknown(path, key, known))
    for key in REQUIRED:
        if key not in preset and not (key in ("description",)):
            problems.append(f"{path}: missing required key '{key}'")
    if "description" in preset:
        _check_type(f"{path}.description", preset["description"], str, problems)
    for key in ("datasets", "target_models"):
        if key in preset and _check_type(f"{path}.{key}", preset[key], list, problems):
            if not preset[key]:
                problems.append(f"{path}.{key}: must not be empty")
            for i, item in enumerate(preset[key]):
                _check_type(f"{path}.{key}[{i}]", item, str, problems)
    for key in ("epochs", "batch_size", "checkpoint_interval", "max_failures"):
        if key in preset:
            _positive_int(f"{path}.{key}", preset[key], problems, _MOST[key])
    if "enable_collaborative_training" in preset:
        _check_type(f"{path}.enable_collaborative_training", preset["enable_collaborative_training"], bool, problems)
    if "seed" in preset and _check_type(f"{path}.seed", preset["seed"], int, problems):
        if not 0 <= preset["seed"] <= MAX_SEED:
            problems.append(f"{path}.seed: must be in 0..{MAX_SEED}, got {preset['seed']}")
    for key in ("workers", "profile_epoch"):
        if preset.get(key) is not None:
            _positive_int(f"{path}.{key}", preset[key], problems, _MOST[key])
    timeout = preset.get("segment_timeout")
    if timeout is not None and _check_type(f"{path}.segment_timeout", timeout, (int, float), problems):
        if not 1 <= timeout <= MAX_SEGMENT_TIMEOUT:  # also refuses nan and inf
            problems.append(f"{path}.segment_timeout: must be seconds in 1..{MAX_SEGMENT_TIMEOUT:,}, got {timeout}")
    floor = preset.get("checkpoint_seconds")
    if "checkpoint_seconds" in preset and _check_type(f"{path}.checkpoint_seconds", floor, (int, float), problems):
        if not 0 <= floor <= MAX_SEGMENT_TIMEOUT:  # also refuses nan and inf
            problems.append(f"{path}.checkpoint_seconds: must be seconds in 0..{MAX_SEGMENT_TIMEOUT:,} "
                            f"(0: a checkpoint every checkpoint_interval epochs), got {floor}")
    if "collaboration" in preset and _check_type(f"{path}.collaboration", preset["collaboration"], dict, problems):
        for key, value in preset["collaboration"].items():
            if key not in _COLLAB_KEYS:
                problems.append(_unknown(f"{path}.collaboration", key, _COLLAB_KEYS))
            elif not (value is None and DEFAULTS["collaboration"][key] is None):  # None: the plan decides
                _check_type(f"{path}.collaboration.{key}", value, bool, problems)
    if "data" in preset and _check_type(f"{path}.data", preset["data"], dict, problems):
        for dname, spec in preset["data"].items():
            p = f"{path}.data.{dname}"
            if not (isinstance(dname, str) and _NAME.fullmatch(dname) and ".." not in dname):
                problems.append(f"{p}: a dataset name uses letters, digits and _ . - (it names folders)")
            if _check_type(p, spec, dict, problems):
                for key in ("path", "target"):
                    if key in spec:
                        _check_type(f"{p}.{key}", spec[key], str, problems)
                if "path" not in spec:
                    problems.append(f"{p}: missing required key 'path'")
                for key in spec:
                    if key not in ("path", "target"):
                        problems.append(_unknown(p, key, ("path", "target")))
    if "models" in preset and _check_type(f"{path}.models", preset["models"], dict, problems):
        for mname, spec in preset["models"].items():
            p = f"{path}.models.{mname}"
            if not _check_type(p, spec, dict, problems):
                continue
            for key, value in spec.items():
                if key not in _MODEL_KEYS:
                    problems.append(_unknown(p, key, _MODEL_KEYS))
                    continue
                if not _check_type(f"{p}.{key}", value, _MODEL_KEYS[key], problems):
                    continue
                if key in ("population", "epochs"):
                    _positive_int(f"{p}.{key}", value, problems, _MOST[key])
                if key == "resources":
                    for rkey, rvalue in value.items():
                        if rkey not in _RESOURCE_KEYS:
                            problems.append(_unknown(f"{p}.resources", rkey, _RESOURCE_KEYS))
                        elif _check_type(f"{p}.resources.{rkey}", rvalue, _RESOURCE_KEYS[rkey], problems):
                            if rkey == "threads":
                                _positive_int(f"{p}.resources.threads", rvalue, problems, MAX_WORKERS)
                            if rkey == "gpu_fraction" and not 0 < rvalue <= 1:
                                problems.append(f"{p}.resources.gpu_fraction: must be in (0, 1], got {rvalue}")
    return problems
