"""Built-in datasets: produced by the package or shipped offline, never downloaded."""
from __future__ import annotations

from .catalog import Dataset, register_dataset


@register_dataset("digits", "images", "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)")
def _digits(seed: int) -> Dataset:
    import pandas as pd
    from sklearn.datasets import load_digits

    bunch = load_digits()
    frame = pd.DataFrame(bunch.data, columns=[f"px{i}" for i in range(bunch.data.shape[1])])
    frame["label"] = bunch.target
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
