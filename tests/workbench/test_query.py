"""The causal engine on a user's CSV through the real engine and CLI: its learned graph in
the run directory and the report, a known graph scored, and do-queries with an interval."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.cli import main
from workbench.data.sem import TrueSEM, interventional_effect
from workbench.store import read_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A linear-Gaussian SEM (d=6) saved as a user CSV with its true graph, and a finished run on it."""
    root = tmp_path_factory.mktemp("causal_cli")
    rng = np.random.default_rng(7)
    sem = TrueSEM(6, "linear", rng, edges_per_node=1.5)
    names = [f"v{j}" for j in range(6)]
    pd.DataFrame(sem.sample(800, rng), columns=names).to_csv(root / "table.csv", index=False)
    pd.DataFrame(sem.adjacency.astype(int), index=names, columns=names).to_csv(root / "truth.csv")
    hp = {"stage_iters": 1500, "fit_epochs": 2, "true_graph": str(root / "truth.csv")}
    argv = ["run", "--run-id", "r1", "--runs-dir", str(root / "runs"), "--quiet",
            "--set", f'data={json.dumps({"mine": {"path": str(root / "table.csv")}})}',
            "--set", 'datasets=["mine"]', "--set", 'target_models=["causal_reasoning_engine"]',
            "--set", "epochs=3", "--set", f"models={json.dumps({'causal_reasoning_engine': {'hyperparameters': hp}})}"]
    assert main(argv) == 0
    return {"root": root, "sem": sem, "names": names, "run": root / "runs" / "r1"}


def _cli(capsys, argv):
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_learned_graph_is_written_drawn_and_scored(world):
    out = world["run"] / "outputs" / "causal_reasoning_engine@mine"
    graph = pd.read_csv(out / "graph.csv", index_col=0)
    assert list(graph.index) == world["names"] == list(graph.columns)
    truth = pd.read_csv(out / "true_graph.csv", index_col=0).to_numpy()
    assert (truth == world["sem"].adjacency).all()
    from workbench.models.causal import graph_metrics, is_dag

    assert is_dag(graph.to_numpy())
    metrics = read_store(world["run"] / "store.sqlite").metrics()
    last = metrics[metrics["name"].str.startswith("eval/")].groupby("name")["value"].last()
    assert last["eval/shd"] == graph_metrics(graph.to_numpy(), truth)["shd"] <= 2  # a d=6 ER1.5 problem, n=800
    assert last["eval/tpr"] >= 0.8
    png = world["run"] / "report" / "graph_causal_reasoning_engine@mine.png"
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "Learned graph: causal_reasoning_engine@mine" in (world["run"] / "report" / "report.html").read_text()


def test_do_query_from_the_cli_has_the_true_sign_size_and_an_interval(world, capsys):
    sem, names = world["sem"], world["names"]
    reach = np.linalg.matrix_power(np.eye(6) + sem.adjacency, 6) > 0
    cause, target = next((i, j) for i in sem.order for j in sem.order[::-1] if i != j and reach[i, j]
                         and abs(_true_effect(sem, i, j)) > 0.3)
    code, out, err = _cli(capsys, ["do", "r1", "--set", f"{names[cause]}=1.0", "--target", names[target],
                                   "--runs-dir", str(world["root"] / "runs"), "--json", "--bootstrap", "100"])
    assert code == 0, err
    answer = json.loads(out)
    true = _true_effect(sem, cause, target)  # per unit of the cause, from its mean
    x = pd.read_csv(world["root"] / "table.csv")
    true *= 1.0 - x[names[cause]].mean()
    assert np.sign(answer["effect"]) == np.sign(true)
    assert abs(answer["effect"] - true) <= 0.15 * abs(true)
    assert answer["low"] < answer["effect"] < answer["high"] and answer["high"] - answer["low"] < abs(true)
    code, out, _ = _cli(capsys, ["do", "r1", "--set", f"{names[cause]}=1.0", "--target", names[target],
                                 "--runs-dir", str(world["root"] / "runs")])
    assert code == 0 and "90% interval" in out and "E[" in out


def _true_effect(sem: TrueSEM, i: int, j: int) -> float:
    noise = np.zeros((1, sem.d))
    return interventional_effect(sem.mechanism, sem.order, noise, {i: 1.0}, j)


@pytest.mark.parametrize("argv, message", [
    (["do", "r1", "--set", "nope=1", "--target", "v1"], r"unknown variable\(s\) \['nope'\]"),
    (["do", "r1", "--set", "v0=abc", "--target", "v1"], r"expected VARIABLE=NUMBER"),
    (["do", "r1", "--model", "digits_mlp@digits", "--set", "v0=1", "--target", "v1"], r"has no model 'digits_mlp@digits'"),
    (["do", "r1", "--set", "v1=1", "--target", "v1"], r"both intervened on and the target"),
])
def test_bad_queries_get_one_line(world, capsys, argv, message):
    import re

    code, out, err = _cli(capsys, argv + ["--runs-dir", str(world["root"] / "runs")])
    assert code == 2 and re.search(message, err) and "Traceback" not in err and err.count("\n") == 1


def test_missing_true_graph_is_refused_before_the_run(tmp_path, capsys):
    hp = {"true_graph": str(tmp_path / "absent.csv")}
    code, _, err = _cli(capsys, ["run", "--runs-dir", str(tmp_path / "runs"), "--quiet",
                                 "--set", 'datasets=["sem_linear"]', "--set", 'target_models=["causal_reasoning_engine"]',
                                 "--set", f"models={json.dumps({'causal_reasoning_engine': {'hyperparameters': hp}})}"])
    assert code == 2 and "true_graph: file not found" in err and not (tmp_path / "runs").exists()


def test_panel_results_show_the_learned_graph(world):
    pytest.importorskip("ipywidgets")
    from widgets._results import ResultsLogic
    from workbench.run import open_run

    logic = ResultsLogic()
    logic.show(open_run("r1", world["root"] / "runs"))
    assert not logic.error and logic.charts["graph/causal_reasoning_engine@mine"][:4] == b"\x89PNG"


def test_graph_figure_draws_square_and_bipartite_graphs_with_truth_counts():
    from workbench.report import graph_figure

    names = ["a", "b", "c"]
    w = pd.DataFrame([[0, 1.0, 0], [0, 0, 0], [0, 0.5, 0]], index=names, columns=names)
    truth = pd.DataFrame([[0, 1, 0], [0, 0, 1], [0, 0, 0]], index=names, columns=names)  # c -> b is reversed
    fig = graph_figure(w, truth, "t")
    assert "found 1, reversed 1, extra 0, missed 0" in fig.axes[0].get_title()
    mask = pd.DataFrame([[1, 0], [0, 1], [1, 1]], index=["x", "y", "act"], columns=["x", "y"])
    truth = pd.DataFrame([[1, 1], [0, 1], [1, 1]], index=mask.index, columns=mask.columns)
    fig = graph_figure(mask, truth, "env")
    assert "found 4, reversed 0, extra 0, missed 1" in fig.axes[0].get_title()
