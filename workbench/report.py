"""Run reports: comparison charts (PNG), ``summary.csv`` and a self-contained ``report.html``.

The same figures are used by ``workbench report``, the notebooks (static images that
survive headless execution) and the Results panel.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from .limits import check_writable_dir

__all__ = ["summary_table", "metric_figure", "write_report", "chart_metrics", "downsample"]

MAX_POINTS = 1000  # per model and chart: more than a chart's width in pixels shows nothing more


def summary_table(metrics) -> Any:
    """One row per model: the last value of each ``eval/`` metric, and epochs trained."""
    import pandas as pd

    evals = metrics[metrics["name"].str.startswith("eval/")]
    if evals.empty:
        return pd.DataFrame()
    last = evals.sort_values(["epoch", "step", "wall_time"]).groupby(["model", "name"]).last()["value"]
    table = last.unstack("name")
    table.insert(0, "epochs", evals.groupby("model")["epoch"].max())
    return table.reset_index()


def chart_metrics(metrics) -> list[str]:
    """The metric names worth a chart: every ``eval/`` one, plus the per-epoch train loss.

    ``metrics``: a metrics frame, or the names themselves (``read_store.metric_names()``,
    which a large store answers without reading its rows)."""
    present = set(metrics["name"].unique() if hasattr(metrics, "columns") else metrics)
    names = sorted(n for n in present if n.startswith("eval/"))
    if "train/loss_epoch" in present:
        names.insert(0, "train/loss_epoch")
    return names


def downsample(x, y, buckets: int = MAX_POINTS // 2) -> tuple[Any, Any]:
    """At most ``2 * buckets + 2`` points of a long series, for drawing: the first and the last
    point, and the minimum and the maximum of each of ``buckets`` equal runs of points, in
    their order. Unlike every k-th point, a spike or a divergence stays on the chart."""
    import numpy as np

    x, y = np.asarray(x), np.asarray(y, dtype=float)
    n = len(y)
    if n <= 2 * buckets + 2:
        return x, y
    inner = np.arange(1, n - 1)
    bucket = (inner - 1) * buckets // (n - 2)  # equal runs of the points between first and last
    # Within each bucket, order by value (NaN last for the minimum, first for the maximum):
    # the first of a bucket is its minimum, the last its maximum. Vectorised: no loop over buckets.
    low = np.lexsort((np.where(np.isnan(y[inner]), np.inf, y[inner]), bucket))
    high = np.lexsort((np.where(np.isnan(y[inner]), -np.inf, y[inner]), bucket))
    ids = np.arange(buckets)
    first = np.searchsorted(bucket[low], ids)
    last = np.searchsorted(bucket[high], ids, side="right") - 1
    index = np.unique(np.concatenate(([0, n - 1], inner[low[first]], inner[high[last]])))
    return x[index], y[index]


def metric_figure(metrics, name: str, smoothing: int = 1, ax=None):
    """Every model's ``name`` over epochs on shared axes (a matplotlib Figure)."""
    from matplotlib.figure import Figure  # no pyplot: safe from any thread, no GUI backend
    from matplotlib.ticker import MaxNLocator

    fig = None
    if ax is None:
        fig = Figure(figsize=(6.4, 3.6), dpi=100)
        ax = fig.add_subplot()
    data = metrics[metrics["name"] == name]
    x_name = "epoch"
    for model, group in data.groupby("model"):
        group = group.sort_values(["epoch", "step"])
        series = group.groupby(x_name)["value"].last()
        if smoothing > 1:
            series = series.rolling(smoothing, min_periods=1).mean()
        xs, ys = downsample(series.index, series.values)
        ax.plot(xs, ys, marker="o" if len(series) < 30 else None, ms=3, label=model)
    ax.set_title(name)
    ax.set_xlabel(x_name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if data["model"].nunique() > 0:
        ax.legend(fontsize=7, loc="best")
    return fig if fig is not None else ax.figure


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write charts, ``summary.csv`` and ``report.html``; return their paths by name."""
    import pandas as pd

    from .store import read_store

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    check_writable_dir(out, "report folder")
    reader = read_store(run_dir / "store.sqlite")
    # Only what the report shows (per-epoch values of the charted metrics), reduced in SQLite:
    # a run with a million per-step points is reported from a few thousand rows.
    charted = chart_metrics(reader.metric_names())
    frames = [reader.epoch_series(name) for name in charted]
    metrics = pd.concat(frames, ignore_index=True) if frames else reader.metrics(name="eval/%")
    events = reader.events()
    out.mkdir(parents=True, exist_ok=True)  # after the reads: an unreadable store leaves no report/ behind
    paths: dict[str, Path] = {}
    table = summary_table(metrics)
    table.to_csv(out / "summary.csv", index=False)
    paths["summary.csv"] = out / "summary.csv"
    images = []
    for name in charted:
        fig = metric_figure(metrics, name)
        data = _png(fig)
        file = out / (name.replace("/", "_") + ".png")
        file.write_bytes(data)
        paths[file.name] = file
        images.append((name, data))
    counts = events.groupby(["kind"]).size().sort_values(ascending=False) if not events.empty else None
    hparams = events[events["kind"].isin(["hparam", "exploit", "rollback"])] if not events.empty else events
    body = [f"<h1>Run {html.escape(run_dir.name)}</h1>",
            "<h2>Summary (last evaluation of each model)</h2>",
            table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0) if not table.empty else "<p>No evaluation yet.</p>",
            "<h2>Charts</h2>"]
    for name, data in images:
        body.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
                    f'{base64.b64encode(data).decode()}"/></figure>')
    if counts is not None:
        body.append("<h2>Events</h2>" + counts.to_frame("count").to_html(border=0))
    if hparams is not None and not hparams.empty:
        rows = hparams.assign(payload=hparams["payload"].map(lambda p: html.escape(str(p))))
        body.append("<h2>Hyperparameter changes, exploits and roll-backs</h2>" +
                    rows[["model", "kind", "payload"]].to_html(index=False, border=0, escape=False))
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}figure{display:inline-block;margin:4px}")
    (out / "report.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>Run {html.escape(run_dir.name)}"
                                     f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
    paths["report.html"] = out / "report.html"
    return paths
