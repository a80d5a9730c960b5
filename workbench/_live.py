"""Runs driven by this process, by id: so a panel can attach to a run started elsewhere
in the same kernel (a run driven by another process is read from its store instead)."""
from __future__ import annotations

import weakref
from typing import Any

_RUNS: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()


def add(run: Any) -> Any:
    _RUNS[run.id] = run
    return run


def get(run_id: str) -> Any | None:
    return _RUNS.get(run_id)


def all_runs() -> list[Any]:
    return list(_RUNS.values())
