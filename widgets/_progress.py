"""Progress: per model a bar, epoch, throughput, ETA, state and last error; start,
pause/resume per model, stop all, and resume a past run from its checkpoints."""
from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w
import traitlets as t

from ._binding import is_live, snapshot_models
from ._eta import ProgressClock

__all__ = ["ProgressLogic", "Progress", "format_eta", "format_rate", "state_html"]

_STATE_COLOURS = {"running": "#27a", "paused": "#c80", "failed": "#c22", "finished": "#2a7", "stopped": "#777",
                  "finished_with_failures": "#c60",
                  "interrupted": "#a50",
                  "pending": "#999"}
STARTING = "starting workers... (the first run of a session takes up to a minute)"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def format_rate(steps_per_s: float | None) -> str:
    return f"{steps_per_s:.1f} steps/s" if steps_per_s else ""


class ProgressLogic(t.HasTraits):
    run = t.Any(None, allow_none=True)
    run_state = t.Unicode("")
    # instance -> {state, waiting, epoch, total_epochs, progress, steps_per_s, eta_s, last_error}; steps/s
    # and ETA are ProgressClock's (smoothed, over the whole run), not the engine's last-epoch figures
    models = t.Dict()
    elapsed_s = t.Float(None, allow_none=True)  # since the run (or its resume) started
    run_eta_s = t.Float(None, allow_none=True)  # until its last training model is done
    past_runs = t.List()  # ids of runs in runs_dir that are not finished: candidates for resume
    runs_dir = t.Unicode("")
    error = t.Unicode("")
    live = t.Bool(False)  # the bound run is going: Stop all on, Start off
    starting = t.Bool(False)  # Start was pressed and the run is not there yet (the cluster starts)
    status = t.Unicode("")  # what is happening now, shown at once ("starting workers...")

    def __init__(self, starter: Callable[[], Any] | None = None, runs_dir: str | None = None,
                 scheduler: str | None = None, detach: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.scheduler = scheduler
        self.detach = detach
        self.starter = starter  # returns a new Run (the panel builds it from presets + resources)
        self.on_run: list[Callable[[Any], None]] = []  # told of every run started or resumed here
        self.runs_dir = str(runs_dir or "")
        self.clock = ProgressClock()
        self.now: Callable[[], float] = time.time  # wall clock: the run's start comes from its events
        self._started_at: float | None = None
        # One refresh at a time: the poller, the message throttle and the panel call it from
        # their own threads, and an older reading applied after a newer one (or the ETA
        # clock fed by both at once) showed a run ETA beside a model waiting for a paused peer.
        self._refreshing = threading.RLock()

    def bind(self, run: Any) -> None:
        with self._refreshing:
            self.run = run
            self.clock.reset()
            self._started_at = self.elapsed_s = self.run_eta_s = None
            self._refresh()

    def refresh(self) -> None:
        with self._refreshing:
            self._refresh()

    def _refresh(self) -> None:
        if self.run is None:
            return
        now = self.now()
        models = {}
        for name, snap in snapshot_models(self.run).items():
            models[name] = {"state": snap.state.value, "waiting": snap.waiting, "epoch": snap.epoch,
                            "total_epochs": snap.total_epochs, "progress": snap.progress,
                            "steps_per_s": snap.steps_per_s, "last_error": snap.last_error}
        self.clock.observe(now, models)
        for name, figures in self.clock.figures(now).items():
            models[name].update(steps_per_s=figures.steps_per_s, eta_s=figures.eta_s)
        self.models = models
        started = self._start_time()
        if started is not None and is_live(self.run):  # once ended, the last figure stays
            self.elapsed_s = max(0.0, now - started)
        self.run_eta_s = self.clock.run_eta(now) if is_live(self.run) else None
        try:
            self.run_state = self.run.state.value
        except Exception:  # the store of a run made elsewhere may be mid-creation
            self.run_state = "unknown"
        self.live = is_live(self.run)

    def _start_time(self) -> float | None:
        """When the run (or its latest resume) started: its ``started``/``resumed`` event."""
        if self._started_at is None:
            try:
                events = self.run.events()
                starts = events[events["kind"].isin(["started", "resumed"])]
                self._started_at = float(starts["wall_time"].max()) if not starts.empty else None
            except Exception:  # the store of a run made elsewhere may be mid-creation
                return None
        return self._started_at

    # -- behaviour ---------------------------------------------------------------------------
    def _steerable(self) -> bool:
        if not is_live(self.run):
            self.error = "no run is going: nothing to steer"
            return False
        self.error = ""
        return True

    def on_start(self) -> Any:
        from workbench import WorkbenchError

        if self.starter is None:
            self.error = "nothing to start: this panel was given no preset"
            return None
        if self.starting or self.live:  # a second click while the first one's run starts, or runs
            return None
        # Shown before the cluster starts (tens of seconds): the frontend gets these at once, in this
        # order (traits notify as assigned), so Start is off before "starting workers" shows.
        self.error, self.starting, self.status = "", True, STARTING
        try:
            run = self.starter()
            self._started(run)  # bound (live) before ``starting`` ends: Start never comes back on between
        except WorkbenchError as exc:
            self.error = str(exc)
            return None
        finally:
            self.starting, self.status = False, ""
        return run

    def on_pause(self, instance: str | None = None) -> None:
        if self._steerable():
            self.run.pause(instance)

    def on_resume(self, instance: str | None = None) -> None:
        if self._steerable():
            self.run.resume_model(instance)

    def on_stop(self) -> None:
        if self._steerable():
            self.run.stop()

    def list_past(self) -> list[str]:
        from workbench import list_runs

        frame = list_runs(self.runs_dir or None)
        live = {self.run.id} if is_live(self.run) else set()
        ids = [r for r, s in zip(frame["run"], frame["state"]) if s in ("stopped", "failed", "interrupted", "running")
               and r not in live] if not frame.empty else []
        self.past_runs = ids
        return ids

    def on_resume_run(self, run_id: str) -> Any:
        """Continue a stopped (or crashed) run from its checkpoints."""
        from workbench import WorkbenchError, resume_run

        if self.starting or self.live:
            return None
        self.error, self.starting, self.status = "", True, STARTING
        try:
            run = resume_run(run_id, self.runs_dir or None, scheduler=self.scheduler, detach=self.detach)
            self._started(run)
        except WorkbenchError as exc:
            self.error = str(exc)
            return None
        finally:
            self.starting, self.status = False, ""
        return run

    def _started(self, run: Any) -> None:
        self.error = ""
        self.bind(run)
        for callback in list(self.on_run):
            callback(run)


def _cell(width: str) -> w.Layout:
    return w.Layout(width=width, margin="0 12px 0 0", flex="0 0 auto")


def state_html(model: dict[str, Any]) -> str:
    """A model's state in words: "waiting for peer x" while a running model waits between epochs."""
    state = model["state"]
    if state == "running" and model.get("waiting"):
        return f"<span style='color:#c80'>waiting for {html.escape(model['waiting'])}</span>"
    return f"<span style='color:{_STATE_COLOURS.get(state, '#000')}'>{html.escape(state)}</span>"


class Progress(w.VBox):
    def __init__(self, logic: ProgressLogic | None = None, **kwargs: Any):
        self.logic = logic or ProgressLogic()
        self.title = w.HTML()
        self.start_button = w.Button(description="Start", icon="play", button_style="success")
        self.stop_button = w.Button(description="Stop all", icon="stop", button_style="danger")
        self.rows = w.VBox()
        self.message = w.HTML()
        self.past = w.Dropdown(description="past run", options=[], layout=w.Layout(width="460px"))
        self.refresh_past_button = w.Button(description="", icon="refresh", layout=w.Layout(width="40px"))
        self.resume_run_button = w.Button(description="Resume run", icon="repeat")
        self.widgets: dict[str, dict[str, w.Widget]] = {}
        super().__init__([w.HBox([self.start_button, self.stop_button, self.title]), self.rows, self.message,
                          w.HBox([self.past, self.refresh_past_button, self.resume_run_button])], **kwargs)
        self.start_button.on_click(lambda _: self.logic.on_start())
        self.stop_button.on_click(lambda _: self.logic.on_stop())
        self.refresh_past_button.on_click(lambda _: self.logic.list_past())
        self.resume_run_button.on_click(lambda _: self.past.value and self.logic.on_resume_run(self.past.value))
        self.logic.observe(lambda _: self._show(), ["models", "run_state", "error", "live", "starting", "status",
                                                    "elapsed_s", "run_eta_s"])
        self.logic.observe(lambda change: setattr(self.past, "options", change["new"]), "past_runs")
        self._show()

    def on_toggle(self, instance: str) -> None:
        if self.logic.models.get(instance, {}).get("state") == "paused":
            self.logic.on_resume(instance)
        else:
            self.logic.on_pause(instance)

    def _row(self, instance: str) -> dict[str, w.Widget]:
        # Fixed widths with a gap wide enough for "epoch 100/100" and "1234.5 steps/s": the
        # figures never run together, and do not jump sideways as they change.
        row = {"bar": w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(width="200px")),
               "epoch": w.Label(layout=_cell("110px")), "rate": w.Label(layout=_cell("120px")),
               "eta": w.Label(layout=_cell("100px")), "state": w.HTML(layout=_cell("300px")),
               "toggle": w.Button(description="Pause", icon="pause", layout=w.Layout(width="100px")),
               "error": w.HTML()}
        row["toggle"].on_click(lambda _: self.on_toggle(instance))
        row["box"] = w.HBox([w.Label(instance, layout=w.Layout(width="230px")), row["bar"], row["epoch"],
                             row["rate"], row["eta"], row["state"], row["toggle"], row["error"]])
        return row

    def _show(self) -> None:
        logic = self.logic
        if set(logic.models) != set(self.widgets):
            self.widgets = {name: self._row(name) for name in logic.models}
            self.rows.children = [r["box"] for r in self.widgets.values()]
        live = logic.live
        for name, m in logic.models.items():
            r = self.widgets[name]
            r["bar"].value = m["progress"]
            r["bar"].bar_style = {"failed": "danger", "finished": "success", "paused": "warning"}.get(m["state"], "")
            r["epoch"].value = f"epoch {m['epoch']}/{m['total_epochs']}"
            r["rate"].value = format_rate(m["steps_per_s"])
            r["eta"].value = f"ETA {format_eta(m['eta_s'])}" if m.get("eta_s") is not None else ""
            r["state"].value = state_html(m)
            paused = m["state"] == "paused"
            r["toggle"].description, r["toggle"].icon = ("Resume", "play") if paused else ("Pause", "pause")
            r["toggle"].disabled = not live or m["state"] not in ("running", "paused")
            r["error"].value = (f"<span style='color:#c22'>{html.escape(m['last_error'])}</span>"
                                if m["last_error"] else "")
        run = logic.run
        times = "".join(f" &middot; {label} {format_eta(value)}" for label, value in
                        (("elapsed", logic.elapsed_s), ("ETA", logic.run_eta_s)) if value is not None)
        self.title.value = (f"run <code>{html.escape(run.id)}</code>: {logic.run_state}{times}" if run is not None
                            else "<i>no run yet</i>")
        self.stop_button.disabled = not live
        self.start_button.disabled = live or logic.starting or logic.starter is None
        self.resume_run_button.disabled = live or logic.starting
        if logic.error:
            self.message.value = f"<span style='color:#c22'>{html.escape(logic.error)}</span>"
        else:
            self.message.value = f"<i>{html.escape(logic.status)}</i>" if logic.status else ""
