"""``alpha_deep_model``: AlphaZero-style self-play on tic-tac-toe and Connect Four.

Importing this package registers the trainer. The parts are usable on their own: the
game rules (:mod:`.games`), the tree search (:mod:`.mcts`), the network (:mod:`.net`),
baseline players (:mod:`.players`), matches (:mod:`.arena`) and the parallel self-play
tasks (:mod:`.selfplay`).
"""
from ._trainer import AlphaTrainer
from .arena import Record, match, minimax_all_lines
from .games import ConnectFour, Game, IllegalMoveError, State, TicTacToe, get_game
from .mcts import run_mcts, run_mcts_many, select_move, uniform_evaluator
from .net import NetEvaluator, PolicyValueNet, build_net
from .players import LookaheadPlayer, MCTSPlayer, MinimaxPlayer, RandomPlayer, play_game
from .selfplay import arena_task, selfplay_task

__all__ = [
    "AlphaTrainer",
    "ConnectFour",
    "Game",
    "IllegalMoveError",
    "LookaheadPlayer",
    "MCTSPlayer",
    "MinimaxPlayer",
    "NetEvaluator",
    "PolicyValueNet",
    "RandomPlayer",
    "Record",
    "State",
    "TicTacToe",
    "arena_task",
    "build_net",
    "get_game",
    "match",
    "minimax_all_lines",
    "play_game",
    "run_mcts",
    "run_mcts_many",
    "select_move",
    "selfplay_task",
    "uniform_evaluator",
]
