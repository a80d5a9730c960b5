"""Matches between players, counted from the agent's side, with both colours.

:func:`match` plays a number of games against an opponent (random or lookahead), half
of them with the agent moving first. :func:`minimax_all_lines` is the complete test
against exact play: it follows *every* optimal reply of the minimax player against a
deterministic agent, so "only draws" there means the agent holds the draw against any
perfect opponent, not just against a few sampled ones.
"""
from __future__ import annotations

import dataclasses
from typing import Self

from .games import Game, State
from .players import MinimaxPlayer, Player, play_game

__all__ = ["Record", "match", "minimax_all_lines"]


@dataclasses.dataclass
class Record:
    """Results from the agent's side."""

    wins: int = 0
    draws: int = 0
    losses: int = 0

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    def add(self, agent_result: int) -> None:
        if agent_result > 0:
            self.wins += 1
        elif agent_result < 0:
            self.losses += 1
        else:
            self.draws += 1

    def __iadd__(self, other: Record) -> Self:
        self.wins += other.wins
        self.draws += other.draws
        self.losses += other.losses
        return self


def match(game: Game, agent: Player, opponent: Player, games_per_colour: int) -> tuple[Record, Record]:
    """``(as_first, as_second)`` records of ``agent`` over ``games_per_colour`` games each."""
    as_first, as_second = Record(), Record()
    for _ in range(games_per_colour):
        as_first.add(play_game(game, agent, opponent))
        as_second.add(-play_game(game, opponent, agent))
    return as_first, as_second


def minimax_all_lines(game: Game, agent: Player) -> tuple[Record, Record]:
    """Play ``agent`` against every line of optimal minimax play; ``(as_first, as_second)``.

    ``agent`` must be deterministic (an :class:`~.players.MCTSPlayer` is): its move is
    asked once per position and reused on every line through it.
    """
    minimax = MinimaxPlayer(game)
    agent_moves: dict[bytes, int] = {}

    def explore(state: State, agent_colour: int, record: Record) -> None:
        if state.winner is not None:
            record.add(state.winner * agent_colour)
            return
        if state.to_play == agent_colour:
            move = agent_moves.get(state.key)
            if move is None:
                move = agent_moves[state.key] = agent(state)
            explore(game.apply(state, move), agent_colour, record)
        else:
            for move in minimax.optimal_moves(state):
                explore(game.apply(state, move), agent_colour, record)

    as_first, as_second = Record(), Record()
    explore(game.initial(), 1, as_first)
    explore(game.initial(), -1, as_second)
    return as_first, as_second
