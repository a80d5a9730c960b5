"""The digits data and the train/valid/test split without scikit-learn, bit for bit as with it."""
import subprocess
import sys

import numpy as np
import pytest

from workbench.data import load_dataset, prepare
from workbench.data.builtin import digits_arrays
from workbench.data.split import train_test_split_indices
from workbench.errors import DataError


def test_loading_and_preparing_digits_imports_no_sklearn():
    code = ("import sys; from workbench.data import load_dataset, prepare; "
            "d, _ = prepare(load_dataset('digits', 0), 0); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')); "
            "print(bad[:5], d.arrays['X_train'].shape); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_digits_arrays_are_load_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    data, target = digits_arrays()
    assert data.dtype == bunch.data.dtype and target.dtype == bunch.target.dtype
    np.testing.assert_array_equal(data, bunch.data)
    np.testing.assert_array_equal(target, bunch.target)


def _labels(kind: str, rng: np.random.RandomState) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "balanced":
        return np.repeat(np.arange(4), 25)
    if kind == "skewed":  # remainders tie between classes: the random tie-break must match
        return rng.permutation(np.array([0] * 7 + [1] * 7 + [2] * 13 + [3] * 3 + [4] * 50))
    return rng.randint(0, 6, size=97)  # random counts, then the unused draws in the split


@pytest.mark.parametrize("kind", ["none", "balanced", "skewed", "random"])
@pytest.mark.parametrize("seed", [0, 1, 7, 12345, 2**32 - 1])
@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.33])
def test_split_is_sklearns(kind, seed, test_size):
    model_selection = pytest.importorskip("sklearn.model_selection")
    rng = np.random.RandomState(seed % 1000)
    y = _labels(kind, rng)
    n = 100 if y is None else len(y)
    idx = np.arange(n) * 3 + 5  # not 0..n-1: the split returns rows of what it is given
    want_train, want_test = model_selection.train_test_split(idx, test_size=test_size, random_state=seed,
                                                             stratify=y)
    train, test = train_test_split_indices(idx, test_size, seed, y)
    np.testing.assert_array_equal(train, want_train)
    np.testing.assert_array_equal(test, want_test)
    assert train.dtype == want_train.dtype


def _prepare_with_sklearn(raw, seed):
    """prepare() as it was written with scikit-learn's train_test_split."""
    from sklearn.model_selection import train_test_split

    frame = raw.frame
    features = [c for c in frame.columns if c != raw.target]
    x = frame[features].to_numpy(dtype=np.float64)
    _, y = np.unique(frame[raw.target].to_numpy(), return_inverse=True)
    stratify = y if np.bincount(y).min() >= 3 else None
    rest, test = train_test_split(np.arange(len(x)), test_size=0.2, random_state=seed, stratify=stratify)
    train, valid = train_test_split(rest, test_size=0.2 / (1 - 0.2), random_state=seed,
                                    stratify=y[rest] if stratify is not None else None)
    return train, valid, test


@pytest.mark.parametrize("seed", [0, 3, 42])
def test_prepared_digits_are_as_with_sklearn(seed):
    pytest.importorskip("sklearn.model_selection")
    raw = load_dataset("digits", seed)
    prepared, pre = prepare(raw, seed)
    train, valid, test = _prepare_with_sklearn(raw, seed)
    x = raw.frame.drop(columns="label").to_numpy(dtype=np.float64)
    labels = raw.frame["label"].to_numpy()
    for split, ids in (("train", train), ("valid", valid), ("test", test)):
        np.testing.assert_array_equal(prepared.arrays[f"y_{split}"], labels[ids])
        np.testing.assert_array_equal(prepared.arrays[f"X_{split}"], pre.transform(x[ids]))
    # the fitted scaling comes from exactly the training rows
    np.testing.assert_array_equal(np.asarray(pre.means), x[train].mean(axis=0))


def test_a_split_that_cannot_hold_every_class_is_one_clear_error():
    y = np.repeat(np.arange(5), 2)
    with pytest.raises(DataError, match="cannot hold each of the 5 classes"):
        train_test_split_indices(np.arange(10), 0.2, 0, y)
    with pytest.raises(DataError, match="single row"):
        train_test_split_indices(np.arange(4), 0.5, 0, np.array([0, 0, 0, 1]))
    with pytest.raises(DataError, match="fraction"):
        train_test_split_indices(np.arange(10), 1.5, 0)
