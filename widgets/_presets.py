"""Presets: choose a built-in or user preset, see it, edit it in a generated form.

:class:`PresetsLogic` holds the state (traitlets) and talks to the engine's preset
functions; :class:`Presets` is only layout. The form has one field per leaf of the
preset (nested objects become dotted paths like ``collaboration.mutual_learning``), and
the engine's validation problems ("presets.quick.epochs: must be > 0, got -3") are shown
next to the field their path names.
"""
from __future__ import annotations

import copy
import difflib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import ipywidgets as w
import traitlets as t

__all__ = ["PresetsLogic", "Presets", "flatten", "unflatten", "problems_by_field", "unknown_preset"]


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
        """Edit one field and re-validate at once (eager: problems show while typing)."""
        self.values = {**self.values, path: value}
        return self.validate()

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
                make_plan(self.name, preset)
            except PresetError as exc:
                problems = exc.problems
        by_field, general = problems_by_field(problems, self.name, list(self.values))
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


def _field_widget(value: Any) -> w.Widget:
    layout = w.Layout(width="260px")
    if isinstance(value, bool):
        return w.Checkbox(value=value, indent=False, layout=layout)
    if isinstance(value, int):
        return w.IntText(value=value, layout=layout)
    if isinstance(value, float):
        return w.FloatText(value=value, layout=layout)
    if isinstance(value, list):
        return w.Text(value=", ".join(map(str, value)), layout=layout, placeholder="comma separated")
    if isinstance(value, str):
        return w.Text(value=value, layout=w.Layout(width="420px"))
    return w.Text(value="" if value is None else json.dumps(value), layout=layout, placeholder="empty = default")


def _field_value(original: Any, widget: w.Widget) -> Any:
    raw = widget.value
    if isinstance(original, list):
        return [s.strip() for s in raw.split(",") if s.strip()]
    if isinstance(original, (bool, int, float, str)):
        return raw
    if raw.strip() == "":
        return None if original is None else original
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


class Presets(w.VBox):
    """Layout of the preset part: chooser, user file loader, generated form with messages."""

    def __init__(self, logic: PresetsLogic | None = None, **kwargs: Any):
        self.logic = logic or PresetsLogic()
        self.chooser = w.Dropdown(options=self.logic.names, value=self.logic.name, description="preset")
        self.file = w.Text(value=self.logic.user_file, placeholder="path/to/my_presets.json",
                           description="user file")
        self.load_button = w.Button(description="Load", icon="folder-open")
        self.status = w.HTML()
        self.form = w.VBox()
        self.fields: dict[str, w.Widget] = {}
        self.messages: dict[str, w.HTML] = {}
        super().__init__([w.HBox([self.chooser]), w.HBox([self.file, self.load_button]), self.form, self.status],
                         **kwargs)
        self.chooser.observe(lambda change: self.on_select(change["new"]), "value")
        self.load_button.on_click(lambda _: self.on_load_file())
        self.logic.observe(lambda _: self._show_problems(), ["problems", "general_problems", "valid"])
        self._build_form()

    # -- behaviour ---------------------------------------------------------------------------
    def on_select(self, name: str) -> None:
        if name and name != self.logic.name:
            self.logic.select(name)
            self._build_form()

    def on_load_file(self) -> None:
        from workbench.errors import PresetError

        try:
            self.logic.load(self.file.value.strip() or None)
        except PresetError as exc:
            self.status.value = _problem_html(exc.problems)
            return
        self.chooser.options = self.logic.names
        self.status.value = f"loaded {len(self.logic.names)} presets"

    def on_field_change(self, path: str) -> None:
        self.logic.set_value(path, _field_value(self.logic.original[path], self.fields[path]))

    # -- layout ------------------------------------------------------------------------------
    def _build_form(self) -> None:
        rows = []
        self.fields, self.messages = {}, {}
        for path, value in self.logic.values.items():
            widget = _field_widget(value)
            widget.observe(lambda _, p=path: self.on_field_change(p), "value")
            message = w.HTML(layout=w.Layout(margin="0 0 0 8px"))
            self.fields[path], self.messages[path] = widget, message
            label = w.Label(path, layout=w.Layout(width="280px"))
            rows.append(w.HBox([label, widget, message]))
        self.form.children = rows
        self._show_problems()

    def _show_problems(self) -> None:
        for path, html in self.messages.items():
            problems = self.logic.problems.get(path)
            html.value = _problem_html(problems) if problems else ""
        if self.logic.valid:
            self.status.value = "<span style='color:#2a7'>valid</span>"
        else:
            self.status.value = _problem_html(self.logic.general_problems or ["fix the fields marked in red"])


def _problem_html(problems: list[str]) -> str:
    import html

    return "<br>".join(f"<span style='color:#c22'>{html.escape(p)}</span>" for p in problems)
