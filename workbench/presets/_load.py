"""Loading presets (built-in package data or a user file) and ``--set key=value`` overrides."""
from __future__ import annotations

import copy
import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import PresetError
from ._schema import DEFAULTS, validate_preset

__all__ = ["builtin_presets", "load_presets", "resolve_preset", "apply_overrides", "parse_override"]


def _read_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PresetError([f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"],
                          source=source) from None
    if not isinstance(data, dict):
        raise PresetError([f"{source}: must be an object of named presets"], source=source)
    return data


def builtin_presets() -> dict[str, dict[str, Any]]:
    text = resources.files("workbench.presets").joinpath("training_preset.json").read_text()
    return _read_json(text, "training_preset.json")


def load_presets(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Built-in presets, plus those of a user file (user names win).

    A user file holds either named presets (``{"mine": {...}}``) or one preset.
    """
    presets = builtin_presets()
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise PresetError([f"preset file not found: {path}"], source=str(path))
        data = _read_json(path.read_text(), str(path))
        if "epochs" in data or "target_models" in data:  # a single preset, named after the file
            data = {path.stem: data}
        presets.update(data)
    return presets


def resolve_preset(name_or_path: str, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Pick a preset by name (or a path to a JSON file), apply overrides and defaults, validate.

    Returns ``(name, preset)``; raises :class:`PresetError` listing every problem.
    """
    user_file = None
    if name_or_path.endswith(".json") or "/" in name_or_path:
        user_file = name_or_path
    presets = load_presets(user_file)
    if user_file:
        data = _read_json(Path(user_file).expanduser().read_text(), user_file)
        name = Path(user_file).stem if ("epochs" in data or "target_models" in data) else next(iter(data))
    else:
        name = name_or_path
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"available: {', '.join(sorted(presets))}"
        raise PresetError([f"unknown preset '{name}'; {hint}"], source="preset")
    preset = copy.deepcopy(presets[name])
    problems = validate_preset(name, preset)
    if overrides:
        preset, override_problems = apply_overrides(preset, overrides)
        problems += override_problems
        if not override_problems:
            problems = validate_preset(name, preset)
    if problems:
        raise PresetError(problems, source=f"preset '{name}'")
    merged = copy.deepcopy(DEFAULTS)
    for key, value in preset.items():
        if key == "collaboration":
            merged["collaboration"].update(value)
        else:
            merged[key] = value
    return name, merged


def parse_override(text: str) -> tuple[str, Any]:
    """``"models.digits_mlp.hyperparameters.lr=0.01"`` -> (dotted key, parsed JSON value).

    Values are read as JSON where possible (numbers, true/false, lists), else as strings.
    """
    if "=" not in text:
        raise PresetError([f"override '{text}': expected KEY=VALUE, e.g. epochs=3"], source="--set")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def apply_overrides(preset: dict[str, Any], overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Set dotted keys in a copy of ``preset``; intermediate objects are created as needed."""
    preset = copy.deepcopy(preset)
    problems: list[str] = []
    for dotted, value in overrides.items():
        parts = [p for p in dotted.split(".") if p]
        if not parts:
            problems.append(f"override '{dotted}': empty key")
            continue
        node = preset
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"override '{dotted}': '{part}' is not an object")
                break
            node = child
        else:
            node[parts[-1]] = value
    return preset, problems
