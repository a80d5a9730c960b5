"""The policy-value network and the evaluator that lets the tree search query it.

A small residual convolutional network: boards are tiny (3x3, 6x7), so a few 3x3
convolutions already see whole lines. No batch normalisation: the search queries one
position at a time, and without it the network behaves the same in training and in play.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...precision import autocast
from .games import Game, State

__all__ = ["NetEvaluator", "PolicyValueNet", "build_net"]


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class PolicyValueNet(nn.Module):
    """Input ``(B, 2, rows, cols)``; output policy logits ``(B, actions)`` and value ``(B,)`` in [-1, 1]."""

    def __init__(self, rows: int, cols: int, actions: int, channels: int = 32, blocks: int = 2):
        super().__init__()
        cells = rows * cols
        self.stem = nn.Conv2d(2, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[_Residual(channels) for _ in range(blocks)])
        self.policy_conv = nn.Conv2d(channels, 2, 1)
        self.policy_fc = nn.Linear(2 * cells, actions)
        self.value_conv = nn.Conv2d(channels, 1, 1)
        self.value_fc1 = nn.Linear(cells, 64)
        self.value_fc2 = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(F.relu(self.stem(x)))
        logits = self.policy_fc(F.relu(self.policy_conv(h)).flatten(1))
        v = F.relu(self.value_fc1(F.relu(self.value_conv(h)).flatten(1)))
        return logits, torch.tanh(self.value_fc2(v)).squeeze(1)


def build_net(game: Game, channels: int, blocks: int, seed: int | None = None,
              weights: Mapping[str, torch.Tensor] | None = None) -> PolicyValueNet:
    """A network for ``game``; initialised from ``seed`` (without touching the global RNG) or ``weights``."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = PolicyValueNet(game.rows, game.cols, game.action_size, channels, blocks)
    else:
        net = PolicyValueNet(game.rows, game.cols, game.action_size, channels, blocks)
    if weights is not None:
        net.load_state_dict(weights)
    return net


class NetEvaluator:
    """``evaluate(state) -> (priors, value)`` for :func:`~.mcts.run_mcts`, with a position cache.

    The weights are fixed while an evaluator lives, so a position's answer never changes;
    the cache saves most network calls in tic-tac-toe, where games revisit few positions.
    :meth:`many` judges the uncached positions of a list in one batch (for
    :func:`~.mcts.run_mcts_many`).
    """

    def __init__(self, net: PolicyValueNet, game: Game, cache_limit: int = 200_000, precision: str = "fp32"):
        self.net = net.eval()
        self.precision = precision  # "bf16": the network runs under bfloat16 autocast
        self.device = next(net.parameters()).device  # positions go where the network is
        self.game = game
        self.cache: dict[bytes, tuple[np.ndarray, float]] = {}
        self.cache_limit = cache_limit
        self.calls = 0  # network calls (batches)
        self.positions = 0  # positions they judged

    def __call__(self, state: State) -> tuple[np.ndarray, float]:
        return self.many([state])[0]

    def many(self, states: list[State]) -> list[tuple[np.ndarray, float]]:
        """Answers for several positions: the ones not cached go through the network in one batch."""
        missing = list({s.key: s for s in states if s.key not in self.cache}.values())
        if missing:
            x = torch.from_numpy(np.stack([self.game.encode(s) for s in missing])).to(self.device)
            with torch.inference_mode(), autocast(self.device, self.precision):
                logits, values = self.net(x)
            logits, values = logits.double().cpu().numpy(), values.double().cpu().numpy()
            if len(self.cache) + len(missing) > self.cache_limit:
                self.cache.clear()
            for s, row, value in zip(missing, logits, values):
                row = np.where(self.game.legal_mask(s), row, -np.inf)
                priors = np.exp(row - row.max())
                self.cache[s.key] = (priors / priors.sum(), float(value))
            self.calls += 1
            self.positions += len(missing)
        return [self.cache[s.key] for s in states]
