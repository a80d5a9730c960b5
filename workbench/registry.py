"""Model registry: by decorator, and by the entry-point group ``workbench.models``.

A user's package adds models without touching ours::

    # pyproject.toml of the user's package
    [project.entry-points."workbench.models"]
    my_mlp = "my_pkg.models:MyMLP"
"""
from __future__ import annotations

import difflib
import importlib
import warnings
from importlib.metadata import entry_points
from typing import Any

from .errors import RegistryError

__all__ = ["register_model", "get_model", "list_models", "ENTRY_POINT_GROUP", "PluginWarning"]

ENTRY_POINT_GROUP = "workbench.models"

# Built-in models live in modules imported on first look-up, so ``import workbench``
# stays light (no torch import until a model is needed), and a worker that builds one
# model imports only that model's module.
_BUILTIN = {
    "digits_mlp": "workbench.models.digits",
    "digits_cnn": "workbench.models.digits",
    "environment_simulator": "workbench.models.environment_simulator",
    "causal_reasoning_engine": "workbench.models.causal",
    "adaptive_learning_controller": "workbench.models.controller",
    "alpha_deep_model": "workbench.models.alpha",
}
_BUILTIN_MODULES = tuple(dict.fromkeys(_BUILTIN.values()))


class PluginWarning(UserWarning):
    """A model or dataset entry point that cannot be loaded; it is skipped, the others still work."""


_REGISTRY: dict[str, type] = {}
_loaded = False


def register_model(name: str):
    """Class decorator: register a :class:`~workbench.Trainer` (or Controller) under ``name``."""

    def decorate(cls: type) -> type:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls and _qualname(existing) != _qualname(cls):
            raise RegistryError(
                f"model '{name}' is already registered by {_qualname(existing)}; "
                f"choose another name for {_qualname(cls)}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a built-in still being written must not break the rest
            if exc.name != module:
                raise
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:  # someone else's package: one broken plugin must not take the others (or the CLI) down
            cls = ep.load()
            if not isinstance(cls, type):
                raise TypeError(f"{ep.value} is a {type(cls).__name__}, not a Trainer class")
            register_model(ep.name)(cls)
        except Exception as exc:
            warnings.warn(f"plugin model '{ep.name}' ({ep.value}) skipped: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}", PluginWarning, stacklevel=2)


def list_models() -> dict[str, type]:
    """All registered models, built-in and from entry points, by name."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_model(name: str) -> Any:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
        if name in _REGISTRY:
            return _REGISTRY[name]
    models = list_models()
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known models: {', '.join(models)}"
        raise RegistryError(f"unknown model '{name}'{hint}")
    return models[name]


def is_controller(cls: type) -> bool:
    return getattr(cls, "role", "trainer") == "controller"
