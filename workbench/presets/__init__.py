"""Presets: the built-in JSON file, user files, overrides and complete validation."""
from __future__ import annotations

from typing import Any

from ._load import apply_overrides, builtin_presets, load_presets, parse_override, resolve_preset
from ._schema import DEFAULTS, validate_preset

__all__ = ["flatten", "builtin_presets", "load_presets", "apply_overrides", "parse_override", "resolve_preset", "DEFAULTS",
           "validate_preset"]


def flatten(preset: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested preset by dotted path; empty objects are kept as leaves."""
    out: dict[str, Any] = {}
    for key, value in preset.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out
