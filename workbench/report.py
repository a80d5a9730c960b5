"""Run reports: comparison charts (PNG), ``summary.csv`` and a self-contained ``report.html``.

The same figures are used by ``workbench report``, the notebooks (static images that
survive headless execution) and the Results panel.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from .limits import check_writable_dir

__all__ = ["summary_table", "metric_figure", "write_report", "chart_metrics", "report_sections"]


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


def metric_figure(metrics, name: str, smoothing: int = 1, ax=None, events=None, x: str = "epoch",
                  log: bool = False):
    """Every model's ``name`` on shared axes, the run's changes marked when ``events`` are
    given (a matplotlib Figure); ``x``: epoch, step or wall_time (see :mod:`workbench.charts`)."""
    from .charts import add_marks, change_marks, run_figure

    if ax is None:
        return run_figure(metrics, [name], events=events, x=x, log=log, smoothing=smoothing, columns=1,
                          width=6.4, height=3.4)
    from .charts import _series, _start

    data = metrics[metrics["name"] == name]
    for model, group in data.groupby("model"):
        series = _series(group, x, _start(metrics), smoothing)
        ax.plot(series.index, series.values, marker="o" if len(series) < 30 else None, ms=3, label=model)
    add_marks(ax, change_marks(events, metrics, x) if events is not None else [])
    ax.set_title(name)
    ax.set_xlabel(x)
    ax.grid(alpha=0.3)
    if data["model"].nunique() > 0:
        ax.legend(fontsize=7, loc="best")
    return ax.figure


def _png(fig) -> bytes:
    from .charts import figure_png

    return figure_png(fig)


def _img(name: str, data: bytes) -> str:
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode()}"/></figure>')


def _table(frame, index: bool = False) -> str:
    return frame.to_html(index=index, border=0, na_rep="", float_format=lambda v: f"{v:.4g}")


def report_sections(run_dir: str | Path) -> dict[str, str]:
    """The report's HTML fragments by name: ``summary``, ``metrics``, ``settings``, ``changes``.

    The rendered notebooks display the same fragments, so the report and the notebook open
    with the same summary (what ran, on what, how long, final and best metrics).
    """
    from .summary import changes_table, run_summary

    run_dir = Path(run_dir)
    info = run_summary(run_dir)
    facts = [("run", info["run"]), ("preset", f"{info['preset']}: {info['description']}" if info["description"]
                                     else info["preset"]),
             ("state", info["state"]), ("models", ", ".join(info["models"])), ("data", ", ".join(info["datasets"])),
             ("started", info["started"]), ("duration", info["duration"]), ("hardware", info["hardware"]),
             ("software", info["software"])]
    left = "style='text-align:left'"  # inline: the panel and notebooks have their own table styles
    summary = "<table class='facts'>" + "".join(
        f"<tr><th {left}>{html.escape(k)}</th><td {left}>{html.escape(str(v))}</td></tr>" for k, v in facts if v
    ) + "</table>"
    metrics = info["metrics"]
    changes = changes_table(run_dir)
    settings = info["settings"]
    return {
        "summary": summary,
        "metrics": _table(metrics) if not metrics.empty else "<p>No evaluation yet.</p>",
        "settings": _table(settings) if not settings.empty else "<p>No settings recorded.</p>",
        "changes": _table(changes) if not changes.empty else "<p>No live changes: the run kept its settings.</p>",
    }


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write charts, ``summary.csv`` and ``report.html``; return their paths by name.

    ``report.html`` opens with the summary (what ran, on what hardware, how long, final and
    best metrics), then the metrics as small multiples with the run's changes marked, the
    resources chart, the settings and the full list of live changes. It holds no link that
    works only on the machine that made it.
    """
    from .charts import resources_figure, run_figure
    from .store import read_store

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    check_writable_dir(out, "report folder")
    reader = read_store(run_dir / "store.sqlite")
    metrics = reader.metrics()
    events = reader.events()
    sections = report_sections(run_dir)
    out.mkdir(parents=True, exist_ok=True)  # after the reads: an unreadable store leaves no report/ behind
    paths: dict[str, Path] = {}
    table = summary_table(metrics)
    table.to_csv(out / "summary.csv", index=False)
    paths["summary.csv"] = out / "summary.csv"
    names = chart_metrics(metrics)
    images = []
    if names:
        images.append(("metrics", _png(run_figure(metrics, names, events=events))))
    if metrics["name"].str.startswith("sys/").any():
        images.append(("resources", _png(resources_figure(metrics))))
    for name, data in images:
        (out / f"{name}.png").write_bytes(data)
        paths[f"{name}.png"] = out / f"{name}.png"
    for name in names:  # one file per metric too, for slides and scripts
        file = out / (name.replace("/", "_") + ".png")
        file.write_bytes(_png(metric_figure(metrics, name, events=events)))
        paths[file.name] = file
    counts = events.groupby(["kind"]).size().sort_values(ascending=False) if not events.empty else None
    body = [f"<h1>Run {html.escape(run_dir.name)}</h1>", "<h2>Summary</h2>", sections["summary"],
            "<h2>Final and best metrics</h2>", sections["metrics"], "<h2>Charts</h2>"]
    body += [_img(name, data) for name, data in images]
    body += ["<h2>Live changes</h2>", sections["changes"], "<h2>Settings</h2>", sections["settings"]]
    if counts is not None:
        body.append("<h2>Events</h2>" + counts.to_frame("count").to_html(border=0))
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}table.facts th,table.facts td"
             "{text-align:left}figure{display:inline-block;margin:4px}img{max-width:100%}")
    (out / "report.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>Run {html.escape(run_dir.name)}"
                                     f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
    paths["report.html"] = out / "report.html"
    return paths
