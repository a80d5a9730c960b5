"""Ablations: does each knowledge flow of a preset pay, measured against its controls?

``workbench ablate PRESET --seeds 0,1,2`` runs the preset, for every seed, under these
conditions (each a real run through the engine):

- ``all_on``: the preset as it is (collaboration on, every flow on);
- ``no_<flow>``: one flow switched off (``collaboration.<flow> = false``), for every flow
  that carried knowledge in the seed's first ``all_on`` run (or, for ``controller``, when
  the plan has a controller);
- ``all_off``: ``enable_collaborative_training = false`` (left out when only one flow
  runs: it is then ``no_<flow>``);
- ``self_distill`` when mutual learning runs: collaboration off and every classifier that
  offers it distils from its own previous-epoch predictions (a peer-free control).

The preset's ``seed`` is set to each seed, so the data splits vary too. After each run the
classifiers (models with a ``logits(split)`` method) are rebuilt from their last checkpoint
and temperature-scaled: ``T`` fitted on the validation split, the test NLL reported after
scaling (``eval/test_nll_ts``), the control for a flow whose gain may be only calibration.

For each flow, each model that received it and each of its final ``eval/`` metrics, the
table holds the change the flow makes (``all_on`` minus ``no_<flow>``) over the seeds: mean,
spread, relative change and the number of seeds it improved; the mutual-learning rows are
followed by its controls. ``ablation.csv``, ``ablation_runs.csv`` and ``ablation.png`` are
written into the folder that holds the ablation's runs.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

__all__ = ["Condition", "ablate", "compare", "ablation_figure", "temperature_scaled_nll", "lower_is_better"]

FLOWS = ("mutual_learning", "causal_mask", "experience", "controller")
_LOWER = re.compile(r"loss|nll|shd|fdr|error|mse")
_SKIP = {"eval/iterations", "eval/nnz", "eval/score", "eval/h_acyclicity"}  # bookkeeping, not quality


def lower_is_better(metric: str) -> bool:
    """Losses, NLLs, SHD, FDR, errors: lower is better; everything else higher."""
    return bool(_LOWER.search(metric))


@dataclasses.dataclass(frozen=True)
class Condition:
    name: str
    overrides: dict[str, Any]
    what: str


def _conditions(flows: Sequence[str], classifiers: Sequence[str]) -> list[Condition]:
    out = [Condition(f"no_{f}", {f"collaboration.{f}": False}, f"{f} switched off") for f in flows]
    if len(flows) > 1:
        out.append(Condition("all_off", {"enable_collaborative_training": False}, "every flow off"))
    if "mutual_learning" in flows and classifiers:
        distill = {f"models.{m}.hyperparameters.self_distill": True for m in classifiers}
        out.append(Condition("self_distill", {"enable_collaborative_training": False, **distill},
                             "no peers; each classifier distils from its own previous epoch"))
    return out


def temperature_scaled_nll(valid_logits: Any, valid_labels: Any, test_logits: Any, test_labels: Any) -> tuple[float, float]:
    """``(T, test NLL of softmax(logits / T))`` with ``T`` minimising the validation NLL.

    A grid over ``log T`` then a golden-section refinement: the validation NLL is convex in
    ``1/T``, so this finds its minimum without a learning rate to tune.
    """
    import torch
    import torch.nn.functional as F

    def nll(t: float, logits, labels) -> float:
        return float(F.cross_entropy(logits.float() / t, labels))

    grid = torch.logspace(-1.5, 1.5, 61).tolist()
    best = min(range(len(grid)), key=lambda i: nll(grid[i], valid_logits, valid_labels))
    lo, hi = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(30):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(math.exp(a), valid_logits, valid_labels) < nll(math.exp(b), valid_logits, valid_labels):
            hi = b
        else:
            lo = a
    t = math.exp((lo + hi) / 2)
    return t, nll(t, test_logits, test_labels)


def _run_once(preset: str, overrides: dict[str, Any], run_id: str, runs_dir: Path,
              scheduler: str | None) -> tuple[dict[str, dict[str, float]], dict[str, set[str]], str]:
    """One run to its end: ``({model: final eval metrics}, {flow: receiving models}, state)``."""
    from ._policy import flow_of
    from .query import load_trainer
    from .report import summary_table
    from .run import start_run

    run = start_run(preset, overrides, runs_dir, scheduler, run_id=run_id)
    state = run.wait()
    table = summary_table(run.metrics())
    finals = {row.pop("model"): {k: float(v) for k, v in row.items() if k.startswith("eval/") and v == v}
              for row in table.to_dict("records")}
    receivers: dict[str, set[str]] = {}
    events = run.events()
    for _, event in events[events["kind"] == "knowledge"].iterrows():
        payload = event["payload"] if isinstance(event["payload"], dict) else {}
        for kind in payload.get("kinds", {}):
            receivers.setdefault(flow_of(kind), set()).add(event["model"])
    for model in finals:
        try:
            trainer = load_trainer(Path(run.dir), model)
        except WorkbenchError:
            continue
        if hasattr(trainer, "logits"):
            t, nll = temperature_scaled_nll(*trainer.logits("valid"), *trainer.logits("test"))
            finals[model].update({"eval/test_nll_ts": nll, "eval/temperature": t})
    return finals, receivers, state.value


def compare(runs: Any, receivers: dict[str, set[str]]) -> Any:
    """The ablation table from per-run results (``condition, seed, model, metric, value``).

    One row per comparison, model and metric: ``delta`` = value with the flow minus value
    without, over the seeds both conditions finished; ``improved`` counts the seeds where
    the flow made the metric better.
    """
    import pandas as pd

    pivot = runs.pivot_table(index=["model", "metric", "seed"], columns="condition", values="value")
    comparisons = [(f, "all_on", f"no_{f}", sorted(receivers.get(f, ()))) for f in FLOWS
                   if f"no_{f}" in pivot.columns]
    if "mutual_learning" in receivers:
        independent = "all_off" if "all_off" in pivot.columns else "no_mutual_learning"
        ml = sorted(receivers["mutual_learning"])
        comparisons += [("mutual_learning vs temperature-scaled independent", "all_on", independent, ml),
                        ("mutual_learning vs self-distillation", "all_on", "self_distill", ml)]
    rows = []
    for label, on, off, models in comparisons:
        if on not in pivot.columns or off not in pivot.columns:
            continue
        for (model, metric), group in pivot.groupby(level=["model", "metric"]):
            if model not in models or metric in _SKIP or metric == "eval/temperature":
                continue
            if label.endswith("temperature-scaled independent") and metric not in ("eval/test_nll_ts",
                                                                                    "eval/test_accuracy"):
                continue  # against temperature scaling: calibrated test NLL and accuracy only
            pair = group[[on, off]].dropna()
            if pair.empty:
                continue
            delta = (pair[on] - pair[off]).to_numpy()
            better = delta < 0 if lower_is_better(metric) else delta > 0
            base = pair[off].abs().mean()
            rows.append({"comparison": label, "with": on, "without": off, "model": model, "metric": metric,
                         "seeds": len(delta), "mean_with": float(pair[on].mean()), "mean_without": float(pair[off].mean()),
                         "delta_mean": float(delta.mean()), "delta_std": float(delta.std(ddof=1)) if len(delta) > 1 else 0.0,
                         "relative_pct": float(100 * delta.mean() / base) if base > 0 else float("nan"),
                         "improved": int(better.sum()), "lower_is_better": lower_is_better(metric)})
    return pd.DataFrame(rows)


def ablation_figure(table: Any, title: str = ""):
    """Mean relative change each flow makes (bars, with the seeds' spread), greener when it
    improved the metric in more seeds (a matplotlib Figure)."""
    import numpy as np
    from matplotlib.figure import Figure

    rows = table.dropna(subset=["relative_pct"]).reset_index(drop=True) if not table.empty else table
    fig = Figure(figsize=(9, max(2.5, 0.28 * len(rows) + 1.2)), dpi=100)
    ax = fig.add_subplot()
    if rows.empty:
        ax.text(0.5, 0.5, "no flow carried knowledge: nothing to compare", ha="center")
        ax.axis("off")
        return fig
    y = np.arange(len(rows))[::-1]
    base = rows["mean_without"].abs().replace(0, np.nan)
    err = 100 * rows["delta_std"] / base
    sign = np.where(rows["lower_is_better"], -1.0, 1.0)  # plotted so that right is better
    share = rows["improved"] / rows["seeds"]
    colors = [(1 - s, 0.35 + 0.4 * s, 0.35) for s in share]
    ax.barh(y, sign * rows["relative_pct"], xerr=err.fillna(0), color=colors, alpha=0.85)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{r.comparison} | {r.model} | {r.metric[5:]} ({r.improved}/{r.seeds})"
                      for r in rows.itertuples()], fontsize=7)
    ax.set_xlabel("change the flow makes, % (right = better; greener: improved in more seeds)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _parse_seeds(seeds: str | Sequence[int]) -> list[int]:
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise WorkbenchError(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds or any(s < 0 for s in seeds):
        raise WorkbenchError("--seeds: give at least one seed >= 0, e.g. 0,1,2")
    return seeds


def ablate(preset: str, seeds: str | Sequence[int] = (0, 1, 2), overrides: dict[str, Any] | None = None,
           runs_dir: str | Path | None = None, out: str | Path | None = None, scheduler: str | None = None,
           progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the ablation; return ``{"table", "runs", "folder", "paths"}`` (DataFrames and paths)."""
    import pandas as pd

    from .plan import make_plan
    from .presets import resolve_preset
    from .report import _png
    from .run import runs_dir as default_runs_dir

    seeds = _parse_seeds(seeds)
    overrides = dict(overrides or {})
    name, resolved = resolve_preset(preset, overrides)  # bad presets stop here, before any run
    if not resolved.get("enable_collaborative_training", False):
        raise WorkbenchError(f"preset '{name}' has enable_collaborative_training false: no flow to ablate")
    plan = make_plan(name, resolved)
    classifiers = sorted({i.model for i in plan.trainers if "self_distill" in _schema(i.model)})
    folder = Path(out) if out else default_runs_dir(runs_dir) / f"ablate-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    rows, receivers, conditions = [], {}, None
    for seed in seeds:
        todo = [Condition("all_on", {}, "the preset as it is")] + (conditions or [])
        while todo:
            cond = todo.pop(0)
            run_id = f"{cond.name}-seed{seed}"
            t0 = time.perf_counter()
            finals, got, state = _run_once(preset, {**overrides, **cond.overrides, "seed": seed}, run_id, folder, scheduler)
            progress(f"{run_id}: {state} in {time.perf_counter() - t0:.0f} s")
            for model, values in finals.items():
                rows += [{"condition": cond.name, "seed": seed, "model": model, "metric": k, "value": v}
                         for k, v in values.items()]
            if cond.name == "all_on":
                for flow, models in got.items():
                    receivers.setdefault(flow, set()).update(models)
                if plan.controllers and plan.preset["collaboration"]["controller"]:
                    receivers.setdefault("controller", set()).update(i.instance for i in plan.trainers)
                if conditions is None:
                    conditions = _conditions([f for f in FLOWS if f in receivers], classifiers)
                    todo += conditions
    runs = pd.DataFrame(rows)
    table = compare(runs, receivers)
    paths = {"ablation_runs.csv": folder / "ablation_runs.csv", "ablation.csv": folder / "ablation.csv",
             "ablation.png": folder / "ablation.png"}
    runs.to_csv(paths["ablation_runs.csv"], index=False)
    table.to_csv(paths["ablation.csv"], index=False)
    paths["ablation.png"].write_bytes(_png(ablation_figure(table, f"ablation of '{name}', seeds {seeds}")))
    return {"table": table, "runs": runs, "folder": folder, "paths": paths}


def _schema(model: str) -> dict[str, Any]:
    from .registry import describe

    return describe(model).hyperparameters


def format_table(table: Any) -> str:
    """The table as printed by ``workbench ablate``: one line per comparison, model and metric."""
    if table.empty:
        return ("no flow carried knowledge: nothing to compare (knowledge made in an epoch is used from the "
                "next: give the runs at least 2 epochs)")
    lines = []
    for (label, model), group in table.groupby(["comparison", "model"], sort=False):
        lines.append(f"{label} -> {model}")
        for r in group.itertuples():
            lines.append(f"    {r.metric[5:]:18s} with {r.mean_with:9.4g}  without {r.mean_without:9.4g}  "
                         f"change {r.delta_mean:+.4g} ± {r.delta_std:.2g} ({r.relative_pct:+.1f}%)  "
                         f"better in {r.improved}/{r.seeds} seeds")
    return "\n".join(lines)
