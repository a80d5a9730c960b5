"""The control panel: presets, resources, progress, live tuning, charts and results in one.

Each part works on its own; the panel wires them: the presets feed the resource planner,
Start builds a run from both, and every part is bound to the run that is started,
resumed or attached. Engine messages (from the engine's threads) are fanned out to the
parts; progress and charts redraw through throttles, a run of another process is polled.
"""
from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Any

import ipywidgets as w
import traitlets as t

from ._binding import Throttle, is_live
from ._charts import ChartsLogic, LiveChart
from ._presets import PresetsLogic
from ._progress import Progress, ProgressLogic
from ._resources import Resources, ResourcesLogic
from ._results import Results, ResultsLogic
from ._setup import Presets
from ._tuning import Tuning, TuningLogic

__all__ = ["ControlPanel"]

POLL_S = 2.0  # how often a run written by another process is re-read
TICK_S = 1.0  # how often a going run's progress is re-read when no message comes (elapsed, ETA, waits)
# The summary and change tables come unstyled from pandas and plain HTML: spaced, ruled,
# numbers right-aligned under their headings. Scoped to the panel, so the notebook is untouched.
TABLE_STYLE = """<style>
.workbench-panel table { border-collapse: collapse; margin: 4px 0; }
.workbench-panel th, .workbench-panel td { padding: 3px 12px; text-align: right; }
.workbench-panel th:first-child, .workbench-panel td:first-child { text-align: left; }
.workbench-panel th { border-bottom: 1px solid #bbb; }
.workbench-panel tr:nth-child(even) td { background: #f6f6f6; }
</style>"""


class ControlPanel(w.VBox):
    """``ControlPanel()`` in a notebook cell: choose, place, start, watch, steer, compare.

    Example::

        from widgets import ControlPanel
        panel = ControlPanel(preset="digits_mutual", overrides={"epochs": 3})
        panel          # shows it; press Start, or:
        run = panel.start()
        panel.attach("20260101-120000-quick-ab12")   # a run by id, live or finished

    Start drives the run from a process of its own (``detach=True``, the default), so it
    keeps training when this kernel restarts; a new kernel attaches to it by id and steers
    it as if it had started it. ``detach=False`` drives it from this kernel.
    """

    run = t.Any(None, allow_none=True)

    def __init__(self, preset: str = "quick", overrides: dict[str, Any] | None = None,
                 runs_dir: str | Path | None = None, scheduler: str | None = None, user_presets: str | None = None,
                 inventory: Any = None, run: Any = None, chart_interval: float = 1.0, detach: bool = True,
                 **kwargs: Any):
        from workbench import runs_dir as default_runs_dir

        self.runs_dir = default_runs_dir(runs_dir)
        self.scheduler = scheduler
        self.detach = detach  # Start runs the driver in a process of its own: the run outlives this kernel
        self.presets = Presets(PresetsLogic(preset, user_presets))
        for key, value in (overrides or {}).items():
            if key in self.presets.fields:
                self.presets.fields[key].value = value if not isinstance(value, list) else ", ".join(value)
            else:
                self.presets.logic.set_value(key, value)
        self.resources = Resources(ResourcesLogic(inventory))
        self.progress = Progress(ProgressLogic(self._start_run, str(self.runs_dir), scheduler, detach=detach))
        self.tuning = Tuning(TuningLogic())
        self.charts = LiveChart(ChartsLogic(chart_interval))
        self.results = Results(ResultsLogic())
        self.header = w.HTML()
        self.attach_id = w.Text(placeholder="run id", description="attach", layout=w.Layout(width="380px"))
        self.attach_button = w.Button(description="Attach", icon="link")
        self.message = w.HTML()
        self.presets.add_to_section("resources", self.resources)
        setup = self.presets
        # Wrapping, not squeezing: on a narrow page the chart goes below the sliders.
        live = w.VBox([self.progress, w.HBox([self.tuning, self.charts],
                                             layout=w.Layout(flex_flow="row wrap", align_items="flex-start"))])
        self.tabs = w.Tab([setup, live, self.results])
        for i, title in enumerate(["Setup", "Live", "Results"]):
            self.tabs.set_title(i, title)
        super().__init__([w.HBox([self.header, self.attach_id, self.attach_button]), self.message, self.tabs,
                          w.HTML(TABLE_STYLE)], **kwargs)
        self.add_class("workbench-panel")  # a stable handle for page styling and browser tests
        self._unsubscribe = None
        self._tuned_models: frozenset[str] = frozenset()  # the models the tuning area was built for
        self._refresh_progress = Throttle(self.progress.logic.refresh, 0.5)
        self._poller: threading.Event | None = None
        self.presets.logic.observe(lambda _: self._replan(), ["values", "name"])
        self.progress.logic.on_run.append(self.attach)
        self.attach_button.on_click(lambda _: self.on_attach(self.attach_id.value.strip()))
        self._replan()
        self._show_header()
        if run is not None:
            self.attach(run)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget, plus a static HTML copy for viewers without widget state (nbconvert, GitHub)."""
        from ._results import static_html

        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/html"] = static_html(self.run, self.presets.logic.name)
        return bundle

    # -- behaviour ---------------------------------------------------------------------------
    def start(self) -> Any:
        """Start a run from the chosen preset and resources (like pressing Start)."""
        return self.progress.logic.on_start()

    def on_attach(self, run_id: str) -> None:
        from workbench import WorkbenchError

        try:
            self.attach(run_id)
        except WorkbenchError as exc:
            self.message.value = f"<span style='color:#c22'>{html.escape(str(exc))}</span>"

    def attach(self, run: Any) -> Any:
        """Bind every part to a run: a :class:`workbench.Run`, a record, or a run id.

        A run id gives the steerable run whichever process drives it (``workbench.attach``).
        """
        from workbench import attach

        if isinstance(run, str):
            run = attach(run, self.runs_dir)
        self._detach()
        self.run = run
        self.message.value = ""
        for part in (self.progress.logic, self.tuning.logic, self.charts.logic, self.resources.logic):
            part.bind(run)
        self._tuned_models = frozenset(self.progress.logic.models) if self.tuning.logic.schemas else frozenset()
        if is_live(run):
            self._unsubscribe = run.subscribe(self._on_message)
            threading.Thread(target=self._watch, args=(run,), daemon=True, name="panel-watch").start()
            self._poll(run, live=True)
            self.tabs.selected_index = 1
        elif run.state.is_finished():
            self._finished(run)
        else:
            self._poll(run)
            self.tabs.selected_index = 1
        self._show_header()
        return run

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the attached run of this kernel ends (headless notebooks)."""
        if is_live(self.run):
            self.run.wait(timeout)
        return self.run.state if self.run is not None else None

    # -- wiring ------------------------------------------------------------------------------
    def _start_run(self) -> Any:
        from workbench import WorkbenchError, start_run

        if not self.presets.logic.valid:
            raise WorkbenchError("the preset has problems: fix the fields marked in red first")
        if not self.resources.logic.ok:
            raise WorkbenchError(self.resources.logic.reason or "no placement for these models")
        preset, overrides = self.presets.logic.selection()
        overrides.update(self.resources.logic.overrides())
        return start_run(preset, overrides, self.runs_dir, self.scheduler, detach=self.detach)

    def _replan(self) -> None:
        if self.presets.logic.valid:
            self.resources.logic.set_preset(self.presets.logic.name, self.presets.logic.preset)

    def _on_message(self, message: dict[str, Any]) -> None:
        self._bind_tuning()
        self.tuning.logic.on_message(message)
        self.charts.logic.on_message(message)
        self.resources.logic.on_message(message)
        self._refresh_progress()

    def _watch(self, run: Any) -> None:
        try:
            run.wait()
        except Exception as exc:  # the engine crashed: shown, not raised in a thread
            self.message.value = f"<span style='color:#c22'>run failed: {html.escape(str(exc))}</span>"
        if self.run is run:
            self._finished(run)

    def _bind_tuning(self) -> None:
        """Attached before the models were built (the first seconds of a run): their
        controls as soon as the run has models, whatever message or tick comes first."""
        from workbench import WorkbenchError

        run, models = self.run, frozenset(self.progress.logic.models)
        # Once per new set of models: a run whose models have no live hyperparameters is not
        # asked again at every message.
        if run is None or not is_live(run) or not models or models == self._tuned_models:
            return
        self._tuned_models = models
        try:
            self.tuning.logic.bind(run)
        except WorkbenchError:  # models listed but not all registered yet: the next tick
            self._tuned_models = frozenset()

    def _poll(self, run: Any, live: bool = False) -> None:
        """Re-read the run on a timer: a going run between messages (a model waiting for a
        paused peer sends none), or a run whose driver is elsewhere and not followed."""
        stop = self._poller = threading.Event()

        def loop() -> None:
            while not stop.wait(TICK_S if live else POLL_S):
                if live:
                    if not is_live(run):
                        return  # _watch takes it from here
                    self._bind_tuning()
                    self._refresh_progress()
                    continue
                self.progress.logic.refresh()
                self.charts.logic.throttle()
                if run.state.is_finished():
                    self._finished(run)
                    return

        threading.Thread(target=loop, daemon=True, name="panel-poll").start()

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            try:
                self._unsubscribe()
            except ValueError:
                pass
            self._unsubscribe = None
        if self._poller is not None:
            self._poller.set()
            self._poller = None

    def _finished(self, run: Any) -> None:
        self._refresh_progress.cancel()
        self.progress.logic.refresh()
        self.tuning.logic.live = False
        self.charts.logic.throttle.flush()
        self.results.logic.show(run)
        self._show_header()
        self.tabs.selected_index = 2

    def _show_header(self) -> None:
        run = self.run
        if run is None:
            self.header.value = "<b>Collaborative Training Workbench</b> &nbsp; <i>no run attached</i>"
            return
        link = getattr(run, "dashboard_link", None) if is_live(run) else None
        dash = f" &nbsp; <a href='{html.escape(link)}' target='_blank'>Dask dashboard</a>" if link else ""
        self.header.value = (f"<b>Collaborative Training Workbench</b> &nbsp; run <code>{html.escape(run.id)}</code>"
                             f" ({html.escape(run.state.value)}){dash}")
