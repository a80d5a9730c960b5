"""Checkpoints: *when* (a policy) apart from *where* (a saver).

:class:`DiskSaver` writes ``checkpoints/<name>/epoch_000010.pt`` atomically (temporary
file, fsync, rename) next to a SHA-256 sidecar, keeps the last ``keep`` files, and
:meth:`DiskSaver.load_latest` skips a corrupt or truncated newest file for the one before.
Files are read with ``torch.load(weights_only=True)``: a checkpoint cannot run code.

A trainer's checkpoint is serialized by its worker (``torch.save`` bytes) and written by
the driver with the driver's own part beside it, ``epoch_000010.json`` (the step counter
and the coordinator's record: hyperparameters, pins, last evaluation), so the driver
writes and resumes runs without importing torch. :meth:`DiskSaver.load` puts that part
back under ``"coordinator"``, as in checkpoints written before the split.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import CheckpointError

__all__ = ["should_checkpoint", "DiskSaver", "CheckpointWriter", "check_name", "write_outputs"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@#-]{0,127}")
_FILE = re.compile(r"^epoch_(\d{6})\.pt$")


def check_name(name: str, what: str = "name") -> str:
    """Refuse names that could escape a directory or break a path."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:  # fullmatch: "$" allows a final newline
        from .errors import WorkbenchError

        raise WorkbenchError(f"invalid {what} {name!r}: use letters, digits and _ . @ # - (no '/' or '..')")
    return name


def should_checkpoint(epoch: int, interval: int, total_epochs: int, since: float | None = None,
                      min_seconds: float = 0.0) -> bool:
    """Checkpoint every ``interval`` completed epochs and at the end; with ``min_seconds``,
    an interval's checkpoint only when the previous one was taken at least that many
    seconds ago (``since``), so epochs of milliseconds are not saved several times a second.
    The last epoch is always checkpointed."""
    if epoch <= 0:
        return False
    if epoch >= total_epochs:
        return True
    if epoch % interval:
        return False
    return not min_seconds or since is None or since >= min_seconds


def write_outputs(folder: Path, files: dict[str, str]) -> None:
    """A trainer's :meth:`~workbench.trainer.Trainer.output_files`, each replaced atomically."""
    if not files:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in files.items():
        target = folder / check_name(file_name, "output file name")
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskSaver:
    def __init__(self, root: str | Path, keep: int = 3):
        self.root = Path(root)
        self.keep = keep

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name, "model name")

    def save(self, name: str, epoch: int, state: dict[str, Any]) -> Path:
        """``state`` serialized here with torch (a controller's, in the driver)."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        return self.write(name, epoch, buffer.getvalue())

    def write(self, name: str, epoch: int, data: bytes, record: dict[str, Any] | None = None) -> Path:
        """A checkpoint serialized elsewhere (``data``: ``torch.save`` bytes from a worker)
        and, with ``record``, the driver's JSON part beside it. The checksum is renamed into
        place last: a write cut short leaves no file that looks complete."""
        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        final = folder / f"epoch_{epoch:06d}.pt"
        pairs = [(final, data), (final.with_suffix(".sha256"), digest.encode())]
        if record is not None:  # tied to these bytes by their digest: never paired with an older file's
            pairs.insert(0, (final.with_suffix(".json"), json.dumps({**record, "sha256": digest}).encode()))
        tmps = [target.with_name(f".{target.name}.tmp") for target, _ in pairs]
        try:  # all written in full before any is renamed: a failed write leaves no file behind
            for tmp, (_, payload) in zip(tmps, pairs):
                with open(tmp, "wb") as fh:
                    fh.write(payload)
                    fh.flush()
                    os.fsync(fh.fileno())
            for tmp, (target, _) in zip(tmps, pairs):
                os.replace(tmp, target)
            _fsync_dir(folder)
        except BaseException:
            for path in (*tmps, *(target for target, _ in pairs)):
                path.unlink(missing_ok=True)
            raise
        self._prune(folder)
        return final

    def sweep(self) -> list[Path]:
        """Remove what an interrupted write left (``.tmp`` files, a checksum without its
        checkpoint); returns the paths removed."""
        removed = []
        for folder in self.root.iterdir() if self.root.is_dir() else []:
            for path in folder.iterdir() if folder.is_dir() else []:
                orphan = path.suffix in (".sha256", ".json") and not path.with_suffix(".pt").exists()
                if (path.name.startswith(".") and path.name.endswith(".tmp")) or orphan:
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def _prune(self, folder: Path) -> None:
        for path in self.list(folder.name)[:-self.keep]:
            for part in (path.with_suffix(".sha256"), path.with_suffix(".json"), path):
                part.unlink(missing_ok=True)

    def list(self, name: str) -> list[Path]:
        folder = self._dir(name)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if _FILE.match(p.name))

    def epochs(self, name: str) -> list[int]:
        return [int(_FILE.match(p.name).group(1)) for p in self.list(name)]

    @staticmethod
    def _verified(path: Path) -> tuple[bytes, str]:
        """The file's bytes and their SHA-256, which its sidecar must hold."""
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        sidecar = path.with_suffix(".sha256")
        if not sidecar.exists() or digest != sidecar.read_text().strip():
            raise CheckpointError(f"checkpoint {path} is corrupt (checksum mismatch)")
        return data, digest

    def _read(self, path: Path) -> tuple[bytes, dict[str, Any] | None]:
        """The verified bytes of ``path`` and the driver's part beside them (None: a file
        written without one)."""
        data, digest = self._verified(path)
        file = path.with_suffix(".json")
        if not file.exists():
            return data, None
        try:
            record = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint record {file} is unreadable ({type(exc).__name__})") from exc
        if not isinstance(record, dict) or record.get("sha256") != digest:
            raise CheckpointError(f"checkpoint record {file} does not belong to {path.name} (checksum mismatch)")
        return data, record

    @staticmethod
    def _unpickle(data: bytes, record: dict[str, Any] | None, map_location: Any) -> dict[str, Any]:
        import torch

        payload = torch.load(io.BytesIO(data), weights_only=True, map_location=map_location)
        if record is not None and "coordinator" in record:
            payload["coordinator"] = record["coordinator"]
        return payload

    def load(self, path: Path, map_location: Any = "cpu") -> dict[str, Any]:
        """Read a checkpoint with its tensors on ``map_location``, the driver's part under
        ``"coordinator"``.

        The default is the host: a checkpoint written on a GPU resumes on a CPU-only
        machine; the worker moves the tensors to the device it planned (the trainer's
        ``load_state_dict``, checked by the engine)."""
        return self._unpickle(*self._read(path), map_location)

    def load_latest(self, name: str, max_epoch: int | None = None, map_location: Any = "cpu",
                    skipped: dict[int, str] | None = None) -> tuple[int, dict[str, Any]] | None:
        """Newest valid checkpoint at or before ``max_epoch``; corrupt ones are skipped (and
        put in ``skipped``, epoch -> why, for the caller to report)."""
        return self._latest(name, max_epoch, skipped, lambda path: self.load(path, map_location))

    def read_latest(self, name: str, max_epoch: int | None = None,
                    skipped: dict[int, str] | None = None) -> tuple[int, bytes, dict[str, Any]] | None:
        """As :meth:`load_latest`, without unpickling: ``(epoch, bytes, record)``, the bytes
        for a worker to load and the record (``step``, ``coordinator``) for the driver. A
        checkpoint written before records existed is unpickled here for its record."""
        def read(path: Path) -> tuple[bytes, dict[str, Any]]:
            data, record = self._read(path)
            if record is None:
                payload = self._unpickle(data, None, "cpu")
                record = {"step": int(payload["engine"]["step"]), "coordinator": payload.get("coordinator", {})}
            return data, record

        found = self._latest(name, max_epoch, skipped, read)
        return None if found is None else (found[0], *found[1])

    def _latest(self, name: str, max_epoch: int | None, skipped: dict[int, str] | None, read: Any):
        for path in reversed(self.list(name)):
            epoch = int(_FILE.match(path.name).group(1))
            if max_epoch is not None and epoch > max_epoch:
                continue
            try:
                return epoch, read(path)
            except Exception as exc:  # corrupt or truncated: fall back to the previous one
                if skipped is not None:
                    skipped[epoch] = ("checksum mismatch" if isinstance(exc, CheckpointError)
                                      else f"cannot be loaded: {type(exc).__name__}")
                continue
        return None

    def valid_epochs(self, name: str) -> list[int]:
        """Epochs whose file matches its checksum (read, not unpickled: resume loads one later)."""
        out = []
        for path in self.list(name):
            try:
                self._verified(path)
            except (CheckpointError, OSError):
                continue
            out.append(int(_FILE.match(path.name).group(1)))
        return out


class CheckpointWriter:
    """Writes checkpoints in background threads (one per model, so files of a model are
    written in order), so the driver never waits on a disk, and a state stuck on a dying
    worker never holds up another model's checkpoints.

    Trainer states arrive with their segments' results, serialized by the worker
    (:meth:`add`: :func:`workbench._worker.checkpoint_state`), controller states as they
    are (:meth:`save`).
    Each write is reported through ``emit`` (a ``checkpoint`` event and its timing, or an
    ``error`` event when the write failed).
    """

    def __init__(self, saver: DiskSaver, run_dir: Path, emit: Any):
        self.saver = saver
        self.run_dir = Path(run_dir)
        self.emit = emit
        self._pools: dict[str, Any] = {}
        self.failure: str | None = None  # the first write that failed (disk full, permission): the run stops

    def add(self, state: dict[str, Any], name: str, epoch: int, step: int, extra: dict[str, Any]) -> None:
        """A trainer's state at ``epoch``; ``extra`` is the driver's part (hparams, pins)."""
        self._pool(name).submit(self._write, state, name, epoch, step, extra)

    def _pool(self, name: str):
        from concurrent.futures import ThreadPoolExecutor

        if name not in self._pools:
            self._pools[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"workbench-ckpt-{name}")
        return self._pools[name]

    def save(self, name: str, epoch: int, state: dict[str, Any]) -> None:
        self._pool(name).submit(self._save, name, epoch, state)

    def _save(self, name: str, epoch: int, state: dict[str, Any]) -> None:
        try:
            self.saver.save(name, epoch, state)
        except OSError as exc:
            self._failed(name, epoch, exc)

    def _failed(self, name: str, epoch: int, exc: OSError) -> None:
        from ._faults import write_failure
        from .events import Event, EventKind

        reason = write_failure(f"checkpoint {name} epoch {epoch}", exc)
        self.failure = self.failure or reason
        self.emit(Event(EventKind.ERROR, name, {"epoch": epoch, "error": reason, "kind": "write"}))

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True)

    def _write(self, state: dict[str, Any], name: str, epoch: int, step: int, extra: dict[str, Any]) -> None:
        import time

        from .events import Event, EventKind, Metrics

        t0 = time.perf_counter()
        try:
            path = self.saver.write(name, epoch, state["data"], {"step": step, "coordinator": extra})
            write_outputs(self.run_dir / "outputs" / check_name(name, "model name"), state.get("files") or {})
        except OSError as exc:  # disk full, file too large, permission: the run cannot keep its work
            self._failed(name, epoch, exc)
            return
        seconds = time.perf_counter() - t0
        now = time.time()
        self.emit(Metrics(((name, epoch, step, "time/checkpoint_s", seconds, now),
                           (name, epoch, step, "time/checkpoint_state_s", float(state.get("state_seconds", 0.0)),
                            now))))
        self.emit(Event(EventKind.CHECKPOINT, name, {"epoch": epoch, "path": str(path.relative_to(self.run_dir)),
                                                    "seconds": seconds, "bytes": path.stat().st_size}))
