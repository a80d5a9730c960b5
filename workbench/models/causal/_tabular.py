"""Causal discovery on a table: the DAGMA path, the DAG it yields, and its equations.

The table is centred (and scaled when ``standardize``, always for the MLP variant, whose
sigmoid units saturate on raw scales and return the empty graph), the path runs on it, and
the result is read out as a guaranteed DAG. Interventional queries use equations in the
data's original units: for the linear SEM the weights are re-fitted by least squares on
each node's selected parents (removing the L1 shrinkage); for the MLP SEM the fitted
networks are used with the inputs outside the DAG switched off. :meth:`TabularFit.effect_interval`
adds the uncertainty a fit has: a bootstrap over rows with the graph held fixed.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._dagma import DagmaPath, LinearSEM, MLPSEM, acyclicity
from ._effects import StructuralEquations
from ._graph import graph_metrics, is_dag, read_graph_csv, to_dag

__all__ = ["TabularFit", "numeric_table", "SCALE_SPREAD_WARNING"]

SCALE_SPREAD_WARNING = 10.0  # raw columns whose standard deviations differ more than this: say so


def numeric_table(frame: Any) -> tuple[list[str], np.ndarray]:
    """Numeric columns of a DataFrame without missing values, as ``(names, float64 array)``."""
    numeric = frame.select_dtypes(include="number").dropna()
    if numeric.shape[1] < 2 or len(numeric) < 3:
        raise ValueError(f"causal discovery needs >= 2 numeric columns and >= 3 complete rows, "
                         f"got {numeric.shape[1]} columns and {len(numeric)} rows")
    return [str(c) for c in numeric.columns], numeric.to_numpy(dtype=np.float64)


class TabularFit:
    """One structure-learning problem: data, model, path state and the read-out."""

    def __init__(self, frame: Any, meta: dict[str, Any], hp: dict[str, Any], generator: torch.Generator,
                 device: str = "cpu") -> None:
        self.names, self.x = numeric_table(frame)
        self.d = len(self.names)
        self.mean = self.x.mean(axis=0)
        variant = hp["variant"]
        if variant == "auto":
            variant = "mlp" if meta.get("sem_type") == "nonlinear" else "linear"
        self.variant = variant
        self.standardized = bool(hp["standardize"]) or variant == "mlp"
        std = self.x.std(axis=0)
        self.scale = std.copy() if self.standardized else np.ones(self.d)
        self.scale[self.scale == 0] = 1.0
        self.notes: list[str] = []
        spread = float(std.max() / max(std[std > 0].min(), 1e-300)) if (std > 0).any() else 1.0
        if not self.standardized and spread > SCALE_SPREAD_WARNING:
            self.notes.append(f"column standard deviations differ {spread:.0f}-fold: a raw-scale fit depends on the "
                              "units (large-variance columns tend to become effects); set standardize=true when the "
                              "units are arbitrary")
        self.device = torch.device(device)
        z = torch.tensor((self.x - self.mean) / self.scale, device=self.device)
        self.model = LinearSEM(z) if variant == "linear" else MLPSEM(z, hp["hidden"])
        self.path = DagmaPath(self.model, self.model.init_params(generator), hp["stages"], hp["stage_iters"],
                              mu_init=1.0 if variant == "linear" else 0.1)
        truth = meta.get("adjacency")
        self.truth = np.asarray(truth, dtype=float) if truth is not None else None
        if self.truth is not None and self.truth.shape != (self.d, self.d):
            self.truth = None  # a table whose columns differ from the known graph
        if hp.get("true_graph"):  # the user's known graph wins over the dataset's
            self.truth = read_graph_csv(hp["true_graph"], self.names)
        self.queries = [q for q in meta.get("effect_queries", [])
                        if q["target"] in self.names and all(k in self.names for k in q["do"])]
        self.last: dict[str, float] = {"obj": math.nan, "score": math.nan, "h": math.nan}
        self._equations: tuple[float, StructuralEquations] | None = None

    def steps_per_epoch(self, hp: dict[str, Any]) -> int:
        return max(1, math.ceil(self.path.planned_iterations / hp["iters_per_step"] / hp["fit_epochs"]))

    def train_step(self, hp: dict[str, Any]) -> dict[str, float]:
        if not self.path.done:
            self.last = self.path.run(hp["iters_per_step"], hp["lr"], hp["lambda1"], hp["lambda2"])
            self._equations = None
        return {"train/loss": self.last["obj"], "train/score": self.last["score"], "train/h": self.last["h"],
                "train/stage": float(self.path.stage), "train/fit_done": float(self.path.done)}

    # -- read-out --------------------------------------------------------------------
    def weights(self) -> np.ndarray:
        """Continuous weighted adjacency (linear weights, or MLP input-group norms)."""
        return self.model.weights(self.path.params).cpu().numpy()

    def dag(self, threshold: float) -> np.ndarray:
        """Thresholded weights with cycle edges removed: always a DAG."""
        return to_dag(self.weights(), threshold)

    def equations(self, threshold: float) -> StructuralEquations:
        """Fitted structural equations over :meth:`dag`, in the data's original units."""
        if self._equations is not None and self._equations[0] == threshold:
            return self._equations[1]
        adjacency = self.dag(threshold) != 0
        mechanism = self._linear_mechanism(adjacency) if self.variant == "linear" else self._mlp_mechanism(adjacency)
        pred = np.column_stack([mechanism(j, self.x) for j in range(self.d)])
        eq = StructuralEquations(self.names, adjacency, mechanism, self.x - pred)
        self._equations = (threshold, eq)
        return eq

    def effect_interval(self, threshold: float, do: dict[str, float], target: str, bootstrap: int = 200,
                        level: float = 0.9, seed: int = 0) -> dict[str, Any]:
        """The effect of ``do`` on ``target`` with a bootstrap interval over the rows.

        The graph is held fixed (the interval is the uncertainty of the equations given the
        graph, not of the graph): each resample of the rows re-fits the linear equations by
        least squares and uses the resampled residuals; for the MLP variant the networks are
        kept and only the residual rows are resampled, so its interval is narrower than the
        truth would warrant. Returns ``effect`` (on all rows), ``mean``, ``low``, ``high``.
        """
        eq = self.equations(threshold)
        point = eq.effect(do, target)
        rng = np.random.default_rng(seed)
        adjacency = eq.adjacency
        draws = []
        for _ in range(int(bootstrap)):
            rows = rng.integers(0, len(self.x), len(self.x))
            if self.variant == "linear":
                mechanism = self._linear_mechanism(adjacency, self.x[rows])
                noise = self.x[rows] - np.column_stack([mechanism(j, self.x[rows]) for j in range(self.d)])
            else:
                mechanism, noise = eq.mechanism, eq.noise[rows]
            draws.append(StructuralEquations(self.names, adjacency, mechanism, noise).effect(do, target))
        draws = np.asarray(draws) if draws else np.asarray([point])
        tail = (1.0 - level) / 2.0
        return {"effect": point, "mean": float(draws.mean()), "low": float(np.quantile(draws, tail)),
                "high": float(np.quantile(draws, 1.0 - tail)), "level": level, "bootstrap": int(bootstrap),
                "parents_of_target": [self.names[i] for i in np.flatnonzero(adjacency[:, self.names.index(target)])]}

    def _linear_mechanism(self, adjacency: np.ndarray, x: np.ndarray | None = None):
        x = self.x if x is None else x
        coef = np.zeros((self.d, self.d))
        intercept = x.mean(axis=0)
        for j in range(self.d):
            parents = np.flatnonzero(adjacency[:, j])
            if len(parents):
                design = np.column_stack([x[:, parents], np.ones(len(x))])
                beta = np.linalg.lstsq(design, x[:, j], rcond=None)[0]
                coef[parents, j], intercept[j] = beta[:-1], beta[-1]
        return lambda j, x: x @ coef[:, j] + intercept[j]

    def _mlp_mechanism(self, adjacency: np.ndarray):
        params = {k: v.clone() for k, v in self.path.params.items()}
        device = self.device
        params["fc1"] = params["fc1"] * torch.tensor(adjacency.T, dtype=torch.float64, device=device)[:, None, :]
        mean, scale, model = self.mean, self.scale, self.model

        def mechanism(j: int, x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = model.forward(params, torch.tensor((x - mean) / scale, device=device))
            return out[:, j].cpu().numpy() * scale[j] + mean[j]

        return mechanism

    def evaluate(self, hp: dict[str, Any]) -> dict[str, float]:
        w = self.weights()
        dag = self.dag(hp["w_threshold"])
        assert is_dag(dag), "post-processing must return a DAG"
        h, _ = acyclicity(torch.tensor(w * w), 1.0)
        out = {"eval/h_acyclicity": float(h) if h is not None else math.inf,
               "eval/nnz": float((dag != 0).sum()), "eval/score": self.model.score(self.path.params),
               "eval/iterations": float(self.path.total_iterations)}
        if self.truth is not None:
            out.update({f"eval/{k}": v for k, v in graph_metrics(dag, self.truth).items()})
        if self.queries:
            eq = self.equations(hp["w_threshold"])
            errors = [abs(eq.effect(q["do"], q["target"]) - q["effect"]) / abs(q["effect"]) for q in self.queries]
            out["eval/effect_rel_error"] = float(np.mean(errors))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"path": self.path.state_dict(), "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.path.load_state_dict(state["path"])
        self.last = dict(state["last"])
        self._equations = None
