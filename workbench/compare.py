"""Runs compared: one table of runs, the settings that differ, and means over seeds.

``compare_runs`` gives one row per model of each run: the run's state, duration and
hardware, the settings that differ between the runs, and each ``eval/`` metric's final and
best value. ``group_runs`` folds that table over a parameter (by default every differing
setting except ``seed``: the runs that differ only by their seed fall into one group) into
mean, spread (standard deviation) and count; ``group_figure`` draws the learning curves of
the groups with the spread as a band. The CLI (``workbench compare``), the
``results_analysis`` notebook and the panel's Results tab all use these.

Example::

    from workbench.compare import compare_runs, group_runs
    table = compare_runs(["20261126-1400-digits-mutual-1a2b", "20261126-1401-digits-mutual-3c4d"])
    group_runs(table)  # mean and spread over the seeds
"""
from __future__ import annotations

import difflib
import json
import time
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

__all__ = ["compare_runs", "settings_diff", "table_settings_diff", "group_runs", "mean_spread", "group_figure",
           "key_metrics", "lower_is_better", "flat_settings", "default_metric", "comparison_html"]

# Metrics where a lower value is the better one; every other eval/ metric is "higher is better".
_LOWER = ("loss", "nll", "error", "shd", "mse", "mae", "rmse")


def lower_is_better(name: str) -> bool:
    """Whether the best value of metric ``name`` is its minimum (losses, errors, distances)."""
    leaf = name.rsplit("/", 1)[-1].lower()
    return any(part in leaf for part in _LOWER)


def flat_settings(preset: dict[str, Any]) -> dict[str, Any]:
    """A resolved preset as dotted keys (``models.digits_mlp.hyperparameters.lr``); lists as JSON."""
    from .presets import flatten

    return {path: json.dumps(v) if isinstance(v, (list, dict)) else v for path, v in flatten(preset).items()}


def _record(run: str | Path, runs_dir: str | Path | None):
    """A run by id in ``runs_dir``, or by its directory."""
    from .handles import RunRecord
    from .run import open_run

    path = Path(run)
    if (path / "store.sqlite").is_file():
        return RunRecord(path)
    return open_run(str(run), runs_dir)


def _environment(record) -> dict[str, Any]:
    try:
        return json.loads((record.dir / "environment.json").read_bytes())
    except (OSError, ValueError):  # a run that never got its cluster: no hardware to tell
        return {}


def _device(env: dict[str, Any], model: str) -> str:
    gpus = {g.get("index"): g.get("name") for g in env.get("devices", {}).get("gpus", []) if isinstance(g, dict)}
    for placement in env.get("placements", []):
        if placement.get("instance") == model:
            if placement.get("device") == "cpu":
                return f"cpu x{placement.get('threads') or 1}"
            name = gpus.get(placement.get("gpu_index"))
            share = placement.get("gpu_fraction")
            return f"{placement.get('device')}" + (f" {name}" if name else "") + (f" ({share:.0%})" if share else "")
    return ""


def _duration(info: dict[str, Any]) -> float | None:
    started = info.get("started")
    if started is None:
        return None
    end = info.get("finished") or (time.time() if info.get("state") == "running" else None)
    return None if end is None else round(float(end) - float(started), 1)


def _evals(metrics) -> dict[str, dict[str, tuple[float, float]]]:
    """model -> eval metric -> (final, best)."""
    evals = metrics[metrics["name"].str.startswith("eval/")]
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for (model, name), group in evals.sort_values(["epoch", "step", "wall_time"]).groupby(["model", "name"]):
        values = group["value"]
        best = values.min() if lower_is_better(name) else values.max()
        out.setdefault(model, {})[name] = (float(values.iloc[-1]), float(best))
    return out


def _run_rows(run: str | Path, runs_dir: str | Path | None) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    record = _record(run, runs_dir)
    info = record._reader.run_info()
    env = _environment(record)
    try:
        settings = flat_settings(record.preset)
    except WorkbenchError:
        settings = {}
    models = record.models()
    evals = _evals(record.metrics(name="eval/%"))
    base = {"run": record.id, "preset": info.get("preset"), "state": record.state.value,
            "started": info.get("started"), "duration_s": _duration(info), "host": env.get("host", info.get("host")),
            "batch": info.get("batch")}
    rows = []
    for row in models.to_dict("records"):
        model = row["model"]
        item = {**base, "model": model, "model_state": row.get("state"), "epoch": row.get("epoch"),
                "device": _device(env, model)}
        for name, (final, best) in sorted(evals.get(model, {}).items()):
            item[f"final {name}"] = final
            item[f"best {name}"] = best
        rows.append(item)
    if not rows:
        rows.append({**base, "model": None})
    return record.id, settings, rows


def settings_diff(run_ids: list[str], runs_dir: str | Path | None = None):
    """The settings that differ between runs: one row per dotted key, one column per run.

    A key that one run lacks reads as None there. Runs with equal settings give an empty frame.
    """
    import pandas as pd

    settings = {}
    for run in run_ids:
        record = _record(run, runs_dir)
        settings[record.id] = flat_settings(record.preset)
    return _diff(settings, pd)


def _diff(settings: dict[str, dict[str, Any]], pd) -> Any:
    keys = sorted({k for flat in settings.values() for k in flat})
    differ = [k for k in keys if len({json.dumps(flat.get(k), default=str) for flat in settings.values()}) > 1]
    return pd.DataFrame({run: [flat.get(k) for k in differ] for run, flat in settings.items()},
                        index=pd.Index(differ, name="setting"), dtype=object)


def table_settings_diff(table):
    """:func:`settings_diff` of the runs of a :func:`compare_runs` table, without reading them again."""
    import pandas as pd

    return _diff(table.attrs["settings"], pd)


def compare_runs(run_ids: list[str], runs_dir: str | Path | None = None):
    """One row per model of each run: state, duration, hardware, differing settings, metrics.

    Columns: ``run, preset, state, started`` (Unix time), ``duration_s, host, batch, model,
    model_state, epoch, device``, then every setting that differs between the runs (dotted
    keys), then ``final eval/NAME`` and ``best eval/NAME`` for each evaluation metric (best:
    the minimum for losses and errors, else the maximum). ``attrs["settings"]`` holds every
    run's full settings, for grouping by a parameter the runs share.
    """
    import pandas as pd

    if not run_ids:
        raise WorkbenchError("compare needs at least one run id (list them with `workbench status`)")
    settings: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for run in run_ids:
        run_id, flat, run_rows = _run_rows(run, runs_dir)
        settings[run_id] = flat
        rows += run_rows
    diff = _diff(settings, pd)
    for row in rows:
        for key in diff.index:
            row[key] = settings[row["run"]].get(key)
    frame = pd.DataFrame(rows)
    metric_cols = sorted((c for c in frame.columns if c.startswith(("final ", "best "))),
                         key=lambda c: (c.split(" ", 1)[1], c.split(" ", 1)[0] != "final"))
    fixed = ["run", "preset", "state", "started", "duration_s", "host", "batch", "model", "model_state", "epoch",
             "device"]
    frame = frame[[c for c in fixed if c in frame] + list(diff.index) + metric_cols]
    frame.attrs["settings"] = settings
    return frame


def _group_keys(table, by: str | list[str] | None) -> list[str]:
    settings = table.attrs.get("settings", {})
    if by is None:
        known = {k for flat in settings.values() for k in flat}
        keys = sorted(c for c in table.columns if c in known and c != "seed")
        return keys
    keys = [by] if isinstance(by, str) else list(by)
    for key in keys:
        if key not in table.columns and not any(key in flat for flat in settings.values()):
            known = sorted({k for flat in settings.values() for k in flat})
            close = [k for k in known if k.rsplit(".", 1)[-1] == key] or difflib.get_close_matches(key, known, n=3)
            raise WorkbenchError(f"--group-by '{key}': no such setting in these runs; "
                                 + (f"did you mean {' or '.join(repr(c) for c in close)}?" if close else
                                    f"settings: {', '.join(known[:12])}{', ...' if len(known) > 12 else ''}"))
    return keys


def group_runs(table, by: str | list[str] | None = None, metrics: list[str] | None = None):
    """Mean, spread (standard deviation over runs) and count of each metric, per group and model.

    ``table`` is :func:`compare_runs`'s. ``by``: a setting (dotted key) or several; None
    groups by every setting that differs except ``seed``, so runs that differ only in
    their seed are one group. Columns: the group keys, ``model``, ``runs``, then
    ``NAME mean`` and ``NAME std`` for each ``final``/``best`` metric column (or ``metrics``).
    """
    import pandas as pd

    keys = _group_keys(table, by)
    settings = table.attrs.get("settings", {})
    frame = table.copy()
    for key in keys:
        if key not in frame:
            frame[key] = frame["run"].map(lambda r, k=key: settings.get(r, {}).get(k))
        frame[key] = frame[key].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    value_cols = metrics or [c for c in table.columns if c.startswith(("final ", "best "))]
    rows = []
    groups = frame.groupby(keys + ["model"], dropna=False, sort=True) if keys else frame.groupby(["model"])
    for group_key, group in groups:
        group_key = group_key if isinstance(group_key, tuple) else (group_key,)
        row = dict(zip(keys + ["model"], group_key))
        row["runs"] = int(group["run"].nunique())
        for col in value_cols:
            values = pd.to_numeric(group[col], errors="coerce").dropna() if col in group else pd.Series(dtype=float)
            row[f"{col} mean"] = float(values.mean()) if len(values) else None
            row[f"{col} std"] = float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else None)
        rows.append(row)
    return pd.DataFrame(rows)


def key_metrics(run: str | Path, runs_dir: str | Path | None = None, limit: int = 1) -> dict[str, dict[str, float]]:
    """Each model's final value of its first ``limit`` eval metrics (accuracy first): the batch index's columns."""
    record = _record(run, runs_dir)
    out = {}
    for model, evals in _evals(record.metrics(name="eval/%")).items():
        names = sorted(evals, key=lambda n: (not n.endswith("accuracy"), n))[:limit]
        out[model] = {name: evals[name][0] for name in names}
    return out


def group_figure(run_ids: list[str], by: str | list[str] | None = None, metric: str = "eval/accuracy",
                 runs_dir: str | Path | None = None, x: str = "epoch"):
    """Learning curves of ``metric`` per group (see :func:`group_runs`), mean with a band of
    one standard deviation over the group's runs; one panel per model. A matplotlib Figure."""
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    table = compare_runs(run_ids, runs_dir)
    keys = _group_keys(table, by)
    settings = table.attrs["settings"]
    curves = []
    for record in (_record(r, runs_dir) for r in run_ids):
        run = record.id
        data = record.metrics(name=metric)
        if data.empty:
            continue
        label = ", ".join(f"{k}={settings[run].get(k)}" for k in keys) or "all runs"
        per_epoch = data.sort_values(["epoch", "step"]).groupby(["model", x])["value"].last().reset_index()
        curves.append(per_epoch.assign(group=label, run=run))
    models = sorted({m for c in curves for m in c["model"]})
    fig = Figure(figsize=(4.2 * max(1, min(len(models), 3)), 3.4 * max(1, -(-len(models) // 3))), dpi=100)
    if not curves:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, f"no {metric} recorded in these runs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    data = pd.concat(curves, ignore_index=True)
    cols = min(len(models), 3)
    for i, model in enumerate(models):
        ax = fig.add_subplot(-(-len(models) // cols), cols, i + 1)
        for label, group in data[data["model"] == model].groupby("group", sort=True):
            stats = group.groupby(x)["value"].agg(["mean", "std", "count"])
            stats["std"] = stats["std"].fillna(0.0)
            n = group["run"].nunique()
            line, = ax.plot(stats.index, stats["mean"], marker="o" if len(stats) < 30 else None, ms=3,
                            label=f"{label} (n={n})")
            ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{metric}: mean and one standard deviation over runs", fontsize=10)
    return fig


def default_metric(table) -> str | None:
    """The metric a comparison charts unless told: an accuracy, else the first ``eval/`` one."""
    names = [c.split(" ", 1)[1] for c in table.columns if c.startswith("final ")]
    return next((n for n in names if n.endswith("/accuracy")), next(iter(names), None))


def mean_spread(grouped) -> Any:
    """:func:`group_runs`' table for reading: ``0.9597 ± 0.022`` cells instead of ``mean``/``std`` pairs."""
    keep = [c for c in grouped.columns if not c.endswith((" mean", " std"))]
    out = grouped[keep].copy()
    for col in grouped.columns:
        if col.endswith(" mean"):
            name = col[:-5]
            out[name] = [("" if m is None or m != m else f"{m:.4g} ± {s:.2g}")
                         for m, s in zip(grouped[col], grouped[f"{name} std"])]
    return out


def comparison_html(table, diff, grouped, figure_png: bytes | None = None) -> str:
    """A self-contained HTML page: runs table, settings diff, mean and spread, the chart."""
    import base64

    def frame(df) -> str:
        return df.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.4g}") if not df.empty \
            else "<p>none</p>"

    shown = table.assign(started=table["started"].map(_local))
    parts = ["<h1>Runs compared</h1>", "<h2>Runs</h2>", frame(shown),
             "<h2>Settings that differ</h2>", diff.reset_index().to_html(index=False, border=0) if not diff.empty
             else "<p>The runs have the same settings.</p>",
             "<h2>Mean ± standard deviation over runs</h2>", frame(mean_spread(grouped))]
    if figure_png:
        parts.append(f"<img alt='learning curves with spread' src='data:image/png;base64,"
                     f"{base64.b64encode(figure_png).decode()}'/>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Runs compared</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def _local(value: Any) -> str:
    from .listing import format_time, local_time

    return format_time(local_time(value)) if value is not None and value == value else ""


def _batch_runs(batch: str, runs_dir: str | Path | None) -> list[str]:
    from .run import list_runs

    listed = list_runs(runs_dir)
    runs = list(listed[listed["batch"] == batch]["run"]) if not listed.empty else []
    if not runs:
        known = sorted({b for b in listed["batch"].dropna()}) if not listed.empty else []
        raise WorkbenchError(f"--batch '{batch}': no runs of that batch in {Path(runs_dir or '.')}; "
                             f"batches there: {', '.join(known) or 'none'}")
    return runs


def compare_cli(args: Any) -> int:
    """The ``workbench compare`` command: tables on the terminal, ``--json``, ``--out``."""
    import io

    import pandas as pd

    runs = list(args.runs) + (_batch_runs(args.batch, args.runs_dir) if args.batch else [])
    if not runs:
        raise WorkbenchError("compare needs run ids or --batch NAME (list runs with `workbench status`)")
    if args.out and Path(args.out).suffix.lower() not in (".html", ".png"):
        raise WorkbenchError(f"--out {args.out}: give a file ending in .html or .png")
    table = compare_runs(list(dict.fromkeys(runs)), args.runs_dir)
    by = args.group_by[0] if args.group_by and len(args.group_by) == 1 else args.group_by
    grouped = group_runs(table, by)
    diff = table_settings_diff(table)
    if args.out:
        metric = args.metric or default_metric(table) or "eval/accuracy"
        fig = group_figure(list(table["run"].unique()), by, metric, args.runs_dir)
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".png":
            out.write_bytes(buffer.getvalue())
        else:
            out.write_text(comparison_html(table, diff, grouped, buffer.getvalue()))
    if args.json:
        import json as _json

        def records(df) -> list[dict[str, Any]]:
            return _json.loads(df.to_json(orient="records"))

        print(_json.dumps({"runs": records(table), "settings_diff": _json.loads(diff.to_json(orient="index")),
                           "groups": records(grouped)}, indent=2))
        return 0
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_colwidth", 40):
        metric_cols = [c for c in table.columns if c.startswith(("final ", "best "))]
        shown = table.assign(duration_s=table["duration_s"].map(lambda v: "" if v != v or v is None else f"{v:.0f}s"))
        cols = ["run", "state", "duration_s", "host", "device", "model", "epoch"] + \
            [c for c in diff.index if c in table] + metric_cols
        print("runs")
        print(shown[[c for c in cols if c in shown]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print("\nsettings that differ")
        print(diff.to_string() if not diff.empty else "(none: the runs have the same settings)")
        print("\nmean ± standard deviation over runs" + (f", grouped by {', '.join(args.group_by)}"
                                                         if args.group_by else ""))
        print(mean_spread(grouped).to_string(index=False))
    if args.out:
        print(f"\nwritten {args.out}")
    return 0
