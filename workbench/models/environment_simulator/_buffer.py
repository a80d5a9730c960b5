"""The transition buffer: every real transition, with a train / held-out split by chunk.

Held-out data are whole contiguous chunks of episodes (``chunk_len`` steps), not single
transitions, so that open-loop rollouts can be scored against real trajectories the
model never trained on.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["TransitionBuffer"]

_FIELDS = ("obs", "act", "next_obs", "reward", "terminated", "segment", "holdout")


class TransitionBuffer:
    """Append-only (up to ``capacity``, oldest dropped) store of real transitions."""

    def __init__(self, state_dim: int, action_dim: int, capacity: int = 100_000, chunk_len: int = 50):
        self.capacity, self.chunk_len = capacity, chunk_len
        self.data: dict[str, torch.Tensor] = {
            "obs": torch.zeros(0, state_dim), "act": torch.zeros(0, action_dim),
            "next_obs": torch.zeros(0, state_dim), "reward": torch.zeros(0),
            "terminated": torch.zeros(0), "segment": torch.zeros(0, dtype=torch.long),
            "holdout": torch.zeros(0, dtype=torch.bool),
        }
        self.n_segments = 0  # segment ids are unique over the run: (episode, chunk)
        self.total_added = 0

    def __len__(self) -> int:
        return len(self.data["reward"])

    def add(self, batch: dict[str, np.ndarray], rng: np.random.Generator, holdout_fraction: float) -> None:
        """Append a :func:`collect` result, assigning each episode chunk to train or held-out."""
        chunk_key = batch["episode"] * 1_000_000 + batch["t"] // self.chunk_len
        _, segment = np.unique(chunk_key, return_inverse=True)
        n_new = int(segment.max()) + 1 if len(segment) else 0
        held = rng.random(n_new) < holdout_fraction
        new = {
            "obs": torch.as_tensor(batch["obs"]), "act": torch.as_tensor(batch["act"]),
            "next_obs": torch.as_tensor(batch["next_obs"]), "reward": torch.as_tensor(batch["reward"]),
            "terminated": torch.as_tensor(batch["terminated"]),
            "segment": torch.as_tensor(segment + self.n_segments, dtype=torch.long),
            "holdout": torch.as_tensor(held[segment], dtype=torch.bool),
        }
        self.n_segments += n_new
        self.total_added += len(segment)
        for k in _FIELDS:
            self.data[k] = torch.cat([self.data[k], new[k]])[-self.capacity:]

    def split(self, holdout: bool) -> dict[str, torch.Tensor]:
        mask = self.data["holdout"] == holdout
        return {k: v[mask] for k, v in self.data.items()}

    def recent(self, n: int) -> dict[str, torch.Tensor]:
        return {k: v[-n:].clone() for k, v in self.data.items()}

    def rollout_windows(self, horizon: int) -> list[torch.Tensor]:
        """Index ranges of held-out stretches (up to ``horizon`` long) inside one segment each."""
        held = torch.nonzero(self.data["holdout"]).flatten()
        if len(held) == 0:
            return []
        seg = self.data["segment"][held]
        windows = []
        starts = torch.nonzero(torch.cat([torch.tensor([True]), seg[1:] != seg[:-1]])).flatten().tolist()
        ends = starts[1:] + [len(held)]
        for s, e in zip(starts, ends):
            for w in range(s, e, horizon):
                windows.append(held[w: min(w + horizon, e)])
        return windows

    # -- checkpoint --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"data": {k: v.clone() for k, v in self.data.items()},
                "n_segments": self.n_segments, "total_added": self.total_added}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data = {k: v.clone() for k, v in state["data"].items()}
        self.n_segments, self.total_added = int(state["n_segments"]), int(state["total_added"])
