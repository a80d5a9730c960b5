"""Plain built-ins: digit classifiers that learn from each other (deep mutual learning).

This module is the example to copy when bringing your own model: a :class:`Trainer`
subclass with a hyperparameter schema, one optimisation step per :meth:`train_step`,
held-out evaluation, a complete ``state_dict`` and two knowledge hooks. It also shows the
device contract: data and network on ``resources.device`` (the engine refuses a model whose
tensors are elsewhere), ``precision`` (bf16 autocast), and ``batch_size`` with
``grad_accumulation`` so the engine can halve the batch after a CUDA out-of-memory error
without changing the effective batch. Your model declares ``accepts``, ``hyperparameters``
and ``metrics`` on its own Trainer subclass; the built-ins keep theirs in cards they inherit
(:mod:`workbench.models.cards`, here :class:`~workbench.models.cards.DigitsCard`), so a run
is planned without importing torch.

Mutual learning: after each epoch every classifier exports its softened predictions on
the training set (``soft_predictions/<dataset>``) and its validation NLL; in the next
epoch each model that receives them adds ``mutual_weight * T^2 * KL(peers || self)`` to
its cross-entropy on each batch, learning (with ``mutual_from="better"``, the default) only
from peers whose validation NLL is lower than its own: learning from every peer made the
stronger network worse (docs/collaboration.md).
``self_distill`` is its control without a peer: the model distils from its own softened
predictions of the previous epoch (``workbench ablate`` runs it).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import autocast, check_precision
from ..registry import register_model
from ..trainer import Resources, StepContext, Trainer
from .cards import DigitsCard, DigitsCNNCard, DigitsMLPCard

__all__ = ["DigitsMLP", "DigitsCNN"]


class _DigitsClassifier(DigitsCard, Trainer):
    def __init__(self, hparams: dict[str, Any], data: Any, resources: Resources, seed: int):
        super().__init__(hparams, data, resources, seed)
        self.device = torch.device(resources.device)
        check_precision(self.device, self.hparams["precision"])
        arrays = data.arrays
        dev = self.device
        self.x_train = torch.as_tensor(arrays["X_train"], dtype=torch.float32, device=dev)
        self.y_train = torch.as_tensor(arrays["y_train"], dtype=torch.long, device=dev)
        self.x_valid = torch.as_tensor(arrays["X_valid"], dtype=torch.float32, device=dev)
        self.y_valid = torch.as_tensor(arrays["y_valid"], dtype=torch.long, device=dev)
        self.x_test = torch.as_tensor(arrays["X_test"], dtype=torch.float32, device=dev)
        self.y_test = torch.as_tensor(arrays["y_test"], dtype=torch.long, device=dev)
        self.n_classes = int(data.meta.get("n_classes", int(arrays["y_train"].max()) + 1))
        self.generator = torch.Generator().manual_seed(seed)  # batch order: drawn on the CPU on every device
        torch.manual_seed(seed)
        self.net = self.build_net(self.x_train.shape[1], self.n_classes, data.meta).to(dev)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"],
                                    weight_decay=self.hparams["weight_decay"])
        self.order = torch.randperm(len(self.x_train), generator=self.generator)
        self.position = 0
        self.peer_probs: torch.Tensor | None = None
        self.peers_seen = False  # peers' predictions arrived: self-distillation stands aside

    def build_net(self, n_features: int, n_classes: int, meta: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.x_train) // self._effective_batch())

    def _effective_batch(self) -> int:
        return self.hparams["batch_size"] * self.hparams["grad_accumulation"]

    def _next_batch(self) -> torch.Tensor:
        if self.position >= len(self.order):
            self.order = torch.randperm(len(self.x_train), generator=self.generator)
            self.position = 0
        idx = self.order[self.position:self.position + self._effective_batch()]
        self.position += len(idx)
        return idx.to(self.device)

    def _autocast(self):
        return autocast(self.device, self.hparams["precision"])

    def train_step(self, ctx: StepContext) -> Mapping[str, float]:
        # On a CUDA out-of-memory error the step leaves the trainer as it found it (the batch
        # position and generator are restored, gradients dropped), so the engine can retry it
        # with a smaller batch_size (trainer contract).
        saved = (self.order, self.position, self.generator.get_state())
        try:
            return self._train_step()
        except torch.cuda.OutOfMemoryError:
            self.order, self.position = saved[0], saved[1]
            self.generator.set_state(saved[2])
            self.opt.zero_grad(set_to_none=True)
            raise

    def _train_step(self) -> Mapping[str, float]:
        self.net.train()
        idx = self._next_batch()
        self.opt.zero_grad(set_to_none=True)
        # The KL term toward peers' (or its own previous) predictions, where there are some:
        # then the step reports its parts, train/ce and train/kl, beside train/loss. Without
        # it the loss is the cross-entropy, and a KL of 0 would chart agreement never measured.
        distil = self.peer_probs is not None and self.hparams["mutual_weight"] > 0
        totals = {"loss": 0.0, "ce": 0.0, "kl": 0.0}
        # Micro-batches of batch_size; each loss is weighted by its share of the effective
        # batch, so the accumulated gradient is the effective batch's mean gradient.
        for part in idx.split(self.hparams["batch_size"]):
            weight = len(part) / len(idx)
            with self._autocast():
                logits = self.net(self.x_train[part])
                ce = F.cross_entropy(logits, self.y_train[part])
                loss = ce
                if distil:
                    t = self.hparams["temperature"]
                    log_p = F.log_softmax(logits.float() / t, dim=1)
                    kl = F.kl_div(log_p, self.peer_probs[part], reduction="batchmean") * t * t
                    loss = ce + self.hparams["mutual_weight"] * kl
            (loss * weight if weight != 1.0 else loss).backward()
            totals["loss"] += loss.item() * weight
            if distil:
                totals["ce"] += ce.item() * weight
                totals["kl"] += kl.item() * weight
        self.opt.step()
        if not distil:
            return {"train/loss": totals["loss"]}
        return {"train/loss": totals["loss"], "train/ce": totals["ce"], "train/kl": totals["kl"]}

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        with self._autocast():
            return self.net(x).float()

    def evaluate(self) -> Mapping[str, float]:
        out = {}
        for split, x, y in (("", self.x_valid, self.y_valid), ("test_", self.x_test, self.y_test)):
            logits = self._logits(x)
            out[f"eval/{split}nll" if split else "eval/loss"] = float(F.cross_entropy(logits, y))
            out[f"eval/{split}accuracy"] = float((logits.argmax(1) == y).float().mean())
        return out

    def on_epoch_end(self, ctx: StepContext) -> Mapping[str, float]:
        if self.hparams["self_distill"] and not self.peers_seen:
            t = self.hparams["temperature"]
            self.peer_probs = F.softmax(self._logits(self.x_train) / t, dim=1)
        return {}

    def logits(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, labels)`` of the ``valid`` or ``test`` split, on the CPU (calibration, ablations)."""
        x, y = {"valid": (self.x_valid, self.y_valid), "test": (self.x_test, self.y_test)}[split]
        return self._logits(x).cpu(), y.cpu()

    def set_hparam(self, name: str, value: Any) -> None:
        super().set_hparam(name, value)
        if name in ("lr", "weight_decay"):
            for group in self.opt.param_groups:
                group[name] = value

    # -- knowledge ------------------------------------------------------------------------
    def _kind(self) -> str:
        return f"soft_predictions/{self.data.name}"

    def produces(self) -> set[str]:
        return {self._kind()}

    def consumes(self) -> set[str]:
        return {self._kind()}

    def export_knowledge(self) -> dict[str, Any]:
        t = self.hparams["temperature"]
        # Knowledge travels between workers (a CPU peer cannot unpickle a CUDA tensor): host memory.
        return {self._kind(): {"probs": F.softmax(self._logits(self.x_train) / t, dim=1).cpu(),
                               "valid_nll": self._valid_nll()}}

    def _valid_nll(self) -> float:
        return float(F.cross_entropy(self._logits(self.x_valid), self.y_valid))

    def import_knowledge(self, artifacts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        peers = artifacts.get(self._kind(), {})
        # Sorted sources: the float mean must not depend on the order artifacts arrived in.
        usable = {src: peers[src]["probs"] for src in sorted(peers)
                  if peers[src]["probs"].shape == (len(self.x_train), self.n_classes)}
        if self.hparams["mutual_from"] == "better":  # a weaker peer's mistakes are not worth copying
            own = self._valid_nll()
            usable = {src: p for src, p in usable.items() if peers[src].get("valid_nll", math.inf) < own}
        if not usable:
            self.peer_probs = None
            return {}
        self.peer_probs = torch.stack([p.to(self.device) for p in usable.values()]).mean(0)
        self.peers_seen = True
        return {"peers": sorted(usable), "kind": self._kind()}

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "generator": self.generator.get_state(),
            "order": self.order.clone(),
            "position": self.position,
            "hparams": dict(self.hparams),
            "peer_probs": self.peer_probs,
            "peers_seen": self.peers_seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])
        self.hparams.update(state["hparams"])
        peer_probs = state.get("peer_probs")  # a checkpoint is loaded in host memory: to our device
        self.peer_probs = peer_probs.to(self.device) if peer_probs is not None else None
        self.peers_seen = bool(state.get("peers_seen", False))


@register_model("digits_mlp")
class DigitsMLP(DigitsMLPCard, _DigitsClassifier):
    """Two-layer MLP with dropout on the flattened image."""

    def build_net(self, n_features: int, n_classes: int, meta: Mapping[str, Any]) -> nn.Module:
        h = self.hparams["hidden"]
        return nn.Sequential(nn.Linear(n_features, h), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(h, h), nn.ReLU(), nn.Dropout(0.2), nn.Linear(h, n_classes))


class _Reshape(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


@register_model("digits_cnn")
class DigitsCNN(DigitsCNNCard, _DigitsClassifier):
    """Small convolutional network (two 3x3 conv layers) on the 8x8 image."""

    def build_net(self, n_features: int, n_classes: int, meta: Mapping[str, Any]) -> nn.Module:
        c, h, w = meta.get("image_shape", (1, 8, 8))
        width = max(8, self.hparams["hidden"] // 4)
        return nn.Sequential(
            _Reshape((c, h, w)),
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(2 * width * (h // 2) * (w // 2), n_classes),
        )
