"""Live charts: every model's chosen metric on shared axes, redrawn in place.

The figure is rendered to a PNG (matplotlib's ``Figure``, no pyplot: safe from the
engine's threads) and put into one :class:`ipywidgets.Image`, so the output never grows
and nothing flickers; redraws go through a :class:`~widgets._binding.Throttle` (at most
one per ``interval`` seconds) however fast the engine reports.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import ipywidgets as w
import traitlets as t

from ._binding import Throttle

__all__ = ["ChartsLogic", "LiveChart", "render_png"]

PLACEHOLDER = ("<div style='box-sizing:border-box;height:100%;border:1px dashed #bbb;display:flex;"
               "align-items:center;justify-content:center;color:#888'>"
               "the chart appears when the first metrics arrive</div>")


def render_png(metrics: Any, name: str, smoothing: int = 1) -> bytes:
    """The report's chart of ``name`` (every model on shared axes) as PNG bytes."""
    from workbench.report import metric_figure

    from matplotlib.ticker import MaxNLocator

    fig = metric_figure(metrics, name, smoothing=smoothing)
    for ax in fig.axes:  # epochs are whole numbers: no 1.5 on the axis of a young run
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class ChartsLogic(t.HasTraits):
    run = t.Any(None, allow_none=True)
    metric = t.Unicode("")
    smoothing = t.Int(1, min=1)
    available = t.List(t.Unicode())
    png = t.Bytes(b"")
    renders = t.Int(0)  # how many times the chart was drawn

    def __init__(self, interval: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.throttle = Throttle(self.render, interval)
        self.observe(lambda _: self.throttle(), ["metric", "smoothing"])

    def bind(self, run: Any) -> None:
        self.run = run
        self.throttle.flush()

    def on_message(self, message: Mapping[str, Any]) -> None:
        """Epoch ends redraw; step batches redraw only for a per-step metric."""
        kind = message.get("type")
        if kind == "epoch" or (kind == "metrics" and not self.metric.startswith("eval/")):
            self.throttle()

    def render(self) -> None:
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
        if self.metric not in available:
            preferred = [n for n in ("eval/accuracy", "train/loss_epoch") if n in available]
            self.metric = (preferred or available)[0]  # observing "metric" schedules a redraw
        try:
            metrics = self.run.epoch_series(self.metric)
        except Exception:
            return
        self.png = render_png(metrics, self.metric, self.smoothing)
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
        super().__init__([w.HBox([self.metric, self.smoothing]), self.placeholder, self.image], **kwargs)
        self.metric.observe(lambda change: self.on_metric(change["new"]), "value")
        self.smoothing.observe(lambda change: self.on_smoothing(change["new"]), "value")
        self.logic.observe(lambda change: setattr(self.metric, "options", change["new"]), "available")
        self.logic.observe(lambda change: setattr(self.metric, "value", change["new"] or None), "metric")
        self.logic.observe(lambda change: self._show_png(change["new"]), "png")
        self._show_png(self.logic.png)

    def on_metric(self, name: str | None) -> None:
        if name:
            self.logic.metric = name

    def on_smoothing(self, window: int) -> None:
        self.logic.smoothing = window

    def _show_png(self, png: bytes) -> None:
        if png:
            self.image.value = png
        self.image.layout.display = None if png else "none"
        self.placeholder.layout.display = "none" if png else None
