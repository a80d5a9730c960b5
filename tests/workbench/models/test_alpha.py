"""alpha_deep_model: game rules, minimax, search, self-play tasks, learning and resume."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from workbench.data.catalog import load_dataset
from workbench.models.alpha import (
    AlphaTrainer,
    IllegalMoveError,
    LookaheadPlayer,
    MinimaxPlayer,
    NetEvaluator,
    RandomPlayer,
    State,
    build_net,
    get_game,
    match,
    minimax_all_lines,
    run_mcts,
    run_mcts_many,
    arena_task,
    selfplay_task,
    uniform_evaluator,
)
from workbench.trainer import Resources, StepContext, validate_hparams

torch.set_num_threads(1)

TTT = get_game("tictactoe")
C4 = get_game("connect4")


# -- rules ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "moves, winner",
    [
        ([0, 3, 1, 4, 2], 1),  # top row
        ([3, 0, 4, 1, 8, 2], -1),  # second player, top row
        ([0, 1, 3, 2, 6], 1),  # left column
        ([0, 1, 4, 2, 8], 1),  # main diagonal
        ([2, 0, 4, 1, 6], 1),  # anti-diagonal
    ],
)
def test_tictactoe_wins(moves, winner):
    state = TTT.from_moves(moves[:-1])
    assert state.winner is None
    assert TTT.apply(state, moves[-1]).winner == winner


def test_tictactoe_draw_and_illegal_moves():
    state = TTT.from_moves([0, 4, 8, 1, 7, 6, 2, 5, 3])
    assert state.winner == 0 and state.done
    assert not TTT.legal_mask(state).any()
    with pytest.raises(IllegalMoveError, match="over"):
        TTT.apply(state, 0)
    occupied = TTT.from_moves([4])
    with pytest.raises(IllegalMoveError, match="not legal"):
        TTT.apply(occupied, 4)
    with pytest.raises(IllegalMoveError):
        TTT.apply(occupied, 9)
    assert occupied.to_play == -1 and list(TTT.legal_moves(occupied)) == [0, 1, 2, 3, 5, 6, 7, 8]


@pytest.mark.parametrize(
    "moves, winner",
    [
        ([0, 0, 1, 1, 2, 2, 3], 1),  # horizontal along the bottom
        ([0, 1, 0, 1, 0, 1, 0], 1),  # vertical
        ([0, 1, 1, 2, 2, 3, 2, 3, 3, 6, 3], 1),  # rising diagonal
        ([6, 5, 5, 4, 4, 3, 4, 3, 3, 0, 3], 1),  # falling diagonal
        ([6, 0, 6, 1, 6, 2, 5, 3], -1),  # second player, horizontal
    ],
)
def test_connect4_wins(moves, winner):
    state = C4.from_moves(moves[:-1])
    assert state.winner is None
    assert C4.apply(state, moves[-1]).winner == winner


def test_connect4_stones_drop_and_full_column_is_illegal():
    state = C4.from_moves([3, 3, 3, 3, 3, 3])
    grid = state.board.reshape(6, 7)
    assert list(grid[:, 3]) == [-1, 1, -1, 1, -1, 1]  # first stone at the bottom
    assert not C4.legal_mask(state)[3]
    with pytest.raises(IllegalMoveError):
        C4.apply(state, 3)


def test_connect4_full_board_without_four_is_a_draw():
    row = np.array([1, 1, -1, -1, 1, 1, -1], dtype=np.int8)
    board = np.stack([row, -row] * 3).ravel().copy()
    board[2] = 0  # the last empty cell: top of column 2, which belongs to the second player
    state = State(board, -1, None)
    assert C4.apply(state, 2).winner == 0


def test_symmetries_commute_with_moves():
    state = TTT.from_moves([0, 4, 5])
    for board_perm, action_perm in zip(TTT.board_perms, TTT.action_perms):
        moved_then_turned = TTT.apply(state, 2).board[board_perm]
        turned = State(state.board[board_perm], state.to_play, None)
        turned_then_moved = TTT.apply(turned, int(np.flatnonzero(action_perm == 2)[0])).board
        assert np.array_equal(moved_then_turned, turned_then_moved)


# -- baseline players ----------------------------------------------------------------------
def test_minimax_values_known_positions():
    minimax = MinimaxPlayer(TTT)
    assert minimax.value(TTT.initial()) == 0  # tic-tac-toe is a draw
    threat = TTT.from_moves([0, 3, 1, 4])  # X to move, can complete the top row
    assert minimax.value(threat) == 1 and minimax.optimal_moves(threat) == [2]
    must_block = TTT.from_moves([0, 4, 1])  # O to move, must block at 2
    assert minimax.value(must_block) == 0 and minimax.optimal_moves(must_block) == [2]
    fork = TTT.from_moves([0, 1, 4, 8, 6])  # X threatens 2-4-6 and 0-3-6: O is lost
    assert minimax.value(fork) == -1
    corner_reply_loses_not = TTT.from_moves([4])  # against a centre opening, only corners draw
    assert sorted(minimax.optimal_moves(corner_reply_loses_not)) == [0, 2, 6, 8]


def test_minimax_never_loses_and_all_lines_against_itself_draw():
    rng = np.random.default_rng(0)
    first, second = match(TTT, MinimaxPlayer(TTT, rng), RandomPlayer(TTT, rng), 20)
    assert first.losses == 0 and second.losses == 0 and first.wins > 10
    first, second = minimax_all_lines(TTT, MinimaxPlayer(TTT))
    assert first.draws == first.games > 0 and second.draws == second.games > 0


def test_lookahead_wins_then_blocks():
    rng = np.random.default_rng(0)
    player = LookaheadPlayer(C4, rng)
    assert player(C4.from_moves([0, 6, 0, 6, 0, 5])) == 0  # own three in column 0
    assert player(C4.from_moves([1, 0, 1, 0, 2, 0])) == 0  # block O's column 0
    first, second = match(C4, player, RandomPlayer(C4, rng), 10)
    assert first.wins + second.wins >= 16


# -- search --------------------------------------------------------------------------------
@pytest.mark.parametrize("game, moves, expected", [
    (TTT, [0, 3, 1, 4], 2),  # win
    (TTT, [0, 4, 1], 2),  # block
    (C4, [3, 0, 3, 0, 3, 1], 3),  # win in the column
    (C4, [0, 3, 6, 3, 6, 3], 3),  # block the column
])
def test_mcts_finds_winning_and_blocking_moves(game, moves, expected):
    counts = run_mcts(game, game.from_moves(moves), uniform_evaluator(game), simulations=300)
    assert int(np.argmax(counts)) == expected
    assert counts.sum() == 300


def test_mcts_with_root_noise_is_reproducible():
    state = C4.from_moves([3])
    a = run_mcts(C4, state, uniform_evaluator(C4), 50, rng=np.random.default_rng(1), noise_alpha=1.0, noise_frac=0.25)
    b = run_mcts(C4, state, uniform_evaluator(C4), 50, rng=np.random.default_rng(1), noise_alpha=1.0, noise_frac=0.25)
    assert np.array_equal(a, b)


def test_selfplay_task_is_picklable_and_deterministic():
    settings = {"game": "tictactoe", "channels": 8, "blocks": 1, "simulations": 8, "c_puct": 1.5,
                "dirichlet_alpha": 1.0, "noise_frac": 0.25, "temp_moves": 4, "arena_temp_moves": 2}
    weights = build_net(TTT, 8, 1, seed=0).state_dict()
    item = pickle.loads(pickle.dumps((weights, 123, 3, settings)))
    a, b = pickle.loads(pickle.dumps(selfplay_task))(item), selfplay_task((weights, 123, 3, settings))
    assert np.array_equal(a["states"], b["states"]) and np.array_equal(a["pis"], b["pis"])
    assert a["first_wins"] + a["draws"] + a["second_wins"] == 3
    assert len(a["zs"]) == len(a["states"]) >= 15  # at least 5 plies a game
    assert np.allclose(a["pis"].sum(axis=1), 1.0)
    assert set(np.unique(a["zs"])) <= {-1.0, 0.0, 1.0}


def test_lockstep_searches_give_each_root_what_a_search_alone_gives():
    """Searches run together (one batch of leaves per simulation) match searches run one by one."""
    net = NetEvaluator(build_net(C4, 8, 1, seed=3), C4)
    roots = [C4.from_moves(m) for m in ([3], [3, 3], [0, 1, 2], [6, 5, 4, 3])]
    alone = [run_mcts(C4, r, net, 40, rng=np.random.default_rng(i), noise_alpha=1.0, noise_frac=0.25)
             for i, r in enumerate(roots)]
    fresh = NetEvaluator(build_net(C4, 8, 1, seed=3), C4)
    together = run_mcts_many(C4, roots, fresh.many, 40, rngs=[np.random.default_rng(i) for i in range(4)],
                             noise_alpha=1.0, noise_frac=0.25)
    for a, b in zip(alone, together):
        assert np.array_equal(a, b)
    assert fresh.calls < net.calls  # fewer, larger network calls


def test_selfplay_games_do_not_depend_on_the_lockstep_width():
    settings = {"game": "tictactoe", "channels": 8, "blocks": 1, "simulations": 8, "c_puct": 1.5,
                "dirichlet_alpha": 1.0, "noise_frac": 0.25, "temp_moves": 4, "arena_temp_moves": 2}
    weights = build_net(TTT, 8, 1, seed=0).state_dict()
    one = selfplay_task((weights, 5, 6, {**settings, "lockstep": 1}))
    all_ = selfplay_task((weights, 5, 6, {**settings, "lockstep": 0}))
    three = selfplay_task((weights, 5, 6, {**settings, "lockstep": 3}))
    for other in (all_, three):
        assert np.array_equal(one["states"], other["states"]) and np.allclose(one["pis"], other["pis"])
        assert np.array_equal(one["zs"], other["zs"])
    assert all_["net_calls"] < one["net_calls"] and all_["net_positions"] == one["net_positions"]


def test_arena_results_do_not_depend_on_the_lockstep_width():
    settings = {"game": "connect4", "channels": 8, "blocks": 1, "simulations": 12, "c_puct": 1.5,
                "dirichlet_alpha": 1.0, "noise_frac": 0.25, "temp_moves": 4, "arena_temp_moves": 4}
    candidate, best = build_net(C4, 8, 1, seed=0).state_dict(), build_net(C4, 8, 1, seed=1).state_dict()
    one = arena_task((candidate, best, 7, 8, {**settings, "lockstep": 1}))
    all_ = arena_task((candidate, best, 7, 8, {**settings, "lockstep": 0}))
    three = arena_task((candidate, best, 7, 8, {**settings, "lockstep": 3}))
    for other in (all_, three):
        assert {k: other[k] for k in ("wins", "draws", "losses")} == {k: one[k] for k in ("wins", "draws", "losses")}
    assert one["wins"] + one["draws"] + one["losses"] == 8
    assert all_["net_calls"] < one["net_calls"] and all_["net_positions"] == one["net_positions"]


def test_arena_gives_each_colour_to_each_network_in_turn():
    """A network against itself: with no sampled openings the games are the same per colour."""
    settings = {"game": "tictactoe", "channels": 8, "blocks": 1, "simulations": 16, "c_puct": 1.5,
                "dirichlet_alpha": 1.0, "noise_frac": 0.25, "temp_moves": 0, "arena_temp_moves": 0}
    weights = build_net(TTT, 8, 1, seed=2).state_dict()
    result = arena_task((weights, weights, 3, 6, settings))
    # Greedy play of one network is one game; the candidate is first in 3 and second in 3.
    assert result["wins"] == result["losses"]
    assert result["wins"] + result["draws"] + result["losses"] == 6


# -- trainer -------------------------------------------------------------------------------
TINY = {"steps_per_epoch": 80, "games_per_epoch": 24, "simulations": 24, "arena_games": 0,
        "eval_games": 40, "eval_simulations": 2, "eval_minimax": False, "temp_moves": 9, "selfplay_tasks": 2}


def _trainer(overrides: dict, game: str = "tictactoe", seed: int = 0) -> AlphaTrainer:
    hparams, problems = validate_hparams(AlphaTrainer.hyperparameters, overrides)
    assert not problems
    return AlphaTrainer(hparams, load_dataset(game), Resources(), seed)


def _epoch(trainer: AlphaTrainer, ctx: StepContext) -> dict:
    metrics = {}
    for _ in range(trainer.steps_per_epoch):
        metrics.update(trainer.train_step(ctx))
    metrics.update(trainer.on_epoch_end(ctx))
    return metrics


def test_registered_with_game_kind():
    assert AlphaTrainer.name == "alpha_deep_model" and AlphaTrainer.accepts == ("game",)
    assert "lr" in AlphaTrainer.live_hparams()


def test_short_training_beats_the_untrained_network_against_random():
    trainer, ctx = _trainer(TINY), StepContext()
    before = trainer.evaluate()
    for _ in range(3):
        metrics = _epoch(trainer, ctx)
    after = trainer.evaluate()
    assert np.isfinite(metrics["train/loss"])

    def score(m):
        return m["eval/win_rate_vs_random"] + 0.5 * m["eval/draw_rate_vs_random"]

    assert score(after) > score(before) + 0.15, (before, after)
    assert after["eval/loss_rate_vs_random"] < before["eval/loss_rate_vs_random"]


def test_state_dict_round_trip_gives_identical_continuation():
    overrides = {**TINY, "steps_per_epoch": 5, "games_per_epoch": 4, "simulations": 8, "arena_games": 4,
                 "eval_games": 2, "eval_minimax": True, "buffer_size": 60}
    ctx = StepContext()
    original = _trainer(overrides)
    _epoch(original, ctx)
    blob = io.BytesIO()
    torch.save(original.state_dict(), blob)
    blob.seek(0)
    resumed = _trainer(overrides)
    resumed.load_state_dict(torch.load(blob, weights_only=True))
    for trainer in (original, resumed):
        trainer.set_hparam("lr", 1e-3)
    runs = [[_epoch(t, ctx), _epoch(t, ctx), t.evaluate()] for t in (original, resumed)]
    assert runs[0] == runs[1]
    for a, b in zip(original.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)
    assert original.buffer.size == 60  # the ring wrapped, and still matched


def test_knowledge_exchange_adds_positions():
    ctx = StepContext()
    source, sink = _trainer({**TINY, "games_per_epoch": 2, "simulations": 4}, seed=1), _trainer(TINY, seed=2)
    source.train_step(ctx)
    (kind, artifact), = source.export_knowledge().items()
    assert kind == "selfplay/tictactoe" and kind in sink.consumes()
    used = sink.import_knowledge({kind: {"other": artifact}})
    assert used == {"positions": {"other": len(artifact["zs"])}} and len(sink.buffer) == len(artifact["zs"])
    wrong_game = _trainer({**TINY, "eval_games": 0}, game="connect4")
    assert wrong_game.import_knowledge({kind: {"other": artifact}}) == {}


def test_connect4_trainer_runs_and_reports_its_metrics():
    trainer, ctx = _trainer({"steps_per_epoch": 3, "games_per_epoch": 2, "simulations": 4, "arena_games": 2,
                             "eval_games": 1, "eval_simulations": 4, "channels": 8, "blocks": 1},
                             game="connect4"), StepContext()
    metrics = _epoch(trainer, ctx)
    assert metrics["train/selfplay_games"] == 2 and np.isfinite(metrics["train/loss"])
    result = trainer.evaluate()
    assert set(result) >= {"eval/win_rate_vs_random", "eval/win_rate_vs_lookahead"}
    assert all(0.0 <= v <= 1.0 for v in result.values())


def test_bf16_precision_runs_the_network_under_autocast_and_keeps_fp32_weights():
    trainer, ctx = _trainer({"steps_per_epoch": 4, "games_per_epoch": 2, "simulations": 4, "arena_games": 2,
                             "eval_games": 1, "eval_simulations": 4, "channels": 8, "blocks": 1,
                             "precision": "bf16"}, game="connect4"), StepContext()
    seen = []
    hook = trainer.net.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    metrics = _epoch(trainer, ctx)
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert np.isfinite(metrics["train/loss"])
    assert all(p.dtype == torch.float32 for p in trainer.net.parameters())
    player = trainer.best_player(simulations=4)
    assert player.evaluate.precision == "bf16"
    assert trainer.evaluate()["eval/win_rate_vs_random"] >= 0.0
