"""From continuous weights to a guaranteed DAG, and how to score a graph against the truth.

A continuous optimiser only drives the acyclicity penalty *towards* zero, so a
thresholded weight matrix can still hold a weak cycle. :func:`to_dag` removes, one at a
time, the weakest edge that lies on a cycle until a topological sort succeeds; edges
outside cycles are never touched, so a graph that is already acyclic is returned as is.
"""
from __future__ import annotations

import numpy as np

from ._effects import topological_order

__all__ = ["is_dag", "to_dag", "graph_metrics", "read_graph_csv"]


def is_dag(adjacency: np.ndarray) -> bool:
    """True when ``adjacency`` (``[i, j] != 0`` for ``i -> j``) has no directed cycle."""
    try:
        topological_order(adjacency)
    except ValueError:
        return False
    return True


def _reachability(edges: np.ndarray) -> np.ndarray:
    """``reach[i, j]``: a directed path ``i -> ... -> j`` of length >= 1 exists (Warshall)."""
    reach = edges.copy()
    for k in range(len(edges)):
        reach |= np.outer(reach[:, k], reach[k, :])
    return reach


def to_dag(weights: np.ndarray, threshold: float) -> np.ndarray:
    """Weighted adjacency of a DAG: ``|w| > threshold`` kept, then weakest cycle edges dropped.

    The result is checked by topological sort, so callers can rely on it being acyclic.
    """
    w = np.where(np.abs(weights) > threshold, weights, 0.0).astype(float)
    np.fill_diagonal(w, 0.0)
    while not is_dag(w):
        edges = w != 0
        on_cycle = edges & _reachability(edges).T  # i -> j lies on a cycle iff j reaches i
        strength = np.where(on_cycle, np.abs(w), np.inf)
        i, j = np.unravel_index(np.argmin(strength), w.shape)
        w[i, j] = 0.0
    return w


def graph_metrics(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """SHD, TPR, FDR and edge count of an estimated DAG (NOTEARS' ``count_accuracy``).

    SHD counts missing, extra and reversed edges, a reversed edge once. TPR is the share
    of true edges found with the right direction; FDR the share of predicted edges that
    are absent or reversed in the truth. A rectangular (bipartite) mask is scored
    edge by edge.
    """
    est, true = np.asarray(estimate) != 0, np.asarray(truth) != 0
    n_true = int(true.sum())
    n_pred = int(est.sum())
    correct = int((est & true).sum())
    if est.shape[0] != est.shape[1]:  # bipartite (inputs x outputs): no edge can be reversed
        wrong = int((est & ~true).sum())
        return {"shd": float(wrong + int((true & ~est).sum())), "tpr": correct / max(n_true, 1),
                "fdr": wrong / max(n_pred, 1), "nnz": float(n_pred)}
    reversed_ = int((est & true.T & ~true).sum())
    false_pos = int((est & ~true & ~true.T).sum())
    est_und, true_und = est | est.T, true | true.T
    extra = int(np.triu(est_und & ~true_und).sum())
    missing = int(np.triu(true_und & ~est_und).sum())
    return {
        "shd": float(extra + missing + reversed_),
        "tpr": correct / max(n_true, 1),
        "fdr": (reversed_ + false_pos) / max(n_pred, 1),
        "nnz": float(n_pred),
    }


def read_graph_csv(path: str, names: list[str]) -> np.ndarray:
    """A known graph over ``names`` from a CSV file, as a 0/1 adjacency (``[i, j]`` for ``i -> j``).

    Two layouts are read: a square adjacency with the variable names as header and first
    column (rows cause, columns effect; any non-zero cell is an edge; the layout of the
    ``graph.csv`` a run writes), or an edge list with columns ``cause`` and ``effect``.
    """
    import pandas as pd

    from ...errors import DataError

    hint = "(a square adjacency with names as header and first column, or columns cause,effect)"
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for unreadable files
        raise DataError(f"true_graph: cannot read {path}: {exc}") from None
    index = {n: i for i, n in enumerate(names)}
    truth = np.zeros((len(names), len(names)))
    if {"cause", "effect"} <= set(frame.columns):
        pairs = [(str(c), str(e)) for c, e in zip(frame["cause"], frame["effect"])]
    else:
        frame = frame.set_index(frame.columns[0])
        frame.index = frame.index.map(str)
        if sorted(frame.index) != sorted(map(str, frame.columns)):
            raise DataError(f"true_graph: {path} is neither a square adjacency nor an edge list {hint}")
        pairs = [(i, j) for i in frame.index for j in frame.columns if frame.at[i, j] != 0]
    unknown = sorted({n for pair in pairs for n in pair if n not in index})
    if unknown:
        raise DataError(f"true_graph: {path} names variables the data lacks: {unknown}; the data's columns "
                        f"are {names}")
    for cause, effect in pairs:
        truth[index[cause], index[effect]] = 1.0
    if not is_dag(truth):
        raise DataError(f"true_graph: the graph in {path} has a directed cycle; a causal DAG cannot")
    return truth
