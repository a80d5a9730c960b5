"""Structure of an environment's dynamics: which state/action inputs drive which changes.

Starts from transitions it collects itself with a random policy, adds the
``transitions/<dataset>`` artifacts the environment simulator shares, and publishes the
learned ``causal_mask/<dataset>`` that the simulator can use as an input mask.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ._bipartite import BipartiteMLP
from ._graph import graph_metrics
from ._transitions import as_arrays, collect_random_transitions, physics_mask

__all__ = ["EnvironmentFit"]

ADAM_ITERS_PER_STEP = 10
MAX_ROWS_PER_SOURCE = 20000


class EnvironmentFit:
    """Bipartite structure learning on transitions of one gymnasium environment."""

    def __init__(self, dataset: str, env_id: str, hp: dict[str, Any], seed: int,
                 generator: torch.Generator, device: str = "cpu") -> None:
        self.dataset, self.env_id, self.seed = dataset, env_id, seed
        self.device = torch.device(device)
        own = collect_random_transitions(env_id, hp["env_samples"], seed)
        self.state_names, self.action_names = list(own["state_names"]), list(own["action_names"])
        self.inputs = self.state_names + self.action_names
        self.outputs = list(self.state_names)
        x, y = as_arrays(own)
        self.own = (x, y)
        # Scales are fixed from the agent's own data so that arriving data never changes
        # the meaning of the weights already learned.
        self.x_mean, self.x_std = x.mean(axis=0), x.std(axis=0) + 1e-8
        self.y_mean, self.y_std = y.mean(axis=0), y.std(axis=0) + 1e-8
        self.received: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.model = BipartiteMLP(len(self.inputs), len(self.outputs), hp["env_hidden"], generator, device)
        self.truth = physics_mask(env_id, self.inputs, self.outputs)
        self.last: dict[str, float] = {"loss": math.nan, "mse": math.nan}
        self._rebuild()

    def _rebuild(self) -> None:
        """Train/validation split (80/20, fixed by seed and size) of all data held."""
        xs = [self.own[0]] + [self.received[k][0] for k in sorted(self.received)]
        ys = [self.own[1]] + [self.received[k][1] for k in sorted(self.received)]
        x = (np.concatenate(xs) - self.x_mean) / self.x_std
        y = (np.concatenate(ys) - self.y_mean) / self.y_std
        order = np.random.default_rng([self.seed, len(x)]).permutation(len(x))
        cut = int(0.8 * len(x))
        as_tensor = lambda a: torch.tensor(a, device=self.device)  # noqa: E731
        self.x_train, self.y_train = as_tensor(x[order[:cut]]), as_tensor(y[order[:cut]])
        self.x_valid, self.y_valid = as_tensor(x[order[cut:]]), as_tensor(y[order[cut:]])

    def steps_per_epoch(self, hp: dict[str, Any]) -> int:
        return max(1, math.ceil(hp["env_iters"] / ADAM_ITERS_PER_STEP / hp["fit_epochs"]))

    def train_step(self, hp: dict[str, Any]) -> dict[str, float]:
        for _ in range(ADAM_ITERS_PER_STEP):
            self.last = self.model.step(self.x_train, self.y_train, hp["lr"], hp["group_lambda"])
        return {"train/loss": self.last["loss"], "train/mse": self.last["mse"],
                "train/rows": float(len(self.x_train))}

    def mask(self, hp: dict[str, Any]) -> np.ndarray:
        """0/1 ``[input, output]``: input's share of the explained variance above ``mask_threshold``."""
        return (self.model.importance(self.x_valid, self.y_valid) > hp["mask_threshold"]).astype(float)

    def evaluate(self, hp: dict[str, Any]) -> dict[str, float]:
        mask = self.mask(hp)
        out = {"eval/r2": float(self.model.r2(self.x_valid, self.y_valid).mean()),
               "eval/nnz": float(mask.sum()), "eval/h_acyclicity": 0.0,  # bipartite: acyclic by construction
               "eval/rows": float(len(self.x_train) + len(self.x_valid))}
        if self.truth is not None:
            # no input is also an output node here, so a "reversed" edge cannot occur
            out.update({f"eval/{k}": v for k, v in graph_metrics(mask, self.truth).items()})
        return out

    def artifact(self, hp: dict[str, Any]) -> dict[str, Any]:
        return {"mask": torch.tensor(self.mask(hp), dtype=torch.float32),
                "inputs": list(self.inputs), "outputs": list(self.outputs)}

    def add_transitions(self, sources: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Take in ``{source: artifact}``; a source's artifact replaces its earlier one when it
        extends it (a growing buffer), otherwise it is appended (a batch of new rows)."""
        used: dict[str, int] = {}
        for source in sorted(sources):
            art = sources[source]
            try:
                x, y = as_arrays(art)
            except (KeyError, TypeError, ValueError, RuntimeError):
                continue
            if x.shape[1] != len(self.inputs) or y.shape[1] != len(self.outputs):
                continue  # another environment's layout
            old = self.received.get(source)
            if old is not None and not (len(x) >= len(old[0]) and np.array_equal(x[: len(old[0])], old[0])):
                x, y = np.concatenate([old[0], x]), np.concatenate([old[1], y])
            self.received[source] = (x[-MAX_ROWS_PER_SOURCE:], y[-MAX_ROWS_PER_SOURCE:])
            used[source] = len(self.received[source][0])
        if not used:
            return {}
        self._rebuild()
        return {"transitions": used, "rows": len(self.x_train) + len(self.x_valid)}

    def state_dict(self) -> dict[str, Any]:
        received = {k: {"x": torch.tensor(x), "y": torch.tensor(y)} for k, (x, y) in self.received.items()}
        return {"model": self.model.state_dict(), "received": received, "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.received = {k: (v["x"].numpy(), v["y"].numpy()) for k, v in state["received"].items()}
        self.last = dict(state["last"])
        self._rebuild()
