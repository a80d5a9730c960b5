"""Resources: the detected devices, per model a device / GPU share / cores, and the plan.

:class:`ResourcesLogic` asks the engine's own planner (:func:`workbench.resources.plan_placement`)
so the panel shows exactly the placement a run would get, and an impossible request is
refused with the planner's reason before anything starts. The inventory can be injected,
which is how the GPU cases are tested on a machine without one.

While a run trains, the part shows per GPU its name, the memory each of our models uses
(the engine's ``sys/gpu_memory_mb``: peak tensor memory of the model's worker per epoch),
what other processes hold (NVML's used memory minus ours, so it includes the CUDA
contexts and allocator cache of our own workers) and utilization (NVML, where present).
"""
from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w
import traitlets as t

__all__ = ["ResourcesLogic", "Resources", "inventory_html", "placements_html", "gpu_usage", "gpu_usage_html"]

AUTO = "auto"


class ResourcesLogic(t.HasTraits):
    inventory = t.Any()  # workbench.resources.Inventory
    instances = t.List()  # [(instance, registry model name, preset resources)]
    choices = t.Dict()  # registry model name -> {"device": str, "gpu_fraction": float|None, "threads": int|None}
    placements = t.List()  # workbench.resources.Placement, when the plan is possible
    reason = t.Unicode("")  # why the plan is refused; "" when it is possible
    ok = t.Bool(False)
    generation = t.Int(0)  # bumped when a new preset's models are taken: the layout rebuilds
    usage = t.List()  # per GPU of the attached run: gpu_usage() rows

    def __init__(self, inventory: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        from workbench.resources import detect_inventory

        self.inventory = inventory if inventory is not None else detect_inventory()
        self._run_gpus: tuple[Any, ...] = ()  # the attached run's GPUs, placements and model memory
        self._run_places: list[dict[str, Any]] = []
        self._model_mb: dict[str, float] = {}

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

    # -- a run's GPUs while it trains ------------------------------------------------------
    def bind(self, run: Any) -> None:
        """Follow a run's GPU use: its placements and devices from ``environment.json``."""
        self._run_gpus, self._run_places, self._model_mb = (), [], {}
        try:
            env = json.loads((run.dir / "environment.json").read_text())
        except (OSError, ValueError, AttributeError):
            self.usage = []
            return
        from workbench.resources import GPU, GPUProcess

        self._run_gpus = tuple(GPU(**{**g, "processes": tuple(GPUProcess(**p) for p in g.get("processes", ()))})
                               for g in env.get("devices", {}).get("gpus", []))
        self._run_places = [p for p in env.get("placements", []) if p.get("gpu_index") is not None]
        self.refresh_usage()

    def on_message(self, message: Mapping[str, Any]) -> None:
        """Take the ``sys/gpu_memory_mb`` rows of a run's metrics message."""
        if message.get("type") != "metrics" or not self._run_places:
            return
        rows = [r for r in message.get("rows", ()) if r[3] == "sys/gpu_memory_mb"]
        if rows:
            self._model_mb.update({r[0]: float(r[4]) for r in rows})
            self.refresh_usage()

    def refresh_usage(self, live: Sequence[Any] | None = None) -> None:
        """Recompute :attr:`usage`; ``live``: NVML readings of the machine's GPUs (probed when None)."""
        if not self._run_places:
            self.usage = []
            return
        if live is None:
            from workbench._gpus import probe_nvml

            live = probe_nvml() or ()
        self.usage = gpu_usage(self._run_gpus, self._run_places, self._model_mb, live)

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


def gpu_usage(gpus: Sequence[Any], placements: Sequence[Mapping[str, Any]], model_mb: Mapping[str, float],
              live: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """One row per GPU a run uses: name, total, our models' memory, others', utilization.

    ``gpus``: the run's GPUs (``workbench.resources.GPU``, logical index); ``placements``:
    its placements as dicts; ``model_mb``: the latest ``sys/gpu_memory_mb`` per model;
    ``live``: current NVML readings of the machine's GPUs, matched by UUID or physical id.
    """
    rows = []
    for gpu in gpus:
        ours = {p["instance"]: model_mb.get(p["instance"]) for p in placements if p.get("gpu_index") == gpu.index}
        if not ours:
            continue
        now = next((g for g in live if (gpu.uuid and g.uuid == gpu.uuid)
                    or (not gpu.uuid and gpu.physical is not None and g.physical == gpu.physical)), None)
        ours_gb = sum(v for v in ours.values() if v is not None) / 1024
        used = now.memory_used_gb if now is not None else None
        rows.append({"index": gpu.index, "name": gpu.name, "physical": gpu.physical, "memory_gb": gpu.memory_gb,
                     "models_mb": ours, "others_gb": None if used is None else max(0.0, used - ours_gb),
                     "utilization": now.utilization if now is not None else gpu.utilization})
    return rows


def gpu_usage_html(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    out = []
    for r in rows:
        physical = f" (physical {html.escape(str(r['physical']))})" if r["physical"] not in (None, str(r["index"])) else ""
        util = "utilization n/a (NVML missing)" if r["utilization"] is None else f"{r['utilization']:.0f}% busy"
        others = "others n/a (NVML missing)" if r["others_gb"] is None else f"others {r['others_gb']:.2f} GiB"
        models = ", ".join(f"{html.escape(m)} {'-' if mb is None else f'{mb:.0f} MiB'}"
                           for m, mb in r["models_mb"].items())
        out.append(f"<b>GPU {r['index']}</b> {html.escape(r['name'])}{physical}: {r['memory_gb']:.1f} GiB; "
                   f"{models}; {others}; {util}")
    return "<br>".join(out)


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
        self.gpu_use = w.HTML()  # the attached run's GPUs while it trains
        self.rows = w.VBox()
        self.plan = w.HTML()
        self.controls: dict[str, dict[str, w.Widget]] = {}
        super().__init__([w.HTML("<b>Devices</b>"), self.devices, self.gpu_use, w.HTML("<b>Per model</b>"), self.rows,
                          w.HTML("<b>Plan</b>"), self.plan], **kwargs)
        self.logic.observe(lambda change: setattr(self.gpu_use, "value", gpu_usage_html(change["new"])), "usage")
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
