"""Held-out scores of a dynamics model: one-step R^2 and open-loop rollout error.

Both use the ensemble's mean prediction (the average of the members' means).

- ``eval/one_step_r2``: R^2 of the predicted next-state change, per state variable,
  averaged uniformly over variables (so a barely moving variable counts as much as a
  fast one); ``eval/one_step_nmse`` is ``1 - R^2`` in the same averaging.
- ``eval/rollout_nmse_25``: from the first state of each held-out stretch (at most 25
  steps inside one held-out chunk), feed the real actions and the model's own predicted
  states back for up to 25 steps; the squared error of the predicted *state* at every
  step, divided by that variable's held-out variance, averaged over variables and
  steps. Stretches cut short by termination count with the steps they have.
"""
from __future__ import annotations

import torch

from ._buffer import TransitionBuffer
from ._ensemble import ProbabilisticEnsemble
from ._termination import TerminationModel

__all__ = ["one_step_scores", "rollout_nmse", "mean_prediction"]


@torch.no_grad()
def mean_prediction(model: ProbabilisticEnsemble, obs: torch.Tensor, act: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ensemble-mean next state and reward for a (batch, .) input."""
    e = model.n_members
    next_obs, reward = model.predict(obs.expand(e, -1, -1), act.expand(e, -1, -1))
    return next_obs.mean(0), reward.mean(0)


def _r2(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    sse = ((pred - true) ** 2).sum(0)
    sst = ((true - true.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return 1 - sse / sst


def one_step_scores(model: ProbabilisticEnsemble, held: dict[str, torch.Tensor],
                    done_model: TerminationModel | None = None) -> dict[str, float]:
    next_obs, reward = mean_prediction(model, held["obs"], held["act"])
    r2 = _r2(next_obs - held["obs"], held["next_obs"] - held["obs"]).mean()
    scores = {"eval/one_step_r2": float(r2), "eval/one_step_nmse": float(1 - r2)}
    if float(held["reward"].var()) > 1e-8:
        scores["eval/reward_r2"] = float(_r2(reward[:, None], held["reward"][:, None]).mean())
    if done_model is not None and float(held["terminated"].sum()) > 0:
        # Recall on real episode ends: the planner's safety depends on not missing them.
        p_done = done_model.probability(held["next_obs"])
        scores["eval/termination_recall"] = float((p_done[held["terminated"] > 0] > 0.5).float().mean())
    return scores


@torch.no_grad()
def rollout_nmse(model: ProbabilisticEnsemble, buffer: TransitionBuffer, held: dict[str, torch.Tensor],
                 horizon: int = 25) -> float:
    windows = buffer.rollout_windows(horizon)
    if not windows:
        return float("nan")
    data = buffer.data
    n, a = len(windows), data["act"].shape[1]
    valid = torch.zeros(n, horizon)
    acts = torch.zeros(n, horizon, a)
    true = torch.zeros(n, horizon, data["obs"].shape[1])
    for i, w in enumerate(windows):
        valid[i, : len(w)] = 1
        acts[i, : len(w)] = data["act"][w]
        true[i, : len(w)] = data["next_obs"][w]
    state = torch.stack([data["obs"][w[0]] for w in windows])
    var = held["next_obs"].var(0).clamp_min(1e-8)
    err = torch.zeros(n)
    for t in range(horizon):
        state, _ = mean_prediction(model, state, acts[:, t])
        err += valid[:, t] * (((state - true[:, t]) ** 2) / var).mean(1)
    return float(err.sum() / valid.sum())
