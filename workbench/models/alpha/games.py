"""Board-game rules: tic-tac-toe and Connect Four.

A :class:`State` is immutable: :meth:`Game.apply` returns a new one, so a search tree can
keep every position it visited. Boards are flat ``int8`` arrays (row-major, row 0 at the
top): ``+1`` is a stone of the first player, ``-1`` of the second, ``0`` empty. The winner
is decided when a move is applied, by checking only the lines through the new stone,
because that is what makes the search loop cheap.

Example::

    game = get_game("tictactoe")
    s = game.from_moves([4, 0, 2, 6, 3, 5, 1])
    s.winner  # None while the game goes on, +1 / -1 for a win, 0 for a draw
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["GAMES", "ConnectFour", "Game", "IllegalMoveError", "State", "TicTacToe", "get_game"]


class IllegalMoveError(ValueError):
    """A move that the rules do not allow in this position."""


class State:
    """A position: the board, who moves next (+1 first player, -1 second) and the result."""

    __slots__ = ("board", "key", "to_play", "winner")

    def __init__(self, board: np.ndarray, to_play: int, winner: int | None):
        self.board = board
        self.to_play = to_play
        self.winner = winner
        # Who is to move follows from the stone count, so the board bytes identify the position.
        self.key = board.tobytes()

    @property
    def done(self) -> bool:
        return self.winner is not None


class Game:
    """Rules of a two-player, alternating, drop-or-place board game on a grid."""

    name: str = ""
    rows: int = 0
    cols: int = 0
    in_a_row: int = 0
    action_size: int = 0

    def __init__(self) -> None:
        lines = _lines(self.rows, self.cols, self.in_a_row)
        cells = self.rows * self.cols
        # For each cell, the winning lines through it: the only ones a new stone can complete.
        self._lines_through = [lines[np.any(lines == c, axis=1)] for c in range(cells)]
        self.board_perms, self.action_perms = self._symmetries()

    # -- rules ------------------------------------------------------------------------
    def initial(self) -> State:
        return State(np.zeros(self.rows * self.cols, dtype=np.int8), 1, None)

    def legal_mask(self, state: State) -> np.ndarray:
        """Boolean mask over actions; all False once the game is over."""
        if state.winner is not None:
            return np.zeros(self.action_size, dtype=bool)
        return self._open(state.board)

    def legal_moves(self, state: State) -> np.ndarray:
        return np.flatnonzero(self.legal_mask(state))

    def apply(self, state: State, action: int) -> State:
        """The position after the player to move plays ``action``."""
        action = int(action)
        if state.winner is not None:
            raise IllegalMoveError(f"{self.name}: the game is over, no move {action} allowed")
        if not 0 <= action < self.action_size or not self._open(state.board)[action]:
            raise IllegalMoveError(f"{self.name}: move {action} is not legal here")
        cell = self._cell_of(state.board, action)
        board = state.board.copy()
        board[cell] = state.to_play
        through = self._lines_through[cell]
        if np.any(board[through].sum(axis=1) == self.in_a_row * state.to_play):
            winner: int | None = state.to_play
        elif not board.all():
            winner = None
        else:
            winner = 0
        return State(board, -state.to_play, winner)

    def from_moves(self, moves: Iterable[int]) -> State:
        state = self.initial()
        for move in moves:
            state = self.apply(state, move)
        return state

    # -- network view -----------------------------------------------------------------
    def encode(self, state: State) -> np.ndarray:
        """Canonical planes ``(2, rows, cols)``: stones of the player to move, then the opponent's.

        Seen from the player to move, so one network plays both colours.
        """
        own = state.board == state.to_play
        other = state.board == -state.to_play
        return np.stack([own, other]).astype(np.float32).reshape(2, self.rows, self.cols)

    def render(self, state: State) -> str:
        marks = {1: "X", -1: "O", 0: "."}
        grid = state.board.reshape(self.rows, self.cols)
        return "\n".join("".join(marks[int(v)] for v in row) for row in grid)

    # -- game specifics ---------------------------------------------------------------
    def _open(self, board: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _cell_of(self, board: np.ndarray, action: int) -> int:
        raise NotImplementedError

    def _symmetries(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class TicTacToe(Game):
    """3x3, three in a row; an action is a cell index 0..8."""

    name, rows, cols, in_a_row, action_size = "tictactoe", 3, 3, 3, 9

    def _open(self, board: np.ndarray) -> np.ndarray:
        return board == 0

    def _cell_of(self, board: np.ndarray, action: int) -> int:
        return action

    def _symmetries(self) -> tuple[np.ndarray, np.ndarray]:
        # The 8 symmetries of the square; new[i] = old[perm[i]], and actions are cells.
        grid = np.arange(9).reshape(3, 3)
        perms = []
        for k in range(4):
            rotated = np.rot90(grid, k)
            perms.append(rotated.ravel())
            perms.append(np.fliplr(rotated).ravel())
        perms_arr = np.array(perms, dtype=np.int64)
        return perms_arr, perms_arr.copy()


class ConnectFour(Game):
    """6 rows by 7 columns, four in a row; an action is a column 0..6, the stone drops down."""

    name, rows, cols, in_a_row, action_size = "connect4", 6, 7, 4, 7

    def _open(self, board: np.ndarray) -> np.ndarray:
        return board[: self.cols] == 0

    def _cell_of(self, board: np.ndarray, action: int) -> int:
        empty_in_column = int(np.count_nonzero(board[action :: self.cols] == 0))
        return (empty_in_column - 1) * self.cols + action

    def _symmetries(self) -> tuple[np.ndarray, np.ndarray]:
        grid = np.arange(self.rows * self.cols).reshape(self.rows, self.cols)
        board_perms = np.array([grid.ravel(), np.fliplr(grid).ravel()], dtype=np.int64)
        action_perms = np.array([np.arange(self.cols), np.arange(self.cols)[::-1]], dtype=np.int64)
        return board_perms, action_perms


def _lines(rows: int, cols: int, k: int) -> np.ndarray:
    """Every run of ``k`` cells in a row, column or diagonal, as cell indices."""
    out = []
    for r in range(rows):
        for c in range(cols):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                end_r, end_c = r + dr * (k - 1), c + dc * (k - 1)
                if 0 <= end_r < rows and 0 <= end_c < cols:
                    out.append([(r + dr * i) * cols + c + dc * i for i in range(k)])
    return np.array(out, dtype=np.int64)


GAMES: dict[str, type[Game]] = {"tictactoe": TicTacToe, "connect4": ConnectFour}
_INSTANCES: dict[str, Game] = {}


def get_game(name: str) -> Game:
    """The rules object for ``name`` (shared: games hold no per-game state)."""
    if name not in GAMES:
        raise ValueError(f"unknown game {name!r}; expected one of {sorted(GAMES)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = GAMES[name]()
    return _INSTANCES[name]
