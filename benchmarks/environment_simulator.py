"""Benchmark of the environment simulator (prints figures; not a test).

1. CartPole: trainer loop under a real-step budget, then the MPC planner's mean return
   over 20 real episodes (bar: >= 475 with <= 10,000 real steps), held-out one-step R^2
   (bar: >= 0.99) and 25-step open-loop NMSE.
2. Pendulum: same loop, R^2, NMSE and the planner's return.
3. Causal mask: held-out one-step NMSE of the ensemble trained offline on 500 / 2,000 /
   10,000 random-policy transitions, joint vs factored (all inputs) vs factored with the
   TRUE mask vs factored with a mask from a quick Lasso fit on quadratic features.

4. Propagation (only when asked): one CartPole model, the planner's return on 5 episodes
   with each ``plan_propagation``.

Usage: PYTHONPATH=. python benchmarks/environment_simulator.py [cartpole|pendulum|mask|propagation] [--quick]
       [--seeds 0,1,2,3,4] [--config bar|benchmark] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from workbench.data import load_dataset
from workbench.models.environment_simulator import EnvironmentSimulator, ProbabilisticEnsemble, env_spec
from workbench.models.environment_simulator._collect import collect, make_env, random_action
from workbench.models.environment_simulator._ensemble import gaussian_nll_loss
from workbench.trainer import Resources, StepContext, validate_hparams

QUICK = "--quick" in sys.argv
# TRUE masks from the equations: rows = inputs (state..., action), columns = next-state outputs.
TRUE_MASKS = {
    # x' = x + tau*xdot; xdot' <- theta, thetadot, force; theta' = theta + tau*thetadot; thetadot' likewise
    "CartPole-v1": [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 0, 1]],
    # cos', sin' need theta (cos, sin) and the new thetadot; thetadot' <- sin, thetadot, torque
    "Pendulum-v1": [[1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]],
}


def _train(t: EnvironmentSimulator, epochs: int, after_epoch=None) -> None:
    """``epochs`` epochs of a simulator trainer: steps, then (except after the last) the
    epoch end that collects real transitions; ``after_epoch(epoch)`` after each."""
    ctx = StepContext()
    for epoch in range(epochs):
        for _ in range(t.steps_per_epoch):
            t.train_step(ctx)
        if epoch < epochs - 1:
            t.on_epoch_end(ctx)
        if after_epoch is not None:
            after_epoch(epoch)


def trainer_run(dataset: str, epochs: int, overrides: dict, final_episodes: int, seed: int = 0) -> dict[str, float]:
    hp, problems = validate_hparams(EnvironmentSimulator.hyperparameters, {**overrides, "eval_episodes": 0})
    assert not problems, problems
    t0, cpu0 = time.time(), time.process_time()
    t = EnvironmentSimulator(hp, load_dataset(dataset), Resources(), seed=seed)

    def report(epoch: int) -> None:
        m = t.evaluate()
        print(f"  epoch {epoch}: steps {m['eval/real_env_steps']:.0f} r2 {m.get('eval/one_step_r2', float('nan')):.5f} "
              f"rollout_nmse_25 {m.get('eval/rollout_nmse_25', float('nan')):.5f} "
              f"({time.process_time() - cpu0:.0f} CPU s)", flush=True)

    _train(t, epochs, report)
    t.hparams["eval_episodes"] = final_episodes
    m = dict(t.evaluate())
    m["cpu_s"] = time.process_time() - cpu0
    print(f"{dataset} seed {seed}: {dict((k, round(v, 5)) for k, v in m.items())}  "
          f"({time.time() - t0:.0f}s wall, busy 2-core box)", flush=True)
    return m


def random_data(env_id: str, n: int, seed: int) -> dict[str, torch.Tensor]:
    spec, rng = env_spec(env_id), np.random.default_rng(seed)
    b = collect(make_env(env_id), spec, lambda o, new: random_action(spec, rng), n, rng)
    return {k: torch.as_tensor(v) for k, v in b.items() if k in ("obs", "act", "next_obs", "reward")}


def lasso_mask(data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Input i drives output j when a Lasso on degree-2 features gives any term with i weight."""
    from sklearn.linear_model import LassoCV
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    x = torch.cat([data["obs"], data["act"]], 1).numpy()
    y = (data["next_obs"] - data["obs"]).numpy()
    poly = PolynomialFeatures(2, include_bias=False).fit(x)
    feats = StandardScaler().fit_transform(poly.transform(x))
    powers = poly.powers_
    mask = np.zeros((x.shape[1], y.shape[1]))
    for j in range(y.shape[1]):
        coef = LassoCV(cv=3, alphas=20, max_iter=5000).fit(feats, (y[:, j] - y[:, j].mean()) / y[:, j].std()).coef_
        strong = np.abs(coef) > 0.02
        mask[:, j] = (powers[strong] > 0).any(0)
    return torch.as_tensor(mask, dtype=torch.float32)


def offline_nmse(env_id: str, train: dict, test: dict, factored: bool, mask: torch.Tensor | None,
                 steps: int) -> float:
    spec = env_spec(env_id)
    g = torch.Generator().manual_seed(0)
    hidden = 32 if factored else 64  # about the same parameter count per member
    model = ProbabilisticEnsemble(spec.state_dim, spec.action_dim, 5, hidden, 3, factored=factored, generator=g)
    x = torch.cat([train["obs"], train["act"]], 1)
    y = torch.cat([train["next_obs"] - train["obs"], train["reward"][:, None]], 1)
    model.fit_normaliser(x, y)
    if mask is not None:
        model.set_input_mask(mask)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    for _ in range(steps):
        idx = torch.randint(len(x), (5, 64), generator=g)
        loss, _ = gaussian_nll_loss(model, (x[idx] - model.in_mean) / model.in_std,
                                    (y[idx] - model.out_mean) / model.out_std)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        e = model.n_members
        pred, _ = model.predict(test["obs"].expand(e, -1, -1), test["act"].expand(e, -1, -1))
        true = test["next_obs"]
        return float((((pred.mean(0) - true) ** 2).mean(0) / (true - test["obs"]).var(0)).mean())


def mask_study(env_id: str, sizes: list[int], steps: int) -> None:
    test = random_data(env_id, 5000, seed=99)
    for n in sizes:
        train = random_data(env_id, n, seed=n)
        learned = lasso_mask(train)
        true = torch.tensor(TRUE_MASKS[env_id], dtype=torch.float32)
        row = {
            "joint": offline_nmse(env_id, train, test, False, None, steps),
            "factored": offline_nmse(env_id, train, test, True, None, steps),
            "factored+true_mask": offline_nmse(env_id, train, test, True, true, steps),
            "factored+lasso_mask": offline_nmse(env_id, train, test, True, learned, steps),
        }
        errs = int((learned != true).sum())
        print(f"{env_id} n={n}: held-out one-step NMSE " + "  ".join(f"{k} {v:.5f}" for k, v in row.items())
              + f"  (lasso mask wrong entries: {errs}/{true.numel()})", flush=True)


# CartPole configurations. "benchmark" is the former benchmark setting (10 epochs: 5,000
# real steps); "bar" is the configuration docs/models/environment_simulator.md names for
# the CartPole bar: every member on every sequence, and the bar's whole budget (20 epochs:
# 500 random + 19 x 500 planner steps = 10,000 real steps).
CARTPOLE = {
    "benchmark": {"initial_random_steps": 500, "env_steps_per_epoch": 500, "steps_per_epoch": 600,
                  "plan_population": 100, "plan_iterations": 2, "bounds_cost": 1.0},
}
CARTPOLE["bar"] = {**CARTPOLE["benchmark"], "plan_propagation": "members", "epochs": 20}
BAR_RETURN, BAR_STEPS = 475.0, 10_000


def propagation_study(epochs: int = 6, episodes: int = 5) -> None:
    """One CartPole model (the benchmark's settings, seed 0, ``epochs`` epochs), then the
    planner's return on the same episode seeds with each ``plan_propagation``."""
    from workbench.models.environment_simulator._collect import run_episodes

    hp, problems = validate_hparams(EnvironmentSimulator.hyperparameters, {**CARTPOLE["benchmark"], "eval_episodes": 0})
    assert not problems, problems
    cpu0 = time.process_time()
    t = EnvironmentSimulator(hp, load_dataset("cartpole"), Resources(), seed=0)
    _train(t, epochs)
    print(f"model: {t.buffer.total_added} real steps, {time.process_time() - cpu0:.0f} CPU s", flush=True)
    seeds = [1_000_003 + i for i in range(episodes)]
    for propagation in ("members", "ts1", "mean"):
        cpu1 = time.process_time()
        t.hparams["plan_propagation"] = propagation
        plan = t.make_planner(torch.Generator().manual_seed(7919))
        returns = run_episodes(make_env("CartPole-v1"), t.spec, plan.act, seeds, 500)
        print(f"{propagation}: mean {np.mean(returns):.1f} over {episodes} episodes {returns} "
              f"({time.process_time() - cpu1:.0f} CPU s)", flush=True)


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _cartpole_seed(args: tuple[int, dict, int]) -> tuple[int, float, float, float]:
    seed, hp, epochs = args
    torch.set_num_threads(1)
    m = trainer_run("cartpole", epochs, hp, 3 if QUICK else 20, seed=seed)
    return seed, m["eval/cartpole_return"], m["eval/real_env_steps"], m["cpu_s"]


def cartpole_seeds(config: str, seeds: list[int], sets: dict, jobs: int = 1) -> None:
    """Per seed: the planner's 20-episode return, real steps and CPU seconds (of that seed's
    process alone), then how many seeds met the bar. ``jobs`` > 1 runs seeds in parallel
    processes (the figures do not change: every seed is deterministic)."""
    hp = {**CARTPOLE[config], **sets}
    epochs = hp.pop("epochs", 10)  # real steps: initial_random_steps + (epochs - 1) * env_steps_per_epoch
    print(f"cartpole config {config!r}: {hp}, {epochs} epochs", flush=True)
    tasks = [(seed, hp, epochs) for seed in seeds]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            rows = list(pool.map(_cartpole_seed, tasks))
    else:
        rows = [_cartpole_seed(task) for task in tasks]
    print("seed  return  real_steps  cpu_s  met")
    met = 0
    for seed, ret, steps, cpu in rows:
        ok = ret >= BAR_RETURN and steps <= BAR_STEPS
        met += ok
        print(f"{seed:4d}  {ret:6.1f}  {steps:10.0f}  {cpu:5.0f}  {'yes' if ok else 'no'}")
    print(f"bar (return >= {BAR_RETURN:.0f} over {3 if QUICK else 20} episodes, <= {BAR_STEPS} real steps) "
          f"met on {met} of {len(rows)} seeds", flush=True)


if __name__ == "__main__":
    import argparse

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", nargs="?", default="all", choices=("all", "cartpole", "pendulum", "mask", "propagation"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", default="0", help="CartPole seeds, e.g. 0,1,2,3,4")
    ap.add_argument("--config", default="bar", choices=sorted(CARTPOLE), help="CartPole configuration")
    ap.add_argument("--jobs", type=int, default=1, help="CartPole seeds run in parallel processes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a CartPole hyperparameter (or epochs)")
    args = ap.parse_args()
    part = args.part
    if part in ("all", "cartpole"):
        sets = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
        cartpole_seeds(args.config, [int(x) for x in args.seeds.split(",")], sets, args.jobs)
    if part == "propagation":
        propagation_study()
    if part in ("all", "pendulum"):
        trainer_run("pendulum", 3 if QUICK else 6,
                    {"initial_random_steps": 400, "env_steps_per_epoch": 400, "steps_per_epoch": 600,
                     "plan_population": 100, "plan_iterations": 3, "plan_horizon": 20}, 2 if QUICK else 5)
    if part in ("all", "mask"):
        for env_id in ("CartPole-v1", "Pendulum-v1"):
            mask_study(env_id, [500, 2000] if QUICK else [500, 2000, 10000], 500 if QUICK else 1500)
