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

__all__ = ["register_model", "get_model", "list_models", "describe", "describe_all", "class_path",
           "ENTRY_POINT_GROUP", "PluginWarning"]

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

# The built-in trainers' cards (their class-level declarations, in the torch-free
# ``workbench.models.cards``) and the class each card describes: the driver plans a run
# and the CLI lists models without importing a model's module (torch: ~1.3 s of CPU).
# The controller is numpy only: it needs no card.
_CARDS = {
    "digits_mlp": ("DigitsMLPCard", "workbench.models.digits.DigitsMLP"),
    "digits_cnn": ("DigitsCNNCard", "workbench.models.digits.DigitsCNN"),
    "environment_simulator": ("EnvironmentSimulatorCard",
                              "workbench.models.environment_simulator._trainer.EnvironmentSimulator"),
    "causal_reasoning_engine": ("CausalReasoningEngineCard", "workbench.models.causal._trainer.CausalReasoningEngine"),
    "alpha_deep_model": ("AlphaDeepModelCard", "workbench.models.alpha._trainer.AlphaTrainer"),
}


class PluginWarning(UserWarning):
    """A model or dataset entry point that cannot be loaded; it is skipped, the others still work."""


_REGISTRY: dict[str, type] = {}
_loaded = False  # entry points loaded


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


def _import_builtins(modules: tuple[str, ...]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a built-in still being written must not break the rest
            if exc.name != module:
                raise


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY or ep.name in _BUILTIN:  # a built-in's name stays the built-in's
            continue
        try:  # someone else's package: one broken plugin must not take the others (or the CLI) down
            cls = ep.load()
            if not isinstance(cls, type):
                raise TypeError(f"{ep.value} is a {type(cls).__name__}, not a Trainer class")
            register_model(ep.name)(cls)
        except Exception as exc:
            warnings.warn(f"plugin model '{ep.name}' ({ep.value}) skipped: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}", PluginWarning, stacklevel=2)


def _card(name: str) -> type:
    cards = importlib.import_module("workbench.models.cards")
    return getattr(cards, _CARDS[name][0])


def list_models() -> dict[str, type]:
    """All registered models, built-in and from entry points, by name."""
    _import_builtins(_BUILTIN_MODULES)
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def describe_all() -> dict[str, type]:
    """What :func:`list_models` lists, with a built-in trainer whose module is not imported
    yet given by its card (:func:`describe`): no torch import."""
    _import_builtins(tuple(dict.fromkeys(m for n, m in _BUILTIN.items() if n not in _CARDS)))
    _load_entry_points()
    cards = {name: _card(name) for name in _CARDS if name not in _REGISTRY}
    return dict(sorted({**cards, **_REGISTRY}.items()))


def _lookup(name: str, models: dict[str, type]) -> type:
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known models: {', '.join(models)}"
        raise RegistryError(f"unknown model '{name}'{hint}")
    return models[name]


def get_model(name: str) -> Any:
    """The class registered as ``name``, importing its module (a built-in's, or a plugin's)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
        if name in _REGISTRY:
            return _REGISTRY[name]
    return _lookup(name, list_models())


def describe(name: str) -> Any:
    """The class-level declarations of model ``name`` (``accepts``, ``hyperparameters``,
    ``cpu_threads``, ``role``, ``check_hparams``, ...), for planning and listings.

    The registered class once it is imported (or registered from a notebook, or shipped
    code); before that, for a built-in trainer, its card (``workbench.models.cards``),
    which the class inherits: no torch import. Plugins are imported, as by
    :func:`get_model`, which the workers use to build the real class.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _CARDS:
        return _card(name)
    return _lookup(name, describe_all())


def class_path(name: str) -> str:
    """``module.qualname`` of the class registered as ``name``, without importing a built-in's module."""
    if name not in _REGISTRY and name in _CARDS:
        return _CARDS[name][1]
    return _qualname(get_model(name))


def is_controller(cls: type) -> bool:
    return getattr(cls, "role", "trainer") == "controller"
