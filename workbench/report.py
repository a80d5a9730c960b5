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

__all__ = ["summary_table", "metric_figure", "write_report", "chart_metrics", "graph_figure", "learned_graphs"]


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
    """The metric names worth a chart: every ``eval/`` one, plus the per-epoch train loss."""
    names = sorted(n for n in metrics["name"].unique() if n.startswith("eval/"))
    if "train/loss_epoch" in set(metrics["name"]):
        names.insert(0, "train/loss_epoch")
    return names


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
        ax.plot(series.index, series.values, marker="o" if len(series) < 30 else None, ms=3, label=model)
    ax.set_title(name)
    ax.set_xlabel(x_name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if data["model"].nunique() > 0:
        ax.legend(fontsize=7, loc="best")
    return fig if fig is not None else ax.figure


def learned_graphs(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{model: {"graph": DataFrame, "truth": DataFrame | None, "notes": [str]}}`` from the
    ``graph.csv`` files models wrote into ``RUN/outputs/<model>/`` at their last checkpoint."""
    import pandas as pd

    out = {}
    for file in sorted(Path(run_dir).glob("outputs/*/graph.csv")):
        truth_file, notes_file = file.with_name("true_graph.csv"), file.with_name("notes.txt")
        out[file.parent.name] = {
            "graph": pd.read_csv(file, index_col=0),
            "truth": pd.read_csv(truth_file, index_col=0) if truth_file.exists() else None,
            "notes": notes_file.read_text().splitlines() if notes_file.exists() else []}
    return out


def graph_figure(graph, truth=None, title: str = ""):
    """A learned causal graph drawn (a matplotlib Figure): ``graph`` is a DataFrame of edge
    weights, rows cause and columns effect; a square one is drawn on a circle, a
    rectangular one (inputs -> outputs) in two columns. Edge width follows ``|weight|``;
    with ``truth`` (0/1, same layout) edges are coloured found / reversed / extra and
    the true edges the fit missed are drawn dashed."""
    import numpy as np
    from matplotlib.figure import Figure

    w = graph.to_numpy(dtype=float)
    rows, cols = [str(n) for n in graph.index], [str(n) for n in graph.columns]
    square = rows == cols
    if square:
        names = rows
        angle = np.pi / 2 - 2 * np.pi * np.arange(len(names)) / max(len(names), 1)
        pos = {n: (np.cos(a), np.sin(a)) for n, a in zip(names, angle)}
        src, dst = pos, pos
    else:
        src = {n: (-1.0, 1 - 2 * i / max(len(rows) - 1, 1)) for i, n in enumerate(rows)}
        dst = {n: (1.0, 1 - 2 * i / max(len(cols) - 1, 1)) for i, n in enumerate(cols)}
    t = truth.to_numpy(dtype=float) != 0 if truth is not None else None
    fig = Figure(figsize=(6.4, 5.2), dpi=100)
    ax = fig.add_subplot()
    top = max(float(np.abs(w).max()), 1e-12)
    edges = []
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            if w[i, j] != 0:
                if t is None:
                    kind = "edge"
                elif t[i, j]:
                    kind = "found"
                elif square and t[j, i]:
                    kind = "reversed"
                else:
                    kind = "extra"
                edges.append((a, b, kind, 0.8 + 2.7 * abs(w[i, j]) / top))
            elif t is not None and t[i, j] and not (square and w[j, i] != 0):  # reversed: drawn once
                edges.append((a, b, "missed", 1.0))
    style = {"edge": ("#333333", "-"), "found": ("#2a7", "-"), "reversed": ("#e80", "-"), "extra": ("#c22", "-"),
             "missed": ("#999999", "--")}
    for a, b, kind, width in edges:
        color, line = style[kind]
        ax.annotate("", xy=dst[b], xytext=src[a], arrowprops=dict(
            arrowstyle="-|>", color=color, lw=width, linestyle=line, shrinkA=14, shrinkB=14, mutation_scale=12,
            connectionstyle="arc3,rad=0.08"))
    for label_pos in ([src] if square else [src, dst]):
        for name, (x, y) in label_pos.items():
            ax.text(x, y, name, ha="center", va="center", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.3", fc="#eef3fb", ec="#4a6fa5"))
    counts = {k: sum(e[2] == k for e in edges) for k in style}
    legend = (f"found {counts['found']}, reversed {counts['reversed']}, extra {counts['extra']}, "
              f"missed {counts['missed']} (dashed)" if t is not None else f"{counts['edge']} edges")
    ax.set_title(f"{title}\n{legend}" if title else legend, fontsize=9)
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.25, 1.25)
    ax.set_aspect("equal" if square else "auto")
    ax.axis("off")
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write charts, ``summary.csv`` and ``report.html``; return their paths by name."""
    from .store import read_store

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    check_writable_dir(out, "report folder")
    reader = read_store(run_dir / "store.sqlite")
    metrics = reader.metrics()
    events = reader.events()
    out.mkdir(parents=True, exist_ok=True)  # after the reads: an unreadable store leaves no report/ behind
    paths: dict[str, Path] = {}
    table = summary_table(metrics)
    table.to_csv(out / "summary.csv", index=False)
    paths["summary.csv"] = out / "summary.csv"
    images = []
    for name in chart_metrics(metrics):
        fig = metric_figure(metrics, name)
        data = _png(fig)
        file = out / (name.replace("/", "_") + ".png")
        file.write_bytes(data)
        paths[file.name] = file
        images.append((name, data))
    graphs = learned_graphs(run_dir)
    for model, g in graphs.items():
        data = _png(graph_figure(g["graph"], g["truth"], f"learned graph: {model}"))
        file = out / f"graph_{model}.png"
        file.write_bytes(data)
        paths[file.name] = file
        images.append((f"graph {model}", data))
    counts = events.groupby(["kind"]).size().sort_values(ascending=False) if not events.empty else None
    hparams = events[events["kind"].isin(["hparam", "exploit", "rollback"])] if not events.empty else events
    body = [f"<h1>Run {html.escape(run_dir.name)}</h1>",
            "<h2>Summary (last evaluation of each model)</h2>",
            table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0) if not table.empty else "<p>No evaluation yet.</p>",
            "<h2>Charts</h2>"]
    for name, data in images:
        body.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
                    f'{base64.b64encode(data).decode()}"/></figure>')
    for model, g in graphs.items():
        body.append(f"<h2>Learned graph: {html.escape(model)}</h2><p>RUN/outputs/{html.escape(model)}/graph.csv "
                    "(rows cause, columns effect)</p>"
                    + "".join(f"<p><b>warning:</b> {html.escape(n)}</p>" for n in g["notes"]))
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
