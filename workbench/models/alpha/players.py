"""Players: ``player(state) -> action``. Baselines to measure against, and the search player.

- :class:`RandomPlayer`: a uniformly random legal move.
- :class:`MinimaxPlayer`: exact game-theoretic play for tic-tac-toe (memoised negamax over
  all 5,478 positions); among equally good moves it picks at random, and
  :meth:`MinimaxPlayer.optimal_moves` lists them all, so an evaluation can try every one.
- :class:`LookaheadPlayer`: Connect Four's usual yardstick: win if it can, block the
  opponent's immediate win if it must, else random.
- :class:`MCTSPlayer`: tree search guided by an evaluator (a network), temperature 0, no
  noise: deterministic, so its move per position can be memoised during an evaluation.
"""
from __future__ import annotations

import numpy as np

from .games import Game, State
from .mcts import Evaluate, run_mcts

__all__ = ["LookaheadPlayer", "MCTSPlayer", "MinimaxPlayer", "Player", "RandomPlayer", "play_game"]


class Player:
    """Base of the players; subclasses implement :meth:`__call__`."""

    def __call__(self, state: State) -> int:
        raise NotImplementedError


class RandomPlayer(Player):
    def __init__(self, game: Game, rng: np.random.Generator):
        self.game, self.rng = game, rng

    def __call__(self, state: State) -> int:
        return int(self.rng.choice(self.game.legal_moves(state)))


# Negamax values per position key, shared by every MinimaxPlayer of the process: the value of
# a position never changes, and tic-tac-toe has only a few thousand.
_NEGAMAX: dict[tuple[str, bytes], int] = {}


class MinimaxPlayer(Player):
    """Exact play by full-depth negamax (tic-tac-toe; Connect Four is far too large)."""

    def __init__(self, game: Game, rng: np.random.Generator | None = None):
        if game.name != "tictactoe":
            raise ValueError(f"exact minimax is only feasible for tic-tac-toe, not {game.name}")
        self.game, self.rng = game, rng

    def value(self, state: State) -> int:
        """+1 / 0 / -1: the result the player to move gets with best play from both sides."""
        if state.winner is not None:
            return state.winner * state.to_play
        key = (self.game.name, state.key)
        cached = _NEGAMAX.get(key)
        if cached is None:
            cached = max(-self.value(self.game.apply(state, m)) for m in self.game.legal_moves(state))
            _NEGAMAX[key] = cached
        return cached

    def optimal_moves(self, state: State) -> list[int]:
        """Every move that keeps the position's value."""
        moves = [int(m) for m in self.game.legal_moves(state)]
        scores = [-self.value(self.game.apply(state, m)) for m in moves]
        best = max(scores)
        return [m for m, s in zip(moves, scores) if s == best]

    def __call__(self, state: State) -> int:
        moves = self.optimal_moves(state)
        if self.rng is None:
            return moves[0]
        return int(self.rng.choice(moves))


class LookaheadPlayer(Player):
    """One-step lookahead: take a winning move, else block the opponent's, else random."""

    def __init__(self, game: Game, rng: np.random.Generator):
        self.game, self.rng = game, rng

    def __call__(self, state: State) -> int:
        moves = self.game.legal_moves(state)
        for m in moves:
            if self.game.apply(state, m).winner == state.to_play:
                return int(m)
        # Where would the opponent win if it were their turn? Play there first.
        as_opponent = State(state.board, -state.to_play, None)
        for m in moves:
            if self.game.apply(as_opponent, m).winner == -state.to_play:
                return int(m)
        return int(self.rng.choice(moves))


class MCTSPlayer(Player):
    """Greedy search player; ``memoise`` caches its (deterministic) move per position."""

    def __init__(self, game: Game, evaluate: Evaluate, simulations: int, c_puct: float = 1.5,
                 memoise: bool = True):
        self.game, self.evaluate = game, evaluate
        self.simulations, self.c_puct = simulations, c_puct
        self._moves: dict[bytes, int] | None = {} if memoise else None

    def __call__(self, state: State) -> int:
        if self._moves is not None and state.key in self._moves:
            return self._moves[state.key]
        counts = run_mcts(self.game, state, self.evaluate, self.simulations, self.c_puct)
        move = int(np.argmax(counts))
        if self._moves is not None:
            self._moves[state.key] = move
        return move


def play_game(game: Game, first: Player, second: Player, state: State | None = None) -> int:
    """Play to the end; return +1 if ``first`` wins, -1 if ``second`` wins, 0 for a draw."""
    state = game.initial() if state is None else state
    while state.winner is None:
        player = first if state.to_play == 1 else second
        state = game.apply(state, player(state))
    return state.winner
