"""Learned termination: is a (predicted) state already past the end of the episode?

CartPole ends when the *next* state leaves a box (cart position, pole angle). A head on
``(state, action)`` learns this poorly: imagined trajectories run past the boundary into
states no real episode ever continued from, where such a head says nothing useful. This
model instead classifies the next state itself, with logistic regression on the
normalised state and its squares, so the learned region is an ellipsoid-like band and
the probability of "done" keeps growing the further a state goes out, which is what the
planner needs when it imagines a falling pole.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TerminationModel"]


class TerminationModel(nn.Module):
    """``p(terminated | next_state)`` by quadratic-feature logistic regression."""

    def __init__(self, state_dim: int):
        super().__init__()
        self.linear = nn.Linear(2 * state_dim, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, -3.0)  # episodes rarely end: start near "alive"
        self.register_buffer("mean", torch.zeros(state_dim))
        self.register_buffer("std", torch.ones(state_dim))

    def fit_normaliser(self, next_states: torch.Tensor) -> None:
        self.mean.copy_(next_states.mean(0))
        self.std.copy_(next_states.std(0).clamp_min(1e-4) if len(next_states) > 1 else torch.ones_like(self.std))

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        z = (state - self.mean) / self.std
        return self.linear(torch.cat([z, z * z], -1)).squeeze(-1)

    @torch.no_grad()
    def probability(self, state: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``temperature > 1`` flattens the boundary into a hazard that grows toward it.

        The planner uses that as a risk-averse termination model: with a sharp boundary
        every sequence that survives the horizon scores the same, and MPC lets the pole
        drift into states it cannot recover from just beyond the horizon.
        """
        home = state.device  # device-transparent, like the ensemble's predict
        return torch.sigmoid(self.logits(state.to(self.mean.device)) / temperature).to(home)

    def loss(self, next_states: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(next_states), terminated)

    def fit(self, next_states: torch.Tensor, terminated: torch.Tensor, l2: float = 1e-3,
            iterations: int = 100) -> float:
        """Refit on all training data (full-batch L-BFGS: deterministic, converges in ms).

        Returns the final loss. A small L2 keeps the fit finite when the classes separate.
        """
        self.fit_normaliser(next_states)
        if float(terminated.sum()) == 0:
            return 0.0
        opt = torch.optim.LBFGS(self.parameters(), lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = self.loss(next_states, terminated) + l2 * self.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
            return float(self.loss(next_states, terminated).detach())
