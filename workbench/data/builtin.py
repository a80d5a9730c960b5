"""Built-in datasets: produced by the package or shipped offline, never downloaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .catalog import Dataset, register_dataset


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(data, target)`` as ``sklearn.datasets.load_digits`` returns them (float64 pixels
    0-16, int labels), read from the file scikit-learn ships, without importing it.

    Importing ``sklearn.datasets`` costs 1.5 s of CPU (scipy) in every process that loads
    the data: the driver and each worker, at the start of every run; reading the 57 KB
    file takes milliseconds. ``tests/workbench/test_data_split.py`` checks the arrays
    against ``load_digits`` itself.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    path = (Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
            if spec is not None and spec.submodule_search_locations else None)
    if path is None or not path.is_file():
        raise DataError("dataset 'digits' is read from scikit-learn's bundled copy, which is not installed: "
                        "pip install scikit-learn")
    with gzip.open(path, mode="rt", encoding="utf-8") as fh:
        data = np.loadtxt(fh, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int, copy=False)


@register_dataset("digits", "images", "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)")
def _digits(seed: int) -> Dataset:
    import pandas as pd

    pixels, target = digits_arrays()
    frame = pd.DataFrame(pixels, columns=[f"px{i}" for i in range(pixels.shape[1])])
    frame["label"] = target
    return Dataset(name="digits", kind="images", frame=frame, target="label",
                   meta={"image_shape": (1, 8, 8), "n_classes": 10},
                   description="scikit-learn digits")




def _environment(name: str, env_id: str) -> None:
    @register_dataset(name, "environment", f"gymnasium {env_id}: transitions collected by the model")
    def _load(seed: int) -> Dataset:
        return Dataset(name=name, kind="environment", meta={"env_id": env_id},
                       description=f"gymnasium {env_id}")


_environment("cartpole", "CartPole-v1")
_environment("pendulum", "Pendulum-v1")


def _game(name: str, title: str) -> None:
    @register_dataset(name, "game", f"{title}: rules in workbench.models.alpha, data from self-play")
    def _load(seed: int) -> Dataset:
        return Dataset(name=name, kind="game", meta={"game": name}, description=title)


_game("tictactoe", "tic-tac-toe")
_game("connect4", "Connect Four")


def _sem(name: str, kind_of_sem: str, description: str) -> None:
    @register_dataset(name, "tabular", description)
    def _load(seed: int) -> Dataset:
        from .sem import sem_dataset

        return sem_dataset(name=name, sem_type=kind_of_sem, seed=seed)


_sem("sem_linear", "linear", "linear-Gaussian SEM on a random Erdos-Renyi DAG (d=20, ER2, n=1000), known truth")
_sem("sem_nonlinear", "nonlinear", "nonlinear (MLP) SEM on a random Erdos-Renyi DAG (d=10, ER2, n=1000), known truth")
