"""The contract between the engine and model code.

A trainer knows nothing of Dask, the store or widgets. The engine builds it with its
hyperparameters, data and resources, then calls :meth:`Trainer.train_step` repeatedly
(applying live commands between steps), :meth:`Trainer.evaluate` at epoch ends, and
:meth:`Trainer.state_dict` / :meth:`Trainer.load_state_dict` for checkpoints.

Knowledge sharing: after each segment the engine asks every trainer for
:meth:`Trainer.export_knowledge` (a mapping ``kind -> artifact``) and hands each
artifact to the other trainers whose :meth:`Trainer.consumes` names that kind, through
:meth:`Trainer.import_knowledge` before their next segment.

Example (a user's own model)::

    from workbench import Trainer, HParam, register_model

    @register_model("my_mlp")
    class MyMLP(Trainer):
        accepts = ("labelled_tabular",)
        hyperparameters = {"lr": HParam(float, 1e-3, low=1e-5, high=1.0, log=True)}
        metrics = ("train/loss", "eval/accuracy")
        ...
"""
from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

__all__ = ["HParam", "HParamSchema", "Resources", "StepContext", "Trainer", "TrainerCard", "validate_hparams"]


@dataclasses.dataclass(frozen=True)
class HParam:
    """Schema of one hyperparameter.

    ``live`` says whether it may change while the model trains (a slider in the panel,
    the adaptive controller); other hyperparameters are fixed for the run.
    """

    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    live: bool = False
    choices: tuple[Any, ...] | None = None
    help: str = ""

    def check(self, name: str, value: Any) -> tuple[Any, str | None]:
        """Return ``(coerced_value, problem)``; ``problem`` is None when the value is valid."""
        if self.type is bool:
            if not isinstance(value, bool):
                return value, f"{name}: must be true or false, got {value!r}"
            return value, None
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return value, f"{name}: must be a number, got {value!r}"
            if self.type is int and float(value) != int(value):
                return value, f"{name}: must be an integer, got {value!r}"
            value = self.type(value)
            if isinstance(value, float) and not math.isfinite(value):
                return value, f"{name}: must be finite, got {value!r}"
            if self.low is not None and value < self.low:
                return value, f"{name}: must be >= {self.low}, got {value}"
            if self.high is not None and value > self.high:
                return value, f"{name}: must be <= {self.high}, got {value}"
        elif self.type is str and not isinstance(value, str):
            return value, f"{name}: must be a string, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return value, f"{name}: must be one of {list(self.choices)}, got {value!r}"
        return value, None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly description (used by the panel to build its controls)."""
        d = dataclasses.asdict(self)
        d["type"] = self.type.__name__
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d


def validate_hparams(
    schema: Mapping[str, HParam], values: Mapping[str, Any], path: str = "hyperparameters"
) -> tuple[dict[str, Any], list[str]]:
    """Merge ``values`` over the schema's defaults; return ``(merged, problems)``."""
    import difflib

    merged = {k: spec.default for k, spec in schema.items()}
    problems: list[str] = []
    for key, value in values.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f", did you mean '{close[0]}'?" if close else f" (known: {sorted(schema)})"
            problems.append(f"{path}: unknown hyperparameter '{key}'{hint}")
            continue
        coerced, problem = schema[key].check(f"{path}.{key}", value)
        if problem:
            problems.append(problem)
        else:
            merged[key] = coerced
    return merged, problems


class HParamSchema:
    """Mixin of everything with a ``hyperparameters`` schema (trainers and controllers)."""

    hyperparameters: ClassVar[dict[str, HParam]] = {}

    @classmethod
    def hparam_schema(cls) -> dict[str, dict[str, Any]]:
        """JSON-able schema, for panels and docs."""
        return {k: v.as_dict() for k, v in cls.hyperparameters.items()}

    @classmethod
    def live_hparams(cls) -> list[str]:
        return [k for k, v in cls.hyperparameters.items() if v.live]


@dataclasses.dataclass(frozen=True)
class Resources:
    """What the engine gives a trainer: a torch device string and a number of CPU threads."""

    device: str = "cpu"
    threads: int = 1
    gpu_fraction: float | None = None


@dataclasses.dataclass
class StepContext:
    """What a trainer may use besides its own state, all engine-agnostic.

    ``parallel_map(fn, items)`` runs a picklable top-level function over items in
    parallel (Dask tasks when the engine runs on a cluster, a plain loop otherwise) and
    returns the results in order. ``log(msg)`` writes to the model's log file.
    """

    epoch: int = 0
    total_epochs: int = 1
    parallel_map: Callable[[Callable[[Any], Any], list[Any]], list[Any]] = (
        lambda fn, items: [fn(x) for x in items]
    )
    log: Callable[[str], None] = lambda msg: None


class TrainerCard(HParamSchema):
    """A trainer's class-level declarations: what the engine reads to plan a run.

    - ``name``: its registry name (:func:`~workbench.register_model` sets it).
    - ``accepts``: data kinds it trains on (catalog kinds, see ``workbench.data``).
    - ``hyperparameters``: ``{name: HParam}``; live ones can change between steps.
    - ``metrics``: the metric names it reports (``train/...`` per step, ``eval/...``
      from :meth:`Trainer.evaluate`).
    - ``description``: one line for listings.
    - ``cpu_threads``: torch threads it needs (None: its share of the cores).
    - ``host_tensors``: attributes kept in host memory on purpose (see :class:`Trainer`).
    - :meth:`check_hparams`: checks beyond the schema.

    Every :class:`Trainer` is one. The built-in trainers keep theirs in separate card
    classes (``workbench.models.cards``) that they inherit, so the driver plans a run
    and the CLI lists models without importing torch.
    """

    name: ClassVar[str] = ""
    accepts: ClassVar[tuple[str, ...]] = ()
    hyperparameters: ClassVar[dict[str, HParam]] = {}
    metrics: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    host_tensors: ClassVar[tuple[str, ...]] = ()  # attributes the engine's device check skips
    cpu_threads: ClassVar[int | None] = None  # torch threads it needs; None: its share of the cores

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any], path: str) -> tuple[dict[str, Any], list[str]]:
        """Checks beyond the schema, when the run is planned: ``(hparams, problems)``.

        Override to check files a hyperparameter names (and make their paths absolute, as
        workers may start in another folder); problems are reported by ``path``.
        """
        return hparams, []


class Trainer(TrainerCard, abc.ABC):
    """Base class of every model the workbench trains.

    A subclass declares, as class attributes, what :class:`TrainerCard` lists: at least
    ``accepts``, ``hyperparameters`` and ``metrics``.

    The constructor signature is fixed: ``(hparams, data, resources, seed)``. ``hparams``
    is already validated and complete. ``data`` is a ``workbench.data.Dataset``.
    Everything random must derive from ``seed`` so a run is reproducible.

    Devices. ``resources.device`` is the torch device the model was placed on (``cpu`` or
    ``cuda:0``: a GPU worker sees only its own GPU). Put modules, optimiser state and the
    data you compute with there, in the constructor and in :meth:`load_state_dict` (the
    engine hands checkpoints over in host memory, so a run checkpointed on a GPU resumes
    on a CPU and the other way round). After building or restoring a trainer the engine
    checks every module, optimiser and floating-point tensor attribute and refuses one on
    another device, naming the tensor; list attributes kept in host memory on purpose (a
    replay buffer) in ``host_tensors``. Knowledge artifacts travel between workers and are
    moved to host memory by the engine.

    Batch size and out-of-memory. A trainer that declares the hyperparameters
    ``batch_size`` (samples per forward pass) and ``grad_accumulation`` (forward passes per
    optimiser step, effective batch = their product) lets the engine survive a CUDA
    out-of-memory error: it halves ``batch_size``, doubles ``grad_accumulation`` (the
    effective batch and ``steps_per_epoch`` stay the same), records an ``oom_retry``
    event and retries the step, up to the preset's ``max_failures`` times. For that,
    :meth:`train_step` must leave the trainer unchanged when it raises
    ``torch.cuda.OutOfMemoryError`` before its optimiser step (restore the batch position;
    ``workbench/models/digits.py`` shows how). Mixed precision is a per-model
    hyperparameter ``precision`` (``fp32`` or ``bf16`` autocast) where a model offers it
    (``workbench.precision``: the hyperparameter, the device check and the autocast).
    """

    def __init__(self, hparams: dict[str, Any], data: Any, resources: Resources, seed: int):
        self.hparams = dict(hparams)
        self.data = data
        self.resources = resources
        self.seed = seed

    # -- training ---------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def steps_per_epoch(self) -> int:
        """Number of :meth:`train_step` calls that make one epoch (one segment)."""

    @abc.abstractmethod
    def train_step(self, ctx: StepContext) -> Mapping[str, float]:
        """One optimisation step; return its metrics (``{"train/loss": 0.3, ...}``).

        A non-finite ``train/loss`` makes the engine roll the model back to its last good
        state with a lower learning rate.
        """

    @abc.abstractmethod
    def evaluate(self) -> Mapping[str, float]:
        """Held-out evaluation; names start with ``eval/``."""

    def on_epoch_end(self, ctx: StepContext) -> Mapping[str, float]:
        """Work done once per epoch after the steps (data collection, self-play, ...)."""
        return {}

    # -- live control ------------------------------------------------------------------
    def set_hparam(self, name: str, value: Any) -> None:
        """Apply a live hyperparameter change between steps. Override to touch optimisers."""
        self.hparams[name] = value

    # -- checkpoints -------------------------------------------------------------------
    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, RNGs, data position.

        Values must be tensors, numbers, strings, lists or dicts of these (no numpy arrays:
        convert them; checkpoints are loaded with ``torch.load(weights_only=True)``).
        """

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def output_files(self) -> dict[str, str]:
        """``{file name: text}`` written into ``RUN/outputs/<instance>/`` at every checkpoint:
        what users read without loading the model (a learned graph as CSV)."""
        return {}

    # -- knowledge sharing -------------------------------------------------------------
    def produces(self) -> set[str]:
        """Knowledge kinds this trainer exports (for example ``"soft_predictions/digits"``)."""
        return set()

    def consumes(self) -> set[str]:
        """Knowledge kinds this trainer can use."""
        return set()

    def export_knowledge(self) -> dict[str, Any]:
        """``{kind: artifact}`` for the kinds in :meth:`produces`, after a segment."""
        return {}

    def import_knowledge(self, artifacts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Receive ``{kind: {source_model: artifact}}`` before a segment.

        Return a small JSON-able description of what was used (recorded as a
        ``knowledge`` event), or ``{}`` when nothing was used.
        """
        return {}
