"""``alpha_deep_model``: AlphaZero-style training by self-play, tree search and arena gating.

One epoch (one engine segment):

1. ``steps_per_epoch`` minibatch updates of the candidate network on the replay buffer
   (policy cross-entropy against the search's visit distribution, value MSE against the
   game result, L2 weight decay); random board symmetries augment every batch.
2. :meth:`AlphaTrainer.on_epoch_end`: arena gating (candidate vs best network, both
   colours, run as parallel tasks): the candidate becomes the best when its score
   (wins + draws/2) beats ``arena_threshold``. Then the best network plays
   ``games_per_epoch`` self-play games, split over ``selfplay_tasks`` parallel tasks
   (``ctx.parallel_map``: Dask tasks in the engine), into the replay buffer.
3. :meth:`AlphaTrainer.evaluate`: the best network with greedy search against fixed
   opponents (random; exact minimax on every optimal line for tic-tac-toe; one-step
   lookahead for Connect Four).

Every random choice comes from ``seed``: the trainer's numpy generator (batches), and a
seed per task derived from ``(seed, generation, task)``, so results do not depend on
where or in which order tasks run.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ...precision import autocast, check_precision
from ...registry import register_model
from ...trainer import Resources, StepContext, Trainer
from ..cards import AlphaDeepModelCard
from .arena import Record, match, minimax_all_lines
from .buffer import ReplayBuffer
from .games import get_game
from .net import NetEvaluator, build_net
from .players import LookaheadPlayer, MCTSPlayer, RandomPlayer
from .selfplay import SETTING_KEYS, arena_task, selfplay_task

__all__ = ["AlphaTrainer"]

_SELFPLAY, _ARENA, _EVAL = 0, 1, 2  # streams of derived seeds


def _derived_seed(*words: int) -> int:
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1)[0])


def _rates(record: Record, opponent: str) -> dict[str, float]:
    n = max(record.games, 1)
    return {f"eval/win_rate_vs_{opponent}": record.wins / n, f"eval/draw_rate_vs_{opponent}": record.draws / n,
            f"eval/loss_rate_vs_{opponent}": record.losses / n}


def _split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@register_model("alpha_deep_model")
class AlphaTrainer(AlphaDeepModelCard, Trainer):
    def __init__(self, hparams: dict[str, Any], data: Any, resources: Resources, seed: int):
        super().__init__(hparams, data, resources, seed)
        self.game = get_game(data.meta["game"])
        h = self.hparams
        self.device = torch.device(resources.device)
        check_precision(self.device, self.hparams["precision"])
        net = build_net(self.game, h["channels"], h["blocks"], seed=_derived_seed(seed, 99))
        self.best = copy.deepcopy(net.state_dict())
        self.net = net.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=h["lr"])
        self.buffer = ReplayBuffer(self.game, h["buffer_size"])
        self.rng = np.random.default_rng(_derived_seed(seed, 98))
        self.generation = 0  # self-play rounds done; part of every task seed
        self.last_new_positions = 0

    # -- training ---------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return int(self.hparams["steps_per_epoch"])

    def train_step(self, ctx: StepContext) -> Mapping[str, float]:
        if len(self.buffer) == 0:  # the first step of a run: games of the untrained network
            self._selfplay(ctx)
        x, pi, z = (t.to(self.device) for t in self.buffer.sample(int(self.hparams["batch_size"]), self.rng))
        self.net.train()
        with autocast(self.device, self.hparams["precision"]):
            logits, v = self.net(x)
        logits, v = logits.float(), v.float()
        policy_loss = -(pi * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        value_loss = F.mse_loss(v, z)
        l2 = sum(p.pow(2).sum() for p in self.net.parameters() if p.dim() > 1)
        loss = policy_loss + value_loss + self.hparams["weight_decay"] * l2
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"train/loss": loss.item(), "train/policy_loss": policy_loss.item(),
                "train/value_loss": value_loss.item(), "train/buffer_positions": float(len(self.buffer))}

    def on_epoch_end(self, ctx: StepContext) -> Mapping[str, float]:
        metrics = self._gate(ctx)
        metrics.update(self._selfplay(ctx))
        return metrics

    def _settings(self) -> dict[str, Any]:
        values = {k: self.hparams[k] for k in SETTING_KEYS if k != "game"}
        return {"game": self.game.name, **values}

    def _gate(self, ctx: StepContext) -> dict[str, float]:
        n = int(self.hparams["arena_games"])
        candidate = {k: t.detach().to("cpu", copy=True) for k, t in self.net.state_dict().items()}
        if n == 0:
            self.best = candidate
            return {"train/arena_accepted": 1.0}
        settings = self._settings()
        # Even game counts per task keep colours balanced inside every task.
        pairs = _split((n + 1) // 2, int(self.hparams["selfplay_tasks"]))
        items = [(candidate, self.best, _derived_seed(self.seed, _ARENA, self.generation, i), 2 * k, settings)
                 for i, k in enumerate(pairs)]
        results = ctx.parallel_map(arena_task, items)
        wins, draws, losses = (sum(r[key] for r in results) for key in ("wins", "draws", "losses"))
        score = (wins + 0.5 * draws) / max(wins + draws + losses, 1)
        accepted = score > float(self.hparams["arena_threshold"])
        if accepted:
            self.best = candidate
        return {"train/arena_score": score, "train/arena_accepted": float(accepted)}

    def _selfplay(self, ctx: StepContext) -> dict[str, float]:
        settings = self._settings()
        counts = _split(int(self.hparams["games_per_epoch"]), int(self.hparams["selfplay_tasks"]))
        items = [(self.best, _derived_seed(self.seed, _SELFPLAY, self.generation, i), k, settings)
                 for i, k in enumerate(counts)]
        results = ctx.parallel_map(selfplay_task, items)
        self.generation += 1
        new = 0
        for r in results:
            self.buffer.add(r["states"], r["pis"], r["zs"])
            new += len(r["zs"])
        self.last_new_positions = new
        games = sum(counts)
        return {"train/selfplay_games": float(games), "train/selfplay_positions": float(new),
                "train/selfplay_first_player_win_rate": sum(r["first_wins"] for r in results) / games,
                "train/selfplay_draw_rate": sum(r["draws"] for r in results) / games}

    # -- evaluation -------------------------------------------------------------------
    def best_player(self, simulations: int | None = None) -> MCTSPlayer:
        """The gated best network behind a greedy search (what evaluation measures)."""
        net = build_net(self.game, self.hparams["channels"], self.hparams["blocks"], weights=self.best)
        sims = int(simulations or self.hparams["eval_simulations"])
        evaluator = NetEvaluator(net, self.game, precision=self.hparams["precision"])
        return MCTSPlayer(self.game, evaluator, sims, float(self.hparams["c_puct"]))

    def evaluate(self) -> Mapping[str, float]:
        agent = self.best_player()
        games = int(self.hparams["eval_games"])
        # The same opponents' dice every evaluation, so epochs are compared on equal terms.
        rng = np.random.default_rng(_derived_seed(self.seed, _EVAL))
        out: dict[str, float] = {}
        if games > 0:
            first, second = match(self.game, agent, RandomPlayer(self.game, rng), games)
            first += second
            out.update(_rates(first, "random"))
        if self.game.name == "tictactoe" and self.hparams["eval_minimax"]:
            first, second = minimax_all_lines(self.game, agent)
            first += second
            out.update(_rates(first, "minimax"))
        if self.game.name == "connect4" and games > 0:
            first, second = match(self.game, agent, LookaheadPlayer(self.game, rng), games)
            first += second
            out.update(_rates(first, "lookahead"))
        return out

    # -- live control -----------------------------------------------------------------
    def set_hparam(self, name: str, value: Any) -> None:
        super().set_hparam(name, value)
        if name == "lr":
            for group in self.optimizer.param_groups:
                group["lr"] = float(value)

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "net": {k: t.detach().clone() for k, t in self.net.state_dict().items()},
            "best": {k: t.clone() for k, t in self.best.items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "buffer": self.buffer.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),
            "generation": self.generation,
            "last_new_positions": self.last_new_positions,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.best = {k: t.clone() for k, t in state["best"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.generation = int(state["generation"])
        self.last_new_positions = int(state["last_new_positions"])

    # -- knowledge sharing ------------------------------------------------------------
    def _kind(self) -> str:
        return f"selfplay/{self.game.name}"

    def produces(self) -> set[str]:
        return {self._kind()}

    def consumes(self) -> set[str]:
        return {self._kind()}

    def export_knowledge(self) -> dict[str, Any]:
        """The positions of the latest self-play round: experience another learner can train on."""
        if self.last_new_positions == 0:
            return {}
        return {self._kind(): self.buffer.recent(self.last_new_positions)}

    def import_knowledge(self, artifacts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        used: dict[str, int] = {}
        # Sorted sources: the buffer's contents must not depend on the order artifacts arrived in.
        for source, artifact in sorted(artifacts.get(self._kind(), {}).items()):
            states = artifact.get("states")
            if states is None or tuple(states.shape[1:]) != (2, self.game.rows * self.game.cols):
                continue
            self.buffer.add(states.numpy(), artifact["pis"].numpy(), artifact["zs"].numpy())
            used[source] = int(states.shape[0])
        return {"positions": used} if used else {}
