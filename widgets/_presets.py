"""Presets: choose a built-in or user preset, edit it, check it with the engine.

:class:`PresetsLogic` holds the state (traitlets) and talks to the engine's preset
functions; the setup form (:class:`widgets._setup.Presets`) is only layout. The state is
one value per leaf of the preset (nested objects become dotted paths like
``collaboration.mutual_learning``), and the engine's validation problems
("presets.quick.epochs: must be > 0, got -3") are filed under the field their path names,
hyperparameters included (``models.digits_mlp.hyperparameters.lr``).
"""
from __future__ import annotations

import copy
import difflib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import traitlets as t

from workbench.presets import flatten

__all__ = ["PresetsLogic", "flatten", "unflatten", "problems_by_field", "unknown_preset", "hparam_path"]


def unflatten(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in values.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(value)
    return out


def problems_by_field(problems: list[str], name: str, fields: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Attach each problem to the field its path names (the longest matching field path);
    problems that name no field (an unknown top-level key) are returned apart."""
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    for problem in problems:
        path, _, message = problem.partition(": ")
        path = re.sub(r"\[\d+\]", "", path.removeprefix(f"presets.{name}").lstrip("."))
        match = max((f for f in fields if path == f or path.startswith(f + ".") or f.startswith(path + ".")
                     and path), key=len, default=None)
        if match is None:
            general.append(problem)
        else:
            by_field.setdefault(match, []).append(message or problem)
    return by_field, general


def hparam_path(model: str, name: str) -> str:
    """The dotted preset path of one model's hyperparameter."""
    return f"models.{model}.hyperparameters.{name}"


def unknown_preset(name: str, known: list[str]) -> str:
    """The one line for a preset name that does not exist: the closest names first, then all."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown preset '{name}'; {hint}known presets: {', '.join(known)}"


def _with_defaults(preset: dict[str, Any]) -> dict[str, Any]:
    from workbench.presets import DEFAULTS

    merged = copy.deepcopy(DEFAULTS)
    for key, value in preset.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class PresetsLogic(t.HasTraits):
    """State of the preset chooser and editor; no widgets, so it is tested directly."""

    names = t.List(t.Unicode())
    name = t.Unicode("")
    user_file = t.Unicode("")  # a JSON file of user presets, added to the built-in ones
    original = t.Dict()  # the chosen preset with defaults filled in, as dotted leaves
    values = t.Dict()  # the edited leaves
    problems = t.Dict()  # field path -> messages
    general_problems = t.List(t.Unicode())
    valid = t.Bool(True)
    # registry model name -> {hyperparameter: value the run would use}, for every model the
    # preset trains (from the engine's plan; kept from the last plan while the preset does not plan)
    hparams = t.Dict()

    def __init__(self, name: str = "quick", user_file: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._presets: dict[str, dict[str, Any]] = {}
        self._user_names: set[str] = set()
        self.load(user_file)
        self.select(name)  # an unknown name raises: a typo never silently picks another preset

    def load(self, user_file: str | None = None) -> None:
        """(Re)read the built-in presets and, if given, a user file; PresetError propagates."""
        from workbench.presets import builtin_presets, load_presets

        builtin = builtin_presets()
        self._presets = load_presets(user_file or None)
        self._user_names = set(self._presets) - set(builtin) if user_file else set()
        if user_file:
            self._user_names |= {n for n in self._presets if self._presets[n] != builtin.get(n)}
        self.user_file = user_file or ""
        self.names = list(self._presets)

    def select(self, name: str) -> None:
        if name not in self._presets:
            from workbench.errors import PresetError

            raise PresetError([unknown_preset(name, self.names)])
        leaves = flatten(_with_defaults(self._presets[name]))
        self.original = leaves
        self.values = dict(leaves)
        self.name = name
        self.validate()

    def set_value(self, path: str, value: Any) -> bool:
        """Edit one field and re-validate at once (eager: problems show while typing).

        ``path`` may be a new dotted path (``models.digits_mlp.hyperparameters.lr``)."""
        # An empty object on the way ("models": {}) is a leaf of its own: the new leaf replaces it.
        values = {k: v for k, v in self.values.items() if not path.startswith(k + ".")}
        self.values = {**values, path: value}
        return self.validate()

    def set_hparam(self, model: str, name: str, value: Any) -> bool:
        """Set one hyperparameter of one model (``models.<model>.hyperparameters.<name>``)."""
        return self.set_value(hparam_path(model, name), value)

    @property
    def preset(self) -> dict[str, Any]:
        """The edited preset as a nested dict."""
        return unflatten(self.values)

    def validate(self) -> bool:
        """Run the engine's checks: structure first, then names of models and datasets."""
        from workbench.errors import PresetError
        from workbench.plan import make_plan
        from workbench.presets import validate_preset

        preset = self.preset
        problems = validate_preset(self.name, preset)
        if not problems:
            try:
                plan = make_plan(self.name, preset)
            except PresetError as exc:
                problems = exc.problems
            else:
                hparams: dict[str, dict[str, Any]] = {}
                for instance in plan.trainers:  # the first instance: population members > 0 are spread from it
                    hparams.setdefault(instance.model, dict(instance.hparams))
                self.hparams = hparams
        fields = list(self.values) + [hparam_path(m, n) for m, values in self.hparams.items() for n in values]
        by_field, general = problems_by_field(problems, self.name, fields)
        self.problems = by_field
        self.general_problems = general
        self.valid = not problems
        return self.valid

    def overrides(self) -> dict[str, Any]:
        """Edited fields that differ from the chosen preset, as ``--set`` style dotted keys."""
        return {k: v for k, v in self.values.items() if self.original.get(k) != v}

    def selection(self) -> tuple[str, dict[str, Any]]:
        """What to pass to :func:`workbench.start_run`: a preset reference and overrides.

        A built-in preset is named (edits become overrides, recorded in the run); a user
        preset is written to a file of its own so exactly the edited preset runs.
        """
        if self.name not in self._user_names:
            return self.name, self.overrides()
        folder = Path(tempfile.mkdtemp(prefix="workbench-preset-"))
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(self.preset, indent=2))
        return str(path), {}
