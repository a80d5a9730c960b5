"""The Setup tab: a preset as a form a person can fill in.

Sections (run, data, models, collaboration, resources) hold one field per preset leaf;
each model the preset trains gets its hyperparameters as controls generated from its
schema (:func:`widgets._tuning.control_for`, the controls of live tuning: a log slider for
a learning rate, a dropdown for a choice), with the engine's validation message beside
each control. The description is shown in full, and the whole preset as JSON is one click
away. Layout only: the state and the engine's checks are :class:`PresetsLogic`'s.
"""
from __future__ import annotations

import html
import json
import math
from typing import Any

import ipywidgets as w

from ._presets import PresetsLogic, hparam_path
from ._tuning import control_for

__all__ = ["Presets", "SECTIONS", "section_of"]

SECTIONS = ("run", "data", "models", "collaboration", "resources")
_SECTION_OF = {"datasets": "data", "data": "data", "target_models": "models", "models": "models",
               "enable_collaborative_training": "collaboration", "collaboration": "collaboration",
               "workers": "resources"}
_LABEL = w.Layout(width="240px", flex="0 0 auto")


def section_of(path: str) -> str:
    """The form section a preset leaf belongs to (``run`` unless named otherwise)."""
    parts = path.split(".")
    if parts[0] == "models" and len(parts) > 2 and parts[2] == "resources":
        return "resources"
    return _SECTION_OF.get(parts[0], "run")


def _is_hparam(path: str) -> bool:
    parts = path.split(".")
    return len(parts) >= 3 and parts[0] == "models" and parts[2] == "hyperparameters"


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


def _problem_html(problems: list[str]) -> str:
    return "<br>".join(f"<span style='color:#c22'>{html.escape(p)}</span>" for p in problems)


class Presets(w.VBox):
    """The setup form: chooser, user file loader, sectioned fields with messages, JSON view.

    ``sections[name]`` is each section's box; ``extras[name]`` are widgets a container adds
    below a section's fields (the panel puts its resource planner under "resources").
    """

    def __init__(self, logic: PresetsLogic | None = None, **kwargs: Any):
        self.logic = logic or PresetsLogic()
        self.chooser = w.Dropdown(options=self.logic.names, value=self.logic.name, description="preset")
        self.file = w.Text(value=self.logic.user_file, placeholder="path/to/my_presets.json",
                           description="user file")
        self.load_button = w.Button(description="Load", icon="folder-open")
        self.status = w.HTML()
        self.description = w.Textarea(layout=w.Layout(width="680px"))
        self.sections = {name: w.VBox(layout=w.Layout(margin="0 0 6px 0")) for name in SECTIONS}
        self.extras: dict[str, list[w.Widget]] = {name: [] for name in SECTIONS}
        self.json = w.HTML()
        self.json_view = w.Accordion([self.json], selected_index=None)
        self.json_view.set_title(0, "Preset as JSON")
        self.fields: dict[str, w.Widget] = {}
        self.messages: dict[str, w.HTML] = {}
        self.hparam_controls: dict[tuple[str, str], w.Widget] = {}
        self.hparam_messages: dict[tuple[str, str], w.HTML] = {}
        self._syncing = False
        super().__init__([w.HBox([self.chooser, self.file, self.load_button]), self.status,
                          *self.sections.values(), self.json_view], **kwargs)
        self.add_class("workbench-setup")
        self.chooser.observe(lambda change: self.on_select(change["new"]), "value")
        self.load_button.on_click(lambda _: self.on_load_file())
        self.description.observe(lambda change: self._on_description(change["new"]), "value")
        self.logic.observe(lambda _: self._show_problems(), ["problems", "general_problems", "valid"])
        self.logic.observe(lambda _: self._on_values(), "values")
        self.logic.observe(lambda change: self._on_hparams(change["old"], change["new"]), "hparams")
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

    def on_hparam_change(self, model: str, name: str, value: Any) -> None:
        if not self._syncing:
            self.logic.set_hparam(model, name, value)

    def add_to_section(self, section: str, widget: w.Widget) -> None:
        """Put ``widget`` under a section's fields (kept when another preset is chosen)."""
        self.extras[section].append(widget)
        self._build_form()

    # -- layout ------------------------------------------------------------------------------
    def _build_form(self) -> None:
        rows: dict[str, list[w.Widget]] = {name: [] for name in SECTIONS}
        self.fields, self.messages = {}, {}
        for path, value in self.logic.values.items():
            if path == "description" or _is_hparam(path) or (path == "models" and value == {}):
                continue  # the description has its own box; hyperparameters get controls below
            widget = _field_widget(value)
            widget.observe(lambda _, p=path: self.on_field_change(p), "value")
            message = w.HTML(layout=w.Layout(margin="0 0 0 8px"))
            self.fields[path], self.messages[path] = widget, message
            rows[section_of(path)].append(w.HBox([w.Label(path, layout=_LABEL), widget, message]))
        text = str(self.logic.values.get("description", ""))
        self._syncing = True
        try:
            self.description.value = text
        finally:
            self._syncing = False
        self.description.rows = max(2, math.ceil(len(text) / 85) + text.count("\n"))  # all of it, no scrolling
        rows["run"].insert(0, w.HBox([w.Label("description", layout=_LABEL), self.description]))
        rows["models"] += self._model_boxes()
        for name, box in self.sections.items():
            box.children = [w.HTML(f"<b>{name.capitalize()}</b>")] + rows[name] + self.extras[name]
        self._show_problems()
        self._show_json()

    def _model_boxes(self) -> list[w.Widget]:
        """Per model the preset trains: its hyperparameters as the live-tuning controls."""
        from workbench import WorkbenchError
        from workbench.registry import describe

        self.hparam_controls, self.hparam_messages = {}, {}
        boxes = []
        for model, values in self.logic.hparams.items():
            try:
                schema = describe(model).hyperparameters
            except WorkbenchError:
                continue
            rows = []
            for name, spec in schema.items():
                value = values.get(name, spec.default)
                try:
                    control = control_for(name, spec, value)
                except Exception:  # a value the control cannot hold (out of a slider's range): a text box
                    control = w.Text(value=str(value), description=name, continuous_update=False)
                control.style.description_width = "150px"  # whole names: "grad_accumulation", not "grad_accumul..."
                control.layout.width = "460px"
                control.observe(lambda change, m=model, n=name: self.on_hparam_change(m, n, change["new"]), "value")
                message = w.HTML(layout=w.Layout(margin="0 0 0 8px"))
                self.hparam_controls[(model, name)], self.hparam_messages[(model, name)] = control, message
                rows.append(w.HBox([control, message], layout=w.Layout(align_items="center")))
            boxes.append(w.VBox([w.HTML(f"<b>{html.escape(model)}</b> hyperparameters")] + rows,
                                layout=w.Layout(border="1px solid #ddd", padding="4px", margin="2px 0")))
        return boxes

    def _on_hparams(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if set(old) != set(new):  # other models: other controls
            self._build_form()
            return
        self._syncing = True  # values the plan resolved (batch_size from the preset) move the controls
        try:
            for (model, name), control in self.hparam_controls.items():
                value = new.get(model, {}).get(name)
                if value is not None and control.value != value:
                    control.value = value
        except Exception:  # a value a slider cannot hold: the message beside it says why
            pass
        finally:
            self._syncing = False

    def _on_description(self, text: str) -> None:
        if not self._syncing and text != self.logic.values.get("description"):
            self.logic.set_value("description", text)

    def _on_values(self) -> None:
        """Edits made through the logic (the panel's ``overrides``) show in the form too."""
        text = str(self.logic.values.get("description", ""))
        if self.description.value != text:
            self._syncing = True
            try:
                self.description.value = text
            finally:
                self._syncing = False
        self._show_json()

    def _show_json(self) -> None:
        self.json.value = f"<pre style='margin:0'>{html.escape(json.dumps(self.logic.preset, indent=2), quote=False)}</pre>"

    def _show_problems(self) -> None:
        for path, message in self.messages.items():
            problems = self.logic.problems.get(path)
            message.value = _problem_html(problems) if problems else ""
        for (model, name), message in self.hparam_messages.items():
            problems = self.logic.problems.get(hparam_path(model, name))
            message.value = _problem_html(problems) if problems else ""
        if self.logic.valid:
            self.status.value = "<span style='color:#2a7'>valid</span>"
        else:
            self.status.value = _problem_html(self.logic.general_problems or ["fix the fields marked in red"])
