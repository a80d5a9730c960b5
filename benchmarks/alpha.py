"""Quality benchmark of ``alpha_deep_model`` (prints figures; not a test).

Tic-tac-toe bar: trained within 15 CPU minutes (this process and its pool workers), the best network behind a greedy
search loses none of 100 games against a random player with either colour, and draws
every line of optimal minimax play with either colour (every optimal minimax reply is
followed, see ``minimax_all_lines``). Training stops as soon as the bar is met.

Connect Four: trained for a budget of CPU minutes (this process and its pool workers,
as for tic-tac-toe), then the win rates against a random player and against the one-step
lookahead player (win if possible, block if needed, else random).

Self-play and arena games run in a process pool (the engine runs the same tasks as Dask
tasks); the trainer itself uses one thread. Usage::

    PYTHONPATH=. python benchmarks/alpha.py [--game tictactoe|connect4|both] [--minutes M] [--workers 2]
        [--seeds 0,1,2,3,4]
    PYTHONPATH=. python benchmarks/alpha.py --selfplay-rate [--games 32]

``--selfplay-rate`` only times self-play and arena gating with the default settings:
self-play positions per second and arena games per second, with one game searched at a
time (one position per network call) and with all of a task's games searched in lockstep
(one batch of leaves per simulation). The games are the same either way.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import time

import numpy as np
import torch

from workbench.data.catalog import load_dataset
from workbench.models.alpha import AlphaTrainer, RandomPlayer, match, minimax_all_lines
from workbench.trainer import Resources, StepContext, validate_hparams

TICTACTOE = {"steps_per_epoch": 100, "batch_size": 64, "games_per_epoch": 64, "simulations": 48,
             "temp_moves": 4, "arena_games": 20, "selfplay_tasks": 4, "eval_games": 100,
             "eval_simulations": 48, "eval_minimax": True, "lr": 2e-3}
CONNECT4 = {"steps_per_epoch": 100, "batch_size": 64, "games_per_epoch": 32, "simulations": 48,
            "temp_moves": 8, "arena_games": 0, "selfplay_tasks": 4, "eval_games": 0,
            "eval_simulations": 48, "channels": 32, "blocks": 2, "buffer_size": 30_000, "lr": 2e-3}


def _cpu_seconds() -> float:
    """CPU time of this process and its live children (the pool workers), in seconds."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _one_thread() -> None:
    torch.set_num_threads(1)


def _trainer(game: str, overrides: dict, seed: int) -> AlphaTrainer:
    hparams, problems = validate_hparams(AlphaTrainer.hyperparameters, overrides)
    if problems:
        raise SystemExit("\n".join(problems))
    return AlphaTrainer(hparams, load_dataset(game), Resources(), seed)


def _epoch(trainer: AlphaTrainer, ctx: StepContext) -> dict:
    metrics: dict = {}
    for _ in range(trainer.steps_per_epoch):
        metrics.update(trainer.train_step(ctx))
    metrics.update(trainer.on_epoch_end(ctx))
    return metrics


def _fmt(metrics: dict, keys: tuple[str, ...]) -> str:
    return " ".join(f"{k.split('/')[-1]}={metrics[k]:.3f}" for k in keys if k in metrics)


def bench_tictactoe(ctx: StepContext, minutes: float, seed: int) -> bool:
    trainer = _trainer("tictactoe", TICTACTOE, seed)
    start, cpu0 = time.perf_counter(), _cpu_seconds()
    print(f"tic-tac-toe, seed {seed}, settings {TICTACTOE}")
    print("untrained:", _fmt(trainer.evaluate(), ("eval/loss_rate_vs_random", "eval/draw_rate_vs_minimax")))
    epoch, met = 0, False
    while _cpu_seconds() - cpu0 < minutes * 60:
        epoch += 1
        train = _epoch(trainer, ctx)
        result = trainer.evaluate()
        elapsed = time.perf_counter() - start
        met = result["eval/loss_rate_vs_random"] == 0.0 and result["eval/draw_rate_vs_minimax"] == 1.0
        print(f"epoch {epoch:3d} {elapsed:6.0f}s wall {_cpu_seconds() - cpu0:6.0f}s CPU", _fmt(train, ("train/loss", "train/arena_score",
                                                              "train/selfplay_draw_rate")),
              "|", _fmt(result, ("eval/win_rate_vs_random", "eval/loss_rate_vs_random",
                                 "eval/draw_rate_vs_minimax", "eval/loss_rate_vs_minimax")), flush=True)
        if met:
            break
    verdict = "MET" if met else "NOT MET"
    print(f"tic-tac-toe bar {verdict} (seed {seed}) after {epoch} epochs, {time.perf_counter() - start:.0f}s wall, "
          f"{_cpu_seconds() - cpu0:.0f}s CPU of training")
    # The same evaluation as counts per colour, so the figures can be checked by hand.
    game, agent = trainer.game, trainer.best_player()
    opponent = RandomPlayer(game, np.random.default_rng(seed + 1))
    for name, (first, second) in (("random", match(game, agent, opponent, TICTACTOE["eval_games"])),
                                  ("all optimal minimax lines", minimax_all_lines(game, agent))):
        for colour, rec in (("first", first), ("second", second)):
            print(f"  vs {name}, agent moves {colour}: {rec.games} games, "
                  f"{rec.wins} won, {rec.draws} drawn, {rec.losses} lost")
    return met


def bench_connect4(ctx: StepContext, minutes: float, seed: int, eval_games: int) -> None:
    trainer = _trainer("connect4", CONNECT4, seed)
    trainer.set_hparam("eval_games", eval_games)
    print(f"connect four, seed {seed}, settings {CONNECT4}, {minutes} CPU min budget, "
          f"{eval_games} eval games per colour")
    untrained = trainer.evaluate()
    print("untrained:", _fmt(untrained, ("eval/win_rate_vs_random", "eval/win_rate_vs_lookahead")), flush=True)
    trainer.set_hparam("eval_games", 0)
    # CPU time, not wall time, bounds training: on a shared machine a wall-clock budget
    # would buy a different number of epochs on every run.
    start, cpu0, epoch = time.perf_counter(), _cpu_seconds(), 0
    while _cpu_seconds() - cpu0 < minutes * 60:
        epoch += 1
        train = _epoch(trainer, ctx)
        print(f"epoch {epoch:3d} {time.perf_counter() - start:6.0f}s wall {_cpu_seconds() - cpu0:6.0f}s CPU",
              _fmt(train, ("train/loss", "train/policy_loss", "train/value_loss",
                           "train/selfplay_first_player_win_rate")), flush=True)
    trainer.set_hparam("eval_games", eval_games)
    result = trainer.evaluate()
    print(f"connect four after {epoch} epochs, {time.perf_counter() - start:.0f}s wall, "
          f"{_cpu_seconds() - cpu0:.0f}s CPU (training and final evaluation):",
          _fmt(result, ("eval/win_rate_vs_random", "eval/loss_rate_vs_random",
                        "eval/win_rate_vs_lookahead", "eval/draw_rate_vs_lookahead",
                        "eval/loss_rate_vs_lookahead")))


def selfplay_rates(games: int, devices: tuple[str, ...] = ("cpu",)) -> None:
    """Print self-play positions per second and arena games per second, per game, device
    and lockstep width (one game at a time vs all of them searched together)."""
    from workbench.models.alpha.games import get_game
    from workbench.models.alpha.net import build_net
    from workbench.models.alpha.selfplay import SETTING_KEYS, arena_task, selfplay_task

    hp = {k: v.default for k, v in AlphaTrainer.hyperparameters.items()}
    for game in ("tictactoe", "connect4"):
        settings = {"game": game, **{k: hp[k] for k in SETTING_KEYS if k != "game"}}
        weights = build_net(get_game(game), hp["channels"], hp["blocks"], seed=0).state_dict()
        rival = build_net(get_game(game), hp["channels"], hp["blocks"], seed=1).state_dict()
        for device in devices:
            selfplay_task((weights, 1, 2, {**settings, "device": device}))  # warm-up (CUDA context, kernels)
            lockstep_rate = {}
            for kind in ("self-play", "arena"):
                rates = {}
                for width in (1, games):
                    run = {**settings, "device": device, "lockstep": width}
                    start = time.perf_counter()
                    out = (selfplay_task((weights, 7, games, run)) if kind == "self-play"
                           else arena_task((weights, rival, 7, games, run)))
                    if device != "cpu":
                        torch.cuda.synchronize()
                    done = len(out["zs"]) if kind == "self-play" else games
                    rates[width] = (done / (time.perf_counter() - start), out["net_calls"])
                (one, calls_one), (many, calls_many) = rates[1], rates[games]
                lockstep_rate[kind] = many
                unit = "positions/s" if kind == "self-play" else "games/s"
                print(f"{kind} {game} on {device}, {games} games, {settings['simulations']} simulations a move: "
                      f"one game at a time {one:.1f} {unit} ({calls_one} network calls), "
                      f"{games} in lockstep {many:.1f} {unit} ({calls_many} calls) -> {many / one:.2f}x", flush=True)
            bf16 = {**settings, "device": device, "lockstep": games, "precision": "bf16"}
            start = time.perf_counter()
            out = selfplay_task((weights, 7, games, bf16))
            if device != "cpu":
                torch.cuda.synchronize()
            rate = len(out["zs"]) / (time.perf_counter() - start)
            print(f"self-play {game} on {device}, {games} games in lockstep with precision bf16: {rate:.1f} positions/s "
                  f"({rate / lockstep_rate['self-play']:.2f}x fp32 in lockstep)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", choices=("tictactoe", "connect4", "both"), default="both")
    parser.add_argument("--minutes", type=float, default=15.0, help="tic-tac-toe budget in CPU minutes")
    parser.add_argument("--c4-minutes", type=float, default=10.0,
                        help="Connect Four training budget in CPU minutes")
    parser.add_argument("--c4-eval-games", type=int, default=50, help="Connect Four games per colour")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None, help="tic-tac-toe over several seeds, e.g. 0,1,2,3,4")
    parser.add_argument("--selfplay-rate", action="store_true", help="only time self-play and arena games (see above)")
    parser.add_argument("--games", type=int, default=32, help="games for --selfplay-rate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.selfplay_rate:
        selfplay_rates(args.games)
        return
    with cf.ProcessPoolExecutor(args.workers, initializer=_one_thread) as pool:
        ctx = StepContext(parallel_map=lambda fn, items: list(pool.map(fn, items)))
        if args.game in ("tictactoe", "both"):
            seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
            met = [seed for seed in seeds if bench_tictactoe(ctx, args.minutes, seed)]
            if len(seeds) > 1:
                print(f"tic-tac-toe bar met on {len(met)} of {len(seeds)} seeds (met: {met})")
        if args.game in ("connect4", "both"):
            bench_connect4(ctx, args.c4_minutes, args.seed, args.c4_eval_games)


if __name__ == "__main__":
    main()
