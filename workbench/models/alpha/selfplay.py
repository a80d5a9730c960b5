"""Self-play and arena games as top-level, picklable tasks for ``ctx.parallel_map``.

Each task gets everything it needs in its argument (weights as CPU tensors, its own seed,
how many games, the search settings), builds its network afresh and returns plain numpy
arrays and numbers, so it runs the same in a Dask worker, a process pool or a loop, and
the results depend only on the arguments.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .games import Game, get_game
from .mcts import run_mcts_many, select_move
from .net import NetEvaluator, build_net

__all__ = ["SETTING_KEYS", "arena_task", "selfplay_task"]

# What a task reads from ``settings`` (the trainer copies these from its hyperparameters).
SETTING_KEYS = ("game", "channels", "blocks", "simulations", "c_puct", "dirichlet_alpha",
                "noise_frac", "temp_moves", "arena_temp_moves", "lockstep", "precision")

Weights = Mapping[str, torch.Tensor]


def _evaluator(game: Game, weights: Weights, settings: Mapping[str, Any]) -> NetEvaluator:
    net = build_net(game, int(settings["channels"]), int(settings["blocks"]), weights=weights)
    # The trainer's tasks play on the CPU of whatever worker runs them (one position per
    # network call); benchmarks/gpu.py sets "device" to time the same games on a GPU.
    return NetEvaluator(net.to(settings.get("device", "cpu")), game, precision=settings.get("precision", "fp32"))


def selfplay_task(item: tuple[Weights, int, int, Mapping[str, Any]]) -> dict[str, Any]:
    """Play ``n_games`` games of the network against itself.

    The games are played in lockstep, ``settings["lockstep"]`` at a time (all of them by
    default), so every simulation round sends one leaf per game to the network in a single
    batch. Game ``g`` draws its noise and moves from its own generator, seeded by
    ``(seed, g)``: the games are the same whatever the lockstep width.

    Returns ``states`` (n, 2, rows, cols) int8 canonical planes, ``pis`` (n, actions) the
    search's visit distributions, ``zs`` (n,) the final result for the player to move,
    and counts of results, positions and network calls.
    """
    weights, seed, n_games, settings = item
    game = get_game(settings["game"])
    evaluate = _evaluator(game, weights, settings)
    width = max(1, int(settings.get("lockstep") or n_games or 1))
    games = [_Game(game, np.random.default_rng([seed, g])) for g in range(n_games)]
    for start in range(0, n_games, width):
        playing = games[start:start + width]
        while playing:
            counts = run_mcts_many(game, [g.state for g in playing], evaluate.many, int(settings["simulations"]),
                                   float(settings["c_puct"]), [g.rng for g in playing],
                                   float(settings["dirichlet_alpha"]), float(settings["noise_frac"]))
            for g, c in zip(playing, counts):
                g.play(c, int(settings["temp_moves"]))
            playing = [g for g in playing if g.state.winner is None]
    states = [s for g in games for s in g.states]
    pis = [p for g in games for p in g.pis]
    zs = [float(g.state.winner * p) for g in games for p in g.players]
    winners = [g.state.winner for g in games]
    shape = (0, 2, game.rows, game.cols)
    return {
        "states": np.stack(states) if states else np.zeros(shape, dtype=np.int8),
        "pis": np.stack(pis) if pis else np.zeros((0, game.action_size), dtype=np.float32),
        "zs": np.asarray(zs, dtype=np.float32),
        "first_wins": winners.count(1), "draws": winners.count(0), "second_wins": winners.count(-1),
        "net_calls": evaluate.calls, "net_positions": evaluate.positions,
    }


class _Game:
    """One self-play game in progress: its position, its generator and what it recorded."""

    def __init__(self, game: Game, rng: np.random.Generator):
        self.game, self.rng, self.state = game, rng, game.initial()
        self.states: list[np.ndarray] = []
        self.pis: list[np.ndarray] = []
        self.players: list[int] = []

    def play(self, counts: np.ndarray, temp_moves: int) -> None:
        """Record the search's visit distribution here and make the move it picks."""
        self.states.append(self.game.encode(self.state).astype(np.int8))
        self.pis.append((counts / counts.sum()).astype(np.float32))
        self.players.append(self.state.to_play)
        temperature = 1.0 if len(self.players) <= temp_moves else 0.0
        self.state = self.game.apply(self.state, select_move(counts, temperature, self.rng))


def arena_task(item: tuple[Weights, Weights, int, int, Mapping[str, Any]]) -> dict[str, int]:
    """Play ``n_games`` between a candidate and the best network; the candidate moves first in even games.

    Both search greedily without noise; the first ``arena_temp_moves`` plies are sampled
    from the visit counts (game ``g`` from its own generator seeded by ``(seed, g)``) so the
    games differ. The games are played in lockstep like self-play: each turn, every
    position the candidate must answer goes to its network in one batch per simulation,
    and likewise for the best network. Search without noise is deterministic, so each
    side searches a position once and reuses its visit counts. Returns the candidate's
    wins, draws, losses and the network calls and positions both sides used.
    """
    candidate_weights, best_weights, seed, n_games, settings = item
    game = get_game(settings["game"])
    sims, c_puct = int(settings["simulations"]), float(settings["c_puct"])
    temp_moves = int(settings["arena_temp_moves"])
    sides = [(_evaluator(game, weights, settings), {}) for weights in (candidate_weights, best_weights)]
    width = max(1, int(settings.get("lockstep") or n_games or 1))
    games = [_ArenaGame(game, np.random.default_rng([seed, g]), 1 if g % 2 == 0 else -1) for g in range(n_games)]
    for start in range(0, n_games, width):
        playing = games[start:start + width]
        while playing:
            turn = [[g for g in playing if g.side_to_move == side] for side in (0, 1)]  # one move per game
            for (evaluate, memo), movers in zip(sides, turn):
                todo = {g.state.key: g.state for g in movers if g.state.key not in memo}
                if todo:
                    found = run_mcts_many(game, list(todo.values()), evaluate.many, sims, c_puct)
                    memo.update(zip(todo, found))
                for g in movers:
                    g.play(memo[g.state.key], temp_moves)
            playing = [g for g in playing if g.state.winner is None]
    results = [g.state.winner * g.candidate_colour for g in games]
    return {"wins": int(sum(r > 0 for r in results)), "draws": int(sum(r == 0 for r in results)),
            "losses": int(sum(r < 0 for r in results)),
            "net_calls": sum(e.calls for e, _ in sides), "net_positions": sum(e.positions for e, _ in sides)}


class _ArenaGame:
    """One arena game in progress: its position, its generator and the candidate's colour."""

    def __init__(self, game: Game, rng: np.random.Generator, candidate_colour: int):
        self.game, self.rng, self.candidate_colour = game, rng, candidate_colour
        self.state, self.ply = game.initial(), 0

    @property
    def side_to_move(self) -> int:
        """0 when the candidate moves, 1 when the best network does."""
        return 0 if self.state.to_play == self.candidate_colour else 1

    def play(self, counts: np.ndarray, temp_moves: int) -> None:
        temperature = 1.0 if self.ply < temp_moves else 0.0
        self.state = self.game.apply(self.state, select_move(counts, temperature, self.rng))
        self.ply += 1
