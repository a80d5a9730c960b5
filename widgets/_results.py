"""Results: after a run, the cross-model comparison charts and summary table.

They are exactly ``workbench report``'s (the panel calls the same
:func:`workbench.report.write_report`), so a chart seen here is the chart in
``RUN/report/`` and in the rendered notebooks.
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
import traitlets as t

__all__ = ["ResultsLogic", "Results"]


class ResultsLogic(t.HasTraits):
    run = t.Any(None, allow_none=True)
    table_html = t.Unicode("")
    charts = t.Dict()  # metric name -> PNG bytes
    report_path = t.Unicode("")
    error = t.Unicode("")

    def show(self, run: Any) -> None:
        """Write the run's report and load its charts and table."""
        import pandas as pd

        self.run = run
        try:
            paths = run.report()
        except Exception as exc:  # an empty store: nothing trained yet
            self.error = f"no results yet: {exc}"
            return
        table = pd.read_csv(paths["summary.csv"]) if paths["summary.csv"].stat().st_size > 1 else pd.DataFrame()
        self.table_html = (table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
                           if not table.empty else "<p>No evaluation yet.</p>")
        self.charts = {p.stem.replace("_", "/", 1): p.read_bytes() for name, p in paths.items() if name.endswith(".png")}
        self.report_path = str(paths["report.html"])
        self.error = ""


class Results(w.VBox):
    def __init__(self, logic: ResultsLogic | None = None, **kwargs: Any):
        self.logic = logic or ResultsLogic()
        self.table = w.HTML("<i>results appear here when a run has ended</i>")
        self.gallery = w.GridBox(layout=w.Layout(grid_template_columns="repeat(2, 480px)"))
        self.link = w.HTML()
        self.refresh_button = w.Button(description="Refresh results", icon="refresh")
        super().__init__([self.refresh_button, self.table, self.gallery, self.link], **kwargs)
        self.refresh_button.on_click(lambda _: self.on_refresh())
        self.logic.observe(lambda _: self._show(), ["table_html", "charts", "error"])

    def on_refresh(self) -> None:
        if self.logic.run is not None:
            self.logic.show(self.logic.run)

    def _show(self) -> None:
        logic = self.logic
        if logic.error:
            self.table.value = f"<span style='color:#c22'>{html.escape(logic.error)}</span>"
            return
        self.table.value = "<b>Summary (last evaluation of each model)</b>" + logic.table_html
        self.gallery.children = [w.Image(value=png, format="png", layout=w.Layout(width="470px"))
                                 for png in logic.charts.values()]
        self.link.value = f"report: <code>{html.escape(logic.report_path)}</code>" if logic.report_path else ""
