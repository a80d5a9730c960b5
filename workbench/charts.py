"""Charts that tell what happened: metrics with the run's changes marked, and resources.

One set of figure functions for every place a run is drawn: the live panel chart, the
panel's Results tab, ``workbench report`` and the rendered notebooks. Each returns a
matplotlib ``Figure`` (no pyplot: safe from any thread, no GUI backend needed).

- :func:`change_marks`: the events worth a vertical line, with their x position on the
  chosen axis and their source: a hyperparameter change by the user, the controller or a
  replay, a pause, a roll-back, an exploit.
- :func:`run_figure`: several metrics as small multiples (one panel each, every model a
  line), x axis ``epoch``, ``step`` or ``wall_time`` (seconds since the run's first
  metric), optional log scale, the change marks with one legend for their sources.
- :func:`resources_figure`: the figures the engine records per model and segment (process
  CPU %, resident memory, GPU memory, steps/s).
"""
from __future__ import annotations

from typing import Any

__all__ = ["MARK_STYLES", "MARKED_KINDS", "X_AXES", "change_marks", "run_figure", "resources_figure", "add_marks", "figure_png", "figure_and_panel_pngs", "RESOURCE_METRICS"]

X_AXES = ("epoch", "step", "wall_time")

# Source of a change -> (colour, line style); the legend names the source.
MARK_STYLES: dict[str, tuple[str, str]] = {
    "user": ("#d62728", "-"),
    "controller": ("#9467bd", "--"),
    "replay": ("#8c564b", "-."),
    "pause": ("#7f7f7f", ":"),
    "roll-back": ("#ff7f0e", "-"),
    "exploit": ("#2ca02c", "--"),
}

RESOURCE_METRICS = {"sys/cpu_percent": "CPU % (worker process)", "sys/rss_mb": "resident memory (MB)",
                    "sys/gpu_memory_mb": "GPU memory, peak (MB)", "sys/steps_per_s": "steps/s"}


# The event kinds a chart marks (see _source): what charts read of a run's events.
MARKED_KINDS = ("hparam", "paused", "rollback", "exploit")


def _source(kind: str, payload: Any) -> str | None:
    payload = payload if isinstance(payload, dict) else {}
    if kind == "hparam":
        source = payload.get("source") or "user"
        return source if source in MARK_STYLES else "user"
    return {"paused": "pause", "rollback": "roll-back", "exploit": "exploit"}.get(kind)


def _start(metrics) -> float:
    return float(metrics["wall_time"].min()) if len(metrics) else 0.0


def _positions(metrics) -> dict[str, tuple[Any, Any, Any]]:
    """Per model: wall times of its step rows, their global step, their fractional epoch."""
    import numpy as np

    out = {}
    rows = metrics.dropna(subset=["step", "epoch", "wall_time"])
    for model, group in rows.groupby("model"):
        group = group.sort_values("wall_time")
        first = group.groupby("epoch")["step"].transform("min")
        last = group.groupby("epoch")["step"].transform("max")
        span = (last - first + 1).clip(lower=1)
        fraction = (group["epoch"] - 1) + (group["step"] - first + 1) / span
        out[model] = (group["wall_time"].to_numpy(float), group["step"].to_numpy(float),
                      np.asarray(fraction, dtype=float))
    return out


def change_marks(events, metrics, x: str = "epoch") -> list[dict[str, Any]]:
    """The events drawn as vertical lines: ``{"x", "source", "model", "label", "wall_time"}``.

    The position comes from the event's wall time, placed on the model's own steps (so a
    change at step 40 of a 34-step epoch sits at epoch 1.18); an event of no model, or of a
    model with no steps yet, is placed by time on the run's other models.
    """
    import numpy as np

    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    if events is None or len(events) == 0:
        return []
    positions = _positions(metrics) if len(metrics) else {}
    start = _start(metrics)
    marks = []
    for event in events.itertuples():
        source = _source(event.kind, event.payload)
        if source is None:
            continue
        payload = event.payload if isinstance(event.payload, dict) else {}
        if x == "wall_time":
            where = float(event.wall_time) - start
        else:
            pos = positions.get(event.model) or next(iter(positions.values()), None)
            if pos is None:
                continue
            wall, steps, epochs = pos
            where = float(np.interp(event.wall_time, wall, steps if x == "step" else epochs))
        what = (f"{payload.get('name')} {payload.get('old')} → {payload.get('new')}" if event.kind == "hparam"
                else event.kind)
        marks.append({"x": where, "source": source, "model": event.model, "label": what,
                      "wall_time": float(event.wall_time)})
    return marks


def add_marks(ax, marks: list[dict[str, Any]]) -> set[str]:
    """Draw ``marks`` on ``ax``; returns the sources drawn (for one legend per figure)."""
    seen = set()
    for mark in marks:
        color, style = MARK_STYLES[mark["source"]]
        ax.axvline(mark["x"], color=color, linestyle=style, linewidth=1.1, alpha=0.8, zorder=1)
        seen.add(mark["source"])
    return seen


def _series(data, x: str, start: float, smoothing: int):
    """One model's metric against ``x``; per-epoch values on the epoch axis stay whole epochs."""
    data = data.sort_values(["wall_time"])
    if x == "epoch":
        per_step = data.groupby("epoch")["step"].nunique().max() > 1
        if per_step:  # a per-step metric: spread the steps over their epoch
            first = data.groupby("epoch")["step"].transform("min")
            last = data.groupby("epoch")["step"].transform("max")
            xs = (data["epoch"] - 1) + (data["step"] - first + 1) / (last - first + 1).clip(lower=1)
            series = data.assign(_x=xs).groupby("_x")["value"].last()
        else:
            series = data.groupby("epoch")["value"].last()
    elif x == "step":
        series = data.groupby("step")["value"].last()
    else:
        series = data.assign(_x=data["wall_time"] - start).groupby("_x")["value"].last()
    if smoothing > 1:
        series = series.rolling(smoothing, min_periods=1).mean()
    from .report import MAX_POINTS, downsample

    if len(series) > MAX_POINTS:  # a spike or a divergence stays visible, the chart stays fast
        xs, ys = downsample(series.index, series.values)
        series = type(series)(ys, index=xs)
    return series


def _label(x: str) -> str:
    return {"wall_time": "seconds since start"}.get(x, x)


def run_figure(metrics, names: list[str], events=None, x: str = "epoch", log: bool = False, smoothing: int = 1,
               columns: int = 2, width: float = 5.2, height: float = 3.2):
    """``names`` as small multiples (one panel each, every model a line) with the run's
    changes marked; a matplotlib Figure. ``log``: a logarithmic y axis (positive values)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    names = list(names) or ["(no metric)"]
    cols = max(1, min(columns, len(names)))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.5), dpi=100, layout="constrained")
    marks = change_marks(events, metrics, x) if events is not None else []
    start = _start(metrics)
    sources: set[str] = set()
    models: dict[str, Any] = {}
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        data = metrics[metrics["name"] == name] if len(metrics) else metrics
        for model, group in data.groupby("model"):
            series = _series(group, x, start, smoothing)
            color = models.get(model)
            line, = ax.plot(series.index, series.values, marker="o" if len(series) < 30 else None, ms=3,
                            label=model, color=color)
            models.setdefault(model, line.get_color())
        sources |= add_marks(ax, [m for m in marks])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(_label(x), fontsize=8)
        if x != "wall_time":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(data) and x == "epoch" and data["epoch"].max() <= 1:
            ax.set_xlim(0, 1.05)  # one epoch: 0 to 1, not 0.945 to 1.05
        if log and len(data) and (data["value"] > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    handles = [Line2D([], [], color=c, label=m) for m, c in models.items()]
    handles += [Line2D([], [], color=MARK_STYLES[s][0], linestyle=MARK_STYLES[s][1], label=f"change: {s}")
                for s in MARK_STYLES if s in sources]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    return fig


def figure_png(fig) -> bytes:
    """PNG bytes of a figure laid out by its own engine (a constrained layout keeps the legend outside)."""
    import io

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def figure_and_panel_pngs(fig, pad: int = 3) -> tuple[bytes, list[bytes]]:
    """PNG bytes of a figure and of each of its panels (title, axis labels and the figure's
    legend below it), from one render: the report's per-metric files cost a crop of the small
    multiples, not a figure each (four redraws were most of ``workbench report``'s time)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # runs the layout engine, as savefig does
    image = np.asarray(canvas.buffer_rgba())
    renderer = canvas.get_renderer()
    height, width = image.shape[:2]

    def crop(box):  # display coordinates (origin bottom left) to rows and columns of the image
        left, right = max(int(box.x0) - pad, 0), min(int(np.ceil(box.x1)) + pad, width)
        top, bottom = max(height - int(np.ceil(box.y1)) - pad, 0), min(height - int(box.y0) + pad, height)
        return image[top:bottom, left:right]

    legend = crop(fig.legends[0].get_window_extent(renderer)) if fig.legends else None
    panels = []
    for ax in fig.axes:
        part = crop(ax.get_tightbbox(renderer))
        if legend is not None:
            wide = max(part.shape[1], legend.shape[1])
            part = np.vstack([_widen(part, wide), _widen(legend, wide)])
        panels.append(_encode_png(part))
    return _encode_png(image), panels


def _widen(pixels, width: int):
    """``pixels`` centred on a white strip ``width`` wide."""
    import numpy as np

    out = np.full((pixels.shape[0], width, pixels.shape[2]), 255, dtype=pixels.dtype)
    left = (width - pixels.shape[1]) // 2
    out[:, left:left + pixels.shape[1]] = pixels
    return out


def _encode_png(pixels) -> bytes:
    import io

    from PIL import Image  # matplotlib's own dependency

    buffer = io.BytesIO()
    Image.fromarray(pixels.copy()).save(buffer, format="png")  # a copy: a crop is a view, PIL wants whole rows
    return buffer.getvalue()


def resources_figure(metrics, x: str = "wall_time"):
    """The resource figures the engine records (CPU %, memory, GPU memory, steps/s) per model."""
    present = [n for n in RESOURCE_METRICS if len(metrics) and (metrics["name"] == n).any()]
    fig = run_figure(metrics, present, x=x, columns=2, width=4.6, height=2.8)
    for ax, name in zip(fig.axes, present):
        ax.set_title(RESOURCE_METRICS[name], fontsize=10)
    return fig
