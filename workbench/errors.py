"""One base exception for everything a user can get wrong, with structured fields.

The CLI prints ``str(error)`` and exits non-zero without a traceback for any
:class:`WorkbenchError`; every other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import unicodedata

__all__ = [
    "clean",
    "WorkbenchError",
    "PresetError",
    "DataError",
    "PlacementError",
    "RegistryError",
    "RunNotFoundError",
    "CheckpointError",
    "MissingExtraError",
    "DevicePlacementError",
    "StoreError",
]

LINE_LIMIT = 300  # characters of one message line; a longer value is cut, never echoed whole


def clean(text: object, limit: int = LINE_LIMIT) -> str:
    """``text`` safe to print on a terminal: control characters escaped, long text cut.

    Every error message passes through here (:class:`WorkbenchError` does it), so a key
    holding ANSI escapes cannot recolour or clear the user's terminal, and a 100 KB value
    cannot flood it. Newlines are kept (a message may list problems one per line).
    """
    lines = []
    for line in str(text).split("\n"):
        # Cc: control characters (ESC, BEL, CR...); Cf: invisible ones such as bidi overrides
        line = "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf") else ascii(ch)[1:-1] for ch in line)
        if len(line) > limit:
            line = f"{line[:limit]}... ({len(line) - limit} more characters)"
        lines.append(line)
    return "\n".join(lines)


class WorkbenchError(Exception):
    """Base class of every error caused by input the user can fix.

    The message is passed through :func:`clean`: user values quoted in it are safe to print.
    """

    def __init__(self, message: object = ""):
        super().__init__(clean(message))


class PresetError(WorkbenchError):
    """A preset (built-in, user file or override) is invalid.

    ``problems`` lists every problem found, each already naming its path.
    """

    def __init__(self, problems: list[str], source: str = "preset"):
        self.problems = [clean(p) for p in problems]
        self.source = clean(source)
        if len(self.problems) == 1:  # one problem: one line
            message = f"invalid {self.source}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"invalid {self.source} ({len(self.problems)} problems):\n{lines}"
        Exception.__init__(self, message)  # its parts are cleaned already: cutting again would miscount

    def __reduce__(self):  # pickles (Dask moves errors between processes) with its fields
        return type(self), (self.problems, self.source)


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


class StoreError(WorkbenchError):
    """A run's ``store.sqlite`` is empty, truncated or corrupt; it is never rewritten."""
