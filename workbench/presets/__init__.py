"""Presets: the built-in JSON file, user files, overrides and complete validation."""
from ._load import apply_overrides, builtin_presets, load_presets, parse_override, resolve_preset
from ._schema import DEFAULTS, validate_preset

__all__ = ["builtin_presets", "load_presets", "apply_overrides", "parse_override", "resolve_preset", "DEFAULTS",
           "validate_preset"]
