"""Results: a run's report in the panel, and runs compared side by side.

The run part is exactly ``workbench report``'s (the panel calls the same
:func:`workbench.report.write_report` and :func:`~workbench.report.report_sections`): the
summary (what ran, on what, how long, final and best metrics), the metrics with the run's
changes marked, the resources chart and the list of live changes. The comparison part is
``workbench compare``'s (:mod:`workbench.compare`): pick runs of the runs directory, get
the runs table, the settings that differ, mean ± spread per group and the learning curves
with error bands.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import ipywidgets as w
import traitlets as t

__all__ = ["ResultsLogic", "Results", "static_html"]

_SEEDS_FOLDED = "(every differing setting but seed)"


def _png_tag(data: bytes, alt: str, width: str = "100%") -> str:
    return (f"<img alt='{html.escape(alt)}' style='max-width:{width}' "
            f"src='data:image/png;base64,{base64.b64encode(data).decode()}'/>")


def static_html(run: Any = None, preset: str | None = None) -> str:
    """A static picture of the panel for viewers without widget state (nbconvert's HTML,
    GitHub): the run's summary and marked metrics chart, or what the panel would start."""
    if run is None:
        return (f"<div class='workbench-static'><b>Workbench control panel</b> (preset "
                f"<code>{html.escape(str(preset))}</code>): interactive in JupyterLab; no run started when this "
                "cell ran.</div>")
    from workbench.charts import figure_png, run_figure
    from workbench.report import chart_metrics, report_sections

    try:
        sections = report_sections(run.dir)
        metrics = run.metrics()
        png = figure_png(run_figure(metrics, chart_metrics(metrics)[:4], events=run.events())) if len(metrics) else b""
    except Exception as exc:  # a store still being created: say so instead of failing the cell
        return f"<div class='workbench-static'>run <code>{html.escape(run.id)}</code>: {html.escape(str(exc))}</div>"
    return ("<div class='workbench-static'><b>Workbench control panel</b>, run "
            f"<code>{html.escape(run.id)}</code> (a static copy: the panel is interactive in JupyterLab)"
            f"{sections['summary']}{sections['metrics']}{_png_tag(png, 'metrics') if png else ''}</div>")


class ResultsLogic(t.HasTraits):
    run = t.Any(None, allow_none=True)
    summary_html = t.Unicode("")
    table_html = t.Unicode("")
    changes_html = t.Unicode("")
    charts = t.Dict()  # chart name ("metrics", "resources", or a metric name) -> PNG bytes
    report_path = t.Unicode("")
    error = t.Unicode("")
    # Comparing runs
    runs_dir = t.Unicode("")
    available = t.List(t.Unicode())  # run ids of the runs directory, newest first
    compared = t.List(t.Unicode())
    group_by = t.Unicode("")  # "" groups by every differing setting but seed
    group_options = t.List(t.Unicode())
    compare_html = t.Unicode("")
    compare_png = t.Bytes(b"")
    compare_error = t.Unicode("")

    def show(self, run: Any) -> None:
        """Write the run's report and load its summary, tables and charts."""
        from workbench.report import report_sections

        self.run = run
        try:
            paths = run.report()
            sections = report_sections(run.dir)
        except Exception as exc:  # an empty store: nothing trained yet
            self.error = f"no results yet: {exc}"
            return
        self.summary_html = sections["summary"]
        self.table_html = sections["metrics"]
        self.changes_html = sections["changes"]
        charts = {}
        for name, path in paths.items():
            if name.endswith(".png"):
                stem = Path(name).stem
                charts[stem if stem in ("metrics", "resources") else stem.replace("_", "/", 1)] = path.read_bytes()
        self.charts = charts
        self.report_path = str(paths["report.html"])
        self.error = ""
        if not self.runs_dir:
            self.runs_dir = str(Path(run.dir).parent)
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """The runs of the runs directory, newest first, for the comparison's choice."""
        from workbench import list_runs

        if not self.runs_dir:
            return
        listed = list_runs(self.runs_dir)
        self.available = sorted(listed["run"], reverse=True) if not listed.empty else []

    def compare(self, run_ids: list[str] | None = None, group_by: str | None = None, metric: str | None = None) -> None:
        """Compare ``run_ids`` (default: the chosen ones): tables and the grouped chart."""
        from workbench import WorkbenchError
        from workbench.charts import figure_png
        from workbench.compare import (compare_runs, default_metric, group_figure, group_runs, mean_spread,
                                       table_settings_diff)

        ids = list(run_ids if run_ids is not None else self.compared)
        if group_by is not None:
            self.group_by = group_by
        if len(ids) < 1:
            self.compare_error = "choose one or more runs to compare"
            return
        try:
            table = compare_runs(ids, self.runs_dir or None)
            by = self.group_by or None
            grouped = group_runs(table, by)
            diff = table_settings_diff(table)
            png = figure_png(group_figure(ids, by, metric or default_metric(table) or "eval/accuracy",
                                          self.runs_dir or None))
        except WorkbenchError as exc:
            self.compare_error = str(exc)
            return
        self.compared = ids
        self.group_options = sorted({k for flat in table.attrs["settings"].values() for k in flat})
        shown = table.drop(columns=[c for c in ("started", "preset", "batch", "model_state") if c in table])
        shown["duration_s"] = shown["duration_s"].map(lambda v: "" if v is None or v != v else f"{v:.0f} s")

        def scroll(frame_html: str) -> str:  # wide tables scroll sideways instead of wrapping every cell
            return f"<div style='overflow-x:auto;white-space:nowrap'>{frame_html}</div>"

        parts = ["<b>Runs</b>", scroll(shown.rename(columns={"duration_s": "duration"}).to_html(
                     index=False, border=0, na_rep="", float_format=lambda v: f"{v:.4g}")),
                 "<b>Settings that differ</b>",
                 scroll(diff.reset_index().to_html(index=False, border=0)) if not diff.empty else "<p>none</p>",
                 "<b>Mean ± standard deviation over runs</b>",
                 scroll(mean_spread(grouped).to_html(index=False, border=0))]
        self.compare_error = ""
        self.compare_png = png
        self.compare_html = "".join(parts)


class Results(w.VBox):
    def __init__(self, logic: ResultsLogic | None = None, **kwargs: Any):
        self.logic = logic or ResultsLogic()
        self.summary = w.HTML("<i>results appear here when a run has ended</i>")
        self.table = w.HTML()
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap", align_items="flex-start"))
        self.gallery.add_class("workbench-results-charts")  # a stable handle for browser tests
        self.changes = w.HTML()
        self.link = w.HTML()
        self.refresh_button = w.Button(description="Refresh results", icon="refresh")
        self.run_choice = w.SelectMultiple(options=[], rows=6, description="runs",
                                           layout=w.Layout(width="520px"))
        self.group_choice = w.Dropdown(options=[_SEEDS_FOLDED], value=_SEEDS_FOLDED, description="group by",
                                       layout=w.Layout(width="520px"))
        self.compare_button = w.Button(description="Compare", icon="columns")
        self.compare_out = w.HTML()
        self.compare_chart = w.Image(format="png", layout=w.Layout(max_width="900px"))
        compare = w.VBox([self.run_choice, self.group_choice, self.compare_button, self.compare_out,
                          self.compare_chart])
        compare.add_class("workbench-compare")
        this_run = w.VBox([self.refresh_button, self.summary, self.table, self.gallery, self.changes, self.link])
        self.sections = w.Tab([this_run, compare])  # one run's report; any runs side by side
        for i, title in enumerate(["This run", "Compare runs"]):
            self.sections.set_title(i, title)
        super().__init__([self.sections], **kwargs)
        self.refresh_button.on_click(lambda _: self.on_refresh())
        self.compare_button.on_click(lambda _: self.on_compare())
        self.logic.observe(lambda _: self._show(), ["table_html", "charts", "error", "summary_html"])
        self.logic.observe(lambda _: self._show_runs(), ["available", "group_options"])
        self.logic.observe(lambda _: self._show_compare(), ["compare_html", "compare_png", "compare_error"])

    def on_refresh(self) -> None:
        if self.logic.run is not None:
            self.logic.show(self.logic.run)
        self.logic.refresh_runs()

    def on_compare(self) -> None:
        group = self.group_choice.value
        self.logic.compare(list(self.run_choice.value), "" if group == _SEEDS_FOLDED else group)

    def _show(self) -> None:
        logic = self.logic
        if logic.error:
            self.summary.value = f"<span style='color:#c22'>{html.escape(logic.error)}</span>"
            return
        self.summary.value = "<b>Summary</b>" + logic.summary_html
        self.table.value = "<b>Final and best metrics</b>" + logic.table_html
        main = [logic.charts[n] for n in ("metrics", "resources") if n in logic.charts] or list(logic.charts.values())
        self.gallery.children = [w.Image(value=png, format="png", layout=w.Layout(max_width="49%")) for png in main]
        self.changes.value = "<b>Live changes</b>" + logic.changes_html if logic.changes_html else ""
        self.link.value = f"report: <code>{html.escape(logic.report_path)}</code>" if logic.report_path else ""

    def _show_runs(self) -> None:
        chosen = [r for r in self.run_choice.value if r in self.logic.available]
        self.run_choice.options = list(self.logic.available)
        self.run_choice.value = tuple(chosen)
        value = self.group_choice.value
        self.group_choice.options = [_SEEDS_FOLDED, *self.logic.group_options]
        self.group_choice.value = value if value in self.group_choice.options else _SEEDS_FOLDED

    def _show_compare(self) -> None:
        logic = self.logic
        if logic.compare_error:
            self.compare_out.value = f"<span style='color:#c22'>{html.escape(logic.compare_error)}</span>"
            return
        self.compare_out.value = logic.compare_html
        if logic.compare_png:
            self.compare_chart.value = logic.compare_png
