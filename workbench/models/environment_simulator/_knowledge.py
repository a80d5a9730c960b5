"""Knowledge the simulator shares: real and imagined transitions out, a causal mask in.

Kinds (``<d>`` is the dataset name):

- ``transitions/<d>`` (exported): the most recent real transitions, up to 5,000.
- ``imagined_transitions/<d>`` (exported only with ``imagined_count`` > 0; no model in
  the workbench consumes it yet): short model rollouts from real training states
  with uniformly random actions, each rollout following one ensemble member, cut where
  the termination model says the episode has ended.
- ``causal_mask/<d>`` (imported): ``{"mask": (obs_dim + act_dim, obs_dim) tensor,
  "inputs": names, "outputs": names}``; 1 where input ``i`` drives next-state output ``j``.
  Several sources are merged by union (dropping a true parent costs more than keeping a
  spurious one). With the guard on (``mask_restore_gain`` < 1; off by default, see
  docs/collaboration.md for why), an edge is dropped only when ``mask_patience``
  consecutive imports left it out, and restored for good when the simulator's held-out
  data still support it (:mod:`._mask_guard`). The factored heads then see only the
  inputs kept.

Artifacts carry tensors ``obs, act, next_obs, reward, terminated`` and the lists
``state_names`` and ``action_names``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._mask_guard import supported_gain

__all__ = ["KnowledgeMixin", "RECENT_TRANSITIONS"]

RECENT_TRANSITIONS = 5_000


class KnowledgeMixin:
    """Knowledge hooks of :class:`EnvironmentSimulator` (needs its attributes)."""

    def produces(self) -> set[str]:
        kinds = {f"transitions/{self.dataset_name}"}
        if self.hparams["imagined_count"] > 0:
            kinds.add(f"imagined_transitions/{self.dataset_name}")
        return kinds

    def consumes(self) -> set[str]:
        return {f"causal_mask/{self.dataset_name}"}

    def _names(self) -> dict[str, list[str]]:
        return {"state_names": list(self.spec.state_names), "action_names": list(self.spec.action_names)}

    def export_knowledge(self) -> dict[str, Any]:
        recent = self.buffer.recent(RECENT_TRANSITIONS)
        real = {k: recent[k] for k in ("obs", "act", "next_obs", "reward", "terminated")}
        out = {f"transitions/{self.dataset_name}": {**real, **self._names()}}
        if self.hparams["imagined_count"] > 0:
            out[f"imagined_transitions/{self.dataset_name}"] = {**self.imagine(self.hparams["imagined_count"]),
                                                                **self._names()}
        return out

    @torch.no_grad()
    def imagine(self, count: int) -> dict[str, torch.Tensor]:
        """About ``count`` imagined transitions (fewer where rollouts terminate)."""
        spec, model = self.spec, self.model
        horizon = self.hparams["imagined_horizon"]
        e = model.n_members
        per_member = max(1, -(-count // (horizon * e)))
        # A generator of its own, derived from the data seen, so that exporting or not
        # leaves the training random stream untouched.
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.buffer.total_added)
        starts = self.train_x[:, : spec.state_dim]
        s = starts[torch.randint(len(starts), (e, per_member), generator=gen)]
        alive = torch.ones(e, per_member, dtype=torch.bool)
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "act", "next_obs", "reward", "terminated")}
        for _ in range(horizon):
            if spec.discrete:
                a = torch.randint(spec.n_actions, (e, per_member, 1), generator=gen).float()
            else:
                u = torch.rand(e, per_member, spec.action_dim, generator=gen)
                a = spec.action_low + (spec.action_high - spec.action_low) * u
            nxt, reward = model.predict(s, a)
            done = (self.done_model.probability(nxt) > 0.5) if spec.terminates else torch.zeros_like(alive)
            for key, value in (("obs", s), ("act", a), ("next_obs", nxt), ("reward", reward),
                               ("terminated", done.float())):
                rows[key].append(value[alive])
            alive = alive & ~done
            s = nxt
        out = {k: torch.cat(v)[:count] for k, v in rows.items()}
        return out

    def import_knowledge(self, artifacts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        sources = artifacts.get(f"causal_mask/{self.dataset_name}", {})
        if not sources:
            return {}
        if not self.hparams["use_causal_mask"] or not self.model.factored:
            return {"causal_mask": "ignored (needs architecture='factored' and use_causal_mask=true)"}
        merged = None
        for name in sorted(sources):
            mask = self._aligned_mask(sources[name])
            merged = mask if merged is None else torch.maximum(merged, mask)
        self.mask_votes = torch.where(merged == 0, self.mask_votes + 1, torch.zeros_like(self.mask_votes))
        drop = (self.mask_votes >= self.hparams["mask_patience"]) & ~self.mask_vetoed
        self._apply_mask((~drop).float())
        self.mask_info = {"sources": sorted(sources), "proposed_density": float(merged.mean()),
                          **self._mask_summary(), "restored": list(self.mask_info.get("restored", []))}
        return {"causal_mask": dict(self.mask_info)}

    def _edge_names(self) -> tuple[list[str], list[str]]:
        return list(self.spec.state_names) + list(self.spec.action_names), list(self.spec.state_names)

    def _apply_mask(self, mask: torch.Tensor) -> None:
        self.causal_mask = mask
        self.model.set_input_mask(mask, soft=self.hparams["mask_mode"] == "penalty")

    def _mask_summary(self) -> dict[str, Any]:
        inputs, outputs = self._edge_names()
        m = self.causal_mask
        dropped = {out: [inp for i, inp in enumerate(inputs) if m[i, j] == 0] for j, out in enumerate(outputs)}
        return {"density": float(m.mean()), "dropped_inputs": dropped}

    def guard_mask(self) -> list[str]:
        """Restore every dropped edge that the held-out transitions still support (see
        :mod:`._mask_guard`); returns the restored edges as ``"input->output"``."""
        if (self.causal_mask is None or not self.model.factored or bool((self.causal_mask > 0).all())
                or self.hparams["mask_restore_gain"] >= 1.0):  # the guard is off (the default): no test to run
            return []
        gain = supported_gain(self.model, self.buffer.split(holdout=True), self.causal_mask)
        restore = gain > self.hparams["mask_restore_gain"]
        if not bool(restore.any()):
            return []
        inputs, outputs = self._edge_names()
        names = [f"{inputs[i]}->{outputs[j]}" for i, j in torch.nonzero(restore).tolist()]
        self.mask_vetoed |= restore
        mask = self.causal_mask.clone()
        mask[restore] = 1.0
        self._apply_mask(mask)
        self.mask_info = {**self.mask_info, **self._mask_summary(),
                          "restored": list(self.mask_info.get("restored", [])) + names}
        return names

    def _aligned_mask(self, artifact: Mapping[str, Any]) -> torch.Tensor:
        """The artifact's mask as (inputs, outputs) in this model's variable order, 0/1 valued."""
        inputs = list(self.spec.state_names) + list(self.spec.action_names)
        outputs = list(self.spec.state_names)
        mask = torch.as_tensor(artifact["mask"], dtype=torch.float32)
        names_in, names_out = artifact.get("inputs"), artifact.get("outputs")
        if names_in is not None and names_out is not None and set(names_in) == set(inputs) \
                and set(names_out) == set(outputs):
            mask = mask[[list(names_in).index(n) for n in inputs]][:, [list(names_out).index(n) for n in outputs]]
        if tuple(mask.shape) != (len(inputs), len(outputs)):
            raise ValueError(f"causal_mask has shape {tuple(mask.shape)}, expected "
                             f"({len(inputs)}, {len(outputs)}) for inputs {inputs} and outputs {outputs}")
        return (mask > 0.5).float()
