"""Model-predictive control through the learned ensemble: the cross-entropy method (CEM).

At each real step the planner samples ``population`` action sequences of ``horizon``
steps, imagines them with the ensemble, refits the sampling distribution to the best
``elite_fraction`` for ``iterations`` rounds (one round is random shooting), executes the
first action and shifts the distribution by one step for the next call (warm start).

By default particles use one ensemble member each (TS-1 in PETS terms: particle ``n``
follows member ``n mod members``), so model disagreement shows up as spread between
candidate returns instead of being averaged away; ``propagation="members"`` scores each
sequence by its average over every member instead, ``"mean"`` along the members' mean. Discrete actions (CartPole) are sampled from per-step
Bernoulli probabilities; continuous ones from a clipped per-step Gaussian.

Termination: the expected return of a sequence weights each step's reward by the
imagined probability of still being alive, from the learned termination model on the
predicted state (``"learned"``), from the environment's documented state thresholds applied to the
predicted state (``"known_bounds"``), or from either (``"learned+bounds"``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..cards import PROPAGATIONS, TERMINATION_MODELS
from ._collect import EnvSpec
from ._ensemble import ProbabilisticEnsemble
from ._termination import TerminationModel

__all__ = ["CEMPlanner", "imagined_returns", "TERMINATION_MODELS", "PROPAGATIONS"]


def _bounds_done(spec: EnvSpec, state: torch.Tensor) -> torch.Tensor:
    done = torch.zeros(state.shape[:-1], device=state.device)
    for index, bound in spec.state_bounds:
        done = torch.maximum(done, (state[..., index].abs() > bound).float())
    return done


def _heading(spec: EnvSpec, state: torch.Tensor, k: int, lead: float) -> torch.Tensor:
    # Where bounded variable k will be ``lead`` seconds from now at its current rate.
    index = spec.state_bounds[k][0]
    if lead <= 0 or not spec.bound_rates or spec.bound_rates[k] < 0:
        return state[..., index]
    return state[..., index] + lead * state[..., spec.bound_rates[k]]


@torch.no_grad()
def imagined_returns(model: ProbabilisticEnsemble, spec: EnvSpec, state: torch.Tensor,
                     actions: torch.Tensor, done_model: TerminationModel | None = None,
                     termination: str = "learned", temperature: float = 1.0,
                     bounds_cost: float = 0.0, bounds_lead: float = 0.0,
                     propagation: str = "ts1") -> torch.Tensor:
    """Expected undiscounted return of each action sequence.

    ``state``: (state_dim,), ``actions``: (population, horizon, action_dim) with
    ``population`` a multiple of the ensemble size (for ``"ts1"``). Returns (population,).

    ``propagation``: ``"ts1"`` imagines sequence ``n`` with member ``n mod members`` only;
    ``"members"`` imagines every sequence with every member and averages the returns
    (members x the work); ``"mean"`` moves every sequence along the members' mean
    prediction (members x the work).
    """
    e = model.n_members
    pop, horizon, _ = actions.shape
    # The whole imagination runs on the model's device (stand-in models may have none).
    device = model.in_mean.device if hasattr(model, "in_mean") else state.device
    if propagation == "ts1":
        acts = actions.to(device).reshape(pop // e, e, horizon, -1).transpose(0, 1)  # (E, P/E, H, A)
        width = pop // e
    else:
        acts = actions.to(device).expand(e, -1, -1, -1)  # (E, P, H, A): every member sees every sequence
        width = pop
    s = state.to(device).expand(e, width, -1).clone()
    alive = torch.ones(e, width, device=device)
    total = torch.zeros(e, width, device=device)
    for t in range(horizon):
        s, reward = model.predict(s, acts[:, :, t])
        if propagation == "mean":
            s = s.mean(0, keepdim=True).expand(e, -1, -1)
        total += alive * reward
        if spec.terminates:
            if termination == "known_bounds" or done_model is None:
                p_done = _bounds_done(spec, s)
            else:
                p_done = done_model.probability(s, temperature)
                if termination == "learned+bounds":
                    p_done = torch.maximum(p_done, _bounds_done(spec, s))
            alive = alive * (1 - p_done)
            if bounds_cost > 0:
                # Known-safe shaping: among sequences that all survive the horizon, prefer
                # the ones that keep cart and pole central (recoverable beyond the horizon).
                # It is a bonus for being alive *and* central, never a cost of being alive:
                # a cost paid only while alive would make an early imagined fall look
                # cheaper than staying up near a threshold.
                closeness = sum(((_heading(spec, s, k, bounds_lead) / b) ** 2).clamp(max=1.0)
                                for k, (_, b) in enumerate(spec.state_bounds))
                total += bounds_cost * alive * (len(spec.state_bounds) - closeness)
    if propagation != "ts1":
        return total.mean(0).to(actions.device)
    return total.transpose(0, 1).reshape(pop).to(actions.device)


class CEMPlanner:
    """Stateful within one episode (warm start); call :meth:`reset` at episode start."""

    def __init__(self, model: ProbabilisticEnsemble, spec: EnvSpec, done_model: TerminationModel | None = None,
                 horizon: int = 25,
                 population: int = 200, iterations: int = 3, elite_fraction: float = 0.1,
                 termination: str = "learned", temperature: float = 1.0, bounds_cost: float = 0.0,
                 bounds_lead: float = 0.0, keep_best: bool = False, propagation: str = "ts1",
                 generator: torch.Generator | None = None):
        e = model.n_members
        self.model, self.spec, self.done_model = model, spec, done_model
        self.horizon, self.iterations = horizon, iterations
        self.population = max(e, (population // e) * e)
        self.n_elite = max(2, int(round(elite_fraction * self.population)))
        self.termination, self.temperature, self.bounds_cost = termination, temperature, bounds_cost
        self.bounds_lead, self.keep_best, self.propagation = bounds_lead, keep_best, propagation
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.reset()

    def reset(self) -> None:
        a = self.spec.action_dim
        if self.spec.discrete:
            self.mean = torch.full((self.horizon, a), 0.5)  # probability of action 1
        else:
            self.mean = torch.full((self.horizon, a), (self.spec.action_low + self.spec.action_high) / 2)
        self.std = self._initial_std()
        self.best: torch.Tensor | None = None  # previous step's best sequence, shifted

    def _initial_std(self) -> torch.Tensor:
        return torch.full((self.horizon, self.spec.action_dim), (self.spec.action_high - self.spec.action_low) / 2)

    def _sample(self) -> torch.Tensor:
        shape = (self.population, self.horizon, self.spec.action_dim)
        u = torch.rand(shape, generator=self.generator) if self.spec.discrete else \
            torch.randn(shape, generator=self.generator)
        if self.spec.discrete:
            return (u < self.mean).float()
        return (self.mean + self.std * u).clamp(self.spec.action_low, self.spec.action_high)

    def act(self, obs: np.ndarray, new_episode: bool = False) -> np.ndarray:
        """Plan from ``obs`` and return the first action (a float vector)."""
        if new_episode:
            self.reset()
        state = torch.as_tensor(obs, dtype=torch.float32)
        best, best_return = self.best, -float("inf")
        for _ in range(self.iterations):
            actions = self._sample()
            if self.keep_best and best is not None:
                # The incumbent competes in every round, so the plan only changes for a
                # sequence that scores better (sampling noise alone cannot flip it).
                actions[0] = best
            returns = imagined_returns(self.model, self.spec, state, actions, self.done_model, self.termination,
                                       self.temperature, self.bounds_cost, self.bounds_lead, self.propagation)
            top = torch.topk(returns, self.n_elite).indices
            if float(returns[top[0]]) > best_return:
                best, best_return = actions[top[0]].clone(), float(returns[top[0]])
            elite = actions[top]
            if self.spec.discrete:
                # Smoothed update keeps some exploration between iterations.
                self.mean = 0.2 * self.mean + 0.8 * elite.mean(0)
            else:
                self.mean = elite.mean(0)
                self.std = elite.std(0).clamp_min(0.05)
        first = best[0].clone() if self.keep_best else self.mean[0].clone()
        action = (first > 0.5).float() if self.spec.discrete else first
        if self.keep_best:
            self.best = torch.cat([best[1:], best[-1:]])
        # Warm start: shift by one step, refill the tail with the prior.
        self.mean = torch.cat([self.mean[1:], torch.full_like(self.mean[:1], 0.5 if self.spec.discrete else
                               (self.spec.action_low + self.spec.action_high) / 2)])
        if not self.spec.discrete:
            self.std = self._initial_std()
        return action.numpy().astype(np.float32)
