"""Collaborative Training Workbench: the headless engine.

Presets become runs of several PyTorch trainers in parallel on Dask, streamed into a run
store, steerable while they train, checkpointed and resumable. This package never imports
Jupyter packages; the panels live in ``widgets``.
"""
from .control import Controller, Exploit, RunView, SetHParam
from .errors import WorkbenchError
from .registry import get_model, list_models, register_model
from .run import Run, RunRecord, attach, list_runs, open_run, resume_run, runs_dir, start_run
from .states import ModelState, RunState
from .trainer import HParam, Resources, StepContext, Trainer

__version__ = "0.1.0"

__all__ = ["Controller", "Exploit", "RunView", "SetHParam", "WorkbenchError", "get_model", "list_models",
           "register_model", "Run", "RunRecord", "attach", "list_runs", "open_run", "resume_run", "runs_dir", "start_run",
           "ModelState", "RunState", "HParam", "Resources", "StepContext", "Trainer", "__version__"]
