"""Questions to a trained model after (or during) its run: interventional queries.

A model is rebuilt in this process from the run's resolved preset, its dataset and its
latest checkpoint (with the live hyperparameters in force when it was written), then
asked. Only models that answer ``effect_interval`` (the causal reasoning engine on a
table) take ``do`` queries::

    from workbench.query import do_query
    do_query("2026-11-26_quick_ab12", "causal_reasoning_engine@mydata", {"x3": 1.0}, "x7")
    # {"effect": 0.41, "mean": 0.40, "low": 0.33, "high": 0.47, "level": 0.9, ...}
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

__all__ = ["load_trainer", "do_query"]


def load_trainer(run_id: str | Path, instance: str, runs_dir: str | Path | None = None) -> Any:
    """The trainer ``instance`` of a run (an id, or a run directory as a ``Path``), restored
    from its latest checkpoint in this process."""
    from ._worker import _dataset
    from .checkpoint import DiskSaver
    from .plan import make_plan
    from .registry import get_model
    from .run import open_run
    from .trainer import Resources

    from .handles import RunRecord

    record = RunRecord(run_id) if isinstance(run_id, Path) else open_run(run_id, runs_dir)
    preset = dict(record.preset)
    name = preset.pop("name", "run")
    plan = make_plan(name, preset)
    by_name = {i.instance: i for i in plan.trainers}
    if instance not in by_name:
        raise WorkbenchError(f"run {record.id} has no model '{instance}'; its models: {', '.join(by_name)}")
    inst = by_name[instance]
    loaded = DiskSaver(record.dir / "checkpoints").load_latest(instance)
    if loaded is None:
        raise WorkbenchError(f"model '{instance}' of run {record.id} has no checkpoint yet: it is written every "
                             f"checkpoint_interval epochs (at most every checkpoint_seconds) and at the end")
    _, payload = loaded
    hparams = {**inst.hparams, **payload.get("coordinator", {}).get("hparams", {})}
    ds = inst.dataset
    data = _dataset(ds["name"], inst.data_seed, ds.get("path"), ds.get("target")) if ds else None
    trainer = get_model(inst.model)(hparams, data, Resources(), inst.seed)
    trainer.load_state_dict(payload["trainer"])
    return trainer


def _causal_models(run_id: str, runs_dir: str | Path | None) -> list[str]:
    from .run import open_run

    outputs = open_run(run_id, runs_dir).dir / "outputs"
    return sorted(p.parent.name for p in outputs.glob("*/graph.csv")) if outputs.is_dir() else []


def do_query(run_id: str, model: str | None, do: Mapping[str, float], target: str,
             runs_dir: str | Path | None = None, bootstrap: int = 200, level: float = 0.9) -> dict[str, Any]:
    """``E[target | do(...)] - E[target]`` from a run's causal model, with a bootstrap interval.

    ``model`` may be None when the run has exactly one model that learned a graph.
    """
    if model is None:
        found = _causal_models(run_id, runs_dir)
        if len(found) != 1:
            raise WorkbenchError(f"run {run_id} has {len(found)} models with a learned graph "
                                 f"({', '.join(found) or 'none'}): name one with --model")
        model = found[0]
    if not do:
        raise WorkbenchError("no intervention: give at least one --set VARIABLE=VALUE")
    if bootstrap < 0 or not 0 < level < 1:
        raise WorkbenchError(f"--bootstrap must be >= 0 and --level between 0 and 1, got {bootstrap} and {level}")
    trainer = load_trainer(run_id, model, runs_dir)
    if not hasattr(trainer, "effect_interval") or getattr(trainer, "is_environment", False):
        raise WorkbenchError(f"model '{model}' answers no interventional queries (a causal reasoning engine "
                             "trained on a table does)")
    names = list(trainer.graph().index)
    unknown = [n for n in [*do, target] if n not in names]
    if unknown:
        raise WorkbenchError(f"unknown variable(s) {unknown} in the query; the model's variables: {names}")
    if target in do:
        raise WorkbenchError(f"'{target}' is both intervened on and the target: pick another target")
    answer = trainer.effect_interval(dict(do), target, bootstrap=bootstrap, level=level)
    answer.update({"model": model, "do": dict(do), "target": target,
                   "observational_mean": float(trainer.expectation({}, target))})
    return answer
