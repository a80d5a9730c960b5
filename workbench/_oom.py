"""Surviving CUDA out-of-memory errors inside a GPU share.

A share's memory cap (``torch.cuda.set_per_process_memory_fraction``) turns "this model
needs more than its share" into ``torch.cuda.OutOfMemoryError`` in that model only. The
policy (:func:`decide`, a pure function) answers it: halve ``batch_size`` and double
``grad_accumulation`` so the effective batch stays the same, until the model has failed
``max_failures`` times or the batch cannot shrink. :func:`guarded_step` is the worker side:
it runs one ``train_step``, catches the error, frees the cache, applies the decision and
retries, and emits an ``oom_retry`` event for each retry. The trainer contract
(``workbench/trainer.py``) asks ``train_step`` to leave the trainer unchanged when it
raises before its optimiser step, which is what makes the retry sound.
"""
from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["OomDecision", "decide", "guarded_step"]


@dataclasses.dataclass(frozen=True)
class OomDecision:
    retry: bool
    batch_size: int | None
    grad_accumulation: int | None
    reason: str

    @property
    def hparams(self) -> dict[str, int]:
        """The hyperparameter changes to apply before retrying."""
        out = {}
        if self.batch_size is not None:
            out["batch_size"] = self.batch_size
        if self.grad_accumulation is not None:
            out["grad_accumulation"] = self.grad_accumulation
        return out


def decide(hparams: Mapping[str, Any], failures: int, max_failures: int) -> OomDecision:
    """What to do after the ``failures``-th out-of-memory error of a model (1 = the first).

    Retry with ``batch_size`` halved (rounded up) and ``grad_accumulation`` doubled while
    ``failures <= max_failures`` and the batch is above 1. A model without
    ``grad_accumulation`` still gets the smaller batch (its effective batch shrinks, and
    the reason says so); a model without ``batch_size`` cannot be helped.
    """
    if "batch_size" not in hparams:
        return OomDecision(False, None, None, "the model has no batch_size hyperparameter to lower")
    batch = int(hparams["batch_size"])
    accumulation = hparams.get("grad_accumulation")
    if failures > max_failures:
        return OomDecision(False, None, None, f"out of memory {failures} times (max_failures={max_failures})")
    if batch <= 1:
        return OomDecision(False, None, None, "out of memory at batch_size 1")
    new_batch = (batch + 1) // 2
    if accumulation is None:
        return OomDecision(True, new_batch, None,
                           f"batch_size {batch} -> {new_batch} (no grad_accumulation: the effective batch shrinks)")
    new_acc = int(accumulation) * 2
    return OomDecision(True, new_batch, new_acc, f"batch_size {batch} -> {new_batch}, grad_accumulation "
                       f"{accumulation} -> {new_acc} (effective batch {batch * accumulation} -> {new_batch * new_acc})")


def _free_cuda_cache() -> None:
    import torch

    gc.collect()  # the failed step's activations are only referenced by the dropped traceback
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def guarded_step(slot: Any, ctx: Any, max_failures: int, emit: Callable[[dict], None], instance: str) -> Mapping[str, float]:
    """``slot.trainer.train_step(ctx)``, retried at a smaller batch after each CUDA OOM.

    ``slot.oom_failures`` counts this model's out-of-memory errors over the run. When the
    policy gives up, the error is raised again with the reason appended (the segment then
    fails like any crash: roll-back, then the model is marked failed after max_failures).
    """
    import torch

    trainer = slot.trainer
    while True:
        try:
            return trainer.train_step(ctx)
        except torch.cuda.OutOfMemoryError as exc:
            message = (str(exc).strip().splitlines() or ["CUDA out of memory"])[0]
        # Outside the except block: the failed step's frames (and its activations) are gone.
        _free_cuda_cache()
        slot.oom_failures += 1
        decision = decide(trainer.hparams, slot.oom_failures, max_failures)
        if not decision.retry:
            raise torch.cuda.OutOfMemoryError(f"{message}; workbench gave up: {decision.reason}")
        old = {k: trainer.hparams.get(k) for k in decision.hparams}
        for name, value in decision.hparams.items():
            trainer.set_hparam(name, value)
        emit({"kind": "event", "model": instance, "event": "oom_retry",
              "payload": {"step": slot.step, "failures": slot.oom_failures, "old": old, "new": decision.hparams,
                          "reason": decision.reason, "error": message}})
