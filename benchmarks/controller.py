"""Benchmark of the adaptive learning controller on real trainers (prints figures).

A self-contained driver mimics the coordinator: each round it trains every member for a
fixed number of SGD steps, evaluates it, builds a :class:`RunView`, calls
``controller.decide`` and applies the decisions (``SetHParam`` -> the optimiser's
``param_groups``; ``Exploit`` -> copy the source's ``state_dict`` and hyperparameters). A
non-finite training loss is rolled back with lr x0.1, as the engine does, for every run
alike. Task: a 64-64-10 MLP on scikit-learn's bundled digits (train/valid/test 60/20/20).

Bars:
1. Robustness: one controlled trainer started at each of 5 learning rates spanning 100x
   ends within 10% of the final validation loss of the best fixed lr (9-point grid) at
   the same compute, for each of three seeds.
2. Population: at equal compute, the best member of a PBT population (steered by the
   controller) is at least as good as the best of random search over the same initial
   draws, for each of three seeds.

Run: ``PYTHONPATH=. python benchmarks/controller.py [--rounds 24 --steps 15]``; the
population comparison alone over more seeds: ``--core --seeds 20`` (add
``--variant 'name={"exploit_margin": 0}'`` to measure a change against the core).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.control import Exploit, ModelView, RunView, SetHParam
from workbench.models.controller import AdaptiveLearningController
from workbench.trainer import HParam, Resources, StepContext, Trainer

LR_SPEC = HParam(float, 0.05, low=1e-4, high=3.0, log=True, live=True)
MOMENTUM_SPEC = HParam(float, 0.9, low=0.0, high=0.99, live=True)


def digits_splits(seed: int) -> dict[str, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order]
    n_tr, n_va = int(0.6 * len(x)), int(0.2 * len(x))
    # Pixels are 0..16; per-pixel standardisation would blow up the near-constant border
    # pixels of the held-out images (huge logits, meaningless validation losses).
    x = x / 16.0 - x[:n_tr].mean(0) / 16.0
    parts = {"train": slice(0, n_tr), "valid": slice(n_tr, n_tr + n_va), "test": slice(n_tr + n_va, None)}
    out = {}
    for name, sl in parts.items():
        out[f"x_{name}"] = torch.tensor(x[sl])
        out[f"y_{name}"] = torch.tensor(y[sl], dtype=torch.long)
    return out


class DigitsMLP(Trainer):
    """A minimal trainer honouring the engine contract (live lr and momentum)."""

    hyperparameters = {"lr": LR_SPEC, "momentum": MOMENTUM_SPEC,
                       "batch_size": HParam(int, 32, low=1, high=512)}

    def __init__(self, hparams: dict[str, Any], data: dict, resources: Resources, seed: int):
        super().__init__(hparams, data, resources, seed)
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        self.opt = torch.optim.SGD(self.net.parameters(), lr=hparams["lr"], momentum=hparams["momentum"])
        self.gen = torch.Generator().manual_seed(seed)
        self.steps_per_epoch_ = 15

    @property
    def steps_per_epoch(self) -> int:
        return self.steps_per_epoch_

    def train_step(self, ctx: StepContext) -> dict[str, float]:
        x, y = self.data["x_train"], self.data["y_train"]
        idx = torch.randint(len(x), (self.hparams["batch_size"],), generator=self.gen)
        loss = nn.functional.cross_entropy(self.net(x[idx]), y[idx])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"train/loss": float(loss.detach())}

    def evaluate(self, split: str = "valid") -> dict[str, float]:
        with torch.no_grad():
            logits = self.net(self.data[f"x_{split}"])
            y = self.data[f"y_{split}"]
            loss = float(nn.functional.cross_entropy(logits, y))
            acc = float((logits.argmax(1) == y).float().mean())
        return {"eval/loss": loss if math.isfinite(loss) else math.inf, "eval/accuracy": acc}

    def set_hparam(self, name: str, value: Any) -> None:
        self.hparams[name] = value
        for group in self.opt.param_groups:
            if name in group:
                group[name] = value

    def state_dict(self) -> dict[str, Any]:
        return {"net": copy.deepcopy(self.net.state_dict()), "opt": copy.deepcopy(self.opt.state_dict()),
                "gen": self.gen.get_state(), "hparams": dict(self.hparams)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        for k, v in state["hparams"].items():
            self.set_hparam(k, v)


def run(configs: list[dict], data: dict, rounds: int, steps: int, seed: int,
        controller: AdaptiveLearningController | None) -> tuple[list[DigitsMLP], dict]:
    """Train a population round by round, steered by ``controller`` when given."""
    names = [f"m{i}" for i in range(len(configs))]
    members = {n: DigitsMLP(dict(c, batch_size=32), data, Resources(), seed * 1000 + i)
               for i, (n, c) in enumerate(zip(names, configs))}
    history = {n: {"train/loss": [], "eval/loss": [], "eval/accuracy": []} for n in names}
    stats = {"rollbacks": 0, "decisions": 0, "exploits": 0}
    ctx = StepContext()
    for epoch in range(1, rounds + 1):
        for n, t in members.items():
            t.steps_per_epoch_ = steps
            good = t.state_dict()
            losses = [t.train_step(ctx)["train/loss"] for _ in range(steps)]
            if not all(math.isfinite(x) for x in losses):  # the engine's rollback rule
                t.load_state_dict(good)
                t.set_hparam("lr", max(t.hparams["lr"] * 0.1, LR_SPEC.low))
                stats["rollbacks"] += 1
            history[n]["train/loss"] += [(epoch, x) for x in losses]
            for k, v in t.evaluate().items():
                history[n][k].append((epoch, v))
        if controller is None:
            continue
        view = RunView(epoch=epoch, models={n: ModelView(
            instance=n, model="digits_mlp", dataset="digits", group="digits_mlp@digits", epoch=epoch,
            total_epochs=rounds, state="running", hparams=dict(t.hparams), pinned=frozenset(),
            schema={"lr": LR_SPEC, "momentum": MOMENTUM_SPEC},
            history={k: tuple(v) for k, v in history[n].items()}) for n, t in members.items()})
        for d in controller.decide(view):
            stats["decisions"] += 1
            if isinstance(d, Exploit):
                stats["exploits"] += 1
                # Weights, optimiser state and hyperparameters, as the engine's Exploit copies;
                # the target keeps its own minibatch stream (copying the source's sampler
                # would replay the source's exact batches and make the copy a clone).
                state = members[d.source].state_dict()
                state["gen"] = members[d.target].gen.get_state()
                members[d.target].load_state_dict(state)
            elif isinstance(d, SetHParam):
                members[d.instance].set_hparam(d.name, d.value)
    if controller is not None:
        stats["eval"] = dict(controller.evaluate(view))
    return list(members.values()), stats


def final_valid(t: DigitsMLP) -> float:
    return t.evaluate()["eval/loss"]


def bar_robustness(seeds: list[int], rounds: int, steps: int, ctrl_hp: dict) -> bool:
    grid = [float(x) for x in np.geomspace(1e-3, 1.0, 10)]
    starts = [float(x) for x in np.geomspace(0.01, 1.0, 5)]  # centred on the best fixed lrs (0.1-0.5)
    print(f"\n== Bar 1: robustness, single trainer, {rounds} rounds x {steps} steps, starts {starts}")
    ok = True
    for seed in seeds:
        data = digits_splits(seed)
        fixed = {lr: final_valid(run([{"lr": lr, "momentum": 0.9}], data, rounds, steps, seed, None)[0][0])
                 for lr in grid}
        best_lr = min(fixed, key=fixed.get)
        print(f"seed {seed}: fixed grid valid loss: " + ", ".join(f"{lr:.3g}:{v:.3f}" for lr, v in fixed.items()))
        print(f"  best fixed lr {best_lr:.3g} -> {fixed[best_lr]:.4f}")
        for lr0 in starts:
            ctrl = AdaptiveLearningController(ctrl_hp, seed=seed)
            members, stats = run([{"lr": lr0, "momentum": 0.9}], data, rounds, steps, seed, ctrl)
            v = final_valid(members[0])
            ratio = v / fixed[best_lr]
            ok &= ratio <= 1.10
            print(f"  start lr {lr0:.3g}: controlled {v:.4f}  ratio to best fixed {ratio:.3f} "
                  f"{'PASS' if ratio <= 1.10 else 'MISS'}  fixed-at-start {fixed_at(fixed, lr0):.4f}  "
                  f"improvement_vs_fixed(start lr) {fixed_at(fixed, lr0) / v:.3f}  final lr {members[0].hparams['lr']:.3g}  "
                  f"decisions {stats['decisions']} rollbacks {stats['rollbacks']}")
    return ok


def fixed_at(fixed: dict[float, float], lr0: float) -> float:
    """Fixed-lr result at the start lr (the grid point nearest in log space)."""
    return fixed[min(fixed, key=lambda lr: abs(math.log(lr / lr0)))]


def bar_population(seeds: list[int], size: int, rounds: int, steps: int, ctrl_hp: dict) -> bool:
    print(f"\n== Bar 2: PBT vs random search, population {size}, {rounds} rounds x {steps} steps each")
    ok = True
    for seed in seeds:
        data = digits_splits(seed)
        rng = np.random.default_rng(100 + seed)
        configs = [{"lr": float(math.exp(rng.uniform(math.log(1e-3), math.log(1.0)))),
                    "momentum": float(rng.uniform(0.0, 0.99))} for _ in range(size)]
        rs, _ = run(configs, data, rounds, steps, seed, None)
        ctrl = AdaptiveLearningController(ctrl_hp, seed=seed)
        pbt, stats = run(configs, data, rounds, steps, seed, ctrl)
        best_rs = min(rs, key=final_valid)
        best_pbt = min(pbt, key=final_valid)
        v_rs, v_pbt = final_valid(best_rs), final_valid(best_pbt)
        ok &= v_pbt <= v_rs
        print(f"seed {seed}: random search best valid {v_rs:.4f} (test {best_rs.evaluate('test')['eval/loss']:.4f}, "
              f"acc {best_rs.evaluate('test')['eval/accuracy']:.3f}) | PBT best valid {v_pbt:.4f} "
              f"(test {best_pbt.evaluate('test')['eval/loss']:.4f}, acc {best_pbt.evaluate('test')['eval/accuracy']:.3f}) "
              f"| measured improvement_vs_fixed {v_rs / v_pbt:.3f} {'PASS' if v_pbt <= v_rs else 'MISS'} "
              f"| exploits {stats['exploits']} decisions {stats['decisions']} rollbacks {stats['rollbacks']} "
              f"| controller eval {stats['eval']}")
    return ok


def bar_learned(seeds: list[int], size: int, rounds: int, steps: int, ctrl_hp: dict,
                variants: dict[str, dict]) -> dict[str, int]:
    """The PBT core against the fixed-hparams control, and variants against the core, per seed.

    Every run starts from the same population draws and data split as the fixed-hparams
    control (random search: the same members never changed). A variant is a dict of
    controller hyperparameters on top of ``ctrl_hp``. Prints the best final validation
    loss per seed and counts the seeds where the core beats the control and each variant
    beats the core. (This is how the learned bandit was measured, and removed: issue 13.)
    """
    names = ["fixed", "core"] + list(variants)
    print(f"\n== PBT core vs fixed, variants vs core, population {size}, {rounds} rounds x {steps} steps, "
          f"best final validation loss (lower is better)")
    print("seed  " + "  ".join(f"{n:>12}" for n in names))
    wins = {n: 0 for n in variants}
    rel: dict[str, list[float]] = {n: [] for n in ["core", *variants]}
    core_wins = 0
    for seed in seeds:
        data = digits_splits(seed)
        rng = np.random.default_rng(100 + seed)
        configs = [{"lr": float(math.exp(rng.uniform(math.log(1e-3), math.log(1.0)))),
                    "momentum": float(rng.uniform(0.0, 0.99))} for _ in range(size)]
        values = {"fixed": min(final_valid(t) for t in run(configs, data, rounds, steps, seed, None)[0])}
        for n, extra in [("core", {})] + list(variants.items()):
            ctrl = AdaptiveLearningController({**ctrl_hp, **extra}, seed=seed)
            values[n] = min(final_valid(t) for t in run(configs, data, rounds, steps, seed, ctrl)[0])
        core_wins += values["core"] < values["fixed"]
        rel["core"].append(values["core"] / values["fixed"] - 1.0)
        for n in variants:
            wins[n] += values[n] < values["core"]
            rel[n].append(values[n] / values["core"] - 1.0)
        print(f"{seed:>4}  " + "  ".join(f"{values[n]:>12.4f}" for n in names), flush=True)
    print(f"core beats fixed in {core_wins}/{len(seeds)} seeds; "
          f"mean change vs fixed {np.mean(rel['core']):+.1%}")
    for n in variants:
        print(f"{n} beats the core in {wins[n]}/{len(seeds)} seeds; mean change vs the core "
              f"{np.mean(rel[n]):+.1%} (min {min(rel[n]):+.1%}, max {max(rel[n]):+.1%})")
    return wins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--core", action="store_true",
                        help="only the population comparison: PBT core vs fixed (and --variant) per seed")
    parser.add_argument("--variant", action="append", default=[], metavar='NAME={"hparam": value}',
                        help="with --core: controller hyperparameters to compare with the core")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    t0 = time.perf_counter()
    single_hp = {"warmup_rounds": 1}
    pbt_hp = {"warmup_rounds": 2, "ready_rounds": 2}
    print(f"controller hyperparameters: single {single_hp}; population {pbt_hp}")
    if args.core:
        variants = {}
        for text in args.variant:
            name, _, spec = text.partition("=")
            variants[name] = json.loads(spec)
        bar_learned(seeds, args.population, args.rounds, args.steps, pbt_hp, variants)
        print(f"wall time {time.perf_counter() - t0:.0f} s")
        return
    ok1 = bar_robustness(seeds, args.rounds, args.steps, single_hp)
    ok2 = bar_population(seeds, args.population, args.rounds, args.steps, pbt_hp)
    print(f"\nBar 1 (within 10% of best fixed lr from every start): {'PASS' if ok1 else 'MISS'}")
    print(f"Bar 2 (PBT best >= random-search best, every seed): {'PASS' if ok2 else 'MISS'}")
    print(f"wall time {time.perf_counter() - t0:.0f} s (2 shared, busy cores: timings inflated)")


if __name__ == "__main__":
    main()
