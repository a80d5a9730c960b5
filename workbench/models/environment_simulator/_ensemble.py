"""A probabilistic MLP ensemble (PETS-style) predicting next-state change and reward.

Every member maps a normalised ``(state, action)`` to a Gaussian over the normalised
``(delta_state, reward)`` with a learned log-variance kept inside learned soft bounds
(Chua et al. 2018). All members run as one batched matmul per
layer, so an ensemble costs about as much as one wide network on a CPU thread.

Two layouts:

- ``joint``: one network per member predicts every output.
- ``factored``: one small network per member *and per output* (each next-state variable,
  plus one head for reward). Head ``j``'s inputs are multiplied by column
  ``j`` of an input mask, so a causal mask ("input i drives output j") removes spurious
  inputs exactly; with the all-ones mask it is an unmasked model with separate heads.
  A *soft* mask keeps every input and instead prices each masked-out one: a group-lasso
  penalty on its first-layer weights (:meth:`ProbabilisticEnsemble.mask_penalty`), so an
  input the data support strongly enough survives a wrong proposal.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProbabilisticEnsemble", "gaussian_nll_loss"]


def _softplus_bound(logvar: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    # Smooth clamp: gradients never vanish at the bounds, unlike torch.clamp.
    logvar = high - F.softplus(high - logvar)
    return low + F.softplus(logvar - low)


class ProbabilisticEnsemble(nn.Module):
    """``n_members`` Gaussian MLPs over ``(state, action) -> (delta_state, reward)``."""

    def __init__(self, state_dim: int, action_dim: int, n_members: int = 5, hidden: int = 128,
                 layers: int = 3, factored: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.in_dim = state_dim + action_dim
        self.n_targets = state_dim + 1  # delta state and reward
        self.n_members, self.factored = n_members, factored
        self.n_heads = state_dim + 1 if factored else 1
        # Every head emits (mean, logvar) per target it owns.
        self.head_width = 2 if factored else 2 * self.n_targets
        groups = n_members * self.n_heads
        sizes = [self.in_dim] + [hidden] * layers + [self.head_width]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(groups, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(groups, 1, fan_out)))
        self.max_logvar = nn.Parameter(torch.full((self.n_targets,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.n_targets,), -10.0))
        # mask[h, i] = 1 when input i feeds head h; all ones until a causal mask arrives.
        self.register_buffer("mask", torch.ones(self.n_heads, self.in_dim))
        self.mask_soft = False  # True: the mask prices inputs (mask_penalty) instead of cutting them
        self.register_buffer("in_mean", torch.zeros(self.in_dim))
        self.register_buffer("in_std", torch.ones(self.in_dim))
        self.register_buffer("out_mean", torch.zeros(self.n_targets))
        self.register_buffer("out_std", torch.ones(self.n_targets))

    # -- normalisation -----------------------------------------------------------------
    def fit_normaliser(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Set input/target statistics from training data (std floored so constants stay finite)."""
        self.in_mean.copy_(inputs.mean(0))
        self.in_std.copy_(inputs.std(0).clamp_min(1e-4) if len(inputs) > 1 else torch.ones(self.in_dim))
        self.out_mean.copy_(targets.mean(0))
        self.out_std.copy_(targets.std(0).clamp_min(1e-4) if len(targets) > 1 else torch.ones(self.n_targets))

    def set_input_mask(self, state_mask: torch.Tensor | None, soft: bool = False) -> None:
        """Apply a causal mask of shape ``(in_dim, state_dim)``; ``None`` restores all inputs.

        Only the factored layout can use it; the reward head keeps every input. ``soft``:
        masked-out inputs stay connected and are priced by :meth:`mask_penalty` instead.
        """
        self.mask_soft = soft
        self.mask.fill_(1.0)
        if state_mask is not None:
            if not self.factored:
                raise ValueError("an input mask needs the factored layout (architecture='factored')")
            self.mask[: self.state_dim].copy_(state_mask.T.to(self.mask.dtype))

    # -- forward -----------------------------------------------------------------------
    def _heads(self, x_norm: torch.Tensor) -> torch.Tensor:
        e, b, _ = x_norm.shape
        if self.factored and not self.mask_soft:
            h = (x_norm.unsqueeze(1) * self.mask.unsqueeze(1)).reshape(e * self.n_heads, b, self.in_dim)
        elif self.factored:
            h = x_norm.unsqueeze(1).expand(e, self.n_heads, b, self.in_dim).reshape(e * self.n_heads, b, self.in_dim)
        else:
            h = x_norm
        last = len(self.weights) - 1
        for i, (w, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias, h, w)
            if i < last:
                h = F.silu(h)
        return h.reshape(e, self.n_heads, b, self.head_width)

    def forward(self, x_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_norm``: (members, batch, in_dim) normalised inputs.

        Returns normalised target means and bounded log-variances, each
        (members, batch, state_dim + 1).
        """
        h = self._heads(x_norm)
        if self.factored:
            mean, raw_logvar = h[..., 0].transpose(1, 2), h[..., 1].transpose(1, 2)
        else:
            mean, raw_logvar = h[:, 0, :, : self.n_targets], h[:, 0, :, self.n_targets:]
        return mean, _softplus_bound(raw_logvar, self.min_logvar, self.max_logvar)

    def normalise_inputs(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return (torch.cat([state, action], -1) - self.in_mean) / self.in_std

    @torch.no_grad()
    def predict(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean prediction of every member in raw units.

        ``state``: (members, batch, state_dim), ``action``: (members, batch, action_dim).
        Returns next state (members, batch, state_dim) and reward (members, batch).
        """
        # Planning calls this thousands of times per real step: skip the variance.
        # Device-transparent: inputs go to the model's device, results come back to theirs
        # (metrics and knowledge work on host tensors from the replay buffer).
        home, device = state.device, self.in_mean.device
        state, action = state.to(device), action.to(device)
        h = self._heads(self.normalise_inputs(state, action))
        mean = h[..., 0].transpose(1, 2) if self.factored else h[:, 0, :, : self.n_targets]
        out = mean * self.out_std + self.out_mean
        return (state + out[..., : self.state_dim]).to(home), out[..., -1].to(home)

    def mask_penalty(self) -> torch.Tensor:
        """Group lasso on the masked-out inputs of a soft mask: per member, the sum over
        (head, input) pairs the mask leaves out of the L2 norm of that input's first-layer
        weights (0 without a soft mask). Under it an input's weights go to zero unless the
        data pull harder than the price."""
        if not (self.factored and self.mask_soft) or bool((self.mask > 0).all()):
            return self.weights[0].new_zeros(())
        w = self.weights[0].view(self.n_members, self.n_heads, self.in_dim, -1)
        return ((1.0 - self.mask) * w.norm(dim=-1)).sum() / self.n_members

    def input_strength(self) -> torch.Tensor:
        """(heads, in_dim): mean over members of each input's first-layer weight norm in each
        head (factored layout): how much a head still uses an input the mask priced."""
        w = self.weights[0].detach().view(self.n_members, self.n_heads, self.in_dim, -1)
        return w.norm(dim=-1).mean(0)

    def regulariser(self) -> torch.Tensor:
        """Keeps the learned log-variance bounds tight (PETS)."""
        return 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())


def gaussian_nll_loss(model: ProbabilisticEnsemble, x_norm: torch.Tensor, y_norm: torch.Tensor
                      ) -> tuple[torch.Tensor, dict[str, float]]:
    """Gaussian NLL of normalised targets for a (members, batch, .) minibatch, plus the bound penalty."""
    mean, logvar = model(x_norm)
    sq = (mean - y_norm) ** 2
    nll = (sq * torch.exp(-logvar) + logvar).mean()
    return nll + model.regulariser(), {"train/nll": float(nll.detach()), "train/mse": float(sq.detach().mean())}
