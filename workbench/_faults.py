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
* A segment that runs longer than ``segment_timeout`` seconds is a failure of its model;
  after a stop, a segment that reaches no step boundary within ``STOP_GRACE`` is abandoned.
* A store or checkpoint write that fails (disk full, file too large, permission) stops the
  run, which ends as failed with the reason (:class:`Watchdog`).
"""
from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["RESTART_WAIT", "NO_WORKER_WAIT", "STOP_GRACE", "Watchdog", "report_fallback", "worker_names",
           "scheduler_workers", "replacement_worker", "result_unless_lost", "restart_workers", "segment_timeout",
           "overdue", "progressed", "write_failure"]

STOP_GRACE = 10.0  # seconds a stop waits for a step boundary before abandoning the segment
RESTART_WAIT = 60.0  # seconds to wait for a nanny to bring a dead worker back (a few seconds unloaded)
NO_WORKER_WAIT = 600.0  # ...and while no worker at all is left (slow to start on a loaded machine)
DEFAULT_TIMEOUT_FLOOR = 600.0  # a hung step is noticed after 10 minutes at the earliest...
TIMEOUT_FACTOR = 20.0  # ...or 20 times the model's last segment, whichever is longer


def worker_names(client: Any) -> dict[str, str]:
    """Address -> name of every worker the scheduler knows now."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return {addr: str(w.get("name", addr)) for addr, w in info.items()}


def replacement_worker(client: Any, name: str | None, dead: str, wait: float = RESTART_WAIT,
                       wait_any: float = NO_WORKER_WAIT, clock=time.monotonic,
                       sleep=time.sleep) -> tuple[str | None, list[str]]:
    """Wait up to ``wait`` seconds for a worker named ``name`` at an address other than
    ``dead`` (the nanny's restart); while no worker at all is alive, up to ``wait_any``
    (a loaded machine can take a minute to start one). Returns the replacement's address
    (None if it never came) and the addresses alive at the end (empty: no worker is left,
    and the caller must not wait on zero workers)."""
    start = clock()
    while True:
        names = worker_names(client)
        alive = sorted(a for a in names if a != dead)
        back = [a for a in alive if name is not None and names[a] == name]
        if back:
            return back[0], alive
        waited = clock() - start
        if (alive and waited >= wait) or waited >= wait_any:
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
            # The client's copy of the worker list lags under load (a live worker was taken
            # for dead during a slow build): a suspect is confirmed by the scheduler itself.
            if worker is not None and worker not in worker_names(client) \
                    and worker not in client.run_on_scheduler(scheduler_workers):
                future.cancel()
                raise RuntimeError(f"worker {worker} died") from None
            continue
        return future.result()


def scheduler_workers(dask_scheduler=None) -> list[str]:
    """The workers the scheduler knows now (run on the scheduler)."""
    return list(dask_scheduler.workers)


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


class Watchdog:
    """What the driver checks once a second besides worker deaths: segments that do not
    return, and writes that fail. Holds the times it needs and the run-wide failure."""

    def __init__(self) -> None:
        self.since: dict[str, float] = {}  # segment key -> when the driver first saw it in flight
        self.stop_seen: float | None = None  # when the driver first saw the run stopping
        self.fatal: str | None = None  # why the run failed as a whole (a store or checkpoint write)

    def check_writes(self, coord: Any) -> None:
        """A store or checkpoint write failed (disk full, file too large, permission): what
        the run does from now on cannot be kept, so it stops, to end as failed with the reason."""
        from .commands import Command, CommandOp
        from .events import EventKind

        reason = coord.checkpoints.failure or coord.store.failure
        if reason is None or self.fatal is not None:
            return
        self.fatal = reason
        coord._event(None, EventKind.ERROR, {"error": reason, "kind": "write"})
        coord.submit(Command(CommandOp.STOP, source="engine", client="engine"))

    def check_hung(self, coord: Any, now: float) -> bool:
        """A segment past its ``segment_timeout`` fails its model; a segment that has not
        reached a step boundary :data:`STOP_GRACE` seconds after a stop was asked is
        abandoned (its model stops at its last finished epoch). Its worker is restarted (a
        hung step holds the worker's only thread), except when a local cluster is about to
        close anyway. Returns whether any segment was given up."""
        from ._policy import SEGMENT_SECONDS, segment_epochs
        from .events import EventKind
        from .states import RunState

        flying: dict[str, list[Any]] = {}  # a pack's models share one task
        for m in coord.models.values():
            if m.future is not None:
                flying.setdefault(m.future.key, []).append(m)
        self.since = {k: self.since.get(k, now) for k in flying}
        if coord.state == RunState.STOPPING and self.stop_seen is None:
            self.stop_seen = now
        stuck = []
        ledger = coord._ledger() if flying else None  # once a check, not once per model (64 models: 64 ledgers)
        for key, members in flying.items():
            limits = []
            for m in members:
                epochs = segment_epochs(ledger, m.name)
                if epochs > 1 and m.epoch_seconds:  # the worker ends it after SEGMENT_SECONDS (plus an epoch)
                    epochs = min(epochs, 1 + int(SEGMENT_SECONDS / max(m.epoch_seconds, 1e-3)))
                limits.append(segment_timeout(coord.plan.preset.get("segment_timeout"), m.epoch_seconds, epochs))
            limit = max(limits)
            if overdue(self.since[key], limit, now):
                stuck.extend(members)
                for m in members:
                    coord._fail(m, f"segment hung: no result after {limit:g} s (preset key segment_timeout)")
            elif self.stop_seen is not None and overdue(self.stop_seen, STOP_GRACE, now):
                stuck.extend(members)
                for m in members:
                    coord._event(m.name, EventKind.ERROR, {
                        "epoch": m.completed + 1, "kind": "stop",
                        "error": f"no step boundary within {STOP_GRACE:g} s of the stop: segment abandoned, "
                                 f"epoch {m.completed} kept"})
        for m in stuck:
            fut, m.future = m.future, None
            fut.cancel()
        if stuck and not (self.stop_seen is not None and not coord.cluster.external):
            restart_workers(coord.client, sorted({m.worker for m in stuck if m.worker}))
        return bool(stuck)


def report_fallback(coord: Any, model: str, epoch: int, skipped: dict[int, str]) -> None:
    """A model rebuilt from an older checkpoint than its newest file: an event, and a
    warning (the CLI prints it as one ``workbench: warning:`` line)."""
    import warnings

    from ._restore import RestorePlan
    from .events import EventKind

    fallback = {"model": model, "epoch": epoch, "restart": False,
                "skipped": {str(e): r for e, r in sorted(skipped.items())}}
    coord._event(model, EventKind.CHECKPOINT_FALLBACK, fallback)
    for line in RestorePlan({}, (fallback,)).lines():
        warnings.warn(line, stacklevel=2)
