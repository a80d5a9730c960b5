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
from .mcts import run_mcts, select_move
from .net import NetEvaluator, build_net

__all__ = ["SETTING_KEYS", "arena_task", "selfplay_task"]

# What a task reads from ``settings`` (the trainer copies these from its hyperparameters).
SETTING_KEYS = ("game", "channels", "blocks", "simulations", "c_puct", "dirichlet_alpha",
                "noise_frac", "temp_moves", "arena_temp_moves")

Weights = Mapping[str, torch.Tensor]


def _evaluator(game: Game, weights: Weights, settings: Mapping[str, Any]) -> NetEvaluator:
    net = build_net(game, int(settings["channels"]), int(settings["blocks"]), weights=weights)
    # The trainer's tasks play on the CPU of whatever worker runs them (one position per
    # network call); benchmarks/gpu.py sets "device" to time the same games on a GPU.
    return NetEvaluator(net.to(settings.get("device", "cpu")), game)


def selfplay_task(item: tuple[Weights, int, int, Mapping[str, Any]]) -> dict[str, Any]:
    """Play ``n_games`` games of the network against itself.

    Returns ``states`` (n, 2, rows, cols) int8 canonical planes, ``pis`` (n, actions) the
    search's visit distributions, ``zs`` (n,) the final result for the player to move,
    and counts of results and positions.
    """
    weights, seed, n_games, settings = item
    game = get_game(settings["game"])
    rng = np.random.default_rng(seed)
    evaluate = _evaluator(game, weights, settings)
    states, pis, zs = [], [], []
    results = {1: 0, 0: 0, -1: 0}
    for _ in range(n_games):
        state, players = game.initial(), []
        ply = 0
        while state.winner is None:
            counts = run_mcts(game, state, evaluate, int(settings["simulations"]), float(settings["c_puct"]),
                              rng=rng, noise_alpha=float(settings["dirichlet_alpha"]),
                              noise_frac=float(settings["noise_frac"]))
            states.append(game.encode(state).astype(np.int8))
            pis.append((counts / counts.sum()).astype(np.float32))
            players.append(state.to_play)
            temperature = 1.0 if ply < int(settings["temp_moves"]) else 0.0
            state = game.apply(state, select_move(counts, temperature, rng))
            ply += 1
        results[state.winner] += 1
        zs.extend(float(state.winner * p) for p in players)
    shape = (0, 2, game.rows, game.cols)
    return {
        "states": np.stack(states) if states else np.zeros(shape, dtype=np.int8),
        "pis": np.stack(pis) if pis else np.zeros((0, game.action_size), dtype=np.float32),
        "zs": np.asarray(zs, dtype=np.float32),
        "first_wins": results[1], "draws": results[0], "second_wins": results[-1],
        "net_calls": evaluate.calls,
    }


def arena_task(item: tuple[Weights, Weights, int, int, Mapping[str, Any]]) -> dict[str, int]:
    """Play ``n_games`` between a candidate and the best network; the candidate moves first in even games.

    Both search greedily without noise; the first ``arena_temp_moves`` plies are sampled
    from the visit counts so the games differ. Returns the candidate's wins, draws, losses.
    """
    candidate_weights, best_weights, seed, n_games, settings = item
    game = get_game(settings["game"])
    rng = np.random.default_rng(seed)
    sims, c_puct = int(settings["simulations"]), float(settings["c_puct"])
    sides = []
    for weights in (candidate_weights, best_weights):
        # Search without noise is deterministic, so each side's visit counts per position are reused.
        sides.append((_evaluator(game, weights, settings), {}))
    out = {"wins": 0, "draws": 0, "losses": 0}
    for g in range(n_games):
        candidate_colour = 1 if g % 2 == 0 else -1
        state, ply = game.initial(), 0
        while state.winner is None:
            evaluate, memo = sides[0] if state.to_play == candidate_colour else sides[1]
            counts = memo.get(state.key)
            if counts is None:
                counts = memo[state.key] = run_mcts(game, state, evaluate, sims, c_puct)
            temperature = 1.0 if ply < int(settings["arena_temp_moves"]) else 0.0
            state = game.apply(state, select_move(counts, temperature, rng))
            ply += 1
        result = state.winner * candidate_colour
        out["wins" if result > 0 else "losses" if result < 0 else "draws"] += 1
    return out
