"""Fault containment for the driver: lost workers, hung segments, and the failures they cost.

The coordinator calls these on its fault paths only (never per segment), so they can ask
the scheduler directly. The rules they implement are in docs/engine.md ("What the engine
guarantees under each fault"):

* A model whose worker died is rebuilt on the *replacement* of that worker (a nanny
  restarts a dead worker under the same name, at a new address), so a model that kills its
  worker never takes a healthy model's worker down with it. Only when no replacement comes
  does it move to another live worker; with no worker left it fails instead of waiting.
* A worker death counts against ``max_failures`` until the model gets past the epoch it
  died in: re-training the epochs before it (restored from an older checkpoint) is no
  progress, so a model that kills every worker it gets is marked failed.
* A segment that runs longer than ``segment_timeout`` seconds is a failure of its model.
"""
from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["RESTART_WAIT", "STOP_GRACE", "worker_names", "restart_workers", "write_failure", "replacement_worker", "result_unless_lost", "segment_timeout",
           "overdue", "progressed"]

STOP_GRACE = 10.0  # seconds a stop waits for a step boundary before abandoning the segment
RESTART_WAIT = 60.0  # seconds to wait for a nanny to bring a dead worker back (a few seconds unloaded)
DEFAULT_TIMEOUT_FLOOR = 600.0  # a hung step is noticed after 10 minutes at the earliest...
TIMEOUT_FACTOR = 20.0  # ...or 20 times the model's median segment, whichever is longer


def worker_names(client: Any) -> dict[str, str]:
    """Address -> name of every worker the scheduler knows now."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return {addr: str(w.get("name", addr)) for addr, w in info.items()}


def replacement_worker(client: Any, name: str | None, dead: str, wait: float = RESTART_WAIT,
                       clock=time.monotonic, sleep=time.sleep) -> tuple[str | None, list[str]]:
    """Wait up to ``wait`` seconds for a worker named ``name`` at an address other than
    ``dead`` (the nanny's restart). Returns its address (None if it never came) and the
    addresses alive at the end (may be empty: the caller must not wait on zero workers)."""
    deadline = clock() + wait
    while True:
        names = worker_names(client)
        alive = sorted(a for a in names if a != dead)
        back = [a for a in alive if name is not None and names[a] == name]
        if back:
            return back[0], alive
        if clock() >= deadline:
            return None, alive
        sleep(0.5)


def result_unless_lost(client: Any, future: Any, worker: str | None, poll: float = 1.0) -> Any:
    """``future.result()``, but a task pinned to a worker that died raises instead of
    waiting forever (Dask keeps it in ``no-worker`` state until that address returns,
    which it never does)."""
    from distributed import wait

    while True:
        try:
            wait([future], timeout=poll)
        except TimeoutError:
            if worker is not None and worker not in worker_names(client):
                future.cancel()
                raise RuntimeError(f"worker {worker} died") from None
            continue
        return future.result()


def segment_timeout(configured: float | None, epoch_seconds: float | None, epochs: int = 1) -> float:
    """Seconds a segment of ``epochs`` epochs may run before it counts as hung.

    ``configured`` (the preset's ``segment_timeout``) wins; the default is the longer of
    :data:`DEFAULT_TIMEOUT_FLOOR` and :data:`TIMEOUT_FACTOR` times the model's last epoch
    time (a slow model on a loaded machine is never mistaken for a hung one).
    """
    if configured:
        return float(configured)
    typical = (epoch_seconds or 0.0) * max(epochs, 1)
    return max(DEFAULT_TIMEOUT_FLOOR, TIMEOUT_FACTOR * typical)


def restart_workers(client: Any, addresses: list[str]) -> None:
    """Restart workers whose only thread a hung step holds (their nanny starts a fresh
    process under the same name); a worker without a nanny is left as it is."""
    if not addresses:
        return
    try:
        client.restart_workers(addresses, timeout=60, raise_for_error=False)
    except Exception as exc:  # no nanny (an external `dask worker --no-nanny`): nothing more to do
        log.warning("could not restart workers %s: %s", addresses, exc)


def overdue(started: float, limit: float, now: float) -> bool:
    """A segment submitted at ``started`` has run past ``limit`` seconds."""
    return now - started > limit


def progressed(epoch: int, lost_at: int) -> bool:
    """The model finished ``epoch``, at or past the epoch it last lost its worker in:
    only then does a finished epoch forgive a failure."""
    return epoch >= lost_at


_ERRNO_WHY = {"ENOSPC": "no space left on device (disk full)", "EDQUOT": "disk quota exceeded",
              "EFBIG": "file too large (a file size limit such as `ulimit -f`)", "EACCES": "permission denied",
              "EPERM": "permission denied", "EROFS": "read-only file system"}
_SQLITE_WHY = {"SQLITE_FULL": "disk full", "SQLITE_READONLY": "read-only (permission denied)",
               "SQLITE_CANTOPEN": "cannot open it (permission denied, or its folder is gone)",
               "SQLITE_IOERR": "disk I/O error (disk full, a file size limit such as `ulimit -f`, or a failing disk)"}


def write_failure(what: str, exc: BaseException) -> str:
    """One line saying which write failed and the likely cause: disk full, file too large,
    permission (what the user can fix), from an ``OSError``'s errno or SQLite's error name."""
    import errno as errno_

    code = getattr(exc, "errno", None)
    name = errno_.errorcode.get(code, "") if isinstance(code, int) else ""
    sqlite = str(getattr(exc, "sqlite_errorname", "") or "")
    why = _ERRNO_WHY.get(name) or next((v for k, v in _SQLITE_WHY.items() if sqlite.startswith(k)), None)
    detail = getattr(exc, "strerror", None) or str(exc)
    return f"writing {what} failed: {why or detail}" + (f" [{name or sqlite}]" if name or sqlite else "")
