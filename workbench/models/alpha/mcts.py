"""PUCT Monte-Carlo tree search, as in AlphaZero.

The search is told how to judge a position by an ``evaluate(state) -> (priors, value)``
callable: ``priors`` over all actions (illegal ones are ignored), ``value`` in [-1, 1]
for the player to move. A network does this in training; a uniform evaluator
(:func:`uniform_evaluator`) turns the search into plain MCTS, which the tests use to
check the search itself.

Values in the tree are always seen from the player who chooses at a node, so a child's
value is negated on the way up (the players alternate).

:func:`run_mcts_many` runs independent searches in lockstep: each simulation round walks
every tree down to one leaf and asks a batch evaluator about all the leaves at once, so a
network judges many positions per call (a GPU, and even a CPU, does that far faster than
one position at a time). Each tree gets the same simulations it would get alone.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .games import Game, State

__all__ = ["Evaluate", "EvaluateMany", "run_mcts", "run_mcts_many", "select_move", "uniform_evaluator"]

Evaluate = Callable[[State], tuple[np.ndarray, float]]
EvaluateMany = Callable[[list[State]], list[tuple[np.ndarray, float]]]


class _Node:
    __slots__ = ("children", "moves", "prior", "state", "value_sum", "visits")

    def __init__(self, state: State):
        self.state = state
        self.moves: np.ndarray | None = None  # None until expanded
        self.prior = self.visits = self.value_sum = None
        self.children: list[_Node | None] = []


def _expand(node: _Node, game: Game, evaluate: Evaluate) -> float:
    """Ask the evaluator about ``node`` and prepare its edges; return its value."""
    priors, value = evaluate(node.state)
    return _expand_with(node, game, priors, value)


def _expand_with(node: _Node, game: Game, priors: np.ndarray, value: float) -> float:
    moves = game.legal_moves(node.state)
    p = np.asarray(priors, dtype=np.float64)[moves]
    total = p.sum()
    # A network can give (almost) zero mass to every legal move; fall back to uniform.
    node.prior = p / total if total > 1e-12 else np.full(len(moves), 1.0 / len(moves))
    node.moves = moves
    node.visits = np.zeros(len(moves), dtype=np.float64)
    node.value_sum = np.zeros(len(moves), dtype=np.float64)
    node.children = [None] * len(moves)
    return float(value)


def _select(node: _Node, c_puct: float) -> int:
    total = node.visits.sum()
    # Unvisited edges count as a draw (Q=0): neither optimistic nor pessimistic.
    q = np.divide(node.value_sum, node.visits, out=np.zeros_like(node.value_sum), where=node.visits > 0)
    u = c_puct * node.prior * math.sqrt(max(total, 1.0)) / (1.0 + node.visits)
    return int(np.argmax(q + u))


def run_mcts(
    game: Game,
    root_state: State,
    evaluate: Evaluate,
    simulations: int,
    c_puct: float = 1.5,
    rng: np.random.Generator | None = None,
    noise_alpha: float = 0.0,
    noise_frac: float = 0.0,
) -> np.ndarray:
    """Search from ``root_state``; return visit counts over all actions (length ``action_size``).

    Dirichlet noise (``noise_alpha`` > 0 and ``noise_frac`` > 0, drawn from ``rng``) is
    mixed into the root priors so self-play explores moves the network dismisses.
    """
    return run_mcts_many(game, [root_state], lambda states: [evaluate(s) for s in states], simulations, c_puct,
                         [rng], noise_alpha, noise_frac)[0]


def run_mcts_many(
    game: Game,
    root_states: list[State],
    evaluate_many: EvaluateMany,
    simulations: int,
    c_puct: float = 1.5,
    rngs: list[np.random.Generator | None] | None = None,
    noise_alpha: float = 0.0,
    noise_frac: float = 0.0,
) -> list[np.ndarray]:
    """One search per root state, in lockstep; return each one's visit counts.

    ``evaluate_many(states)`` answers for a list of positions at once; ``rngs`` gives each
    root its own noise generator, so every search's result is what :func:`run_mcts` would
    give for that root alone (up to the evaluator's float rounding in a batch).
    """
    if any(state.winner is not None for state in root_states):
        raise ValueError("run_mcts: the game is already over")
    rngs = rngs if rngs is not None else [None] * len(root_states)
    roots = [_Node(state) for state in root_states]
    for root, (priors, value) in zip(roots, evaluate_many(root_states)):
        _expand_with(root, game, priors, value)
    if noise_alpha > 0 and noise_frac > 0:
        for root, rng in zip(roots, rngs):
            if len(root.moves) > 1:
                if rng is None:
                    raise ValueError("run_mcts: root noise needs an rng")
                noise = rng.dirichlet(np.full(len(root.moves), noise_alpha))
                root.prior = (1 - noise_frac) * root.prior + noise_frac * noise
    for _ in range(simulations):
        paths, leaves, values = [], [], []
        for root in roots:
            path, value, leaf = _descend(root, game, c_puct)
            paths.append(path)
            values.append(value)
            if leaf is not None:
                leaves.append((len(values) - 1, leaf))
        if leaves:
            answers = evaluate_many([leaf.state for _, leaf in leaves])
            for (k, leaf), (priors, value) in zip(leaves, answers):
                values[k] = _expand_with(leaf, game, priors, value)
        for path, value in zip(paths, values):
            for parent, i in reversed(path):
                value = -value
                parent.visits[i] += 1.0
                parent.value_sum[i] += value
    out = []
    for root in roots:
        counts = np.zeros(game.action_size, dtype=np.float64)
        counts[root.moves] = root.visits
        out.append(counts)
    return out


def _descend(root: _Node, game: Game, c_puct: float) -> tuple[list[tuple[_Node, int]], float, _Node | None]:
    """Walk from ``root`` to a terminal position (its value) or an unexpanded leaf (to evaluate)."""
    node, path = root, []
    while True:
        state = node.state
        if state.winner is not None:
            return path, float(state.winner * state.to_play), None
        if node.moves is None:
            return path, 0.0, node
        i = _select(node, c_puct)
        path.append((node, i))
        child = node.children[i]
        if child is None:
            child = node.children[i] = _Node(game.apply(state, node.moves[i]))
        node = child


def select_move(counts: np.ndarray, temperature: float, rng: np.random.Generator | None = None) -> int:
    """Pick a move from visit counts: sample at ``temperature`` > 0, else the most visited."""
    if temperature <= 0 or rng is None:
        return int(np.argmax(counts))
    weights = counts ** (1.0 / temperature)
    return int(rng.choice(len(counts), p=weights / weights.sum()))


def uniform_evaluator(game: Game) -> Evaluate:
    """Uniform priors and a neutral value: MCTS driven by game results alone."""
    flat = np.full(game.action_size, 1.0 / game.action_size)

    def evaluate(state: State) -> tuple[np.ndarray, float]:
        return flat, 0.0

    return evaluate
