"""DAGMA structure learning (Bello, Aragam & Ravikumar, NeurIPS 2022), linear and MLP.

The score ``Q(theta)`` (least squares for the linear SEM, log-MSE for the MLP SEM, plus
L1 on the edge weights) is minimised along a *central path*: stage ``k`` minimises
``mu_k * Q(theta) + h_s(W(theta))`` with ``mu_k = mu_init * mu_factor**k`` shrinking, where
``h_s(W) = -log det(s I - W o W) + d log s`` is zero exactly on DAGs and finite only while
``s I - W o W`` is an M-matrix. Each stage starts from the previous solution, so the
penalty takes over gradually and no augmented-Lagrangian dual step is needed.

Everything here is deterministic given the initial parameters; the optimiser (Adam) is
written out so its state is a handful of tensors the trainer can checkpoint.
"""
from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["LinearSEM", "MLPSEM", "acyclicity", "adam_step", "DagmaPath"]


def acyclicity(a: torch.Tensor, s: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(h_s, (sI - A)^-1)`` for a non-negative ``A`` (``W o W``); ``(None, None)`` off the domain.

    The inverse of an M-matrix is entry-wise non-negative, so a negative entry (or a
    failed inversion) tells us the iterate left the region where ``h_s`` is a valid DAG
    penalty; the path then retries the stage with a smaller step.
    """
    d = a.shape[0]
    m = s * torch.eye(d, dtype=a.dtype, device=a.device) - a
    inv, info = torch.linalg.inv_ex(m)
    if int(info) != 0 or bool((inv.detach() < -1e-12).any()):
        return None, None
    sign, logdet = torch.linalg.slogdet(m)
    if float(sign.detach()) <= 0:
        return None, None
    return -logdet + d * math.log(s), inv


class LinearSEM:
    """``x = x W + e``: least-squares score on the covariance, gradients in closed form."""

    def __init__(self, x: torch.Tensor) -> None:
        self.n, self.d = x.shape
        self.cov = x.T @ x / self.n

    def init_params(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"W": torch.zeros(self.d, self.d, dtype=torch.float64, device=self.cov.device)}

    def weights(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return params["W"].detach()

    def score(self, params: dict[str, torch.Tensor]) -> float:
        r = torch.eye(self.d, dtype=torch.float64, device=params["W"].device) - params["W"]
        return float(0.5 * torch.trace(r.T @ self.cov @ r))

    def objective(self, params: dict[str, torch.Tensor], mu: float, s: float, lambda1: float,
                  lambda2: float) -> tuple[float, float, float, dict[str, torch.Tensor]] | None:
        w = params["W"]
        h, inv = acyclicity(w * w, s)
        if h is None:
            return None
        r = torch.eye(self.d, dtype=torch.float64, device=w.device) - w
        cov_r = self.cov @ r
        score = 0.5 * torch.trace(r.T @ cov_r)
        grad = mu * (-cov_r + lambda1 * torch.sign(w)) + 2.0 * w * inv.T
        grad.fill_diagonal_(0.0)  # a variable never explains itself
        obj = mu * (score + lambda1 * w.abs().sum()) + h
        return float(obj), float(score), float(h), {"W": grad}


class MLPSEM:
    """``x_j = f_j(x) + e_j`` with one sigmoid MLP per node (DAGMA-MLP / NOTEARS-MLP).

    The first layer of node ``j``'s MLP reads every variable; ``W[i, j]`` is the norm of
    the weights from input ``i``, so an edge vanishes when that whole group is zero.
    """

    def __init__(self, x: torch.Tensor, hidden: int) -> None:
        self.x = x
        self.n, self.d = x.shape
        self.hidden = hidden

    def init_params(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        d, m = self.d, self.hidden
        bound = 1.0 / math.sqrt(d)
        rand = lambda *shape: (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        # The first layer starts at zero (an empty graph, inside the domain of h_s); the
        # random second layer breaks the symmetry between hidden units.
        fc1 = torch.zeros(d, m, d, dtype=torch.float64)
        params = {"fc1": fc1, "b1": rand(d, m), "fc2": rand(d, m) * math.sqrt(d / m),
                  "b2": torch.zeros(d, dtype=torch.float64)}
        return {k: v.to(self.x.device) for k, v in params.items()}  # drawn on the CPU: the same on every device

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        d, m = self.d, self.hidden
        # one GEMM for all d first layers is far cheaper than a batched einsum
        pre = x @ params["fc1"].reshape(d * m, d).T
        hid = torch.sigmoid(pre.reshape(-1, d, m) + params["b1"])
        return (hid * params["fc2"]).sum(dim=2) + params["b2"]

    def weights(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return (params["fc1"].detach() ** 2).sum(dim=1).T.sqrt()

    def _log_mse(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        mse = ((self.forward(params, self.x) - self.x) ** 2).sum() / self.n
        return 0.5 * self.d * torch.log(mse)

    def score(self, params: dict[str, torch.Tensor]) -> float:
        with torch.no_grad():
            return float(self._log_mse(params))

    def objective(self, params: dict[str, torch.Tensor], mu: float, s: float, lambda1: float,
                  lambda2: float) -> tuple[float, float, float, dict[str, torch.Tensor]] | None:
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        a = (leaves["fc1"] ** 2).sum(dim=1).T
        h, _ = acyclicity(a, s)
        if h is None:
            return None
        score = self._log_mse(leaves)
        l2 = sum((v ** 2).sum() for v in leaves.values())
        obj = mu * (score + lambda1 * leaves["fc1"].abs().sum() + lambda2 * l2) + h
        grads = torch.autograd.grad(obj, list(leaves.values()))
        diag = torch.arange(self.d, device=grads[0].device)
        grads[0][diag, :, diag] = 0.0  # a variable never explains itself
        return float(obj.detach()), float(score.detach()), float(h.detach()), {k: g.detach() for k, g in zip(leaves, grads)}


def adam_step(params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], m: dict[str, torch.Tensor],
              v: dict[str, torch.Tensor], t: int, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
    """One Adam update of ``params`` in place (``t`` counts from 1); moments kept by the caller."""
    b1, b2 = betas
    for k, g in grads.items():
        m[k].mul_(b1).add_(g, alpha=1 - b1)
        v[k].mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = m[k] / (1 - b1 ** t)
        v_hat = v[k] / (1 - b2 ** t)
        params[k] = params[k] - lr * m_hat / (v_hat.sqrt() + 1e-8)


class DagmaPath:
    """The central path as a resumable state machine advanced ``iters`` Adam steps at a time.

    Stage ``k`` runs at most ``stage_iters`` iterations (the last stage twice that, as in
    DAGMA) and ends early once the objective changes by less than ``tol`` (relative)
    between checks. Leaving the M-matrix domain restarts the stage from its starting
    point with half the step size and ``s`` raised by 0.1 (as DAGMA does).
    """

    betas = (0.99, 0.999)

    def __init__(self, model: LinearSEM | MLPSEM, params: dict[str, torch.Tensor], stages: int,
                 stage_iters: int, mu_init: float = 1.0, mu_factor: float = 0.1, tol: float = 1e-6,
                 check_every: int = 250) -> None:
        self.model = model
        self.stages, self.stage_iters = stages, stage_iters
        self.mu_init, self.mu_factor, self.tol, self.check_every = mu_init, mu_factor, tol, check_every
        self.params = params
        self.device = next(iter(params.values())).device
        self.stage = 0
        self.iteration = 0  # within the stage
        self.total_iterations = 0
        self.lr_scale = 1.0
        self.s_bonus = 0.0  # DAGMA's remedy when a stage leaves the domain: larger s
        self.prev_obj = math.inf
        self._start_stage()

    @property
    def done(self) -> bool:
        return self.stage >= self.stages

    def stage_mu_s(self) -> tuple[float, float]:
        k = min(self.stage, self.stages - 1)
        return self.mu_init * self.mu_factor ** k, max(1.0 - 0.1 * k, 0.7) + self.s_bonus

    @property
    def planned_iterations(self) -> int:
        """Upper bound of the whole path, used to spread it over epochs."""
        return self.stage_iters * (self.stages + 1)

    def _start_stage(self) -> None:
        self.snapshot = {k: v.clone() for k, v in self.params.items()}
        self.m = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.adam_t = 0
        self.iteration = 0
        self.prev_obj = math.inf

    def _end_stage(self) -> None:
        self.stage += 1
        self.s_bonus = 0.0
        self._start_stage()

    def run(self, iters: int, lr: float, lambda1: float, lambda2: float) -> dict[str, float]:
        """Advance up to ``iters`` iterations; returns the last objective and its parts."""
        last = {"obj": math.nan, "score": math.nan, "h": math.nan}
        for _ in range(iters):
            if self.done:
                break
            mu, s = self.stage_mu_s()
            out = self.model.objective(self.params, mu, s, lambda1, lambda2)
            if out is None:
                self.params = {k: v.clone() for k, v in self.snapshot.items()}
                self.lr_scale *= 0.5
                self.s_bonus += 0.1
                self._start_stage()
                continue
            obj, score, h, grads = out
            last = {"obj": obj, "score": score, "h": h}
            self._adam(grads, lr * self.lr_scale)
            self.iteration += 1
            self.total_iterations += 1
            limit = self.stage_iters * (2 if self.stage == self.stages - 1 else 1)
            if self.iteration % self.check_every == 0:
                if math.isfinite(self.prev_obj) and abs(self.prev_obj - obj) <= self.tol * abs(self.prev_obj):
                    self._end_stage()
                    continue
                self.prev_obj = obj
            if self.iteration >= limit:
                self._end_stage()
        return last

    def _adam(self, grads: dict[str, torch.Tensor], lr: float) -> None:
        self.adam_t += 1
        adam_step(self.params, grads, self.m, self.v, self.adam_t, lr, self.betas)

    def state_dict(self) -> dict[str, Any]:
        return {"params": dict(self.params), "snapshot": dict(self.snapshot), "m": dict(self.m),
                "v": dict(self.v), "adam_t": self.adam_t, "stage": self.stage, "iteration": self.iteration,
                "total_iterations": self.total_iterations, "lr_scale": self.lr_scale,
                "s_bonus": self.s_bonus, "prev_obj": self.prev_obj}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("params", "snapshot", "m", "v"):
            setattr(self, key, {k: v.to(self.device, copy=True) for k, v in state[key].items()})
        for key in ("adam_t", "stage", "iteration", "total_iterations", "lr_scale", "s_bonus", "prev_obj"):
            setattr(self, key, state[key])
