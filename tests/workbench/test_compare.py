"""workbench.compare on run directories written through the store's own API (real SQLite):
the runs table, the settings diff, mean and spread over seeds, the chart and the CLI's errors.

The values are chosen so every mean and standard deviation is known by hand; the end-to-end
path on real runs is tests/notebooks/test_batch_runs.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.compare import compare_runs, group_figure, group_runs, key_metrics, lower_is_better, settings_diff
from workbench.errors import WorkbenchError
from workbench.store import RunStore

MODELS = ("digits_mlp@digits", "digits_cnn@digits")


def _run(root: Path, run_id: str, seed: int, lr: float, accuracy: list[float], loss: list[float]) -> str:
    """A finished two-model run: preset.json, environment.json and its store."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    preset = {"name": "digits_mutual", "seed": seed, "epochs": len(accuracy), "datasets": ["digits"],
              "models": {"digits_mlp": {"hyperparameters": {"lr": lr}}}}
    (run_dir / "preset.json").write_text(json.dumps(preset))
    (run_dir / "environment.json").write_text(json.dumps({
        "host": "box", "devices": {"cpus": 2, "gpus": [{"index": 0, "name": "H100"}]},
        "placements": [{"instance": MODELS[0], "device": "cpu", "threads": 2},
                       {"instance": MODELS[1], "device": "cuda:0", "gpu_index": 0, "gpu_fraction": 0.5}]}))
    store = RunStore(run_dir / "store.sqlite")
    start = time.time() - 100
    store.set_run(state="finished", preset="digits_mutual", started=start, finished=start + 42.0, run_id=run_id)
    for model in MODELS:
        store.set_model(model, state="finished", epoch=len(accuracy), total_epochs=len(accuracy))
        store.add_metrics([(model, e + 1, 10 * (e + 1), "eval/accuracy", a, start + e) for e, a in enumerate(accuracy)])
        store.add_metrics([(model, e + 1, 10 * (e + 1), "eval/loss", v, start + e) for e, v in enumerate(loss)])
    store.flush()
    store.close()
    return run_id


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    ids = [_run(root, "r0", 0, 0.01, [0.5, 0.9, 0.8], [1.0, 0.4, 0.5]),
           _run(root, "r1", 1, 0.01, [0.6, 0.7, 0.7], [0.9, 0.6, 0.6]),
           _run(root, "r2", 2, 0.1, [0.2, 0.3, 0.4], [2.0, 1.5, 1.2])]
    return root, ids


def test_runs_table_has_state_duration_hardware_and_final_and_best(runs):
    root, ids = runs
    table = compare_runs(ids, root)
    assert len(table) == 6
    row = table[(table["run"] == "r0") & (table["model"] == MODELS[0])].iloc[0]
    assert row["state"] == "finished" and row["duration_s"] == 42.0 and row["host"] == "box"
    assert row["final eval/accuracy"] == pytest.approx(0.8) and row["best eval/accuracy"] == pytest.approx(0.9)
    assert row["final eval/loss"] == pytest.approx(0.5) and row["best eval/loss"] == pytest.approx(0.4)  # lower wins
    assert row["device"] == "cpu x2"
    gpu = table[(table["run"] == "r0") & (table["model"] == MODELS[1])].iloc[0]["device"]
    assert gpu == "cuda:0 H100 (50%)"
    # Settings: only those that differ become columns.
    assert {"seed", "models.digits_mlp.hyperparameters.lr"} <= set(table.columns) and "epochs" not in table.columns


def test_settings_diff_keeps_only_keys_that_differ(runs):
    root, ids = runs
    diff = settings_diff(ids, root)
    assert list(diff.index) == ["models.digits_mlp.hyperparameters.lr", "seed"]
    assert list(diff.loc["seed"]) == [0, 1, 2]
    assert settings_diff(["r0"], root).empty


def test_default_grouping_folds_the_seeds_with_mean_and_spread(runs):
    root, ids = runs
    grouped = group_runs(compare_runs(ids, root))
    mlp = grouped[grouped["model"] == MODELS[0]].set_index("models.digits_mlp.hyperparameters.lr")
    assert mlp.loc[0.01, "runs"] == 2 and mlp.loc[0.1, "runs"] == 1
    assert mlp.loc[0.01, "final eval/accuracy mean"] == pytest.approx(0.75)
    assert mlp.loc[0.01, "final eval/accuracy std"] == pytest.approx(0.0707107, rel=1e-5)  # sample std of 0.8, 0.7
    assert mlp.loc[0.01, "best eval/accuracy mean"] == pytest.approx(0.8)
    assert mlp.loc[0.1, "final eval/accuracy std"] == 0.0  # one run: no spread


def test_group_by_a_setting_every_run_shares(runs):
    root, ids = runs
    grouped = group_runs(compare_runs(ids, root), "epochs")
    assert set(grouped["epochs"]) == {3} and set(grouped["runs"]) == {3}


def test_group_by_an_unknown_setting_names_the_one_meant(runs):
    root, ids = runs
    with pytest.raises(WorkbenchError, match=r"--group-by 'lr': .*did you mean 'models.digits_mlp.hyperparameters.lr'"):
        group_runs(compare_runs(ids, root), "lr")


def test_group_figure_draws_a_band_per_group(runs):
    root, ids = runs
    fig = group_figure(ids, "seed", runs_dir=root)
    assert len(fig.axes) == 2  # one panel per model
    ax = fig.axes[0]
    assert len(ax.lines) == 3 and len(ax.collections) == 3  # a mean line and a band per seed
    fig = group_figure(ids, None, runs_dir=root)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["models.digits_mlp.hyperparameters.lr=0.01 (n=2)", "models.digits_mlp.hyperparameters.lr=0.1 (n=1)"]


def test_key_metrics_and_direction():
    assert lower_is_better("eval/test_nll") and lower_is_better("eval/shd") and not lower_is_better("eval/accuracy")


def test_key_metrics_prefers_accuracy(runs):
    root, _ = runs
    assert key_metrics("r0", root) == {m: {"eval/accuracy": pytest.approx(0.8)} for m in MODELS}


def test_cli_compare_prints_tables_and_writes_html(runs, capsys, tmp_path):
    root, ids = runs
    assert main(["compare", *ids, "--runs-dir", str(root), "--out", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert "settings that differ" in out and "0.75 ± 0.071" in out
    assert "data:image/png;base64" in (tmp_path / "c.html").read_text()


@pytest.mark.parametrize("argv, message", [
    (["compare"], "compare needs run ids or --batch NAME"),
    (["compare", "nope"], "no run 'nope'"),
    (["compare", "r0", "--out", "x.pdf"], "--out x.pdf: give a file ending in .html or .png"),
    (["compare", "--batch", "batch-1"], "--batch 'batch-1': no runs of that batch"),
])
def test_cli_compare_bad_input_is_one_line(runs, capsys, argv, message):
    root, _ = runs
    assert main([*argv, "--runs-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error: ") and message in err and len(err.strip().splitlines()) == 1
