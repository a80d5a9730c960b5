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

__all__ = ["summary_table", "metric_figure", "write_report", "chart_metrics", "downsample", "report_sections",
           "graph_figure", "learned_graphs"]

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


_MANIFEST = ".report.json"  # in the report folder: what the report was made from, and its files
# The modules whose code shapes a report: an edit to one of them makes a new report.
_REPORT_CODE = ("report.py", "charts.py", "summary.py", "compare.py", "store.py", "_arrow_reads.py")


def _inputs(run_dir: Path) -> dict[str, Any] | None:
    """What a finished run's report is made of (its files' sizes and times, the code, the
    time zone), or None when the report must be made afresh: the store is being written or
    the run is not finished (its shown state may then change while its files do not)."""
    import json
    import time

    from ._arrow_reads import being_written
    from .errors import StoreError
    from .states import RunState
    from .store import read_store

    store = run_dir / "store.sqlite"
    if not store.is_file() or being_written(store):
        return None
    reader = read_store(store)
    try:
        state = reader._rows("SELECT value FROM run WHERE key = 'state'")
        if not state or not RunState(json.loads(state[0][0])).is_finished():
            return None
        # What the store holds, besides its size and time (a change in place within the file
        # system's time resolution keeps both): the last rows written and the small tables.
        content = repr([reader._rows("SELECT (SELECT MAX(rowid) FROM metrics), (SELECT MAX(rowid) FROM events)"),
                        reader._rows("SELECT * FROM run ORDER BY key"), reader._rows("SELECT * FROM models ORDER BY model")])
    except (StoreError, ValueError, TypeError):
        return None
    code = Path(__file__).parent
    files = [store, run_dir / "preset.json", run_dir / "environment.json", *sorted(run_dir.glob("outputs/*/*")),
             *(code / name for name in _REPORT_CODE)]
    stats = {}
    for file in files:
        try:
            info = file.stat()
            stats[str(file)] = [info.st_size, info.st_mtime_ns]
        except OSError:
            stats[str(file)] = None
    return {"files": stats, "store": content, "time_zone": [time.timezone, time.altzone, *time.tzname]}


def _made_from(out: Path, inputs: dict[str, Any] | None) -> dict[str, Path] | None:
    """The report already in ``out`` when it was made from ``inputs`` and its files are as written."""
    import json

    if inputs is None:
        return None
    try:
        manifest = json.loads((out / _MANIFEST).read_text())
        if manifest["inputs"] != inputs:
            return None
        paths = {name: out / name for name, _ in manifest["files"]}
        if all(paths[name].stat().st_size == size for name, size in manifest["files"]):
            return paths
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write charts, ``summary.csv`` and ``report.html``; return their paths by name.

    ``report.html`` opens with the summary (what ran, on what hardware, how long, final and
    best metrics), then the metrics as small multiples with the run's changes marked, the
    resources chart, the settings and the full list of live changes. It holds no link that
    works only on the machine that made it.

    A finished run's report is made once: asked again for the same folder while nothing it
    is made of changed (the store, the preset, the learned graphs, the code), the files
    already there are returned without importing pandas or matplotlib.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    check_writable_dir(out, "report folder")
    inputs = _inputs(run_dir)
    made = _made_from(out, inputs)
    if made is not None:
        return made
    paths = _write_report(run_dir, out)
    if inputs is not None:
        import json

        manifest = {"inputs": inputs, "files": [[name, path.stat().st_size] for name, path in paths.items()]}
        (out / _MANIFEST).write_text(json.dumps(manifest))
    return paths


def _write_report(run_dir: Path, out: Path) -> dict[str, Path]:
    import pandas as pd

    from .charts import MARKED_KINDS, figure_and_panel_pngs, resources_figure, run_figure
    from .store import read_store

    reader = read_store(run_dir / "store.sqlite")
    # Only what the report shows (per-epoch values of the charted metrics and the resource
    # figures), reduced in SQLite: a run with a million per-step points is reported from a
    # few thousand rows.
    present = reader.metric_names()
    shown = chart_metrics(present) + [n for n in present if n.startswith("sys/")]
    frames = [reader.epoch_series(name) for name in shown]
    metrics = pd.concat(frames, ignore_index=True) if frames else reader.metrics(name="eval/%")
    events = reader.events(kind=MARKED_KINDS)  # what the charts mark; the rest is only counted
    counts = reader.event_counts()
    sections = report_sections(run_dir)
    out.mkdir(parents=True, exist_ok=True)  # after the reads: an unreadable store leaves no report/ behind
    paths: dict[str, Path] = {}
    table = summary_table(metrics)
    table.to_csv(out / "summary.csv", index=False)
    paths["summary.csv"] = out / "summary.csv"
    names = chart_metrics(metrics)
    images = []
    panels: list[bytes] = []
    if names:
        full, panels = figure_and_panel_pngs(run_figure(metrics, names, events=events))
        images.append(("metrics", full))
    if metrics["name"].str.startswith("sys/").any():
        images.append(("resources", _png(resources_figure(metrics))))
    graphs = learned_graphs(run_dir)
    for model, g in graphs.items():
        images.append((f"graph_{model}", _png(graph_figure(g["graph"], g["truth"], f"learned graph: {model}"))))
    for name, data in images:
        (out / f"{name}.png").write_bytes(data)
        paths[f"{name}.png"] = out / f"{name}.png"
    for name, panel in zip(names, panels):  # one file per metric too, for slides and scripts
        file = out / (name.replace("/", "_") + ".png")
        file.write_bytes(panel)
        paths[file.name] = file
    body = [f"<h1>Run {html.escape(run_dir.name)}</h1>", "<h2>Summary</h2>", sections["summary"],
            "<h2>Final and best metrics</h2>", sections["metrics"], "<h2>Charts</h2>"]
    body += [_img(name, data) for name, data in images if not name.startswith("graph_")]
    for model, g in graphs.items():
        body.append(f"<h2>Learned graph: {html.escape(model)}</h2><p>RUN/outputs/{html.escape(model)}/graph.csv "
                    "(rows cause, columns effect)</p>"
                    + "".join(f"<p><b>warning:</b> {html.escape(n)}</p>" for n in g["notes"])
                    + _img(f"learned graph {model}", dict(images)[f"graph_{model}"]))
    body += ["<h2>Live changes</h2>", sections["changes"], "<h2>Settings</h2>", sections["settings"]]
    if len(counts):
        body.append("<h2>Events</h2>" + counts.to_frame("count").to_html(border=0))
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}table.facts th,table.facts td"
             "{text-align:left}figure{display:inline-block;margin:4px}img{max-width:100%}")
    (out / "report.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>Run {html.escape(run_dir.name)}"
                                     f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
    paths["report.html"] = out / "report.html"
    return paths
