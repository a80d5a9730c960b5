"""Shuffled train/test splits, index for index those of scikit-learn's ``train_test_split``.

``prepare`` splits every labelled dataset at the start of a run, in the driver and again
in each worker. Importing ``sklearn.model_selection`` for it cost 1.5-1.9 s of CPU per
process (it pulls in scipy), more than the split itself by a factor of a thousand, on the
critical path of every short run. This module draws the same random numbers in the same
order as scikit-learn 1.x (``ShuffleSplit`` and ``StratifiedShuffleSplit`` seeded with
``numpy.random.RandomState(seed)``), so runs keep their splits, and replays of runs made
before it theirs; ``tests/workbench/test_data_split.py`` compares the two whenever
scikit-learn is importable.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError

__all__ = ["train_test_split_indices"]


def _sizes(n_samples: int, test_size: float) -> tuple[int, int]:
    """(n_train, n_test) for a fractional ``test_size``, as scikit-learn rounds them."""
    if not 0 < test_size < 1:
        raise DataError(f"test_size={test_size} must be a fraction in (0, 1)")
    n_test = math.ceil(test_size * n_samples)
    n_train = n_samples - n_test
    if n_train <= 0:
        raise DataError(f"{n_samples} rows leave no training row with test_size={test_size}; "
                        "use a dataset with more rows")
    return n_train, n_test


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Rows drawn per class: the floored proportional share, the remainder handed out by
    largest fractional part, ties broken at random (``sklearn.utils.extmath._approximate_mode``)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _stratified(y: np.ndarray, n_train: int, n_test: int,
                rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    if class_counts.min() < 2:
        raise DataError("a class has a single row: a stratified split needs at least 2 rows per class")
    if n_train < len(classes) or n_test < len(classes):
        raise DataError(f"a split of {n_train} training and {n_test} test rows cannot hold each of the "
                        f"{len(classes)} classes; use a dataset with more rows")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[np.integer] = []
    test: list[np.integer] = []
    for i in range(len(classes)):
        permutation = rng.permutation(class_counts[i])
        members = class_indices[i].take(permutation, mode="clip")
        train.extend(members[:n_i[i]])
        test.extend(members[n_i[i]:n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def train_test_split_indices(indices: np.ndarray, test_size: float, seed: int,
                             stratify: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` subsets of ``indices``: what ``train_test_split(indices,
    test_size=test_size, random_state=seed, stratify=stratify)`` returns.

    ``stratify``: one label per index (each class keeps its share in both parts), or None
    for a plain shuffle. Raises :class:`DataError` when the rows cannot be split so.
    """
    indices = np.asarray(indices)
    n_train, n_test = _sizes(len(indices), test_size)
    rng = np.random.RandomState(seed)
    if stratify is None:
        permutation = rng.permutation(len(indices))
        test, train = permutation[:n_test], permutation[n_test:n_test + n_train]
    else:
        train, test = _stratified(np.asarray(stratify), n_train, n_test, rng)
    return indices[train], indices[test]
