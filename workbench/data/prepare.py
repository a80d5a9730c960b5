"""Preprocessing fitted on the training split only, saved with the run so it replays.

Split (stratified when there is a label), impute medians, standardise. The fitted
parameters are a JSON-able dict (``Preprocessing.to_dict``) written to the run directory.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .catalog import Dataset
from .quality import require_usable
from .split import train_test_split_indices

__all__ = ["Preprocessing", "load_prepared", "prepare"]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    columns: tuple[str, ...]
    medians: tuple[float, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    split_seed: int
    test_size: float
    valid_size: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).copy()
        nan = np.isnan(x)
        if nan.any():
            x[nan] = np.take(np.asarray(self.medians), np.nonzero(nan)[1])
        return ((x - np.asarray(self.means)) / np.asarray(self.scales)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fit(cls, x_train: np.ndarray, columns: list[str], split_seed: int, test_size: float,
            valid_size: float) -> "Preprocessing":
        medians = np.nanmedian(x_train, axis=0)
        medians = np.where(np.isnan(medians), 0.0, medians)
        filled = np.where(np.isnan(x_train), medians, x_train)
        means = filled.mean(axis=0)
        scales = filled.std(axis=0)
        scales = np.where(scales < 1e-8, 1.0, scales)
        return cls(tuple(columns), tuple(map(float, medians)), tuple(map(float, means)),
                   tuple(map(float, scales)), split_seed, test_size, valid_size)


def prepare(dataset: Dataset, seed: int = 0, test_size: float = 0.2,
            valid_size: float = 0.2) -> tuple[Dataset, Preprocessing | None]:
    """Return the dataset with ``arrays`` filled (labelled kinds) and the fitted preprocessing.

    Kinds without a table (environment, game) and unlabelled tables pass through unchanged:
    their trainers produce or split data themselves.
    """
    if dataset.frame is not None:
        require_usable(dataset)  # text columns, too few rows, inf, missing labels: named, before any split
    if dataset.frame is None or dataset.target is None:
        return dataset, None
    frame = dataset.frame
    features = [c for c in frame.columns if c != dataset.target]
    x = frame[features].to_numpy(dtype=np.float64)
    y_raw = frame[dataset.target].to_numpy()
    classes, y = np.unique(y_raw, return_inverse=True)
    counts = np.bincount(y)
    stratify = y if counts.min() >= 3 else None
    idx = np.arange(len(x))
    rest, test = train_test_split_indices(idx, test_size, seed, stratify)
    strat_rest = y[rest] if stratify is not None else None
    train, valid = train_test_split_indices(rest, valid_size / (1 - test_size), seed, strat_rest)
    pre = Preprocessing.fit(x[train], features, seed, test_size, valid_size)
    arrays = {}
    for split, ids in (("train", train), ("valid", valid), ("test", test)):
        arrays[f"X_{split}"] = pre.transform(x[ids])
        arrays[f"y_{split}"] = y[ids].astype(np.int64)
    meta = dict(dataset.meta)
    meta.setdefault("n_classes", int(len(classes)))
    meta["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
    return dataclasses.replace(dataset, arrays=arrays, meta=meta), pre


def load_prepared(name: str, seed: int, path: str | None = None,
                  target: str | None = None) -> tuple[Dataset, Preprocessing | None]:
    """A plan's dataset as its trainers get it: the catalog's ``name`` (or the user's file at
    ``path``) loaded and prepared with the run's ``seed``."""
    from .catalog import load_dataset, user_dataset

    raw = user_dataset(name, path, target) if path else load_dataset(name, seed)
    return prepare(raw, seed)
