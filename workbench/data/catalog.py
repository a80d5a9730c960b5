"""The dataset catalog: named datasets with kinds, built-in or from the user's files.

Kinds (what trainers declare in ``accepts``):

- ``images``: labelled images, arrays ``X_*`` of shape (n, C*H*W) plus ``meta["image_shape"]``
- ``labelled_tabular``: a table with a target column
- ``tabular``: a table without target (causal discovery; ``meta`` may hold the true graph)
- ``environment``: a gymnasium environment id in ``meta["env_id"]`` (data is collected)
- ``game``: a board game name in ``meta["game"]`` (data comes from self-play)

Datasets come from three places: the built-ins, a preset's ``data`` (the user's CSV or
Parquet files), and other packages through the entry-point group ``workbench.datasets``.

The plugin contract: a loader ``load(seed: int) -> Dataset``, decorated with
:func:`register_dataset` (which records its kind and description), named by an entry
point. Installing the package is enough: the CLI, the panel, presets and every worker
find it by the entry point's name::

    # my_pkg/data.py
    from workbench.data import Dataset, register_dataset

    @register_dataset("sales", "labelled_tabular", "weekly sales by store")
    def load_sales(seed: int) -> Dataset:
        frame = pandas.read_parquet(importlib.resources.files("my_pkg") / "sales.parquet")
        return Dataset(name="sales", kind="labelled_tabular", frame=frame, target="bought")

    # pyproject.toml of my_pkg
    [project.entry-points."workbench.datasets"]
    sales = "my_pkg.data:load_sales"

The loader runs on the workers (once per worker process and seed): ship the data inside
the package, or read it from storage every worker mounts. What it returns is checked:
a :class:`Dataset` of the declared kind, and for ``labelled_tabular`` and ``images`` a
``frame`` holding the ``target`` column.
"""
from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..registry import PluginWarning

__all__ = ["Dataset", "KINDS", "ENTRY_POINT_GROUP", "register_dataset", "list_datasets", "load_dataset",
           "user_dataset"]

KINDS = ("images", "labelled_tabular", "tabular", "environment", "game")
ENTRY_POINT_GROUP = "workbench.datasets"
_LABELLED = ("labelled_tabular", "images")


@dataclasses.dataclass
class Dataset:
    """A dataset as trainers receive it.

    ``frame`` is the raw table (tabular kinds); ``arrays`` holds the preprocessed splits
    (``X_train``, ``y_train``, ``X_valid``, ``y_valid``, ``X_test``, ``y_test``) fitted on
    the training split only; ``meta`` carries kind-specific facts (``env_id``, ``game``,
    ``image_shape``, ``adjacency`` of a known causal graph, ...).
    """

    name: str
    kind: str
    description: str = ""
    frame: Any = None  # pandas.DataFrame | None
    target: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    arrays: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "builtin"


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    kind: str
    loader: Callable[[int], Dataset]
    description: str


_CATALOG: dict[str, _Entry] = {}


def register_dataset(name: str, kind: str, description: str = ""):
    """Decorator registering ``loader(seed) -> Dataset`` under ``name``.

    The kind and description are also kept on the loader (``loader.dataset_kind``,
    ``loader.dataset_description``), so an entry point naming it registers it under the
    entry point's name.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {KINDS}")

    def decorate(loader: Callable[[int], Dataset]) -> Callable[[int], Dataset]:
        _CATALOG[name] = _Entry(name, kind, loader, description)
        loader.dataset_kind, loader.dataset_description = kind, description  # type: ignore[attr-defined]
        return loader

    return decorate


_plugins_loaded = False


def _load_plugins() -> None:
    """Register the datasets other packages declare in the ``workbench.datasets`` group."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:  # someone else's package: one broken plugin must not take the others (or the CLI) down
            loader = ep.load()
            kind = getattr(loader, "dataset_kind", None)
            if kind is None:
                raise TypeError(f"{ep.value} is not decorated with "
                                "@workbench.data.register_dataset(name, kind, description)")
        except Exception as exc:
            warnings.warn(f"plugin dataset '{ep.name}' ({ep.value}) skipped: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}", PluginWarning, stacklevel=2)
            continue
        if ep.name not in _CATALOG or _CATALOG[ep.name].loader is not loader:
            _CATALOG[ep.name] = _Entry(ep.name, kind, loader, getattr(loader, "dataset_description", ""))


def _ensure_builtins() -> None:
    from . import builtin  # noqa: F401  (registers the built-in datasets)

    _load_plugins()


def list_datasets() -> dict[str, tuple[str, str]]:
    """``{name: (kind, description)}`` for every catalog dataset."""
    _ensure_builtins()
    return {n: (e.kind, e.description) for n, e in sorted(_CATALOG.items())}


def dataset_kind(name: str) -> str:
    _ensure_builtins()
    return _entry(name).kind


def _entry(name: str) -> _Entry:
    _ensure_builtins()
    if name not in _CATALOG:
        close = difflib.get_close_matches(name, list(_CATALOG), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known datasets: {', '.join(sorted(_CATALOG))}"
        raise DataError(f"unknown dataset '{name}'; {hint} (user files go under the preset's 'data' key)")
    return _CATALOG[name]


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """Load a catalog dataset (raw; see :func:`workbench.data.prepare` for splits)."""
    entry = _entry(name)
    return _checked(entry, entry.loader(seed))


def _checked(entry: _Entry, data: Any) -> Dataset:
    """What a loader returned, held to the contract in the module docstring."""
    where = f"dataset '{entry.name}' (loader {getattr(entry.loader, '__module__', '?')}."
    where += f"{getattr(entry.loader, '__qualname__', entry.loader)})"
    if not isinstance(data, Dataset):
        raise DataError(f"{where} returned {type(data).__name__}; a loader must return workbench.data.Dataset")
    if data.kind != entry.kind:
        raise DataError(f"{where} returned kind '{data.kind}' but is registered as '{entry.kind}'")
    if entry.kind in _LABELLED and (data.frame is None or data.target not in getattr(data.frame, "columns", ())):
        raise DataError(f"{where}: a {entry.kind} dataset needs a frame holding its target column "
                        f"(target={data.target!r})")
    return data


def user_dataset(name: str, path: str | Path, target: str | None = None) -> Dataset:
    """A user's CSV or Parquet file (or a folder of them) as a tabular dataset."""
    import pandas as pd

    from .remote import local_path

    path = local_path(path)  # on a worker of an external cluster: its shipped copy
    if not path.exists():
        raise DataError(f"dataset '{name}': file not found: {path} (check the 'path' in the preset's 'data')")
    files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"dataset '{name}': folder {path} holds no .csv or .parquet files")
    frames = []
    for f in files:
        try:
            if f.suffix == ".parquet":
                frames.append(pd.read_parquet(f))
            elif f.suffix == ".csv":
                frames.append(pd.read_csv(f))
            else:
                raise DataError(f"dataset '{name}': {f.name} is neither .csv nor .parquet")
        except DataError:
            raise
        except Exception as exc:  # pandas raises many types for unreadable files
            raise DataError(f"dataset '{name}': cannot read {f}: {exc}") from None
    columns = {tuple(fr.columns) for fr in frames}
    if len(columns) > 1:
        raise DataError(
            f"dataset '{name}': schema mismatch between files of {path}: "
            + " vs ".join(str(list(c)) for c in columns)
        )
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DataError(f"dataset '{name}': {path} holds no rows")
    if target is not None and target not in frame.columns:
        close = difflib.get_close_matches(target, [str(c) for c in frame.columns], n=1)
        hint = f", did you mean '{close[0]}'?" if close else f"; columns: {list(frame.columns)}"
        raise DataError(f"dataset '{name}': target column '{target}' not found{hint}")
    kind = "labelled_tabular" if target else "tabular"
    return Dataset(name=name, kind=kind, frame=frame, target=target, source=str(path),
                   description=f"user file {path}")
