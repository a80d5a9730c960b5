"""What a run directory keeps besides the preset: code defined outside any package, and data
passed from memory.

Code: a Trainer or Controller class defined in a notebook cell (module ``__main__``) or in
a module no other process can import is unknown to Dask workers and to a driver process of
its own. Its class is pickled by value (cloudpickle, as Dask ships functions) into
``RUN_DIR/code/NAME.pkl``; drivers register it from there and workers receive the bytes
with the build task. Resume and replay read the same files.

Safety rule: unpickling runs code, so code files are loaded only from run directories the
current user owns (a file owned by anyone else is refused with a message).

Data: a pandas DataFrame or numpy arrays passed to ``start_run(datasets=...)`` are saved as
Parquet in ``RUN_DIR/data/`` and named in the preset's ``data`` section like a user file.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import DataError, WorkbenchError

__all__ = ["needs_shipping", "code_for_plan", "save_code", "load_code", "describe_model", "stage_datasets"]


def needs_shipping(cls: type) -> bool:
    """True when another process could not import ``cls`` by its module name."""
    module = cls.__module__
    if module == "__main__" or module.startswith("__"):
        return True
    if module.split(".")[0] == "workbench":
        return False
    loaded = sys.modules.get(module)
    path = getattr(loaded, "__file__", None)
    if path is None:
        return True
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return True
    if spec is None:
        return True
    # Importable here, but from a folder only this process has on its path (the notebook's
    # folder): a worker started elsewhere would not find it.
    return not any(part in ("site-packages", "dist-packages") for part in Path(path).parts)


def _dumps(cls: type) -> bytes:
    import cloudpickle

    module = sys.modules.get(cls.__module__)
    by_value = module is not None and cls.__module__ != "__main__"
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(cls)
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


def code_for_plan(plan) -> dict[str, bytes]:
    """Registry name -> pickled class, for the plan's models that need shipping."""
    from .registry import describe

    out = {}
    for inst in plan.instances:
        cls = describe(inst.model)  # a built-in trainer: its card, from workbench (never shipped)
        if inst.model not in out and needs_shipping(cls):
            out[inst.model] = _dumps(cls)
    return out


def save_code(run_dir: Path, code: Mapping[str, bytes]) -> None:
    if not code:
        return
    folder = Path(run_dir) / "code"
    folder.mkdir(exist_ok=True)
    for name, blob in code.items():
        (folder / f"{name}.pkl").write_bytes(blob)


def load_code(run_dir: Path, register: bool = True) -> dict[str, bytes]:
    """The shipped classes of a run (registered in this process unless ``register=False``)."""
    import cloudpickle

    from .registry import _REGISTRY, register_model

    folder = Path(run_dir) / "code"
    out: dict[str, bytes] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.pkl")):
        owner = path.stat().st_uid
        if hasattr(os, "getuid") and owner != os.getuid():
            raise WorkbenchError(f"{path} belongs to another user (uid {owner}); code in a run directory is "
                                 "loaded only from your own runs: copy the run if you trust its author")
        blob = path.read_bytes()
        out[path.stem] = blob
        if register and path.stem not in _REGISTRY:
            try:
                cls = cloudpickle.loads(blob)
            except Exception as exc:  # the class needs a package this environment lacks
                raise WorkbenchError(f"cannot load the model code saved in {path}: {type(exc).__name__}: {exc}; "
                                     "install what it imports, then try again") from None
            register_model(path.stem)(cls)
    return out


def describe_model(name: str, run_dir: Path | None = None) -> type:
    """A model's class-level declarations by registry name (:func:`workbench.registry.describe`:
    a built-in's card while its module is not imported), loading a run's shipped code when needed."""
    from .registry import _REGISTRY, describe

    if name not in _REGISTRY and run_dir is not None and (Path(run_dir) / "code" / f"{name}.pkl").exists():
        load_code(run_dir)
    return describe(name)


def _frame(name: str, value: Any):
    """``(frame, target)`` from what a user passed for one dataset."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value, None
    if isinstance(value, tuple) and len(value) == 2:
        first, second = value
        if isinstance(first, pd.DataFrame) and (second is None or isinstance(second, str)):
            return first, second
        x, y = np.asarray(first), np.asarray(second)
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"dataset '{name}': (X, y) must be a 2-D array and a 1-D array of the same length, "
                            f"got shapes {x.shape} and {y.shape}")
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
        frame["target"] = y
        return frame, "target"
    raise DataError(f"dataset '{name}': expected a pandas DataFrame, (DataFrame, 'target column') or (X, y) arrays, "
                    f"got {type(value).__name__}")


def stage_datasets(run_dir: Path, datasets: Mapping[str, Any]) -> dict[str, Any]:
    """Save in-memory datasets into ``run_dir/data``; returns the preset overrides naming them."""
    from .checkpoint import check_name

    overrides: dict[str, Any] = {}
    folder = Path(run_dir) / "data"
    for name, value in datasets.items():
        check_name(name, "dataset name")
        frame, target = _frame(name, value)
        if target is not None and target not in frame.columns:
            raise DataError(f"dataset '{name}': target column '{target}' not found; columns: {list(frame.columns)}")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.parquet"
        frame.columns = [str(c) for c in frame.columns]
        frame.to_parquet(path)
        overrides[f"data.{name}"] = {"path": str(path), **({"target": target} if target else {})}
    return overrides
