"""Tests of the causal reasoning engine: SEMs, DAG read-out, effects, trainer contract."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data.catalog import Dataset
from workbench.models.causal import (CausalReasoningEngine, StructuralEquations, graph_metrics, is_dag,
                                     sem_dataset, to_dag)
from workbench.registry import get_model
from workbench.trainer import Resources, StepContext, validate_hparams

torch.set_num_threads(1)

FAST = {"stage_iters": 1500, "iters_per_step": 250, "fit_epochs": 3, "lr": 3e-3}


def make(data: Dataset, seed: int = 0, **overrides) -> CausalReasoningEngine:
    hp, problems = validate_hparams(CausalReasoningEngine.hyperparameters, overrides)
    assert not problems
    return CausalReasoningEngine(hp, data, Resources(), seed)


def run_epochs(t: CausalReasoningEngine, epochs: int) -> list[dict[str, float]]:
    ctx, history = StepContext(), []
    for _ in range(epochs):
        for _ in range(t.steps_per_epoch):
            m = t.train_step(ctx)
            assert np.isfinite(m["train/loss"])
        history.append(dict(t.evaluate()))
    return history


@pytest.fixture(scope="module")
def small_linear() -> Dataset:
    return sem_dataset("sem_small", "linear", seed=3, d=8, n=500, n_mc=200)


@pytest.fixture(scope="module")
def fitted(small_linear) -> tuple[CausalReasoningEngine, dict[str, float]]:
    t = make(small_linear, **FAST)
    return t, run_epochs(t, 3)[-1]


def test_registered_and_sem_dataset_has_truth(small_linear):
    assert get_model("causal_reasoning_engine") is CausalReasoningEngine
    assert list(small_linear.frame.columns) == [f"x{j}" for j in range(8)]
    adj = np.array(small_linear.meta["adjacency"])
    w = np.array(small_linear.meta["weights"])
    assert is_dag(adj) and adj.sum() > 4 and np.all((w != 0) == (adj != 0))
    assert small_linear.meta["effect_queries"], "the dataset should carry interventional truth"


def test_to_dag_breaks_cycles_at_the_weakest_edge():
    w = np.zeros((4, 4))
    w[0, 1], w[1, 2], w[2, 0], w[2, 3] = 1.0, 0.9, 0.4, 0.35  # cycle 0->1->2->0, tail 2->3
    dag = to_dag(w, threshold=0.3)
    assert is_dag(dag)
    assert dag[2, 0] == 0 and dag[0, 1] and dag[1, 2] and dag[2, 3] == 0.35
    assert to_dag(w, threshold=0.5)[2, 3] == 0


def test_graph_metrics_counts_reversal_once():
    truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    est = np.array([[0, 0, 0], [1, 0, 1], [1, 0, 0]])  # 0->1 reversed, 2->0 extra
    m = graph_metrics(est, truth)
    assert m == {"shd": 2.0, "tpr": 0.5, "fdr": 2 / 3, "nnz": 3.0}


def test_linear_effects_are_exact_total_effects():
    w = np.array([[0, 2.0, 0.5], [0, 0, -1.5], [0, 0, 0]])
    noise = np.random.default_rng(0).standard_normal((100, 3))
    eq = StructuralEquations(["a", "b", "c"], w != 0, lambda j, x: x @ w[:, j], noise)
    total = np.linalg.inv(np.eye(3) - w) - np.eye(3)  # [i, j]: total effect of i on j
    shift = 1.0 - noise[:, 0].mean()  # from a's observational mean to the value set
    assert eq.effect({"a": 1.0}, "c") == pytest.approx(total[0, 2] * shift)
    assert eq.effect({"b": 2.0}, "a") == pytest.approx(0.0)
    with pytest.raises(KeyError, match="unknown variable"):
        eq.effect({"zz": 1.0}, "c")


def test_linear_fit_recovers_graph_and_effects(small_linear, fitted):
    t, final = fitted
    empty = graph_metrics(np.zeros((8, 8)), np.array(small_linear.meta["adjacency"]))
    assert final["eval/shd"] <= 2 < empty["shd"]
    assert final["eval/tpr"] >= 0.85 and final["eval/fdr"] <= 0.15
    assert final["eval/effect_rel_error"] < 0.15
    assert final["eval/h_acyclicity"] < 1e-3
    assert is_dag(t.graph().to_numpy())
    q = small_linear.meta["effect_queries"][0]
    assert t.effect(q["do"], q["target"]) == pytest.approx(q["effect"], rel=0.2)


def test_resume_gives_identical_numbers(small_linear):
    ctx = StepContext()
    straight = make(small_linear, **FAST)
    expected = [straight.train_step(ctx) for _ in range(7)]
    first = make(small_linear, **FAST)
    for _ in range(4):
        first.train_step(ctx)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = make(small_linear, **FAST)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert [resumed.train_step(ctx) for _ in range(3)] == expected[4:]
    assert torch.equal(resumed.fit.path.params["W"], straight.fit.path.params["W"])
    assert resumed.evaluate() == straight.evaluate()


def test_live_lr_and_threshold_take_effect(small_linear, fitted):
    t, final = fitted
    t.set_hparam("w_threshold", 100.0)
    assert t.evaluate()["eval/nnz"] == 0 < final["eval/nnz"]
    t.set_hparam("w_threshold", 0.3)
    slow = make(small_linear, **FAST)
    slow.set_hparam("lr", 1e-5)
    slow.train_step(StepContext())
    assert slow.fit.path.params["W"].abs().max() < 0.01


def test_user_table_without_truth_reports_fit_metrics_only():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(300)
    frame = pd.DataFrame({"a": a, "b": 1.5 * a + rng.standard_normal(300), "label": ["x"] * 300})
    t = make(Dataset(name="mine", kind="tabular", frame=frame), **FAST, standardize=True)
    final = run_epochs(t, 3)[-1]
    assert "eval/shd" not in final and "eval/effect_rel_error" not in final
    assert final["eval/nnz"] == 1 and list(t.graph().columns) == ["a", "b"]


def test_environment_mask_and_knowledge_exchange():
    data = Dataset(name="cartpole", kind="environment", meta={"env_id": "CartPole-v1"})
    t = make(data, env_samples=800, env_iters=300, fit_epochs=1, lr=1e-2)
    assert t.consumes() == {"transitions/cartpole"} and t.produces() == {"causal_mask/cartpole"}
    final = run_epochs(t, 1)[-1]
    assert final["eval/r2"] > 0.9
    art = t.export_knowledge()["causal_mask/cartpole"]
    assert art["mask"].shape == (5, 4) and art["inputs"][-1] == "push_right"
    mask = pd.DataFrame(art["mask"].numpy(), index=art["inputs"], columns=art["outputs"])
    assert mask.loc["cart_velocity", "cart_position"] == 1
    assert mask.loc["pole_angular_velocity", "pole_angle"] == 1
    assert mask.loc["cart_position", "cart_position"] == 0 and mask.loc["pole_angle", "cart_position"] == 0
    from workbench.models.causal._transitions import collect_random_transitions

    shared = collect_random_transitions("CartPole-v1", 200, seed=9)
    used = t.import_knowledge({"transitions/cartpole": {"environment_simulator#0": shared}})
    assert used["transitions"] == {"environment_simulator#0": 200} and used["rows"] == 1000
    assert t.import_knowledge({"transitions/cartpole": {"environment_simulator#0": shared}})["rows"] == 1000
    state = t.state_dict()
    again = make(data, env_samples=800, env_iters=300, fit_epochs=1, lr=1e-2)
    again.load_state_dict(state)
    assert again.evaluate() == t.evaluate()


def test_known_graph_from_csv_in_either_layout(tmp_path, small_linear):
    from workbench.errors import DataError
    from workbench.models.causal import read_graph_csv

    names = list(small_linear.frame.columns)
    adj = np.array(small_linear.meta["adjacency"])
    pd.DataFrame(adj, index=names, columns=names).to_csv(tmp_path / "square.csv")
    pairs = [(names[i], names[j]) for i, j in zip(*np.nonzero(adj))]
    pd.DataFrame(pairs, columns=["cause", "effect"]).to_csv(tmp_path / "edges.csv", index=False)
    assert (read_graph_csv(str(tmp_path / "square.csv"), names) == adj).all()
    assert (read_graph_csv(str(tmp_path / "edges.csv"), names) == adj).all()
    pd.DataFrame([("x0", "x1"), ("x1", "x0")], columns=["cause", "effect"]).to_csv(tmp_path / "cycle.csv", index=False)
    with pytest.raises(DataError, match="has a directed cycle"):
        read_graph_csv(str(tmp_path / "cycle.csv"), names)
    pd.DataFrame([("x0", "zz")], columns=["cause", "effect"]).to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(DataError, match=r"lacks: \['zz'\]"):
        read_graph_csv(str(tmp_path / "unknown.csv"), names)


def test_user_graph_scores_a_plain_table_and_effect_interval_covers_the_truth(tmp_path, small_linear):
    names = list(small_linear.frame.columns)
    pd.DataFrame(np.array(small_linear.meta["adjacency"]), index=names, columns=names).to_csv(tmp_path / "g.csv")
    t = make(Dataset(name="mine", kind="tabular", frame=small_linear.frame), **FAST, true_graph=str(tmp_path / "g.csv"))
    m = run_epochs(t, 3)[-1]
    assert m["eval/shd"] <= 2 and m["eval/tpr"] >= 0.9 and is_dag(t.graph().to_numpy())
    files = t.output_files()
    assert set(files) >= {"graph.csv", "true_graph.csv"}
    covered = 0
    for q in small_linear.meta["effect_queries"]:
        answer = t.effect_interval(q["do"], q["target"], bootstrap=100)
        assert np.sign(answer["effect"]) == np.sign(q["effect"])
        assert answer["low"] <= answer["mean"] <= answer["high"]
        covered += answer["low"] - 0.05 * abs(q["effect"]) <= q["effect"] <= answer["high"] + 0.05 * abs(q["effect"])
    assert covered >= len(small_linear.meta["effect_queries"]) - 1


def test_mlp_variant_always_standardizes_and_raw_scales_get_a_note():
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    frame = pd.DataFrame({"a": a * 1000.0, "b": 2 * a + rng.normal(size=300)})
    linear = make(Dataset(name="t", kind="tabular", frame=frame), variant="linear")
    assert not linear.fit.standardized and "differ 444-fold" in linear.fit.notes[0]
    assert "notes.txt" in linear.output_files()
    mlp = make(Dataset(name="t", kind="tabular", frame=frame), variant="mlp")
    assert mlp.fit.standardized and not mlp.fit.notes
    assert not make(Dataset(name="t", kind="tabular", frame=frame), standardize=True).fit.notes


def test_one_torch_thread_is_planned_for_the_causal_engine():
    from workbench.plan import make_plan
    from workbench.presets import resolve_preset

    name, preset = resolve_preset("quick", {"target_models": ["causal_reasoning_engine"], "datasets": ["sem_linear"]})
    (inst,) = make_plan(name, preset).trainers
    assert inst.resources["threads"] == 1
