"""Where each model of a resumed run starts, decided before any worker starts.

Resume restores models coupled by knowledge (or a controller) from one common epoch
(:func:`workbench._policy.resume_epochs`). This module feeds that rule the epochs whose
checkpoint really *loads* (a file can match its checksum and still not unpickle), and
refuses what would change results without a word:

* a model that has checkpoint files, none of which loads, would start over at epoch 0 (and
  drag its coupled peers back with it): it is refused, naming the model and the way out,
  ``--allow-restart MODEL`` (``resume_run(..., allow_restart=[...])``); an allowed model
  leaves the common epoch to the others and starts at 0, and an event says so;
* every model resumed from an epoch older than its newest checkpoint file gets a
  ``checkpoint_fallback`` event and a printed warning saying which files were passed over
  and why.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._policy import resume_epochs
from .checkpoint import DiskSaver
from .errors import CheckpointError, WorkbenchError

__all__ = ["RestorePlan", "plan_restore", "knowledge_links"]


@dataclasses.dataclass(frozen=True)
class RestorePlan:
    """``starts``: model or controller -> the epoch it resumes from (0: from scratch);
    ``fallbacks``: one ``checkpoint_fallback`` payload per model resumed from an older
    epoch than its newest file (``restart`` true for an allowed restart from 0)."""

    starts: Mapping[str, int]
    fallbacks: tuple[dict[str, Any], ...] = ()

    def lines(self) -> list[str]:
        """One printable line per fallback."""
        out = []
        for f in self.fallbacks:
            passed = ", ".join(f"epoch {e} ({why})" for e, why in sorted(f["skipped"].items(), key=lambda x: int(x[0])))
            what = "restarts from epoch 0 (--allow-restart)" if f["restart"] else f"resumes from epoch {f['epoch']}"
            out.append(f"{f['model']} {what}; passed over: {passed}")
        return out


def _loadable(saver: DiskSaver, name: str) -> tuple[list[int], dict[int, str]]:
    """Epochs whose checkpoint loads, and why each other file does not."""
    good, bad = [], {}
    for path in saver.list(name):
        epoch = int(path.stem.split("_")[1])
        try:
            saver.load(path)
        except CheckpointError:
            bad[epoch] = "checksum mismatch"
        except Exception as exc:  # matches its checksum, yet torch cannot read it
            bad[epoch] = f"cannot be loaded: {type(exc).__name__}"
        else:
            good.append(epoch)
    return good, bad


def knowledge_links(run_dir: Path) -> list[tuple[str, str]]:
    """(consumer, producer) pairs that exchanged knowledge, as the store recorded them."""
    from .store import read_store

    used = read_store(Path(run_dir) / "store.sqlite").events(kind="knowledge")
    return [(row.model, src) for row in used.itertuples()
            for sources in row.payload.get("kinds", {}).values() for src in sources]


def plan_restore(saver: DiskSaver, models: Mapping[str, int], controllers: Iterable[str],
                 links: Iterable[tuple[str, str]] = (), allow_restart: Iterable[str] = ()) -> RestorePlan:
    """The resume epoch of every model (``models``: name -> total epochs) and controller.

    Raises :class:`CheckpointError` (one line) when a model would silently start over, or
    when ``allow_restart`` names a model the run does not have.
    """
    allowed = set(allow_restart)
    unknown = sorted(allowed - set(models))
    if unknown:
        raise WorkbenchError(f"--allow-restart {unknown[0]}: no such model in this run "
                             f"(models: {', '.join(sorted(models))})")
    controllers = list(controllers)
    seen = {name: _loadable(saver, name) for name in [*models, *controllers]}
    kept = {n: t for n, t in models.items() if n not in allowed}
    starts = resume_epochs({n: (seen[n][0], t) for n, t in kept.items()},
                           {c: seen[c][0] for c in controllers}, list(links))
    starts.update({n: 0 for n in allowed})
    # Controllers decide the first round again from the state they had entering it.
    starts.update({c: min(starts.values(), default=0) for c in controllers})
    # Every file unusable: resuming would silently start it over (and, coupled, its peers).
    # A model that never reached a checkpoint is no loss: coupled peers start over with it,
    # reported below as fallbacks, as the uninterrupted run would have it.
    broken = [n for n in kept if seen[n][1] and not seen[n][0]]
    if broken:
        why = "; ".join(_why(n, *seen[n]) for n in broken)
        flags = " ".join(f"--allow-restart {n}" for n in broken)
        raise CheckpointError(f"cannot resume consistently: {why}; restart {'it' if len(broken) == 1 else 'them'} "
                              f"from epoch 0 with {flags}, or put back valid checkpoint files")
    fallbacks = []
    for name in [*models, *controllers]:
        good, bad = seen[name]
        used = max((e for e in good if e <= starts[name]), default=0)
        newer = {e: bad.get(e, "kept back to a common epoch with its peers") for e in [*good, *bad] if e > used}
        if newer:
            fallbacks.append({"model": name, "epoch": used, "restart": name in allowed,
                              "skipped": {str(e): why for e, why in sorted(newer.items())}})
    return RestorePlan(starts, tuple(fallbacks))


def _why(name: str, good: list[int], bad: dict[int, str]) -> str:
    files = ", ".join(f"epoch {e}: {why}" for e, why in sorted(bad.items()))
    return f"{name} has no loadable checkpoint ({files})"
