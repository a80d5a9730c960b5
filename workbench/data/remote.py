"""User data files on an external Dask cluster: checked on every worker, shipped where missing.

A preset's ``data`` paths are read by the workers, not by the process that starts the run.
On a local cluster they share its file system; on an external one a worker may lack the
file, or have another file at that path. Before training starts, :func:`ship_user_files`
asks every worker for the size of each path. Where a worker lacks a file (or holds one
of another size) the file is sent to it and kept under its temporary folder at a place
derived from the starting machine's absolute path, which :func:`local_path` finds again
when the worker loads the dataset. Files too large to send fail the start with one
message naming the path, the workers and the fix (storage every worker mounts).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError

__all__ = ["SHIP_LIMIT_BYTES", "data_files", "local_path", "ship_user_files"]

SHIP_LIMIT_BYTES = 256 * 2**20  # per run; above it, mount shared storage instead

_SUFFIXES = (".csv", ".parquet")


def _cache_root() -> Path:
    return Path(tempfile.gettempdir()) / "workbench-data"


def _shipped_dir(folder: Path) -> Path:
    """Where a worker keeps its copies of the files of the starting machine's ``folder``."""
    return _cache_root() / hashlib.sha256(str(folder).encode()).hexdigest()[:16]


def local_path(path: str | Path) -> Path:
    """``path`` where it exists here, else this worker's shipped copy of it (file or folder)."""
    path = Path(path).expanduser()
    if path.exists() or not path.is_absolute():
        return path
    for copy in (_shipped_dir(path.parent) / path.name, _shipped_dir(path)):
        if copy.exists():
            return copy
    return path


def data_files(path: str | Path) -> list[Path]:
    """The files a user dataset reads: the file itself, or a folder's .csv/.parquet files."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES)
    return [path]


def _sizes(paths: list[str]) -> dict[str, int | None]:
    """(Runs on a worker) each path's size, or None where this worker cannot read it."""
    out: dict[str, int | None] = {}
    for p in paths:
        try:
            out[p] = os.stat(local_path(p)).st_size
        except OSError:
            out[p] = None
    return out


def _receive(path: str, content: bytes) -> str:
    """(Runs on a worker) keep a shipped copy of ``path`` (atomic: temporary file, rename)."""
    target = _shipped_dir(Path(path).parent) / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    partial.write_bytes(content)
    os.replace(partial, target)
    return str(target)


def ship_user_files(client: Any, datasets: Iterable[dict[str, Any]], limit: int = SHIP_LIMIT_BYTES) -> list[str]:
    """Make every user file of ``datasets`` readable on every worker of ``client``'s cluster.

    ``datasets``: the plan's dataset entries (those with a ``path`` are user files, by
    absolute path). Returns the paths shipped. Raises :class:`DataError` when a file is
    missing here or the files to send exceed ``limit`` bytes.
    """
    local: dict[str, int] = {}
    for ds in datasets:
        if not ds.get("path"):
            continue
        for f in data_files(ds["path"]):
            if not f.is_file():
                raise DataError(f"dataset '{ds['name']}': file not found: {f} (check the 'path' in the preset's 'data')")
            local[str(f)] = f.stat().st_size
    if not local:
        return []
    remote = client.run(_sizes, sorted(local))  # {worker address: {path: size or None}}
    missing = {p: sorted(w for w, sizes in remote.items() if sizes.get(p) != size) for p, size in local.items()}
    missing = {p: workers for p, workers in missing.items() if workers}
    total = sum(local[p] for p in missing)
    if total > limit:
        first = next(iter(missing))
        raise DataError(f"{first} (and {len(missing) - 1} more) is not on worker(s) {', '.join(missing[first])} and "
                        f"the files are too large to send ({total / 2**20:.0f} MB > {limit / 2**20:.0f} MB); put them "
                        "on storage every worker mounts at the same path")
    for path, workers in missing.items():
        client.run(_receive, path, Path(path).read_bytes(), workers=workers)
    return sorted(missing)
