"""Live tuning: per running model, controls generated from its hyperparameter schema.

A change by hand goes to :meth:`workbench.Run.set_hparam` (applied at the trainer's next
step boundary, recorded as an ``hparam`` event with source ``user``, and pinned against the
adaptive controller) and can be released back to it. Changes the controller makes
(``hparam`` events from source ``controller``, ``exploit``, ``rollback``) move the controls
too, without being sent back to the engine as user changes.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import ipywidgets as w
import traitlets as t

from ._binding import hparam_schema, is_live, snapshot_models

__all__ = ["TuningLogic", "Tuning", "control_for"]

MAX_CHANGES = 50  # the change log shown is bounded: a long run must not grow the panel
# Plain text, not an emoji: a browser without an emoji font draws an empty box instead.
PINNED_BADGE = ("<span title='set by hand: the adaptive controller leaves it alone until Release' "
                "style='background:#fff3d6;color:#8a5a00;border:1px solid #e8c77a;border-radius:3px;"
                "padding:0 5px;font-size:11px'>pinned</span>")


class TuningLogic(t.HasTraits):
    run = t.Any(None, allow_none=True)
    schemas = t.Dict()  # instance -> {name: HParam} of its live hyperparameters
    values = t.Dict()  # instance -> {name: value in force}
    pinned = t.Dict()  # instance -> sorted names pinned by a user
    changes = t.List()  # the newest MAX_CHANGES changes: dicts with model, name, old, new, source
    error = t.Unicode("")
    live = t.Bool(False)

    def bind(self, run: Any) -> None:
        snaps = snapshot_models(run)
        schemas, values, pinned = {}, {}, {}
        for instance, snap in snaps.items():
            schema = hparam_schema(run, instance, snap.model)
            live = {k: v for k, v in schema.items() if v.live}
            if not live:
                continue
            schemas[instance] = live
            values[instance] = {k: snap.hparams.get(k, spec.default) for k, spec in live.items()}
            pinned[instance] = sorted(snap.pinned)
        self.run, self.live, self.error = run, is_live(run), ""
        self.changes = []
        self.values, self.pinned = values, pinned
        self.schemas = schemas  # last: the layout rebuilds on it and reads the values

    # -- behaviour (from the controls) --------------------------------------------------------
    def on_change(self, instance: str, name: str, value: Any) -> int | None:
        """Send a value set by hand; returns the engine's command id (None if refused)."""
        from workbench import WorkbenchError

        if not is_live(self.run):
            self.error = "this run has ended: nothing to steer"
            return None
        try:
            command = self.run.set_hparam(instance, name, value)
        except WorkbenchError as exc:
            self.error = str(exc)
            return None
        self.error = ""
        self._set(instance, name, value)
        self._pin(instance, name, True)
        return command

    def on_release(self, instance: str, name: str) -> None:
        if is_live(self.run):
            self.run.release(instance, name)
        self._pin(instance, name, False)

    # -- engine messages (any thread) ---------------------------------------------------------
    def on_message(self, message: Mapping[str, Any]) -> None:
        if message.get("type") != "event":
            return
        kind, model, payload = message.get("kind"), message.get("model"), message.get("payload") or {}
        if model not in self.schemas:
            return
        if kind == "hparam":
            self._set(model, payload["name"], payload["new"])
            self._pin(model, payload["name"], bool(payload.get("pinned")))
            self._log(model, payload["name"], payload.get("old"), payload["new"], payload.get("source", "?"),
                      payload.get("epoch"))
        elif kind == "release":
            self._pin(model, payload["name"], False)
            self._log(model, payload["name"], None, None, "released", None)
        elif kind == "exploit":
            for name, value in (payload.get("new") or {}).items():
                if name in self.schemas[model]:
                    self._set(model, name, value)
            self._log(model, "*", None, None, f"exploit from {payload.get('source')}", payload.get("epoch"))
        elif kind == "rollback" and payload.get("new_lr") is not None and "lr" in self.schemas[model]:
            self._set(model, "lr", payload["new_lr"])
            self._log(model, "lr", payload.get("old_lr"), payload["new_lr"], "rollback", payload.get("epoch"))

    def _set(self, instance: str, name: str, value: Any) -> None:
        self.values = {**self.values, instance: {**self.values.get(instance, {}), name: value}}

    def _pin(self, instance: str, name: str, pinned: bool) -> None:
        names = set(self.pinned.get(instance, ()))
        names = names | {name} if pinned else names - {name}
        self.pinned = {**self.pinned, instance: sorted(names)}

    def _log(self, model: str, name: str, old: Any, new: Any, source: str, epoch: Any) -> None:
        entry = {"model": model, "name": name, "old": old, "new": new, "source": source, "epoch": epoch}
        self.changes = (self.changes + [entry])[-MAX_CHANGES:]


def control_for(name: str, spec: Any, value: Any) -> w.Widget:
    """The natural control for one hyperparameter: a log slider for a log-scale float
    (learning rates), a linear slider for a bounded number, a checkbox, a dropdown."""
    style = {"description_width": "110px"}
    layout = w.Layout(width="420px", flex="0 0 auto")
    common = dict(description=name, style=style, layout=layout, continuous_update=False,
                  tooltip=spec.help or name)
    if spec.choices is not None:
        return w.Dropdown(options=list(spec.choices), value=value, description=name, style=style)
    if spec.type is bool:
        return w.Checkbox(value=bool(value), description=name, style=style, indent=True)
    if spec.type is float and spec.log:
        low = spec.low if spec.low and spec.low > 0 else value / 100
        high = spec.high if spec.high else value * 100
        return w.FloatLogSlider(value=value, base=10, min=math.log10(low), max=math.log10(high), step=0.01,
                                readout_format=".3g", **common)
    bounded = spec.low is not None and spec.high is not None
    if spec.type is float and bounded:
        return w.FloatSlider(value=value, min=spec.low, max=spec.high, step=(spec.high - spec.low) / 200,
                             readout_format=".3g", **common)
    if spec.type is int and bounded and spec.high - spec.low <= 1000:
        return w.IntSlider(value=value, min=int(spec.low), max=int(spec.high), **common)
    if spec.type is int:
        return w.BoundedIntText(value=value, min=int(spec.low if spec.low is not None else -2**31),
                                max=int(spec.high if spec.high is not None else 2**31), description=name,
                                style=style)
    if spec.type is float:
        return w.FloatText(value=value, description=name, style=style)
    return w.Text(value=str(value), description=name, style=style, continuous_update=False)


class Tuning(w.VBox):
    """Layout: one box per model, one row per live hyperparameter (control, pin, Release)."""

    def __init__(self, logic: TuningLogic | None = None, **kwargs: Any):
        self.logic = logic or TuningLogic()
        self.boxes = w.VBox()
        self.change_log = w.HTML()
        self.message = w.HTML()
        self.controls: dict[tuple[str, str], w.Widget] = {}
        self.pins: dict[tuple[str, str], w.HTML] = {}
        self.release_buttons: dict[tuple[str, str], w.Button] = {}
        self._syncing = False
        super().__init__([self.message, self.boxes, w.HTML("<b>Recent changes</b>"), self.change_log], **kwargs)
        self.add_class("workbench-tuning")  # a stable handle for page styling and browser tests
        self.logic.observe(lambda _: self._build(), "schemas")
        self.logic.observe(lambda _: self._sync_values(), "values")
        self.logic.observe(lambda _: self._sync_pins(), ["pinned", "live"])  # Release is off once the run ends
        self.logic.observe(lambda _: self._show_log(), "changes")
        self.logic.observe(lambda _: self._show_message(), ["error", "live"])
        self._build()

    def bind(self, run: Any) -> None:
        self.logic.bind(run)

    def on_control(self, instance: str, name: str, value: Any) -> None:
        if not self._syncing:
            self.logic.on_change(instance, name, value)

    def on_release(self, instance: str, name: str) -> None:
        self.logic.on_release(instance, name)

    def _build(self) -> None:
        self.controls, self.pins, self.release_buttons = {}, {}, {}
        boxes = []
        for instance, schema in self.logic.schemas.items():
            rows = []
            for name, spec in schema.items():
                key = (instance, name)
                control = control_for(name, spec, self.logic.values[instance][name])
                control.disabled = not self.logic.live
                control.observe(lambda change, i=instance, n=name: self.on_control(i, n, change["new"]), "value")
                pin = w.HTML(layout=w.Layout(width="64px", flex="0 0 auto"))
                # A fixed, unshrinkable width: squeezed by the chart beside it the label was cut to "Rele...".
                release = w.Button(description="Release", icon="unlock", tooltip="hand back to the adaptive controller",
                                   layout=w.Layout(width="100px", flex="0 0 auto"))
                release.on_click(lambda _, i=instance, n=name: self.on_release(i, n))
                self.controls[key], self.pins[key], self.release_buttons[key] = control, pin, release
                rows.append(w.HBox([control, pin, release], layout=w.Layout(align_items="center")))
            boxes.append(w.VBox([w.HTML(f"<b>{html.escape(instance)}</b>")] + rows,
                                layout=w.Layout(border="1px solid #ddd", padding="4px", margin="2px")))
        self.boxes.children = boxes
        self._sync_pins()
        self._show_message()

    def _sync_values(self) -> None:
        self._syncing = True
        try:
            for (instance, name), control in self.controls.items():
                value = self.logic.values.get(instance, {}).get(name)
                if value is not None and control.value != value:
                    control.value = value
        finally:
            self._syncing = False

    def _sync_pins(self) -> None:
        for (instance, name), pin in self.pins.items():
            pinned = name in self.logic.pinned.get(instance, ())
            pin.value = PINNED_BADGE if pinned else ""
            self.release_buttons[(instance, name)].disabled = not (pinned and self.logic.live)

    def _show_log(self) -> None:
        rows = "".join(
            f"<tr><td>{html.escape(str(c['model']))}</td><td>{html.escape(c['name'])}</td>"
            f"<td>{_fmt(c['old'])} → {_fmt(c['new'])}</td><td>{html.escape(str(c['source']))}</td>"
            f"<td>{'' if c['epoch'] is None else c['epoch']}</td></tr>" for c in reversed(self.logic.changes[-8:]))
        self.change_log.value = f"<table><tr><th>model</th><th>name</th><th>change</th><th>by</th><th>epoch</th></tr>{rows}</table>"

    def _show_message(self) -> None:
        for control in self.controls.values():
            control.disabled = not self.logic.live
        if self.logic.error:
            self.message.value = f"<span style='color:#c22'>{html.escape(self.logic.error)}</span>"
        elif not self.logic.schemas:
            self.message.value = "<i>no run attached (or no live hyperparameters)</i>"
        elif not self.logic.live:
            self.message.value = "<i>values in force; the run is not steerable from here</i>"
        else:
            self.message.value = ""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))
