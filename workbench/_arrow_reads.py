"""Wide reads of a finished store as Arrow tables, through the ADBC SQLite driver.

Python's ``sqlite3`` makes a Python object of every value it returns, so a million metric
rows cost seconds before pandas sees them; the ADBC driver hands SQLite's values to Arrow
columns in C (3.5-4x less CPU on 1,000,000 rows: docs/benchmarks.md, "Round 3: reads").

The driver links its own copy of SQLite. Two copies in one process must not both have a
file open while it is written (SQLite's "How to corrupt", 2.2.1): closing one copy's
descriptor drops the POSIX locks the other holds, and the first open of a WAL store by a
copy that does not see the other's locks may reset the shared WAL index under a live
writer. So this path reads only a store that nobody is writing: a finished store is one
self-contained file in rollback mode (``RunStore`` folds its WAL back in when it closes),
while a store being written, or left by a crash, has a ``-wal`` or ``-journal`` file
beside it. Everything else (no driver installed, a store being written, a type the driver
infers differently from ``sqlite3``, a damaged file) returns None and the caller reads
through ``sqlite3`` as before, which is also where a damaged store's one-line error comes from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["arrow_table"]

_driver: Any = None  # the adbc_driver_sqlite.dbapi module once imported; False when not installed


def _dbapi() -> Any:
    global _driver
    if _driver is None:
        try:
            import adbc_driver_sqlite.dbapi as dbapi
        except ImportError:  # an optional speed-up: sqlite3 reads the same rows
            dbapi = False
        _driver = dbapi
    return _driver


def being_written(path: Path) -> bool:
    """Whether a writer may have ``path`` open (or left it mid-write): its WAL or rollback journal exists."""
    return any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-journal"))


def arrow_table(path: Path, sql: str, params: tuple, types: dict[str, str]) -> Any:
    """The result of ``sql`` as a ``pyarrow.Table``, or None where this path does not apply
    (see the module docstring). ``types``: the Arrow type each selected column must have
    (``"int64"``, ``"double"``, ``"string"``), as ``sqlite3`` plus pandas would type it: a
    column the driver inferred otherwise (all NULL, or mixed) sends the read back to ``sqlite3``."""
    dbapi = _dbapi()
    if not dbapi or being_written(path) or not path.is_file():
        return None
    import adbc_driver_manager

    try:
        # Percent-encoded: a folder named with '?' or '#' must not cut the URI (and drop mode=ro).
        with dbapi.connect(f"file:{quote(str(path.absolute()))}?mode=ro") as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            table = cursor.fetch_arrow_table()
    except (adbc_driver_manager.Error, OSError):  # damaged, or a type mismatch past the first batch
        return None
    for column, kind in types.items():
        field = table.schema.field(column)
        if str(field.type) not in (kind, f"large_{kind}"):
            return None
        if table.num_rows and table.column(column).null_count == table.num_rows:
            return None  # no value to infer a type from: sqlite3 gives None objects there
    return table
