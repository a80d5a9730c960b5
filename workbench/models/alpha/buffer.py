"""Replay buffer of self-play positions ``(state planes, search policy pi, result z)``.

A ring of fixed capacity: the oldest positions (played by older, weaker networks) leave
first. Sampling applies a random board symmetry to each position, which multiplies the
data by the game's symmetry count without storing the copies.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .games import Game

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    def __init__(self, game: Game, capacity: int):
        self.game = game
        self.capacity = int(capacity)
        self.states = np.zeros((self.capacity, 2, game.rows * game.cols), dtype=np.int8)
        self.pis = np.zeros((self.capacity, game.action_size), dtype=np.float32)
        self.zs = np.zeros(self.capacity, dtype=np.float32)
        self.size = 0
        self.next = 0  # where the next position is written

    def __len__(self) -> int:
        return self.size

    def add(self, states: np.ndarray, pis: np.ndarray, zs: np.ndarray) -> None:
        """Append positions in order; ``states`` may be ``(n, 2, rows, cols)`` or flat."""
        states = np.asarray(states, dtype=np.int8).reshape(len(states), 2, -1)
        n = len(states)
        if n > self.capacity:  # only the newest fit
            states, pis, zs, n = states[-self.capacity:], pis[-self.capacity:], zs[-self.capacity:], self.capacity
        idx = (self.next + np.arange(n)) % self.capacity
        self.states[idx] = states
        self.pis[idx] = np.asarray(pis, dtype=np.float32)
        self.zs[idx] = np.asarray(zs, dtype=np.float32)
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A minibatch ``(x, pi, z)`` with a random symmetry per position."""
        if self.size == 0:
            raise ValueError("replay buffer is empty")
        idx = rng.integers(0, self.size, size=batch_size)
        sym = rng.integers(0, len(self.game.board_perms), size=batch_size)
        board_perm = self.game.board_perms[sym]  # (B, cells)
        action_perm = self.game.action_perms[sym]  # (B, actions)
        states = np.take_along_axis(self.states[idx], board_perm[:, None, :], axis=2)
        pis = np.take_along_axis(self.pis[idx], action_perm, axis=1)
        x = torch.from_numpy(states.astype(np.float32)).reshape(batch_size, 2, self.game.rows, self.game.cols)
        return x, torch.from_numpy(pis), torch.from_numpy(self.zs[idx].copy())

    def recent(self, n: int) -> dict[str, torch.Tensor]:
        """The last ``n`` positions added (oldest first), as tensors."""
        n = min(n, self.size)
        idx = (self.next - n + np.arange(n)) % self.capacity
        return {"states": torch.from_numpy(self.states[idx].copy()),
                "pis": torch.from_numpy(self.pis[idx].copy()),
                "zs": torch.from_numpy(self.zs[idx].copy())}

    def state_dict(self) -> dict[str, Any]:
        # The raw ring and its write position: sampling draws storage indices, so a resumed
        # buffer must hold every position in the same slot.
        n = self.size
        return {"states": torch.from_numpy(self.states[:n].copy()), "pis": torch.from_numpy(self.pis[:n].copy()),
                "zs": torch.from_numpy(self.zs[:n].copy()), "next": self.next, "capacity": self.capacity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay buffer capacity {self.capacity} cannot load a state of "
                             f"capacity {state['capacity']}")
        n = len(state["zs"])
        self.states[:n] = state["states"].numpy()
        self.pis[:n] = state["pis"].numpy()
        self.zs[:n] = state["zs"].numpy()
        self.size, self.next = n, int(state["next"])
