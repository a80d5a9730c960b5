"""Live charts: every model's chosen metric on shared axes, redrawn in place.

The figure is rendered to a PNG (matplotlib's ``Figure``, no pyplot: safe from the
engine's threads) and put into one :class:`ipywidgets.Image`, so the output never grows
and nothing flickers; redraws go through a :class:`~widgets._binding.Throttle` (at most
one per ``interval`` seconds) however fast the engine reports.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as w
import traitlets as t

from ._binding import Throttle

__all__ = ["ChartsLogic", "LiveChart", "render_png", "chart_figure", "default_metric"]

# The metric a chart opens on, best first; the same every run, whatever reaches the store first.
PREFERRED_METRICS = ("eval/accuracy", "eval/loss", "train/loss_epoch")

PLACEHOLDER = ("<div style='box-sizing:border-box;height:100%;border:1px dashed #bbb;display:flex;"
               "align-items:center;justify-content:center;color:#888'>"
               "the chart appears when the first metrics arrive</div>")


def default_metric(available: list[str]) -> str:
    """The metric shown until the user picks one: the first of :data:`PREFERRED_METRICS`
    present, else the first name alphabetically."""
    for name in PREFERRED_METRICS:
        if name in available:
            return name
    return min(available)


def chart_figure(metrics: Any, name: str, smoothing: int = 1, events: Any = None, x: str = "epoch",
                 log: bool = False) -> Any:
    """The report's chart of ``name`` (every model on shared axes, the run's changes marked
    when ``events`` are given; see :mod:`workbench.charts`), epochs as whole numbers."""
    from matplotlib.ticker import MaxNLocator
    from workbench.report import metric_figure

    fig = metric_figure(metrics, name, smoothing=smoothing, events=events, x=x, log=log)
    if x == "epoch":
        epochs = metrics.loc[metrics["name"] == name, "epoch"]
        for ax in fig.axes:  # epochs are whole numbers: no 1.5 on the axis of a young run
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not epochs.empty and epochs.max() - epochs.min() < 2:
                # Under two epochs wide the locator gives up on integers (0.945 ... 1.050): widen the view.
                ax.set_xlim(epochs.min() - 1, epochs.max() + 1)
    return fig


def render_png(metrics: Any, name: str, smoothing: int = 1, events: Any = None, x: str = "epoch",
               log: bool = False) -> bytes:
    """:func:`chart_figure` as PNG bytes."""
    from workbench.charts import figure_png

    return figure_png(chart_figure(metrics, name, smoothing, events, x, log))


class ChartsLogic(t.HasTraits):
    run = t.Any(None, allow_none=True)
    metric = t.Unicode("")
    smoothing = t.Int(1, min=1)
    x_axis = t.Enum(["epoch", "step", "wall_time"], "epoch")
    log_scale = t.Bool(False)
    available = t.List(t.Unicode())
    png = t.Bytes(b"")
    renders = t.Int(0)  # how many times the chart was drawn
    chosen = t.Bool(False)  # the user picked the metric: keep it; until then follow default_metric

    def __init__(self, interval: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.throttle = Throttle(self.render, interval)
        self.observe(lambda _: self.throttle(), ["metric", "smoothing", "x_axis", "log_scale"])

    def bind(self, run: Any) -> None:
        self.run = run
        self.chosen = False  # a new run opens on its default metric
        self.throttle.flush()

    def choose(self, name: str) -> None:
        """The user's pick of metric: kept for the rest of the run."""
        self.chosen = True
        self.metric = name

    def on_message(self, message: Mapping[str, Any]) -> None:
        """Epoch ends redraw; step batches redraw only for a per-step metric."""
        kind = message.get("type")
        if kind == "epoch" or (kind == "metrics" and not self.metric.startswith("eval/")):
            self.throttle()

    def render(self) -> None:
        from workbench.charts import MARKED_KINDS
        from workbench.report import chart_metrics

        if self.run is None:
            return
        try:  # names, then one metric's per-epoch series: a narrow read however large the store
            present = self.run.metric_names()
        except Exception:  # the store of a run made elsewhere may be mid-creation
            return
        if not present:
            return
        names = chart_metrics(present)
        extra = sorted(n for n in present if n.startswith("train/") and n not in names)
        available = names + extra
        if available != self.available:
            self.available = available
        if not (self.chosen and self.metric in available):
            # Re-picked as metrics arrive, so the eval metric that lands a moment after the
            # train loss still wins: the opening chart does not depend on arrival order.
            metric = default_metric(available)
            if metric != self.metric:
                self.metric = metric  # observing "metric" schedules a redraw
        try:
            metrics = self.run.epoch_series(self.metric)
        except Exception:
            return
        try:  # only the kinds the chart marks: a long run holds thousands of segment events
            events = self.run.events(kind=MARKED_KINDS)
        except Exception:  # no events table readable yet: the chart without marks
            events = None
        self.png = render_png(metrics, self.metric, self.smoothing, events, self.x_axis, self.log_scale)
        self.renders += 1


class LiveChart(w.VBox):
    def __init__(self, logic: ChartsLogic | None = None, **kwargs: Any):
        self.logic = logic or ChartsLogic()
        self.metric = w.Dropdown(description="metric", options=self.logic.available)
        self.smoothing = w.IntSlider(value=self.logic.smoothing, min=1, max=10, description="smoothing",
                                     continuous_update=False)
        # An Image with no bytes shows the browser's broken-image icon: until the first
        # metrics arrive a placeholder of the chart's size stands in its place.
        self.image = w.Image(format="png", layout=w.Layout(max_width="720px", display="none"))
        self.placeholder = w.HTML(PLACEHOLDER, layout=w.Layout(width="640px", height="360px"))
        self.x_axis = w.Dropdown(description="x", options=["epoch", "step", "wall_time"], value=self.logic.x_axis,
                                 layout=w.Layout(width="170px"))
        self.log_scale = w.Checkbox(value=self.logic.log_scale, description="log", indent=False,
                                    layout=w.Layout(width="60px"))
        super().__init__([w.HBox([self.metric, self.smoothing, self.x_axis, self.log_scale]), self.placeholder,
                          self.image], **kwargs)
        self.x_axis.observe(lambda change: setattr(self.logic, "x_axis", change["new"]), "value")
        self.log_scale.observe(lambda change: setattr(self.logic, "log_scale", change["new"]), "value")
        self.metric.observe(lambda change: self.on_metric(change["new"]), "value")
        self.smoothing.observe(lambda change: self.on_smoothing(change["new"]), "value")
        self._syncing = False  # the dropdown follows the logic: only a person's pick is a choice
        self.logic.observe(lambda change: self._sync("options", change["new"]), "available")
        self.logic.observe(lambda change: self._sync("value", change["new"] or None), "metric")
        self.logic.observe(lambda change: self._show_png(change["new"]), "png")
        self._show_png(self.logic.png)

    def _sync(self, trait: str, value: Any) -> None:
        self._syncing = True
        try:
            setattr(self.metric, trait, value)
            if trait == "options" and self.logic.metric in value:
                self.metric.value = self.logic.metric  # new options can reset the dropdown's value
        finally:
            self._syncing = False

    def on_metric(self, name: str | None) -> None:
        if name and name != self.logic.metric and not self._syncing:
            self.logic.choose(name)

    def on_smoothing(self, window: int) -> None:
        self.logic.smoothing = window

    def _show_png(self, png: bytes) -> None:
        if png:
            self.image.value = png
        self.image.layout.display = None if png else "none"
        self.placeholder.layout.display = "none" if png else None
