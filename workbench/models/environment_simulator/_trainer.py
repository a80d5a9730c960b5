"""The ``environment_simulator`` trainer: a world model that collects its own data.

Loop per epoch (one engine segment): ``steps_per_epoch`` minibatch updates of the
ensemble, then :meth:`on_epoch_end` collects ``env_steps_per_epoch`` real transitions with
the MPC planner acting through the model (epsilon-mixed with random actions), then
:meth:`evaluate` scores the model on held-out real transitions and the planner in the
real environment. The first ``initial_random_steps`` come from a random policy.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...trainer import Resources, StepContext, Trainer
from ..cards import EnvironmentSimulatorCard
from ._buffer import TransitionBuffer
from ._collect import collect, env_spec, make_env, random_action, run_episodes
from ._ensemble import ProbabilisticEnsemble, gaussian_nll_loss
from ._knowledge import KnowledgeMixin
from ._metrics import one_step_scores, rollout_nmse
from ._planner import CEMPlanner
from ._termination import TerminationModel

__all__ = ["EnvironmentSimulator"]

_EVAL_SEED_BASE = 1_000_003  # evaluation episodes use fixed seeds, apart from training's


class EnvironmentSimulator(EnvironmentSimulatorCard, KnowledgeMixin, Trainer):
    def __init__(self, hparams: dict[str, Any], data: Any, resources: Resources, seed: int):
        super().__init__(hparams, data, resources, seed)
        hp = self.hparams
        self.spec = env_spec(data.meta["env_id"])
        self.dataset_name = data.name
        self.env = make_env(self.spec.env_id)
        self.device = torch.device(resources.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.model = ProbabilisticEnsemble(
            self.spec.state_dim, self.spec.action_dim, hp["ensemble_size"], hp["hidden"], hp["layers"],
            factored=hp["architecture"] == "factored", generator=self.generator).to(self.device)
        self.done_model = TerminationModel(self.spec.state_dim).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        self.buffer = TransitionBuffer(self.spec.state_dim, self.spec.action_dim)
        self.causal_mask: torch.Tensor | None = None
        self.mask_info: dict[str, Any] = {}
        in_dim = self.spec.state_dim + self.spec.action_dim
        # Per (input, output): consecutive imports that left the edge out, and edges the
        # held-out check restored (never dropped again).
        self.mask_votes = torch.zeros(in_dim, self.spec.state_dim, dtype=torch.long)
        self.mask_vetoed = torch.zeros(in_dim, self.spec.state_dim, dtype=torch.bool)
        self.evaluations = 0
        self._collect(hp["initial_random_steps"], planner=False)

    # -- data --------------------------------------------------------------------------
    def _collect(self, n_steps: int, planner: bool) -> None:
        if n_steps <= 0:
            return
        if planner:
            plan = self.make_planner(torch.Generator().manual_seed(int(self.rng.integers(2**62))))
            policy, epsilon = plan.act, self.hparams["explore_epsilon"]
        else:
            policy, epsilon = (lambda obs, new: random_action(self.spec, self.rng)), 0.0
        batch = collect(self.env, self.spec, policy, n_steps, self.rng, epsilon=epsilon)
        self.buffer.add(batch, self.rng, self.hparams["holdout_fraction"])
        self._refresh_training_set()

    def _refresh_training_set(self) -> None:
        train = {k: v.to(self.device) for k, v in self.buffer.split(holdout=False).items()}
        self.train_x = torch.cat([train["obs"], train["act"]], 1)
        self.train_y = torch.cat([train["next_obs"] - train["obs"], train["reward"][:, None]], 1)
        self.train_next = train["next_obs"]
        self.train_done = train["terminated"]
        self.model.fit_normaliser(self.train_x, self.train_y)
        if self.spec.terminates:
            self.done_model.fit(self.train_next, self.train_done)

    def make_planner(self, generator: torch.Generator) -> CEMPlanner:
        hp = self.hparams
        return CEMPlanner(self.model, self.spec, self.done_model, hp["plan_horizon"], hp["plan_population"],
                          hp["plan_iterations"], termination=hp["termination"],
                          temperature=hp["termination_temperature"], bounds_cost=hp["bounds_cost"],
                          bounds_lead=hp["bounds_lead"], keep_best=hp["plan_keep_best"], propagation=hp["plan_propagation"],
                          generator=generator)

    # -- training ----------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return self.hparams["steps_per_epoch"]

    def train_step(self, ctx: StepContext) -> Mapping[str, float]:
        e, n = self.model.n_members, len(self.train_x)
        # Independent minibatches per member stand in for PETS's bootstrap resampling.
        idx = torch.randint(n, (e, self.hparams["batch_size"]), generator=self.generator).to(self.device)
        x = (self.train_x[idx] - self.model.in_mean) / self.model.in_std
        y = (self.train_y[idx] - self.model.out_mean) / self.model.out_std
        loss, stats = gaussian_nll_loss(self.model, x, y)
        if self.model.mask_soft:
            loss = loss + self.hparams["mask_penalty"] * self.model.mask_penalty()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"train/loss": float(loss.detach()), **stats}

    def on_epoch_end(self, ctx: StepContext) -> Mapping[str, float]:
        restored = self.guard_mask()
        if restored:
            ctx.log(f"causal mask: restored {', '.join(restored)} (the held-out data still support them)")
        self._collect(self.hparams["env_steps_per_epoch"], planner=True)
        return {"train/real_env_steps": float(self.buffer.total_added)}

    def set_hparam(self, name: str, value: Any) -> None:
        super().set_hparam(name, value)
        if name in ("lr", "weight_decay"):
            for group in self.opt.param_groups:
                group[name] = value

    # -- evaluation --------------------------------------------------------------------
    def evaluate(self) -> Mapping[str, float]:
        held = self.buffer.split(holdout=True)
        metrics: dict[str, float] = {"eval/real_env_steps": float(self.buffer.total_added),
                                     "eval/holdout_transitions": float(len(held["reward"]))}
        if len(held["reward"]) >= 2:
            metrics.update(one_step_scores(self.model, held, self.done_model if self.spec.terminates else None))
            metrics["eval/rollout_nmse_25"] = rollout_nmse(self.model, self.buffer, held, horizon=25)
        episodes = self.hparams["eval_episodes"]
        if episodes > 0:
            self.evaluations += 1
            plan = self.make_planner(torch.Generator().manual_seed(self.seed * 7919 + self.evaluations))
            seeds = [_EVAL_SEED_BASE + 97 * self.seed + i for i in range(episodes)]
            returns = run_episodes(make_env(self.spec.env_id), self.spec, plan.act, seeds,
                                   self.hparams["eval_max_steps"])
            metrics[f"eval/{self.spec.short_name}_return"] = float(np.mean(returns))
        return metrics

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "done_model": {k: v.clone() for k, v in self.done_model.state_dict().items()},
            "opt": self.opt.state_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.generator.get_state(),
            "rng": _numpy_state_to_dict(self.rng),
            "hparams": dict(self.hparams),
            "causal_mask": self.causal_mask.clone() if self.causal_mask is not None else None,
            "mask_info": dict(self.mask_info),
            "mask_votes": self.mask_votes.clone(),
            "mask_vetoed": self.mask_vetoed.clone(),
            "evaluations": self.evaluations,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hparams.update(state["hparams"])
        self.buffer.load_state_dict(state["buffer"])
        self._refresh_training_set()
        self.model.load_state_dict(state["model"])
        self.done_model.load_state_dict(state["done_model"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])
        self.rng = _numpy_state_from_dict(state["rng"])
        self.causal_mask = state["causal_mask"]
        self.model.mask_soft = self.causal_mask is not None and self.hparams["mask_mode"] == "penalty"
        self.mask_info = dict(state["mask_info"])
        if "mask_votes" in state:  # checkpoints from before the guarded mask have neither
            self.mask_votes, self.mask_vetoed = state["mask_votes"].clone(), state["mask_vetoed"].clone()
        self.evaluations = int(state["evaluations"])


def _numpy_state_to_dict(rng: np.random.Generator) -> dict[str, Any]:
    # PCG64's 128-bit state and increment are stored as decimal strings: plain python
    # values that torch.load(weights_only=True) accepts.
    s = rng.bit_generator.state
    return {"state": str(s["state"]["state"]), "inc": str(s["state"]["inc"]),
            "has_uint32": int(s["has_uint32"]), "uinteger": int(s["uinteger"])}


def _numpy_state_from_dict(d: Mapping[str, Any]) -> np.random.Generator:
    bit = np.random.PCG64()
    bit.state = {"bit_generator": "PCG64", "state": {"state": int(d["state"]), "inc": int(d["inc"])},
                 "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"])}
    return np.random.Generator(bit)
