"""Structural equation models with known truth: random DAGs, linear and MLP mechanisms.

These produce the built-in ``sem_linear`` and ``sem_nonlinear`` datasets. Because the true
graph and mechanisms are kept in ``meta``, a fit can be scored (SHD, TPR, FDR) and
interventional queries answered by the fitted equations can be compared with the truth.
The data layer owns the sampler and the ancestral sampling it needs; the causal model
imports them from here, never the reverse (the data layer imports no model package).

The generators follow the NOTEARS / DAGMA benchmark protocol: an Erdos-Renyi DAG with
``k * d`` expected edges (ER``k``), edge weights drawn from ``U([-2, -0.5] u [0.5, 2])``,
additive standard Gaussian noise of equal variance (identifiable), and for the nonlinear
SEM one random one-hidden-layer sigmoid MLP per node (100 hidden units).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .catalog import Dataset

__all__ = ["random_dag", "random_weights", "TrueSEM", "sem_dataset", "topological_order", "interventional_mean",
           "interventional_effect"]

Mechanism = Callable[[int, np.ndarray], np.ndarray]


def topological_order(adjacency: np.ndarray) -> list[int]:
    """Kahn's algorithm on ``adjacency[i, j] != 0`` (``i -> j``); raises ``ValueError`` on a cycle."""
    a = np.asarray(adjacency) != 0
    indegree = a.sum(axis=0).astype(int)
    ready = sorted(int(j) for j in np.flatnonzero(indegree == 0))
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in np.flatnonzero(a[i]):
            indegree[j] -= 1
            if indegree[j] == 0:
                ready.append(int(j))
    if len(order) != len(a):
        raise ValueError("graph has a cycle: no topological order")
    return order


def interventional_mean(mechanism: Mechanism, order: Sequence[int], noise: np.ndarray,
                        do: Mapping[int, float]) -> np.ndarray:
    """Mean of every node under ``do`` by ancestral sampling with the given noise rows."""
    x = np.zeros_like(noise, dtype=float)
    for j in order:
        x[:, j] = do[j] if j in do else mechanism(j, x) + noise[:, j]
    return x.mean(axis=0)


def interventional_effect(mechanism: Mechanism, order: Sequence[int], noise: np.ndarray,
                          do: Mapping[int, float], target: int) -> float:
    """``E[x_target | do] - E[x_target]`` with common random numbers."""
    treated = interventional_mean(mechanism, order, noise, do)
    baseline = interventional_mean(mechanism, order, noise, {})
    return float(treated[target] - baseline[target])



def random_dag(d: int, edges_per_node: float, rng: np.random.Generator) -> np.ndarray:
    """Adjacency (0/1, ``B[i, j] = 1`` for ``i -> j``) of an Erdos-Renyi DAG with ``k*d`` expected edges."""
    p = min(1.0, 2.0 * edges_per_node / max(d - 1, 1))
    lower = np.tril((rng.random((d, d)) < p).astype(float), k=-1)
    perm = rng.permutation(d)  # hide the causal order from column position
    return lower[np.ix_(perm, perm)].T


def random_weights(shape: tuple[int, ...], rng: np.random.Generator, low: float = 0.5,
                   high: float = 2.0) -> np.ndarray:
    """Magnitudes in ``[low, high]`` with random signs (keeps every edge detectable)."""
    return rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)


class TrueSEM:
    """A sampled ground-truth SEM ``x_j = f_j(pa_j) + e_j`` with ``e_j ~ N(0, 1)``.

    ``kind`` is ``"linear"`` (``f_j = x @ W[:, j]``) or ``"nonlinear"``
    (``f_j = sigmoid(x_pa @ W1_j) @ W2_j``).
    """

    def __init__(self, d: int, kind: str, rng: np.random.Generator, edges_per_node: float = 2.0,
                 hidden: int = 100) -> None:
        if kind not in ("linear", "nonlinear"):
            raise ValueError(f"sem kind must be 'linear' or 'nonlinear', got {kind!r}")
        self.d, self.kind = d, kind
        self.adjacency = random_dag(d, edges_per_node, rng)
        self.weights = self.adjacency * random_weights((d, d), rng)
        self.order = topological_order(self.adjacency)
        self.mechanisms: list[dict[str, Any]] = []
        for j in range(d):
            parents = [int(i) for i in np.flatnonzero(self.adjacency[:, j])]
            mech: dict[str, Any] = {"parents": parents}
            if kind == "nonlinear" and parents:
                mech["W1"] = random_weights((len(parents), hidden), rng)
                mech["W2"] = random_weights((hidden,), rng)
            self.mechanisms.append(mech)

    def mechanism(self, j: int, x: np.ndarray) -> np.ndarray:
        """Deterministic part of node ``j``'s equation, evaluated on the rows of ``x``."""
        mech = self.mechanisms[j]
        if not mech["parents"]:
            return np.zeros(len(x))
        if self.kind == "linear":
            return x @ self.weights[:, j]
        hidden = 1.0 / (1.0 + np.exp(-(x[:, mech["parents"]] @ mech["W1"])))
        return hidden @ mech["W2"]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((n, self.d))
        x = np.zeros((n, self.d))
        for j in self.order:
            x[:, j] = self.mechanism(j, x) + noise[:, j]
        return x

    def effect(self, do: dict[int, float], target: int, noise: np.ndarray) -> float:
        """True ``E[x_target | do] - E[x_target]`` with common random ``noise``."""
        return interventional_effect(self.mechanism, self.order, noise, do, target)

    def to_meta(self) -> dict[str, Any]:
        """JSON-able description (lists only), enough to rebuild the mechanisms."""
        mechs = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in m.items()}
                 for m in self.mechanisms]
        return {"adjacency": self.adjacency.astype(int).tolist(), "weights": self.weights.tolist(),
                "sem_type": self.kind, "noise_scale": 1.0, "mechanisms": mechs}


def _effect_queries(sem: TrueSEM, x: np.ndarray, rng: np.random.Generator, n_queries: int,
                    n_mc: int) -> list[dict[str, Any]]:
    """Pick ancestor -> descendant pairs with a clear effect and compute their true value.

    The intervention moves the cause one standard deviation above its mean, so the
    queries stay in the range the data covers (a fitted MLP cannot extrapolate).
    """
    reach = sem.adjacency.astype(bool)
    for _ in range(sem.d):
        reach = reach | ((reach.astype(int) @ sem.adjacency) > 0)
    pairs = [(int(i), int(j)) for i, j in zip(*np.nonzero(reach))]
    rng.shuffle(pairs)
    noise = rng.standard_normal((n_mc, sem.d))
    baseline = interventional_mean(sem.mechanism, sem.order, noise, {})
    treated: dict[int, np.ndarray] = {}  # one pass per cause answers every target
    queries = []
    for i, j in pairs:
        value = float(x[:, i].mean() + x[:, i].std())
        if i not in treated:
            treated[i] = interventional_mean(sem.mechanism, sem.order, noise, {i: value})
        true = float(treated[i][j] - baseline[j])
        if abs(true) >= 0.2 * x[:, j].std():  # tiny effects make relative errors meaningless
            queries.append({"do": {f"x{i}": value}, "target": f"x{j}", "effect": true})
        if len(queries) == n_queries:
            break
    return queries


def sem_dataset(name: str, sem_type: str, seed: int, d: int | None = None, n: int = 1000,
                edges_per_node: float = 2.0, n_queries: int = 5, n_mc: int = 10000) -> Dataset:
    """A tabular :class:`workbench.data.Dataset` sampled from a random SEM with known truth.

    ``meta`` holds ``adjacency`` and ``weights`` (lists of lists, ``[i][j]`` for ``i -> j``),
    ``sem_type``, the ``mechanisms`` and ``effect_queries``: a few interventions
    ``{"do": {"x3": v}, "target": "x7", "effect": E[x7 | do(x3=v)] - E[x7]}`` computed on
    the true SEM (Monte Carlo with common random numbers for the nonlinear one).
    """
    import pandas as pd

    if d is None:
        d = 20 if sem_type == "linear" else 10
    rng = np.random.default_rng(seed)
    sem = TrueSEM(d, sem_type, rng, edges_per_node=edges_per_node)
    x = sem.sample(n, rng)
    meta = sem.to_meta()
    meta["effect_queries"] = _effect_queries(sem, x, rng, n_queries, n_mc)
    frame = pd.DataFrame(x, columns=[f"x{j}" for j in range(d)])
    return Dataset(name=name, kind="tabular", frame=frame, meta=meta,
                   description=f"{sem_type} SEM, ER{edges_per_node:g}, d={d}, n={n}, seed={seed}")
