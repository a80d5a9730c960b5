"""One driver per run: a lease held in the run's ``store.sqlite``.

The driver of a run (the process running its coordinator, attached or detached) takes the
lease before it starts any work, renews it with a heartbeat while the run goes on, and gives
it up when the run ends. Taking it is one ``BEGIN IMMEDIATE`` transaction, so two processes
racing for one run cannot both win.

A lease is *alive* when its process still exists: on this host the pid is checked (with the
process start time, so a recycled pid does not count), on another host the heartbeat must be
younger than :data:`STALE_AFTER_S`. A dead driver's lease is taken over by the next
``resume``; a live one refuses it with a :class:`LeaseHeldError` naming the driver.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import sqlite3
import threading
import time
from pathlib import Path

from .errors import WorkbenchError

__all__ = ["Lease", "LeaseInfo", "LeaseHeldError", "current_lease", "HEARTBEAT_S", "STALE_AFTER_S"]

HEARTBEAT_S = 2.0
STALE_AFTER_S = 30.0

_SCHEMA = """CREATE TABLE IF NOT EXISTS lease(id INTEGER PRIMARY KEY CHECK (id = 1), host TEXT, pid INTEGER,
    process_started REAL, acquired REAL, heartbeat REAL, role TEXT)"""


class LeaseHeldError(WorkbenchError):
    """Another live process drives this run."""


@dataclasses.dataclass(frozen=True)
class LeaseInfo:
    host: str
    pid: int
    process_started: float
    acquired: float
    heartbeat: float
    role: str  # what took it: "run", "resume", "detached run", ...

    def alive(self, now: float | None = None) -> bool:
        if self.host == platform.node():
            return _process_alive(self.pid, self.process_started)
        return (now or time.time()) - self.heartbeat < STALE_AFTER_S

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.acquired))
        return f"pid {self.pid} on {self.host} ({self.role}, since {since})"


def _process_started(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def _process_alive(pid: int, started: float) -> bool:
    import psutil

    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # another user's live process
        return True


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    # No journal_mode pragma here: the store set WAL when it was made (it persists), and
    # switching modes takes an exclusive lock that fails at once instead of waiting.
    conn.execute(_SCHEMA)
    return conn


def _read(conn: sqlite3.Connection) -> LeaseInfo | None:
    row = conn.execute("SELECT host, pid, process_started, acquired, heartbeat, role FROM lease WHERE id = 1").fetchone()
    return LeaseInfo(*row) if row else None


def current_lease(store_path: str | Path) -> LeaseInfo | None:
    """The lease recorded in a store (alive or not); None when nobody ever held one."""
    path = Path(store_path)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        return _read(conn)
    except sqlite3.Error:  # a store written before leases existed, or still being created
        return None
    finally:
        conn.close()


class Lease:
    """The lease of one run, held by this process from :meth:`acquire` to :meth:`release`."""

    def __init__(self, store_path: str | Path, run_id: str, role: str = "run"):
        self.path = Path(store_path)
        self.run_id = run_id
        self.role = role
        self.pid = os.getpid()
        self.host = platform.node()
        self._conn: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "Lease":
        """Take the lease, or raise :class:`LeaseHeldError` if a live driver holds it."""
        conn = _connect(self.path)
        now = time.time()
        try:
            conn.execute("BEGIN IMMEDIATE")
            held = _read(conn)
            if held is not None and held.pid != self.pid and held.alive(now):
                conn.execute("ROLLBACK")
                raise LeaseHeldError(
                    f"run {self.run_id} is already driven by {held.describe()}; steer it with "
                    f"`workbench set|pause|continue|stop {self.run_id}`, or wait for it to end")
            conn.execute("INSERT OR REPLACE INTO lease VALUES (1, ?, ?, ?, ?, ?, ?)",
                         (self.host, self.pid, _process_started(self.pid), now, now, self.role))
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._thread = threading.Thread(target=self._beat, name=f"workbench-lease-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._conn.execute("UPDATE lease SET heartbeat = ? WHERE id = 1 AND pid = ? AND host = ?",
                                   (time.time(), self.pid, self.host))
            except sqlite3.Error:  # a busy or full disk: the next beat tries again
                pass

    def release(self) -> None:
        """Give the lease up (the run ended); safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._conn is not None:
            try:
                self._conn.execute("DELETE FROM lease WHERE id = 1 AND pid = ? AND host = ?", (self.pid, self.host))
            except sqlite3.Error:
                pass
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
