"""The ablation harness: its statistics on known numbers, then a real ablation of
``digits_mutual`` (2 epochs, 2 seeds) through the engine."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

from workbench.ablate import ablate, compare, lower_is_better, temperature_scaled_nll
from workbench.cli import main


def test_temperature_scaling_recovers_an_overconfident_models_temperature():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 10, generator=g) * 2
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g).squeeze(1)
    t, nll = temperature_scaled_nll(true_logits[:2000] * 3, labels[:2000], true_logits[2000:] * 3, labels[2000:])
    raw = float(torch.nn.functional.cross_entropy(true_logits[2000:] * 3, labels[2000:]))
    assert 2.6 < t < 3.4 and nll < 0.8 * raw


def test_compare_counts_seeds_improved_in_the_right_direction():
    rows = []
    for seed, (on_nll, off_nll, on_acc, off_acc) in enumerate([(0.10, 0.20, 0.95, 0.90), (0.30, 0.20, 0.91, 0.90),
                                                                (0.10, 0.15, 0.89, 0.90)]):
        for cond, nll, acc in (("all_on", on_nll, on_acc), ("no_mutual_learning", off_nll, off_acc)):
            rows += [{"condition": cond, "seed": seed, "model": "m", "metric": "eval/test_nll", "value": nll},
                     {"condition": cond, "seed": seed, "model": "m", "metric": "eval/test_accuracy", "value": acc}]
    table = compare(pd.DataFrame(rows), {"mutual_learning": {"m"}}).set_index(["comparison", "metric"])
    nll = table.loc[("mutual_learning", "eval/test_nll")]
    acc = table.loc[("mutual_learning", "eval/test_accuracy")]
    assert nll.improved == 2 and nll.seeds == 3 and nll.delta_mean == pytest.approx((-0.1 + 0.1 - 0.05) / 3)
    assert acc.improved == 2 and lower_is_better("eval/test_nll") and not lower_is_better("eval/test_accuracy")


@pytest.mark.slow
def test_digits_mutual_ablation_end_to_end(tmp_path, inprocess_scheduler):
    result = ablate("digits_mutual", "0,1", {"epochs": 2}, out=tmp_path / "abl", scheduler=inprocess_scheduler,
                    progress=lambda line: None)
    runs, table = result["runs"], result["table"]
    assert set(runs["condition"]) == {"all_on", "no_mutual_learning", "self_distill"}
    assert set(runs["seed"]) == {0, 1} and len(runs.groupby(["condition", "seed"])) == 6
    finals = runs[(runs["condition"] == "all_on") & (runs["metric"] == "eval/test_nll")].set_index(["seed", "model"])
    assert finals["value"].nunique() == 4, "seeds vary the models and the data split"
    assert {"digits_mlp@digits", "digits_cnn@digits"} <= set(table["model"])
    assert set(table["comparison"]) == {"mutual_learning", "mutual_learning vs temperature-scaled independent",
                                        "mutual_learning vs self-distillation"}
    ts = runs[runs["metric"] == "eval/temperature"]["value"]
    assert len(ts) == 12 and (ts > 0.1).all()
    # the peer-free control really distilled: a KL term from its second epoch on (its own
    # first epoch's predictions), none in the first
    from workbench.store import read_store

    kl = read_store(tmp_path / "abl" / "self_distill-seed0" / "store.sqlite").metrics(name="train/kl")
    assert kl[kl["epoch"] == 2]["value"].max() > 0 and set(kl["epoch"]) == {2}
    for name in ("ablation.csv", "ablation_runs.csv", "ablation.png"):
        assert result["paths"][name].stat().st_size > 100
    assert len(pd.read_csv(result["paths"]["ablation.csv"])) == len(table)


@pytest.mark.parametrize("argv, message", [
    (["ablate", "digits_mutual", "--seeds", "a,b"], r"--seeds 'a,b': expected comma-separated integers"),
    (["ablate", "digits_mutual", "--set", "enable_collaborative_training=false"], r"no flow to ablate"),
    (["ablate", "nosuchpreset"], r"unknown preset 'nosuchpreset'"),
])
def test_bad_ablation_input_gets_one_line(tmp_path, capsys, argv, message):
    code = main(argv + ["--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err) and err.count("\n") == 1
