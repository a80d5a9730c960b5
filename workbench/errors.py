"""One base exception for everything a user can get wrong, with structured fields.

The CLI prints ``str(error)`` and exits non-zero without a traceback for any
:class:`WorkbenchError`; every other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

__all__ = [
    "WorkbenchError",
    "PresetError",
    "DataError",
    "PlacementError",
    "RegistryError",
    "RunNotFoundError",
    "CheckpointError",
    "MissingExtraError",
    "DevicePlacementError",
]


class WorkbenchError(Exception):
    """Base class of every error caused by input the user can fix."""


class PresetError(WorkbenchError):
    """A preset (built-in, user file or override) is invalid.

    ``problems`` lists every problem found, each already naming its path.
    """

    def __init__(self, problems: list[str], source: str = "preset"):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {source} ({len(self.problems)} problem(s)):\n{lines}")


class DataError(WorkbenchError):
    """A dataset cannot be loaded or fails a blocking quality check."""


class PlacementError(WorkbenchError):
    """The requested resources cannot be satisfied by the devices present."""


class RegistryError(WorkbenchError):
    """An unknown model name, or a model registered twice."""


class RunNotFoundError(WorkbenchError):
    """A run id that does not exist in the runs directory (or is not a valid id)."""


class CheckpointError(WorkbenchError):
    """No usable checkpoint: every candidate is missing or corrupt."""


class MissingExtraError(WorkbenchError):
    """An optional dependency is not installed; the message names the pip command."""


class DevicePlacementError(WorkbenchError):
    """A trainer's parameters, optimiser state or data tensors are not on the device it was
    placed on (the message names the tensor)."""
