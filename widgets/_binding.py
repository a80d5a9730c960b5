"""What every part shares: throttled refreshes and read access to a run, live or recorded.

A part is bound to either a :class:`workbench.Run` (going: it can be steered and it pushes
messages, whether this kernel or another process drives it) or a
:class:`workbench.RunRecord` (read from its store). The helpers here hide the difference
so each part has one code path.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Throttle", "is_live", "hparam_schema", "snapshot_models"]


class Throttle:
    """Call ``fn`` at most once per ``interval`` seconds; a call inside the interval is
    deferred (one trailing call), never dropped, so the last update always shows.

    Engine messages arrive many times a second from several threads; rendering a chart for
    each would flicker and fall behind, so parts route their redraws through this.
    """

    def __init__(self, fn: Callable[[], Any], interval: float = 1.0):
        self.fn = fn
        self.interval = interval
        self.calls = 0  # how many times fn actually ran (tests check the throttling)
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._timer is not None:
                return  # a trailing call is already scheduled and will see the newest data
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._fire)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = time.monotonic()
        self._run()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self._run()

    def _run(self) -> None:
        self.calls += 1
        try:
            self.fn()
        finally:
            # Measured from the end: a slow redraw is never followed at once by another.
            with self._lock:
                self._last = time.monotonic()

    def flush(self) -> None:
        """Run now (and cancel a pending trailing call): for tests and the end of a run."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._last = time.monotonic()
        self._run()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def is_live(run: Any) -> bool:
    """True for a going run (steerable from here, whoever drives it), False for a record."""
    from workbench import Run

    return isinstance(run, Run) and not run.done


def hparam_schema(run: Any, instance: str, registry_name: str | None) -> dict[str, Any]:
    """The hyperparameter schema of one model instance (``{}`` for an unknown model)."""
    from workbench import Run, WorkbenchError
    from workbench.registry import describe

    if isinstance(run, Run):
        return run.hparam_schema(instance)
    if not registry_name:
        return {}
    try:
        return describe(registry_name).hyperparameters
    except WorkbenchError:
        return {}


def snapshot_models(run: Any) -> dict[str, Any]:
    """``{instance: ModelSnapshot}``; a store being written right now may not have every
    table yet, which reads as "no models so far"."""
    try:
        return dict(run.snapshot().models)
    except Exception:  # pandas/sqlite errors while another process creates the store
        return {}
