"""What a run was, in words and small tables: the head of every report.

:func:`run_summary` says what ran (preset, models, data), on what (host, devices, where
each model was placed, software versions), how long, with which settings, and each
model's final and best evaluation. :func:`changes_table` lists every live change in order:
hyperparameters set by a user, the controller or a replay, releases, pauses, roll-backs,
exploits, batch-size retries. ``report.html``, the rendered notebooks and the panel's
Results tab show these (:func:`workbench.report.report_sections`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run_summary", "changes_table", "CHANGE_KINDS", "format_duration"]

# Event kinds that change how a model trains, as the changes table names them.
CHANGE_KINDS = {"hparam": "set", "release": "released", "paused": "paused", "resumed_model": "continued",
                "rollback": "rolled back", "exploit": "exploited", "oom_retry": "smaller batch"}


def format_duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds is None or seconds != seconds:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _hardware(env: dict[str, Any]) -> str:
    devices = env.get("devices") or {}
    gpus = [g.get("name", "GPU") if isinstance(g, dict) else str(g) for g in devices.get("gpus") or []]
    parts = [f"{env.get('host', '?')}: {devices.get('cpus', '?')} CPUs"]
    if devices.get("memory_gb"):
        parts[0] += f", {devices['memory_gb']} GB"
    parts.append(f"GPUs: {', '.join(gpus)}" if gpus else "no GPU")
    return "; ".join(parts)


def _software(env: dict[str, Any]) -> str:
    names = (("python", "Python"), ("torch", "torch"), ("dask", "dask"))
    return ", ".join(f"{label} {env[key]}" for key, label in names if env.get(key))


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """A run's summary: ``run, preset, description, state, models, datasets, started,
    duration, hardware, software`` (text), ``metrics`` (a DataFrame: model, device, epochs,
    final and best of each eval metric) and ``settings`` (a DataFrame: setting, value)."""
    import pandas as pd

    from .compare import _device, _duration, _environment, _evals, flat_settings
    from .errors import WorkbenchError
    from .handles import RunRecord
    from .listing import format_time, local_time

    record = RunRecord(Path(run_dir))
    info = record._reader.run_info()
    env = _environment(record)
    try:
        preset = record.preset
    except WorkbenchError:
        preset = {}
    models = record.models()
    evals = _evals(record.metrics(name="eval/%"))
    rows = []
    for row in models.to_dict("records"):
        model = row["model"]
        item = {"model": model, "device": _device(env, model), "state": row.get("state"),
                "epochs": f"{row.get('epoch') or 0}/{row.get('total_epochs') or '?'}"}
        for name, (final, best) in sorted(evals.get(model, {}).items()):
            item[f"final {name}"] = final
            item[f"best {name}"] = best
        rows.append(item)
    settings = {k: v for k, v in flat_settings(preset).items()
                if k not in ("name", "description") and v != "{}"}  # an empty section: the defaults
    return {
        "run": record.id, "preset": info.get("preset") or preset.get("name"), "description": preset.get("description"),
        "state": record.state.value, "models": list(models["model"]), "datasets": list(preset.get("datasets") or []),
        "started": format_time(local_time(info.get("started"))), "duration": format_duration(_duration(info)),
        "hardware": _hardware(env) if env else "", "software": _software(env),
        "metrics": pd.DataFrame(rows),
        "settings": pd.DataFrame({"setting": list(settings), "value": [str(v) for v in settings.values()]}),
    }


def _num(value: Any) -> str:
    """A hyperparameter value as people write it: 0.004677, not 0.004677351412871981."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _detail(kind: str, payload: dict[str, Any]) -> str:
    if kind == "hparam":
        return f"{payload.get('name')}: {_num(payload.get('old'))} → {_num(payload.get('new'))}" + (
            " (pinned)" if payload.get("pinned") else "")
    if kind == "release":
        return f"{payload.get('name')} handed back to the controller"
    if kind == "rollback":
        return f"epoch {payload.get('epoch')} again, lr {_num(payload.get('old_lr'))} → {_num(payload.get('new_lr'))}"
    if kind == "exploit":
        source = payload.get("source")
        reason = payload.get("reason")
        return f"state copied from {source}" + (f": {reason}" if reason else "")
    if kind == "oom_retry":
        return f"batch {payload.get('old_batch', payload.get('old'))} → {payload.get('new_batch', payload.get('new'))}"
    return ""


def changes_table(run_dir: str | Path):
    """Every live change of a run in order: ``at`` (time since the run started), ``epoch``,
    ``step``, ``model``, ``change``, ``by`` (user, controller, replay, engine), ``detail``."""
    import pandas as pd

    from .store import read_store

    reader = read_store(Path(run_dir) / "store.sqlite")
    events = reader.events(kind=list(CHANGE_KINDS))  # not a long run's thousands of segment events
    started = reader.run_info().get("started")
    columns = ["at", "epoch", "step", "model", "change", "by", "detail"]
    rows = []
    for event in events[events["kind"].isin(list(CHANGE_KINDS))].itertuples():
        payload = event.payload if isinstance(event.payload, dict) else {}
        if event.kind == "exploit":
            by = payload.get("controller") or "controller"
        elif event.kind in ("rollback", "oom_retry"):
            by = "engine"
        else:
            by = payload.get("source") or "user"
        rows.append({"at": format_duration(event.wall_time - float(started)) if started else "",
                     "epoch": payload.get("epoch"), "step": payload.get("step"), "model": event.model,
                     "change": CHANGE_KINDS[event.kind], "by": by,
                     "detail": _detail(event.kind, payload)})
    return pd.DataFrame(rows, columns=columns)
