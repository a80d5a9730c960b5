"""Loading presets (built-in package data or a user file) and ``--set key=value`` overrides."""
from __future__ import annotations

import copy
import difflib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import PresetError
from ..limits import MAX_DEPTH, MAX_KEY_LENGTH, structure_problems
from ._schema import DEFAULTS, validate_preset

__all__ = ["builtin_presets", "load_presets", "resolve_preset", "apply_overrides", "parse_override"]


class _Duplicate(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:  # json.loads would keep the last one silently
            raise _Duplicate(key)
        out[key] = value
    return out


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(f"{text} is not a finite number")
    return value


def _no_constant(name: str) -> Any:
    raise _NotFinite(f"{name} is not a finite number")


def _loads(text: str) -> Any:
    """Strict JSON: no duplicate keys, no NaN or Infinity (``ValueError`` otherwise)."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_finite, parse_constant=_no_constant)


def _read_json(text: str | bytes, source: str) -> dict[str, Any]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PresetError([f"{source}: not UTF-8 text (byte 0x{text[exc.start]:02x} at offset {exc.start}); "
                               "save it as UTF-8"], source="preset file") from None
    try:
        data = _loads(text)
    except _Duplicate as exc:
        raise PresetError([f"{source}: duplicate key '{exc.key}' (JSON would keep only the last); keep one"],
                          source="preset file") from None
    except json.JSONDecodeError as exc:
        raise PresetError([f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"],
                          source="preset file") from None
    except RecursionError:
        raise PresetError([f"{source}: nested too deeply to read; presets nest at most {MAX_DEPTH} levels"],
                          source="preset file") from None
    except ValueError as exc:  # a non-finite number, an integer of thousands of digits
        raise PresetError([f"{source}: {exc}"], source="preset file") from None
    if not isinstance(data, dict):
        raise PresetError([f"{source}: must be an object of named presets"], source="preset file")
    problems = structure_problems(data, source)
    if problems:
        raise PresetError(problems, source=source)
    return data


def _read_file(path: Path) -> dict[str, Any]:
    """A user preset file as named presets (a file holding one preset is named after the file)."""
    if not path.is_file():
        raise PresetError([f"preset file not found: {path}"], source="preset file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PresetError([f"cannot read {path}: {exc.strerror or exc}"], source="preset file") from None
    data = _read_json(raw, str(path))
    if "epochs" in data or "target_models" in data:
        data = {path.stem: data}
    if not data:
        raise PresetError([f"{path}: holds no preset; write one preset object or named presets"], source="preset file")
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
        presets.update(_read_file(Path(path).expanduser()))
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
        name = next(iter(_read_file(Path(user_file).expanduser())))
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
    if len(key) > MAX_KEY_LENGTH:
        raise PresetError([f"override key of {len(key)} characters ('{key[:40]}...'); keys have at most "
                           f"{MAX_KEY_LENGTH}"], source="--set")
    try:
        value = _loads(raw)
    except _Duplicate as exc:
        raise PresetError([f"override '{key}': duplicate key '{exc.key}' in its value"], source="--set") from None
    except RecursionError:
        raise PresetError([f"override '{key}': value nested too deeply"], source="--set") from None
    except _NotFinite as exc:
        raise PresetError([f"override '{key}': {exc}"], source="--set") from None
    except ValueError:  # not JSON: a plain string
        value = raw
    problems = structure_problems(value, f"override '{key}'")
    if problems:
        raise PresetError(problems, source="--set")
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
