"""The adaptive learning controller on scripted metric histories and a simulated trainer."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from workbench.control import Exploit, ModelView, RunView, SetHParam
from workbench.errors import PresetError
from workbench.models.controller import (
    AdaptiveLearningController,
    exploit_pairs,
    explore,
    is_diverging,
    is_plateau,
    rank,
)
from workbench.registry import get_model
from workbench.trainer import HParam

SCHEMA = {
    "lr": HParam(float, 0.01, low=1e-4, high=1.0, log=True, live=True),
    "momentum": HParam(float, 0.9, low=0.0, high=0.99, live=True),
}


def mv(instance: str, epoch: int, hparams: dict, history: dict, group: str = "g",
       pinned: tuple = (), schema: dict = SCHEMA, state: str = "running") -> ModelView:
    hist = {k: tuple((e + 1, float(v)) for e, v in enumerate(vals)) for k, vals in history.items()}
    return ModelView(instance=instance, model="m", dataset="d", group=group, epoch=epoch,
                     total_epochs=50, state=state, hparams=dict(hparams), pinned=frozenset(pinned),
                     schema=schema, history=hist)


def run_view(*views: ModelView) -> RunView:
    return RunView(epoch=min(v.epoch for v in views), models={v.instance: v for v in views})


def single(losses: list[float], lr: float = 0.1, **kw) -> RunView:
    return run_view(mv("a", len(losses), {"lr": lr, "momentum": 0.9},
                       {"train/loss": losses, "eval/loss": losses}, **kw))


def lr_sets(decisions) -> list[SetHParam]:
    return [d for d in decisions if isinstance(d, SetHParam) and d.name == "lr"]


def test_registered_and_validates_hparams():
    assert get_model("adaptive_learning_controller") is AdaptiveLearningController
    with pytest.raises(PresetError, match="quantile"):
        AdaptiveLearningController({"quantile": 0.9}, seed=0)
    with pytest.raises(PresetError, match="bandit"):  # the learned part was removed (issue 13)
        AdaptiveLearningController({"bandit": True}, seed=0)


def test_guard_functions_on_scripted_series():
    assert is_diverging([1.0, 0.8, float("nan")], 1.5)
    assert is_diverging([1.0, 0.5, 0.9], 1.5)
    assert not is_diverging([1.0, 0.5, 0.9, 0.8], 1.5)  # recovering: not cut again
    assert not is_diverging([1.0, 0.9, 0.8], 1.5)
    assert is_plateau([1.0, 0.5, 0.51, 0.50, 0.499], 3, 0.01)
    assert not is_plateau([1.0, 0.5, 0.45, 0.4, 0.35], 3, 0.01)
    assert not is_plateau([1.0, 0.5], 3, 0.01)  # too short to judge


def test_diverging_model_gets_lr_cut_even_while_cooling_down():
    c = AdaptiveLearningController({"schedule": False, "ready_rounds": 5}, seed=0)
    d = lr_sets(c.decide(single([1.0, 0.6, 0.5, 1.2], lr=0.5)))
    assert len(d) == 1 and d[0].value == pytest.approx(0.15) and "divergence" in d[0].reason
    d = lr_sets(c.decide(single([1.0, 0.6, 0.5, 1.2, float("inf")], lr=0.15)))
    assert len(d) == 1 and d[0].value == pytest.approx(0.045)
    assert c.metrics_for_round()["train/guard_cuts"] == 1.0


def test_plateau_reduces_lr_by_factor_after_patience():
    c = AdaptiveLearningController({"schedule": False, "patience": 3,
                                    "plateau_factor": 0.5}, seed=0)
    assert lr_sets(c.decide(single([1.0, 0.7, 0.5, 0.45], lr=0.2))) == []  # still improving
    d = lr_sets(c.decide(single([1.0, 0.7, 0.5, 0.45, 0.452, 0.449, 0.451], lr=0.2)))
    assert len(d) == 1 and d[0].value == pytest.approx(0.1) and "plateau" in d[0].reason


def test_bottom_member_exploits_top_member_and_explores_within_bounds():
    losses = {"p0": 0.2, "p1": 0.5, "p2": 0.3, "p3": 0.9}
    views = [mv(k, 4, {"lr": 0.05 * (i + 1), "momentum": 0.9},
                {"eval/loss": [1.0, 0.8, 0.6, v]}) for i, (k, v) in enumerate(losses.items())]
    c = AdaptiveLearningController({"quantile": 0.25, "resample_prob": 0.0}, seed=1)
    out = c.decide(run_view(*views))
    exploits = [d for d in out if isinstance(d, Exploit)]
    assert exploits == [exploits[0]] and (exploits[0].target, exploits[0].source) == ("p3", "p0")
    sets = [d for d in out if isinstance(d, SetHParam)]
    assert sets and all(d.instance == "p3" for d in sets)
    for d in sets:
        spec, source_value = SCHEMA[d.name], views[0].hparams[d.name]
        assert spec.low <= d.value <= spec.high
        assert d.value != source_value
    assert c.metrics_for_round()["train/exploits"] == 1.0


def test_accuracy_objective_is_maximised():
    acc = {"p0": 0.9, "p1": 0.5, "p2": 0.8, "p3": 0.7}
    views = [mv(k, 3, {"lr": 0.1, "momentum": 0.5}, {"eval/accuracy": [0.1, 0.3, v]})
             for k, v in acc.items()]
    c = AdaptiveLearningController({"objective": "eval/accuracy"}, seed=0)
    exploits = [d for d in c.decide(run_view(*views)) if isinstance(d, Exploit)]
    assert [(e.target, e.source) for e in exploits] == [("p1", "p0")]


def test_pure_functions_rank_pairs_explore():
    assert rank({"a": 0.3, "b": float("nan"), "c": 0.1}) == ["c", "a", "b"]
    rng = np.random.default_rng(0)
    assert exploit_pairs(["a", "b"], {"a", "b"}, 0.25, rng) == [("b", "a")]
    assert exploit_pairs(["a", "b", "c"], {"a", "b", "c"}, 0.5, rng, protected={"c"}) == []
    spec = {"lr": SCHEMA["lr"]}
    moves = [explore(spec, {"lr": 1.0}, rng, 2.0, 0.0) for _ in range(20)]
    # At the upper bound a raise is no move at all; only the halving comes out.
    assert {m["lr"][0] for m in moves if m} == {0.5} and any(not m for m in moves)


def _random_views(rng, epoch, pinned, lrs, n=4):
    views = []
    for i in range(n):
        hist = list(np.exp(rng.normal(-1, 1, size=epoch)))
        if rng.random() < 0.2:
            hist[-1] = float("nan")
        views.append(mv(f"p{i}", epoch, {"lr": lrs[f'p{i}'], "momentum": 0.5},
                        {"train/loss": hist, "eval/loss": hist}, pinned=pinned if i % 2 else ()))
    return run_view(*views)


@pytest.mark.parametrize("population", [1, 4])
def test_pinned_never_touched_and_bounds_always_respected(population):
    rng = np.random.default_rng(3)
    c = AdaptiveLearningController({"resample_prob": 0.3, "warmup_rounds": 1}, seed=5)
    lrs = {f"p{i}": float(v) for i, v in enumerate(np.exp(rng.uniform(np.log(1e-4), 0, 4)))}
    seen = 0
    for epoch in range(1, 40):
        view = _random_views(rng, epoch, ("lr", "momentum"), lrs, n=population)
        for d in c.decide(view):
            if isinstance(d, SetHParam):
                seen += 1
                assert d.name not in view.models[d.instance].pinned
                spec = SCHEMA[d.name]
                assert spec.low <= d.value <= spec.high
                lrs[d.instance] = d.value if d.name == "lr" else lrs[d.instance]
    assert seen > 0


def _simulated_round(lr: float, loss: float, rng) -> float:
    """A loss that falls fastest at lr = 0.1 (log-space bump) and blows up above 0.6."""
    if lr > 0.6:
        return loss * 3.0
    speed = 0.35 * math.exp(-(math.log10(lr) + 1.0) ** 2 / 0.5)
    floor = 0.05 * (1 + 4 * lr)  # larger steps settle higher: noise floor
    # SGD noise grows with the step size, so a too-small lr gives a clean, slow signal.
    return floor + (loss - floor) * (1 - speed) * math.exp(rng.normal(0, 0.05 * lr))


def _drive(controller, lr0: float, rounds: int, seed: int = 0) -> tuple[float, float]:
    """Largest lr reached and final loss of a simulated model steered by ``controller``."""
    rng = np.random.default_rng(seed)
    lr, losses, top = lr0, [1.0], lr0
    for epoch in range(1, rounds + 1):
        losses.append(_simulated_round(lr, losses[-1], rng))
        if controller is not None:
            view = run_view(mv("a", epoch, {"lr": lr, "momentum": 0.9},
                               {"train/loss": losses[1:], "eval/loss": losses[1:]}))
            for d in lr_sets(controller.decide(view)):
                lr = d.value
                top = max(top, lr)
    return top, losses[-1]


def test_state_round_trip_gives_identical_decisions():
    def history(rng, rounds):
        return [_random_views(rng, e, ("momentum",), {f"p{i}": 0.01 * (i + 1) for i in range(4)})
                for e in range(1, rounds + 1)]

    views = history(np.random.default_rng(11), 30)
    a = AdaptiveLearningController({"warmup_rounds": 1, "resample_prob": 0.3}, seed=7)
    for v in views[:15]:
        a.decide(v)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = AdaptiveLearningController({"warmup_rounds": 1, "resample_prob": 0.3}, seed=999)
    b.load_state_dict(torch.load(buf, weights_only=True))
    rest_a = [a.decide(v) for v in views[15:]]
    rest_b = [b.decide(v) for v in views[15:]]
    assert rest_a == rest_b and any(rest_a)
    assert a.metrics_for_round() == b.metrics_for_round()


def test_a_checkpoint_from_before_the_bandit_was_removed_still_loads():
    a = AdaptiveLearningController({"warmup_rounds": 1}, seed=7)
    a.decide(single([1.0, 0.9]))
    old = a.state_dict()
    old.update(bandit={"factors": [0.5, 1.0, 2.0], "stats": {}}, pending=[], last_bandit={})
    old["totals"].update(bandit_updates=3, reward_sum=0.5)
    b = AdaptiveLearningController({"warmup_rounds": 1}, seed=7)
    b.load_state_dict(old)
    assert b.decide(single([1.0, 0.9, 0.8])) == a.decide(single([1.0, 0.9, 0.8]))
    assert "eval/bandit_mean_reward" not in b.evaluate(single([1.0, 0.9, 0.8]))


def test_same_seed_same_views_same_decisions():
    views = [_random_views(np.random.default_rng(e), e, (), {f"p{i}": 0.1 for i in range(4)})
             for e in range(1, 12)]
    runs = []
    for _ in range(2):
        c = AdaptiveLearningController({"warmup_rounds": 1}, seed=3)
        runs.append([c.decide(v) for v in views])
    assert runs[0] == runs[1]


def test_improvement_vs_fixed_uses_the_kept_control():
    c = AdaptiveLearningController({"keep_fixed": 1, "warmup_rounds": 1}, seed=0)
    views = [mv(f"p{i}", 2, {"lr": 0.1, "momentum": 0.9}, {"eval/loss": [1.0, 1.0 - 0.1 * i]})
             for i in range(4)]
    out = c.decide(run_view(*views))
    assert all(getattr(d, "instance", getattr(d, "target", None)) != "p0" for d in out)
    final = [mv("p0", 9, {"lr": 0.1, "momentum": 0.9}, {"eval/loss": [0.5]}),
             mv("p3", 9, {"lr": 0.2, "momentum": 0.9}, {"eval/loss": [0.25]})]
    metrics = c.evaluate(run_view(*final))
    assert metrics["eval/improvement_vs_fixed"] == pytest.approx(2.0)
    assert metrics["eval/fixed_groups"] == 1.0


def test_search_step_on_scripted_series():
    from workbench.models.controller._schedule import round_trend, search_step

    assert round_trend([2.3, 2.2, 2.0, 1.9, 1.7, 1.6]) > 0
    assert round_trend([1.0, float("nan"), 1.0]) == -1.0 and round_trend([1.0]) is None
    assert search_step([2.2], 0.1, None, None).factor == 1.0  # first round: baseline only
    assert search_step([2.2], -0.1, None, None).factor == 0.5  # not even falling: back off
    s = search_step([2.2, 2.1], None, 1.0, None)
    assert (s.factor, s.done) == (2.0, False) and s.rate == pytest.approx(0.1 / 2.2)
    s = search_step([2.2, 2.1, 1.8], None, 2.0, 0.045)  # faster at x2: raise again
    assert (s.factor, s.done) == (2.0, False)
    s = search_step([2.2, 2.1, 2.05], None, 2.0, 0.045, settle=0.5)  # slower: settle, done
    assert (s.factor, s.done) == (0.5, True)
    s = search_step([2.2, 2.1, 2.5], None, 2.0, 0.045)  # worse: back to the previous lr
    assert (s.factor, s.done) == (0.5, True)
    assert search_step([3.0, 3.2], None, 0.5, None).factor == 0.5  # still worse after back-off
    assert search_step([3.0, 2.5], None, 0.5, None).done


def test_schedule_climbs_from_too_small_lr_and_anneals_at_the_end():
    c = AdaptiveLearningController({"warmup_rounds": 1, "anneal_fraction": 0.1}, seed=0)
    top, loss = _drive(c, 0.002, 50)  # the views say 50 epochs in all: the last 5 anneal
    assert top > 0.03 and loss < 0.3 * _drive(None, 0.002, 50)[1]
    assert loss < 0.5 * _drive(None, 0.01, 50)[1]
    reasons = [e["reason"] for e in c._log if e["kind"] == "set"]
    assert "final anneal" in reasons[-4:] and any(r.startswith("lr search") for r in reasons)


def test_exploit_needs_a_gap_larger_than_the_noise():
    noisy = {"p0": [1.0, 0.5, 0.7, 0.45, 0.66], "p1": [1.0, 0.55, 0.75, 0.5, 0.7]}
    views = [mv(k, 5, {"lr": 0.1, "momentum": 0.9}, {"eval/loss": v}) for k, v in noisy.items()]
    c = AdaptiveLearningController({"warmup_rounds": 1, "exploit_margin": 1.0}, seed=0)
    assert not [d for d in c.decide(run_view(*views)) if isinstance(d, Exploit)]
    clear = {"p0": [1.0, 0.8, 0.6, 0.4, 0.2], "p1": [1.0, 0.9, 0.85, 0.8, 0.75]}
    views = [mv(k, 5, {"lr": 0.1, "momentum": 0.9}, {"eval/loss": v}) for k, v in clear.items()]
    c = AdaptiveLearningController({"warmup_rounds": 1, "exploit_margin": 1.0}, seed=0)
    assert [(d.target, d.source) for d in c.decide(run_view(*views)) if isinstance(d, Exploit)] == [("p1", "p0")]


def test_population_lr_decays_together_in_the_anneal_part():
    views = [mv(f"p{i}", 46, {"lr": 0.1 * (i + 1), "momentum": 0.9},
                {"eval/loss": [1.0 - 0.01 * e for e in range(46)]}) for i in range(3)]
    c = AdaptiveLearningController({"anneal_fraction": 0.1, "anneal_factor": 0.5, "exploit": True}, seed=0)
    sets = {d.instance: d.value for d in lr_sets(c.decide(run_view(*views)))}
    assert sets == pytest.approx({"p0": 0.05, "p1": 0.1, "p2": 0.15})


def _engine_view(model: str, instance: str, epoch: int, hparams: dict, history: dict,
                 total: int = 6) -> ModelView:
    """A view shaped like the engine's: one point per epoch, the training loss as ``train/loss_epoch``."""
    cls = get_model(model)
    schema = {k: v for k, v in cls.hyperparameters.items() if v.live}
    hist = {k: tuple((e + 1, float(v)) for e, v in enumerate(vals)) for k, vals in history.items()}
    return ModelView(instance=instance, model=model, dataset="d", group=f"{instance}-group", epoch=epoch,
                     total_epochs=total, state="running", hparams=dict(hparams), pinned=frozenset(),
                     schema=schema, history=hist)


@pytest.mark.parametrize("model,metric", [
    ("environment_simulator", "train/loss_epoch"),  # its held-out set changes every epoch
    ("causal_reasoning_engine", "train/loss_epoch"),  # no eval loss: the training objective
    ("alpha_deep_model", "train/loss_epoch"),
])
def test_steers_each_concept_model_through_the_engine_view_and_undoes_what_hurt(model, metric):
    """The concept models report neither ``eval/loss`` nor a per-step ``train/loss`` in a
    real run (issue 13: 0 decisions in ``quick``); the controller now judges each by the
    metric it has, raises the lr while that pays and reverts the raise that made it worse."""
    quick = {"warmup_rounds": 1, "search_fraction": 0.5, "anneal_fraction": 0.0}
    c = AdaptiveLearningController(quick, seed=0)
    lr0 = get_model(model).hyperparameters["lr"].default
    lr, values, log = lr0, [], []
    for epoch in range(1, 7):
        # Faster at 2x the start lr; at 4x the metric rises.
        factor = 0.8 if lr < 1.5 * lr0 else 0.7 if lr < 3 * lr0 else 1.3
        values.append(1.0 if not values else values[-1] * factor)
        hist = {metric: values, "eval/one_step_nmse": values[::-1]}  # not the objective
        view = RunView(epoch, {"x": _engine_view(model, "x", epoch, {"lr": lr}, hist)})
        for d in lr_sets(c.decide(view)):
            log.append((epoch, d.value, d.reason))
            lr = d.value
        assert c.metrics_for_round()["train/decisions"] == float(sum(e == epoch for e, _, _ in log))
    reasons = [r for _, _, r in log]
    assert log[0][:2] == (2, 2 * lr0) and "lr search" in reasons[0], log
    assert any(r.startswith("undo") for r in reasons), log
    undo = next(i for i, r in enumerate(reasons) if r.startswith("undo"))
    assert log[undo][1] == pytest.approx(2 * lr0)  # back to the last lr that paid
    assert lr == pytest.approx(2 * lr0) and c.evaluate(view)["eval/undos"] == 1.0


def test_undo_guard_keeps_a_cut_that_helped_reverts_one_that_hurt_and_bars_it():
    hp = {"warmup_rounds": 1, "schedule": False, "patience": 1, "plateau_threshold": 0.1}
    hist = [1.0, 0.95]  # less than 10% better: a plateau
    c = AdaptiveLearningController(hp, seed=0)
    d = lr_sets(c.decide(single(hist, lr=0.1)))
    assert [x.reason.split(":")[0] for x in d] == ["plateau"] and d[0].value == pytest.approx(0.05)
    assert lr_sets(c.decide(single(hist + [0.8], lr=0.05))) == []  # it helped: kept
    c = AdaptiveLearningController(hp, seed=0)
    lr_sets(c.decide(single(hist, lr=0.1)))
    d = lr_sets(c.decide(single(hist + [0.97], lr=0.05)))
    assert len(d) == 1 and d[0].reason.startswith("undo") and d[0].value == pytest.approx(0.1)
    # Still on a plateau, but the cut that hurt is barred from now on.
    for k in range(1, 4):
        assert lr_sets(c.decide(single(hist + [0.97] * (k + 1), lr=0.1))) == []
    assert c.evaluate(single(hist + [0.97] * 4, lr=0.1))["eval/undos"] == 1.0


def test_objective_is_the_first_metric_of_the_list_every_member_reports():
    from workbench.models.controller._values import resolve_objective

    a = mv("a", 2, {"lr": 0.1}, {"train/loss_epoch": [2, 1], "eval/one_step_nmse": [0.2, 0.1]})
    b = mv("b", 2, {"lr": 0.1}, {"train/loss_epoch": [2, 1], "eval/accuracy": [0.5, 0.6]})
    assert resolve_objective([a], "eval/loss,eval/one_step_nmse", "auto").metric == "eval/one_step_nmse"
    assert resolve_objective([b], "eval/loss, eval/accuracy", "auto") .sign == -1.0
    assert resolve_objective([a, b], "eval/one_step_nmse", "auto").metric == "train/loss_epoch"
