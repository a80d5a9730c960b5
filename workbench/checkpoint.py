"""Checkpoints: *when* (a policy) apart from *where* (a saver).

:class:`DiskSaver` writes ``checkpoints/<name>/epoch_000010.pt`` atomically (temporary
file, fsync, rename) next to a SHA-256 sidecar, keeps the last ``keep`` files, and
:meth:`DiskSaver.load_latest` skips a corrupt or truncated newest file for the one before.
Files are read with ``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

from .errors import CheckpointError

__all__ = ["should_checkpoint", "resume_epochs", "DiskSaver", "check_name"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@#-]{0,127}$")
_FILE = re.compile(r"^epoch_(\d{6})\.pt$")


def check_name(name: str, what: str = "name") -> str:
    """Refuse names that could escape a directory or break a path."""
    if not _NAME.match(name) or ".." in name:
        from .errors import WorkbenchError

        raise WorkbenchError(f"invalid {what} {name!r}: use letters, digits and _ . @ # - (no '/' or '..')")
    return name


def should_checkpoint(epoch: int, interval: int, total_epochs: int) -> bool:
    """Checkpoint every ``interval`` completed epochs and at the end."""
    return epoch > 0 and (epoch % interval == 0 or epoch >= total_epochs)


def resume_epochs(models: dict[str, tuple[list[int], int]], controllers: dict[str, list[int]],
                  links: list[tuple[str, str]] = ()) -> dict[str, int]:
    """The epoch each model resumes from (0: it starts over).

    ``models`` maps a name to its valid checkpoint epochs and its total epochs,
    ``controllers`` a controller to its valid rounds (its state entering each), ``links``
    pairs of models that exchanged knowledge. Coupled models (linked, directly or not; all
    of them under a controller) resume together from the latest epoch every one of them,
    and every controller, has a checkpoint for; a model that finished earlier counts with
    its final checkpoint. Coupled models resumed from different epochs would exchange
    knowledge from other epochs than they did the first time. Others resume from their own
    latest checkpoint.
    """
    group = {name: name for name in models}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    pairs = [(a, b) for a, b in links if a in group and b in group]
    if controllers:
        pairs += [(a, b) for a, b in zip(models, list(models)[1:])]
    for a, b in pairs:
        group[root(a)] = root(b)
    members: dict[str, list[str]] = {}
    for name in models:
        members.setdefault(root(name), []).append(name)
    out = {}
    for names in members.values():
        candidates = set().union(*(set(models[n][0]) for n in names))
        for n in names:
            epochs, total = models[n]
            last = max(epochs, default=0)
            candidates = {e for e in candidates if e in epochs or (last == total and e > last)}
        for rounds in controllers.values():
            candidates &= set(rounds)
        out.update({n: max(candidates, default=0) for n in names})
    return out


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
        import torch

        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        final = folder / f"epoch_{epoch:06d}.pt"
        for target, payload in ((final.with_suffix(".sha256"), digest.encode()), (final, data)):
            tmp = target.with_name(f".{target.name}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        _fsync_dir(folder)
        self._prune(folder)
        return final

    def _prune(self, folder: Path) -> None:
        for path in self.list(folder.name)[:-self.keep]:
            path.unlink(missing_ok=True)
            path.with_suffix(".sha256").unlink(missing_ok=True)

    def list(self, name: str) -> list[Path]:
        folder = self._dir(name)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if _FILE.match(p.name))

    def epochs(self, name: str) -> list[int]:
        return [int(_FILE.match(p.name).group(1)) for p in self.list(name)]

    @staticmethod
    def _verified(path: Path) -> bytes:
        data = path.read_bytes()
        sidecar = path.with_suffix(".sha256")
        if not sidecar.exists() or hashlib.sha256(data).hexdigest() != sidecar.read_text().strip():
            raise CheckpointError(f"checkpoint {path} is corrupt (checksum mismatch)")
        return data

    def load(self, path: Path) -> dict[str, Any]:
        import torch

        return torch.load(io.BytesIO(self._verified(path)), weights_only=True, map_location="cpu")

    def load_latest(self, name: str, max_epoch: int | None = None) -> tuple[int, dict[str, Any]] | None:
        """Newest valid checkpoint at or before ``max_epoch``; corrupt ones are skipped."""
        for path in reversed(self.list(name)):
            epoch = int(_FILE.match(path.name).group(1))
            if max_epoch is not None and epoch > max_epoch:
                continue
            try:
                return epoch, self.load(path)
            except Exception:  # corrupt or truncated: fall back to the previous one
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
