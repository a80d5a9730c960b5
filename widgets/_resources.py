"""Resources: the detected devices, per model a device / GPU share / cores, and the plan.

:class:`ResourcesLogic` asks the engine's own planner (:func:`workbench.resources.plan_placement`)
so the panel shows exactly the placement a run would get, and an impossible request is
refused with the planner's reason before anything starts. The inventory can be injected,
which is how the GPU cases are tested on a machine without one.
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
import traitlets as t

__all__ = ["ResourcesLogic", "Resources", "inventory_html", "placements_html"]

AUTO = "auto"


class ResourcesLogic(t.HasTraits):
    inventory = t.Any()  # workbench.resources.Inventory
    instances = t.List()  # [(instance, registry model name, preset resources)]
    choices = t.Dict()  # registry model name -> {"device": str, "gpu_fraction": float|None, "threads": int|None}
    placements = t.List()  # workbench.resources.Placement, when the plan is possible
    reason = t.Unicode("")  # why the plan is refused; "" when it is possible
    ok = t.Bool(False)
    generation = t.Int(0)  # bumped when a new preset's models are taken: the layout rebuilds

    def __init__(self, inventory: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        from workbench.resources import detect_inventory

        self.inventory = inventory if inventory is not None else detect_inventory()

    def set_preset(self, name: str, preset: dict[str, Any]) -> None:
        """Take the model instances of a preset (no instances if it does not plan)."""
        from workbench.errors import WorkbenchError
        from workbench.plan import make_plan

        try:
            plan = make_plan(name, preset)
        except WorkbenchError as exc:
            self.instances, self.choices, self.placements, self.ok = [], {}, [], False
            self.reason = f"the preset does not plan: {exc}"
            self.generation += 1
            return
        self.instances = [(i.instance, i.model, dict(i.resources)) for i in plan.trainers]
        choices = {}
        for _, model, res in self.instances:
            choices.setdefault(model, {"device": res.get("device", AUTO), "gpu_fraction": res.get("gpu_fraction"),
                                       "threads": res.get("threads")})
        self.choices = choices
        self.replan()
        self.generation += 1

    def set_choice(self, model: str, key: str, value: Any) -> bool:
        """Change one model's device, ``gpu_fraction`` or ``threads`` (None or 0 = automatic)."""
        if key not in ("device", "gpu_fraction", "threads"):
            raise ValueError(f"unknown resource '{key}'; use device, gpu_fraction or threads")
        if key != "device" and not value:
            value = None
        self.choices = {**self.choices, model: {**self.choices[model], key: value}}
        return self.replan()

    def replan(self) -> bool:
        from workbench.errors import PlacementError
        from workbench.resources import Request, plan_placement

        requests = [Request(inst, self.choices[model]["device"], self.choices[model]["gpu_fraction"],
                            self.choices[model]["threads"]) for inst, model, _ in self.instances]
        try:
            self.placements = plan_placement(requests, self.inventory)
        except PlacementError as exc:
            self.placements, self.reason, self.ok = [], str(exc), False
            return False
        self.reason, self.ok = "", bool(self.placements)
        return self.ok

    def overrides(self) -> dict[str, Any]:
        """The chosen resources as preset overrides (``models.NAME.resources.KEY``)."""
        out: dict[str, Any] = {}
        preset_res = {model: res for _, model, res in self.instances}
        for model, choice in self.choices.items():
            for key, value in choice.items():
                default = preset_res.get(model, {}).get(key, AUTO if key == "device" else None)
                if value != default and value is not None:
                    out[f"models.{model}.resources.{key}"] = value
        return out


def inventory_html(inventory: Any) -> str:
    parts = [f"<b>CPU</b> {inventory.cpus} cores &nbsp; <b>memory</b> {inventory.memory_gb:g} GiB"]
    if not inventory.gpus:
        parts.append("<b>GPU</b> none detected")
    for gpu in inventory.gpus:
        util = f", {gpu.utilization:.0f}% busy" if gpu.utilization is not None else ""
        parts.append(f"<b>GPU {gpu.index}</b> {html.escape(gpu.name)} ({gpu.memory_gb:.1f} GiB{util})")
    return "<br>".join(parts)


def placements_html(placements: list[Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(p.instance)}</td><td>{p.device}</td>"
        f"<td>{'' if p.gpu_fraction is None else f'{p.gpu_fraction:.2f}'}</td><td>{p.threads}</td></tr>"
        for p in placements)
    return ("<table><tr><th>model</th><th>device</th><th>GPU share</th><th>threads</th></tr>"
            f"{rows}</table>")


class Resources(w.VBox):
    """Layout: inventory, one row of controls per model, the resulting plan or the refusal."""

    def __init__(self, logic: ResourcesLogic | None = None, **kwargs: Any):
        self.logic = logic or ResourcesLogic()
        self.devices = w.HTML(inventory_html(self.logic.inventory))
        self.rows = w.VBox()
        self.plan = w.HTML()
        self.controls: dict[str, dict[str, w.Widget]] = {}
        super().__init__([w.HTML("<b>Devices</b>"), self.devices, w.HTML("<b>Per model</b>"), self.rows,
                          w.HTML("<b>Plan</b>"), self.plan], **kwargs)
        self.logic.observe(lambda _: self._build_rows(), "generation")
        self.logic.observe(lambda _: self._show_plan(), ["placements", "reason"])
        self._build_rows()

    def on_choice(self, model: str, key: str, value: Any) -> None:
        self.logic.set_choice(model, key, value)

    def _build_rows(self) -> None:
        gpus = self.logic.inventory.gpus
        options = [AUTO, "cpu"] + (["gpu"] + [f"cuda:{g.index}" for g in gpus] if gpus else [])
        rows, self.controls = [], {}
        for model, choice in self.logic.choices.items():
            device = w.Dropdown(options=options + ([choice["device"]] if choice["device"] not in options else []),
                                value=choice["device"], description="device", layout=w.Layout(width="200px"))
            share = w.BoundedFloatText(value=choice["gpu_fraction"] or 0.0, min=0.0, max=1.0, step=0.05,
                                       description="GPU share", layout=w.Layout(width="180px"),
                                       disabled=not gpus)
            threads = w.BoundedIntText(value=choice["threads"] or 0, min=0, max=1024, description="cores",
                                       layout=w.Layout(width="160px"))
            for key, widget in (("device", device), ("gpu_fraction", share), ("threads", threads)):
                widget.observe(lambda change, m=model, k=key: self.on_choice(m, k, change["new"]), "value")
            self.controls[model] = {"device": device, "gpu_fraction": share, "threads": threads}
            rows.append(w.HBox([w.Label(model, layout=w.Layout(width="220px")), device, share, threads]))
        self.rows.children = rows
        self._show_plan()

    def _show_plan(self) -> None:
        if self.logic.reason:
            self.plan.value = "<pre style='color:#c22;white-space:pre-wrap'>" + html.escape(self.logic.reason) + "</pre>"
        else:
            self.plan.value = placements_html(self.logic.placements)
