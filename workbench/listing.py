"""What the listing verbs show (``presets``, ``models``, ``datasets``, ``status``), as records.

The CLI prints these as aligned text or, with ``--json``, as one JSON document for scripts
and CI. Times are the machine's local time with the zone said (run ids use local time
too): ISO 8601 with the UTC offset in JSON, ``2026-11-26 10:55:12 CET`` in text.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

__all__ = ["local_time", "format_time", "preset_records", "model_records", "dataset_records", "run_records",
           "run_detail"]


def local_time(timestamp: float | None) -> _dt.datetime | None:
    """A Unix time as an aware datetime in this machine's zone (whole seconds)."""
    if timestamp is None:
        return None
    return _dt.datetime.fromtimestamp(float(timestamp)).astimezone().replace(microsecond=0)


def format_time(value: _dt.datetime | None) -> str:
    """``2026-11-26 10:55:12 CET``: local time and the zone's name."""
    if value is None or value != value:  # None, or NaT in a column where some runs have no time
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S %Z")


def preset_records(user_file: str | None = None) -> list[dict[str, Any]]:
    from .presets import load_presets

    return [{"name": name, "description": preset.get("description", ""), "epochs": preset.get("epochs"),
             "target_models": preset.get("target_models"), "datasets": preset.get("datasets")}
            for name, preset in load_presets(user_file).items()]


def model_records() -> list[dict[str, Any]]:
    from .registry import class_path, describe_all, is_controller

    return [{"name": name, "role": "controller" if is_controller(cls) else "trainer",
             "accepts": list(getattr(cls, "accepts", ())), "live_hparams": list(cls.live_hparams()),
             "class": class_path(name)}
            for name, cls in describe_all().items()]


def dataset_records() -> list[dict[str, Any]]:
    from .data import list_datasets

    return [{"name": name, "kind": kind, "description": description}
            for name, (kind, description) in list_datasets().items()]


def _clean(value: Any) -> Any:
    """pandas' missing values as None, numpy scalars as Python ones (JSON-able)."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    return value


def run_records(runs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One record per run in the runs directory (``started``: aware local datetime)."""
    from .run import list_runs

    frame = list_runs(runs_dir)
    return [{k: _clean(v) if k != "started" else v for k, v in row.items()} for row in frame.to_dict("records")]


def run_detail(run_id: str, runs_dir: str | Path | None = None) -> dict[str, Any]:
    """One run: its state, start time and per-model state."""
    from .run import open_run

    record = open_run(run_id, runs_dir)
    info = record._reader.run_info()
    models = []
    for row in record.models().to_dict("records"):
        models.append({"model": row["model"], "registry_name": row.get("registry_name"), "dataset": row.get("dataset"),
                       "state": row.get("state"), "epoch": _clean(row.get("epoch")),
                       "total_epochs": _clean(row.get("total_epochs")), "hparams": row.get("hparams") or {},
                       "pinned": row.get("pinned") or [], "last_error": _clean(row.get("last_error")),
                       "updated": local_time(_clean(row.get("updated")))})
    return {"run": record.id, "state": record.state.value, "preset": info.get("preset"),
            "started": local_time(info.get("started")), "directory": str(record.dir), "models": models}
