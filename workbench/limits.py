"""Upper bounds on what a user may ask for, and the check of a folder a run will write to.

Every limit sits far above a sensible run on one machine or a small cluster and far
below what breaks one: a population of a million trainers is 6.4 GB of state before the
first step, ``epochs: 10**18`` never ends, a 100 KB key floods every message that names
it. ``docs/engine.md`` ("Bad input") lists them; presets, plans and the CLI enforce them.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

__all__ = ["MAX_EPOCHS", "MAX_POPULATION", "MAX_TRAINERS", "MAX_WORKERS", "MAX_PARALLEL_JOBS", "MAX_BATCH_SIZE",
           "MAX_FAILURES", "MAX_SEGMENT_TIMEOUT", "MAX_SEED", "MAX_KEY_LENGTH", "MAX_DEPTH", "MIN_ROWS", "structure_problems",
           "check_writable_dir"]

MAX_EPOCHS = 100_000
MAX_POPULATION = 64  # members of one model's population
MAX_TRAINERS = 256  # trainer instances in one run: every model, dataset and population member
MAX_WORKERS = 256  # local Dask workers
MAX_PARALLEL_JOBS = 64  # notebooks `workbench batch` executes at once
MAX_BATCH_SIZE = 1_000_000
MAX_FAILURES = 1_000
MAX_SEGMENT_TIMEOUT = 7 * 24 * 3600  # seconds: a week
MAX_SEED = 2**32 - 1  # numpy and scikit-learn take seeds in [0, 2**32)
MAX_KEY_LENGTH = 100  # characters of a preset key or a --set key
MAX_DEPTH = 16  # objects and lists nested in a preset (the built-in ones use 5)
MIN_ROWS = 10  # a labelled table smaller than this cannot be split into train, valid and test


def structure_problems(value: Any, source: str) -> list[str]:
    """Nesting deeper than :data:`MAX_DEPTH` and keys longer than :data:`MAX_KEY_LENGTH`.

    Iterative, so a hostile document cannot exhaust the interpreter's stack here.
    """
    problems: list[str] = []
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            return problems + [f"{source}: nested more than {MAX_DEPTH} levels deep; flatten it"]
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict):
            for key in node:
                if len(key) > MAX_KEY_LENGTH:
                    problems.append(f"{source}: a key of {len(key)} characters ('{key[:40]}...'); "
                                    f"keys have at most {MAX_KEY_LENGTH}")
        stack.extend((child, depth + 1) for child in children)
    return problems


def check_writable_dir(path: str | Path, what: str) -> Path:
    """Make sure ``path`` is (or can become) a folder this process can write, creating nothing.

    Raises :class:`WorkbenchError` naming ``what`` (e.g. ``"--runs-dir"``) when ``path`` is
    a file, sits under a file, or is read-only. Called before a cluster starts, so such a
    mistake costs no worker start-up and leaves nothing behind.
    """
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise WorkbenchError(f"{what} {path} {where}; give a folder")
    try:  # os.access says yes to root on read-only mounts: a real probe is the only sure test
        os.rmdir(tempfile.mkdtemp(prefix=".workbench-probe-", dir=existing))
    except OSError as exc:
        raise WorkbenchError(f"{what} {path} is not writable ({exc.strerror or exc}); "
                             f"give a folder you can write to") from None
    return path
