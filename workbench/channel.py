"""The control channel every client shares: commands in, events out, through ``store.sqlite``.

Any process that can open the run directory steers the run the same way: it inserts a row
into the store's ``commands`` table (:func:`send_command`, one short transaction) and reads
the outcome from ``events``. The driver of the run polls the table (:class:`Inbox`, every
:data:`POLL_S`), marks each new command ``accepted`` and hands it to its coordinator, which
records what it did as events carrying the command's id: ``hparam`` when the value is in
force, ``hparam_applied`` with the trainer's step when the trainer applied it (the
acknowledgement :func:`wait_for_ack` waits for), ``paused``, ``resumed_model``,
``stopping``. A command that arrives while nobody drives the run stays ``queued`` and is
refused by the sender rather than lost: :func:`send_command` checks the lease first.

:class:`StoreTail` is the read side for processes that do not drive the run: it follows the
``events`` and ``metrics`` tables by row id and delivers the same messages a driver's
subscribers get.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CommandRecord", "send_command", "wait_for_ack", "Inbox", "StoreTail", "client_name", "POLL_S"]

log = logging.getLogger(__name__)

POLL_S = 0.05

_SCHEMA = """CREATE TABLE IF NOT EXISTS commands(id INTEGER PRIMARY KEY AUTOINCREMENT, wall_time REAL, client TEXT,
    op TEXT, model TEXT, name TEXT, value TEXT, pin INTEGER, status TEXT)"""


def client_name(kind: str = "api") -> str:
    """Who sends a command: ``kind:host:pid`` (recorded with every command and its events)."""
    return f"{kind}:{platform.node()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class CommandRecord:
    id: int
    wall_time: float
    client: str
    op: str
    model: str | None
    name: str | None
    value: Any
    pin: bool
    status: str


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    # No journal_mode pragma here: the store set WAL when it was made (it persists), and
    # switching modes takes an exclusive lock that fails at once instead of waiting.
    conn.execute(_SCHEMA)
    return conn


def send_command(store_path: str | Path, op: str, model: str | None = None, name: str | None = None,
                 value: Any = None, pin: bool = True, client: str | None = None, status: str = "queued") -> int:
    """Record a command for the run's driver; returns its id (the id its events carry).

    ``status="accepted"`` is for a driver recording a command it executes itself.
    """
    conn = _connect(Path(store_path))
    try:
        cur = conn.execute(
            "INSERT INTO commands(wall_time, client, op, model, name, value, pin, status) VALUES (?,?,?,?,?,?,?,?)",
            (time.time(), client or client_name(), op, model, name, json.dumps(value), int(pin), status))
        return int(cur.lastrowid)
    finally:
        conn.close()


_ACK_KINDS = {"set": ("hparam_applied", "hparam", "hparam_skipped"), "release": ("release",),
              "pause": ("paused",), "resume": ("resumed_model",), "stop": ("stopping",)}


def wait_for_ack(store_path: str | Path, command_id: int, op: str, timeout: float = 10.0,
                 final: bool = True) -> dict[str, Any] | None:
    """Wait for the events of one command; returns ``{kind: payload}`` of those seen.

    For ``set``, ``final`` waits for ``hparam_applied`` (the trainer applied it at a step);
    otherwise the first event of the command is enough. Returns what was seen by the
    timeout (possibly ``{}``: the driver has not taken the command yet).
    """
    kinds = _ACK_KINDS[op]
    deadline = time.time() + timeout
    seen: dict[str, Any] = {}
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=30)
    try:
        while True:
            marks = ",".join("?" * len(kinds))
            rows = conn.execute(f"SELECT kind, payload FROM events WHERE kind IN ({marks}) "
                                f"AND payload LIKE ? ORDER BY rowid", (*kinds, f'%"id": {command_id}%')).fetchall()
            for kind, payload in rows:
                data = json.loads(payload)
                if data.get("id") == command_id:
                    seen[kind] = data
            if seen and (not final or op != "set" or "hparam_applied" in seen or "hparam_skipped" in seen):
                return seen
            if time.time() >= deadline:
                return seen
            time.sleep(0.02)
    finally:
        conn.close()


class Inbox:
    """The driver's side: polls ``commands`` for queued rows and hands them to ``deliver``.

    Also gives the driver a periodic ``tick`` (used to publish live progress for readers in
    other processes). Runs in a daemon thread from :meth:`start` to :meth:`stop`.
    """

    def __init__(self, store_path: str | Path, deliver: Callable[[CommandRecord], None],
                 tick: Callable[[], None] | None = None, tick_every: float = 1.0):
        self.path = Path(store_path)
        self.deliver = deliver
        self.tick = tick
        self.tick_every = tick_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen = 0  # the highest command id taken

    def start(self) -> "Inbox":
        self._conn = _connect(self.path)
        self._thread = threading.Thread(target=self._loop, name="workbench-inbox", daemon=True)
        self._thread.start()
        return self

    def poll(self) -> int:
        """Take every queued command (oldest first); returns how many were delivered."""
        conn = self._conn
        # Ids only grow (one writer at a time commits them in order): reading past the last id
        # seen is a primary-key range, not a scan of every command the run ever took.
        rows = conn.execute("SELECT id, wall_time, client, op, model, name, value, pin, status FROM commands "
                            "WHERE id > ? AND status = 'queued' ORDER BY id", (self._seen,)).fetchall()
        for row in rows:
            self._seen = max(self._seen, row[0])
            conn.execute("UPDATE commands SET status = 'accepted' WHERE id = ?", (row[0],))
            record = CommandRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), bool(row[7]),
                                   "accepted")
            try:
                self.deliver(record)
            except Exception as exc:  # a command the run cannot take (unknown model...): recorded, not fatal
                log.warning("command %s refused: %s", record.id, exc)
                conn.execute("UPDATE commands SET status = ? WHERE id = ?", (f"refused: {exc}"[:500], row[0]))
        return len(rows)

    def _loop(self) -> None:
        last_tick = 0.0
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except sqlite3.Error:  # busy or briefly unreadable: the next poll tries again
                log.debug("inbox poll failed", exc_info=True)
            if self.tick is not None and time.monotonic() - last_tick >= self.tick_every:
                last_tick = time.monotonic()
                try:
                    self.tick()
                except Exception:
                    log.debug("inbox tick failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
            try:
                self.poll()  # a command sent in the last moments is answered, not left queued
            except sqlite3.Error:
                pass
            self._conn.close()


class StoreTail:
    """Follows a store written by another process and calls ``callback`` with the same
    messages a driver's subscribers get (``event``, ``metrics``, ``epoch``)."""

    def __init__(self, store_path: str | Path, callback: Callable[[dict[str, Any]], None], interval: float = 0.5,
                 from_start: bool = False):
        self.path = Path(store_path)
        self.callback = callback
        self.interval = interval
        self._stop = threading.Event()
        self._events = self._metrics = 0
        if not from_start:
            self._events, self._metrics = self._tails()
        self._thread = threading.Thread(target=self._loop, name="workbench-tail", daemon=True)
        self._thread.start()

    def _tails(self) -> tuple[int, int]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return tuple(conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {t}").fetchone()[0]
                         for t in ("events", "metrics"))
        except sqlite3.Error:
            return 0, 0
        finally:
            conn.close()

    def poll(self) -> None:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            metrics = conn.execute("SELECT rowid, model, epoch, step, name, value, wall_time FROM metrics "
                                   "WHERE rowid > ? ORDER BY rowid", (self._metrics,)).fetchall()
            events = conn.execute("SELECT rowid, wall_time, model, kind, payload FROM events WHERE rowid > ? "
                                  "ORDER BY rowid", (self._events,)).fetchall()
        finally:
            conn.close()
        if metrics:
            self._metrics = metrics[-1][0]
            self._send({"type": "metrics", "rows": [tuple(r[1:]) for r in metrics]})
        for rowid, wall_time, model, kind, payload in events:
            self._events = rowid
            data = json.loads(payload)
            self._send({"type": "event", "model": model, "kind": kind, "payload": data, "wall_time": wall_time})
            if kind == "segment":
                self._send({"type": "epoch", "model": model, "epoch": data.get("epoch"), "metrics": {}})

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.callback(message)
        except Exception:  # a broken subscriber must not stop the tail
            log.exception("subscriber failed")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except sqlite3.Error:
                log.debug("tail poll failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
