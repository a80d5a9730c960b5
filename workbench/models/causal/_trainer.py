"""The ``causal_reasoning_engine`` trainer: DAGMA causal discovery on tables, and the
input -> next-state structure of environments.

Epochs and steps. On a table, the whole DAGMA central path (``stages`` stages of at most
``stage_iters`` Adam iterations, the last one twice as long) is spread over
``fit_epochs`` epochs: one ``train_step`` runs ``iters_per_step`` iterations and
``steps_per_epoch`` is chosen so the planned path ends by epoch ``fit_epochs``. A stage
that converges early hands over to the next, so the fit often ends sooner; later steps
then only report the final objective (``train/fit_done`` = 1). On an environment, each
step is a few Adam iterations of the bipartite group-lasso MLPs, and training goes on as
long as the run does, since new transitions keep arriving from the simulator.

    t = CausalReasoningEngine(hparams, load_dataset("sem_linear"), Resources(), seed=0)
    ...train...
    t.graph()                                   # weighted DAG as a DataFrame
    t.effect(do={"x3": 1.0}, target="x7")       # E[x7 | do(x3=1)] - E[x7]
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...registry import register_model
from ...trainer import Resources, StepContext, Trainer
from ..cards import CausalReasoningEngineCard
from ._environment import EnvironmentFit
from ._tabular import TabularFit

__all__ = ["CausalReasoningEngine"]


@register_model("causal_reasoning_engine")
class CausalReasoningEngine(CausalReasoningEngineCard, Trainer):
    """Continuous-optimisation causal discovery (DAGMA, linear and MLP) with do-queries."""

    def __init__(self, hparams: dict[str, Any], data: Any, resources: Resources, seed: int) -> None:
        super().__init__(hparams, data, resources, seed)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.fit: TabularFit | EnvironmentFit
        if data.kind == "environment":
            self.fit = EnvironmentFit(data.name, data.meta["env_id"], self.hparams, int(seed), self.generator,
                                      resources.device)
        elif data.kind == "tabular":
            self.fit = TabularFit(data.frame, dict(data.meta), self.hparams, self.generator, resources.device)
        else:
            raise ValueError(f"causal_reasoning_engine accepts tabular or environment data, got {data.kind!r}")
        self.steps_done = 0

    @property
    def is_environment(self) -> bool:
        return isinstance(self.fit, EnvironmentFit)

    @property
    def steps_per_epoch(self) -> int:
        return self.fit.steps_per_epoch(self.hparams)

    def train_step(self, ctx: StepContext) -> Mapping[str, float]:
        if self.steps_done == 0:
            for note in getattr(self.fit, "notes", []):
                ctx.log(f"warning: {note}")
        self.steps_done += 1
        return self.fit.train_step(self.hparams)

    def evaluate(self) -> Mapping[str, float]:
        return self.fit.evaluate(self.hparams)

    # -- queries (tabular) -------------------------------------------------------------
    def graph(self) -> Any:
        """The learned DAG as a DataFrame of weights (rows cause, columns effect)."""
        import pandas as pd

        if self.is_environment:
            return pd.DataFrame(self.fit.mask(self.hparams), index=self.fit.inputs, columns=self.fit.outputs)
        return pd.DataFrame(self.fit.dag(self.hparams["w_threshold"]), index=self.fit.names, columns=self.fit.names)

    def effect(self, do: Mapping[str, float], target: str) -> float:
        """``E[target | do(...)] - E[target]`` on the fitted equations, in original units."""
        return self._equations().effect(do, target)

    def effect_interval(self, do: Mapping[str, float], target: str, bootstrap: int = 200,
                        level: float = 0.9, seed: int = 0) -> dict[str, Any]:
        """:meth:`effect` with a bootstrap interval over the rows (the graph held fixed).

        ``{"effect", "mean", "low", "high", "level", "bootstrap", "parents_of_target"}``.
        """
        self._equations()  # refuses environments
        return self.fit.effect_interval(self.hparams["w_threshold"], dict(do), target, bootstrap, level, seed)

    def output_files(self) -> dict[str, str]:
        """``graph.csv``: the learned DAG's weights (rows cause, columns effect); with a known
        graph also ``true_graph.csv``; ``notes.txt`` when the fit has a warning."""
        import pandas as pd

        graph = self.graph()
        files = {"graph.csv": graph.to_csv()}
        if self.fit.truth is not None:
            truth = pd.DataFrame(self.fit.truth, index=graph.index, columns=graph.columns).astype(int)
            files["true_graph.csv"] = truth.to_csv()
        if getattr(self.fit, "notes", None):
            files["notes.txt"] = "\n".join(self.fit.notes) + "\n"
        return files

    def expectation(self, do: Mapping[str, float], target: str) -> float:
        """``E[target | do(...)]`` on the fitted equations, in original units."""
        return self._equations().expectation(do, target)

    def _equations(self):
        if self.is_environment:
            raise TypeError("interventional queries need a tabular dataset")
        return self.fit.equations(self.hparams["w_threshold"])

    # -- knowledge ---------------------------------------------------------------------
    def produces(self) -> set[str]:
        return {f"causal_mask/{self.data.name}"} if self.is_environment else set()

    def consumes(self) -> set[str]:
        return {f"transitions/{self.data.name}"} if self.is_environment else set()

    def export_knowledge(self) -> dict[str, Any]:
        if not self.is_environment:
            return {}
        return {f"causal_mask/{self.data.name}": self.fit.artifact(self.hparams)}

    def import_knowledge(self, artifacts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        if not self.is_environment:
            return {}
        sources = artifacts.get(f"transitions/{self.data.name}", {})
        return self.fit.add_transitions(sources) if sources else {}

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"fit": self.fit.state_dict(), "generator": self.generator.get_state(),
                "steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fit.load_state_dict(state["fit"])
        self.generator.set_state(state["generator"])
        self.steps_done = int(state["steps_done"])
