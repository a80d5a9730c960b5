"""The run store: ``store.sqlite`` in the run directory (a contract: docs/contracts.md).

Contract:

- Writes (:meth:`RunStore.add_metrics`, :meth:`add_event`, :meth:`set_model`) may come
  from any thread; they are queued and written in batches by one writer thread, so a
  metric costs the caller a list append. :meth:`flush` returns once everything queued
  before it is committed.
- ``commands`` is the control channel (see :mod:`workbench.channel`): clients insert
  rows, the driver takes them.
- Reads open their own connection (WAL mode: readers never block the writer) and return
  snapshots as pandas DataFrames; another process may read a store while a run writes it.
- ``metrics(model, epoch, step, name, value, wall_time)`` and
  ``events(wall_time, model, kind, payload JSON)`` are the contract tables; ``models`` holds
  the latest state of each model (for ``workbench status`` and panels attaching later).
"""
from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._arrow_reads import arrow_table
from .errors import StoreError

__all__ = ["RunStore", "read_store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics(model TEXT, epoch INTEGER, step INTEGER, name TEXT, value REAL, wall_time REAL);
CREATE TABLE IF NOT EXISTS events(wall_time REAL, model TEXT, kind TEXT, payload TEXT);
CREATE TABLE IF NOT EXISTS models(model TEXT PRIMARY KEY, registry_name TEXT, dataset TEXT, state TEXT,
    epoch INTEGER, total_epochs INTEGER, hparams TEXT, pinned TEXT, last_error TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS run(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS commands(id INTEGER PRIMARY KEY AUTOINCREMENT, wall_time REAL, client TEXT,
    op TEXT, model TEXT, name TEXT, value TEXT, pin INTEGER, status TEXT);
CREATE INDEX IF NOT EXISTS metrics_model_name ON metrics(model, name);
CREATE INDEX IF NOT EXISTS metrics_name ON metrics(name);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
"""
# metrics_name serves ``metrics(name=...)``, the metric names and the charts' per-epoch
# series in write order (an index on one column keeps equal names in rowid order, so no
# sort); metrics_model_name serves one model's metrics. Stores written before an index
# existed get it when a RunStore opens them (a resume), and are read without it until then.
_METRIC_COLUMNS = ("model", "epoch", "step", "name", "value", "wall_time")
# What sqlite3 plus pandas make of each column, as Arrow types (the ADBC path must match).
_ARROW_TYPES = {"model": "string", "epoch": "int64", "step": "int64", "name": "string", "value": "double",
                "wall_time": "double"}
# Live progress of each model, published by the driver for readers in other processes
# (added after the first stores were written: added to older stores when they are opened).
_LIVE_COLUMNS = {"step": "INTEGER", "steps_per_epoch": "INTEGER", "steps_per_s": "REAL", "eta_s": "REAL",
                 "last_eval": "TEXT", "waiting": "TEXT"}
_JSON_COLUMNS = ("hparams", "pinned", "last_eval")

_STOP = object()


class RunStore:
    """Batched writer over one SQLite file; see the module docstring for the contract."""

    def __init__(self, path: str | Path, flush_interval: float = 0.25):
        self.path = Path(path)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._interval = flush_interval
        conn = self._connect()
        conn.executescript(_SCHEMA)
        have = {row[1] for row in conn.execute("PRAGMA table_info(models)")}
        for column, kind in _LIVE_COLUMNS.items():
            if column not in have:
                conn.execute(f"ALTER TABLE models ADD COLUMN {column} {kind}")
        conn.commit()
        conn.close()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._writer, name="workbench-store", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # -- writes (any thread) --------------------------------------------------------------
    def add_metrics(self, rows: Iterable[tuple[str, int, int, str, float, float]]) -> None:
        """Queue ``(model, epoch, step, name, value, wall_time)`` rows."""
        self._queue.put(("m", list(rows)))

    def add_event(self, model: str | None, kind: str, payload: dict[str, Any] | None = None,
                  wall_time: float | None = None) -> None:
        row = (wall_time or time.time(), model, kind, json.dumps(payload or {}, default=str))
        self._queue.put(("e", [row]))

    def set_model(self, model: str, **fields: Any) -> None:
        """Upsert the latest state of a model (state, epoch, hparams, pinned, last_error, ...)."""
        self._queue.put(("s", (model, fields)))

    def set_run(self, **values: Any) -> None:
        self._queue.put(("r", values))

    @property
    def failure(self) -> str | None:
        """One line naming why writes fail (disk full, file too large, permission), or None."""
        if self._error is None:
            return None
        from ._faults import write_failure

        return write_failure(str(self.path), self._error)

    def flush(self, timeout: float = 30.0) -> None:
        done = threading.Event()
        self._queue.put(("f", done))
        if not done.wait(timeout):
            raise TimeoutError("store writer did not flush in time")
        if self._error is not None:
            raise RuntimeError(f"store writer failed: {self._error}") from self._error

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put((_STOP, None))
            self._thread.join(timeout=30)

    # -- the writer thread ----------------------------------------------------------------
    def _writer(self) -> None:
        conn = self._connect()
        metrics: list = []
        events: list = []
        states: dict[str, dict[str, Any]] = {}
        run_values: dict[str, Any] = {}
        waiters: list[threading.Event] = []
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=self._interval)
                items = [item]
                while True:  # drain without waiting: one transaction per batch
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            except queue.Empty:
                items = []
            for kind, value in items:
                if kind == "m":
                    metrics.extend(value)
                elif kind == "e":
                    events.extend(value)
                elif kind == "s":
                    states.setdefault(value[0], {}).update(value[1])
                elif kind == "r":
                    run_values.update(value)
                elif kind == "f":
                    waiters.append(value)
                elif kind is _STOP:
                    stop = True
            try:
                if metrics or events or states or run_values:
                    self._write(conn, metrics, events, states, run_values)
                metrics, events, states, run_values = [], [], {}, {}
            except Exception as exc:  # keep the thread alive; flush() reports it
                self._error = exc
            for w in waiters:
                w.set()
            waiters = []
        self._fold_wal(conn)
        conn.close()

    @staticmethod
    def _fold_wal(conn: sqlite3.Connection, tries: int = 40) -> None:
        """Fold the write-ahead log back in, so a finished run is one self-contained file (its
        report is then kept, and its reads take the fast path: see ``_arrow_reads``). The switch
        fails while any other connection has the file open: a reader in another process
        (``workbench watch``, a ``stop --wait`` polling) holds one for milliseconds, so it is
        tried again for up to two seconds; after that the WAL stays, which SQLite handles."""
        for _ in range(tries):
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                if conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete":
                    return
            except sqlite3.Error:
                pass
            time.sleep(0.05)

    @staticmethod
    def _write(conn, metrics, events, states, run_values) -> None:
        with conn:
            if metrics:
                conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?)", metrics)
            if events:
                conn.executemany("INSERT INTO events VALUES (?,?,?,?)", events)
            for model, fields in states.items():
                fields = {k: (json.dumps(v, default=str) if k in _JSON_COLUMNS else v)
                          for k, v in fields.items()}
                fields["updated"] = time.time()
                conn.execute("INSERT OR IGNORE INTO models(model) VALUES (?)", (model,))
                cols = ", ".join(f"{k}=?" for k in fields)
                conn.execute(f"UPDATE models SET {cols} WHERE model=?", (*fields.values(), model))
            for key, value in run_values.items():
                conn.execute("INSERT OR REPLACE INTO run VALUES (?,?)", (key, json.dumps(value, default=str)))


class read_store:  # noqa: N801  (used like a function returning a reader)
    """Read-only view of a ``store.sqlite``, usable from any process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        # epoch_series' results: (name, model) -> (last rowid folded in, {(model, epoch): row}).
        self._series: dict[tuple[str, str | None], tuple[int, dict]] = {}

    def _query(self, sql: str, params: tuple = ()):
        import pandas as pd

        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                return pd.read_sql_query(sql, conn, params=params)
            finally:
                conn.close()
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:  # empty, truncated, not SQLite
            raise StoreError(f"{self.path} cannot be read ({exc}); it is left as it is: the run's checkpoints "
                             "and logs are still in its folder") from None

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Plain rows (no DataFrame): the wide reads build their frames column by column."""
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} cannot be read ({exc}); it is left as it is: the run's checkpoints "
                             "and logs are still in its folder") from None

    @staticmethod
    def _where(filters: dict[str, str | Sequence[str] | None]) -> tuple[str, tuple]:
        """SQL conditions for equal values, any of several values (a list or tuple) and LIKE
        patterns (a value with ``%``). A pattern that is a plain prefix (``eval/%``) also gets a
        range on the column, which an index can serve where LIKE cannot (SQLite's LIKE ignores
        case; names are lower case)."""
        where, params = "", []
        for column, value in filters.items():
            if value is None:
                continue
            if not isinstance(value, str):
                values = list(value)
                where = where + f" AND {column} IN ({', '.join('?' * len(values))})"
                params = [*params, *values]
                continue
            if "%" not in value:
                where, params = where + f" AND {column} = ?", [*params, value]
                continue
            prefix = value[:-1]
            if value.endswith("%") and prefix and not any(c in prefix for c in "%_"):
                upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
                where, params = where + f" AND {column} >= ? AND {column} < ?", [*params, prefix, upper]
            where, params = where + f" AND {column} LIKE ?", [*params, value]
        return where, tuple(params)

    def _select(self, table: str, **filters: str | Sequence[str] | None):
        """Rows of ``table`` in write order; a filter value with ``%`` is a LIKE pattern."""
        where, params = self._where(filters)
        return self._query(f"SELECT * FROM {table} WHERE 1=1{where} ORDER BY rowid", params)

    def metrics(self, model: str | None = None, name: str | None = None):
        """Metric rows in write order. A column fixed by an exact filter is not read from
        SQLite but filled in: a million rows of one name cost a third less to fetch. A
        finished store is read into Arrow columns by the ADBC driver where it is installed
        (:mod:`workbench._arrow_reads`: a million rows in a third to a quarter of the CPU); the frame is
        the same either way."""
        import pandas as pd

        fixed = {k: v for k, v in (("model", model), ("name", name)) if v is not None and "%" not in v}
        read = [c for c in _METRIC_COLUMNS if c not in fixed]
        sql, params = self._metrics_sql(read, model, name)
        table = arrow_table(self.path, sql, params, {c: _ARROW_TYPES[c] for c in read})
        if table is not None and table.num_rows:
            import pyarrow as pa

            for column, value in fixed.items():
                table = table.add_column(_METRIC_COLUMNS.index(column), column,
                                         pa.repeat(pa.scalar(value, pa.string()), table.num_rows))
            return table.to_pandas()
        rows = self._rows(sql, params)
        frame = pd.DataFrame.from_records(rows, columns=read, nrows=len(rows))
        for column, value in fixed.items():
            frame.insert(_METRIC_COLUMNS.index(column), column, pd.Series([value] * len(frame), dtype=str))
        if frame.empty:  # the types of an empty read_sql frame, as before
            frame = frame.astype({"epoch": "int64", "step": "int64", "value": "float64", "wall_time": "float64"})
        return frame

    def _metrics_sql(self, columns: list[str], model: str | None, name: str | None) -> tuple[str, tuple]:
        where, params = self._where({"model": model, "name": name})
        return f"SELECT {', '.join(columns)} FROM metrics WHERE 1=1{where} ORDER BY rowid", params

    def _epoch_series_sql(self, name: str, model: str | None, since: int = 0) -> tuple[str, tuple]:
        where, params = self._where({"name": name, "model": model})
        # SQLite takes the bare columns from the row that holds MAX(rowid): the last one written.
        # ``rowid > since`` is a range on the index (name, rowid): only the rows written since.
        return (f"SELECT model, epoch, step, value, wall_time, MAX(rowid) FROM metrics WHERE 1=1{where} "
                "AND rowid > ? GROUP BY model, epoch ORDER BY MAX(rowid)", (*params, since))

    def metric_names(self) -> list[str]:
        """The distinct metric names, sorted: one index seek per name, not a scan of the rows."""
        return [r[0] for r in self._rows(
            "WITH RECURSIVE n(x) AS (SELECT MIN(name) FROM metrics UNION ALL "
            "SELECT (SELECT MIN(name) FROM metrics WHERE name > x) FROM n WHERE x IS NOT NULL) "
            "SELECT x FROM n WHERE x IS NOT NULL")]

    def epoch_series(self, name: str, model: str | None = None):
        """The last row of ``name`` in each model's epoch (what the charts plot, one point per
        epoch), reduced in SQLite: a per-step metric of a million points comes back as one row
        per model and epoch. Columns as :meth:`metrics`.

        Metric rows are only ever appended, so this reader keeps each series it computed and
        later folds in only the rows written since (an index range): a live chart's refresh
        costs what arrived since the last one, not a scan of the whole run."""
        import pandas as pd

        key = (name, model)
        with self._lock:
            last, kept = self._series.get(key, (0, {}))
        if kept:  # the last row folded in must still be there as it was: not another file at this path
            newest = next(reversed(kept.values()))
            if self._rows("SELECT model, epoch, step, value, wall_time, rowid FROM metrics WHERE rowid = ?",
                          (last,)) != [newest]:
                last, kept = 0, {}
        rows = self._epoch_rows_arrow(name, model) if not last else None
        if rows is None:
            rows = self._rows(*self._epoch_series_sql(name, model, last))
        if rows:
            kept = dict(kept)
            for row in rows:  # newer rows win, and move to the end: the dict stays in write order
                kept.pop((row[0], row[1]), None)
                kept[(row[0], row[1])] = row
            last = rows[-1][5]
        with self._lock:
            self._series[key] = (last, kept)
        values = [r[:5] for r in kept.values()]
        frame = pd.DataFrame.from_records(values, columns=["model", "epoch", "step", "value", "wall_time"],
                                          nrows=len(values))
        frame.insert(3, "name", pd.Series([name] * len(frame), dtype=str))
        return frame

    def _epoch_rows_arrow(self, name: str, model: str | None) -> list[tuple] | None:
        """:meth:`_epoch_series_sql`'s rows of a finished store, the grouping done in Arrow:
        SQLite's GROUP BY sorts a million rows in a temporary B-tree (0.7-0.85 s of CPU), while
        reading (model, epoch, rowid) as Arrow columns and grouping there takes half that; the
        chosen rows are then read by rowid. None where the Arrow path does not apply."""
        where, params = self._where({"name": name, "model": model})
        table = arrow_table(self.path, f"SELECT model, epoch, rowid AS id FROM metrics WHERE 1=1{where}", params,
                            {"model": "string", "epoch": "int64", "id": "int64"})
        if table is None:
            return None
        if not table.num_rows:
            return []
        last = table.group_by(["model", "epoch"], use_threads=False).aggregate([("id", "max")])["id_max"]
        ids = ",".join(str(i) for i in sorted(last.to_pylist()))
        return self._rows(f"SELECT model, epoch, step, value, wall_time, rowid FROM metrics WHERE rowid IN ({ids}) "
                          "ORDER BY rowid")

    def events(self, kind: str | Sequence[str] | None = None, model: str | None = None):
        """Events in write order; ``kind``: one kind, a LIKE pattern, or several kinds (the
        charts read only the kinds they mark, not a long run's thousands of segment events)."""
        frame = self._select("events", kind=kind, model=model)
        frame["payload"] = frame["payload"].map(self._json)
        return frame

    def event_counts(self):
        """How many events of each kind, most first (a Series indexed by ``kind``): counted in
        SQLite, so a report of a long run does not read its thousands of segment events."""
        frame = self._query("SELECT kind, COUNT(*) AS count FROM events GROUP BY kind ORDER BY count DESC, kind")
        return frame.set_index("kind")["count"]

    def models(self):
        frame = self._query("SELECT * FROM models ORDER BY model")
        for col in _JSON_COLUMNS:
            if col in frame:
                frame[col] = frame[col].map(self._json)
        return frame

    def run_info(self) -> dict[str, Any]:
        frame = self._query("SELECT * FROM run")
        return {k: self._json(v) for k, v in zip(frame["key"], frame["value"])}

    def _json(self, text: Any) -> Any:
        """A JSON column value; SQL NULL reads as None, or NaN in pandas 3's string columns."""
        if not isinstance(text, str) or not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise StoreError(f"{self.path} holds a damaged value ({text[:40]!r}); it is left as it is") from None
