"""Digits classifiers with and without mutual learning, over paired seeds.

    python benchmarks/mutual_learning.py [--seeds 5] [--epochs 15]

Uses exactly the engine's exchange: after each epoch each classifier exports its softened
training-set predictions, and the other imports them before its next epoch. Prints test
NLL, test accuracy and the disagreement between the two networks (share of test images
they label differently), with the paired relative change. The bar (issue 3): NLL and
disagreement drop by 20% or more.
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from workbench.data import load_dataset, prepare
from workbench.models.digits import DigitsCNN, DigitsMLP
from workbench.trainer import Resources, StepContext


def _train_pair(seed: int, epochs: int, mutual: bool, data, weight: float = 1.0,
                temperature: float | None = None) -> dict[str, float]:
    models = []
    for cls in (DigitsMLP, DigitsCNN):
        hp = {k: v.default for k, v in cls.hyperparameters.items()}
        hp["mutual_weight"] = weight if mutual else 0.0
        if temperature is not None:
            hp["temperature"] = temperature
        models.append(cls(hp, data, Resources(), seed * 1000 + len(models)))
    kind = "soft_predictions/digits"
    for _ in range(epochs):
        for t in models:
            for _ in range(t.steps_per_epoch):
                t.train_step(StepContext())
        if mutual:
            exports = [t.export_knowledge()[kind] for t in models]
            for i, t in enumerate(models):
                t.import_knowledge({kind: {f"peer{j}": exports[j] for j in range(len(models)) if j != i}})
    logits = [t._logits(t.x_test) for t in models]
    y = models[0].y_test
    nll = statistics.mean(float(F.cross_entropy(lg, y)) for lg in logits)
    acc = statistics.mean(float((lg.argmax(1) == y).float().mean()) for lg in logits)
    disagree = float((logits[0].argmax(1) != logits[1].argmax(1)).float().mean())
    return {"nll": nll, "accuracy": acc, "disagreement": disagree}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--weight", type=float, default=1.0, help="mutual_weight of the KL term")
    parser.add_argument("--temperature", type=float, default=None, help="default: the models' default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, _ = prepare(load_dataset("digits"), 0)
    rows = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        alone = _train_pair(seed, args.epochs, False, data)
        torch.manual_seed(seed)
        mutual = _train_pair(seed, args.epochs, True, data, args.weight, args.temperature)
        rows.append((alone, mutual))
        print(f"seed {seed}: alone nll={alone['nll']:.4f} acc={alone['accuracy']:.4f} "
              f"disagree={alone['disagreement']:.4f} | mutual nll={mutual['nll']:.4f} "
              f"acc={mutual['accuracy']:.4f} disagree={mutual['disagreement']:.4f}", flush=True)
    for key in ("nll", "accuracy", "disagreement"):
        a = statistics.mean(r[0][key] for r in rows)
        m = statistics.mean(r[1][key] for r in rows)
        wins = sum((r[1][key] < r[0][key]) if key != "accuracy" else (r[1][key] > r[0][key]) for r in rows)
        print(f"{key:13s} alone {a:.4f}  mutual {m:.4f}  change {100 * (m - a) / a:+.1f}%  "
              f"(mutual better in {wins}/{len(rows)} paired seeds)")


if __name__ == "__main__":
    main()
