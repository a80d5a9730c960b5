"""The adaptive learning controller: PBT, guards and a single-model lr schedule behind one policy.

Per population group, once per round:

1. With two or more running members (and ``exploit`` on): ready bottom-quantile members
   copy a top-quantile member and explore its hyperparameters (perturbed at random).
2. Every other member is watched by the guards (undo: revert a change that left it worse;
   divergence: cut ``lr`` now; plateau: reduce it), and a single model (population 1)
   also follows the lr schedule (search, hold, anneal).

It once had a learned part, a Thompson-sampling bandit over lr factors. It beat this plain
core in 24 of 40 seeds of ``benchmarks/controller.py`` (no better than a coin, p = 0.13)
and in 1 of 3 seeds of ``digits_pbt``, where the core beat no controller in 3 of 3, so it
was removed (figures in ``docs/models/adaptive_learning_controller.md``).

It never touches a pinned or non-live hyperparameter, keeps values inside their bounds,
and is a deterministic function of its seed, its state and the views it was shown.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...control import Controller, Decision, Exploit, ModelView, RunView, SetHParam
from ...errors import PresetError
from ...registry import register_model
from ...trainer import HParam, validate_hparams
from ._guards import GuardSettings, guard_factor
from ._pbt import exploit_pairs, explore, rank
from ._schedule import SearchStep, in_anneal, round_trend, search_step
from ._values import (
    Objective,
    controllable,
    current_score,
    plain,
    resolve_objective,
    scaled,
    score_noise,
    score_series,
    train_losses,
)

__all__ = ["AdaptiveLearningController"]

_INACTIVE = {"finished", "failed", "stopped", "cancelled", "completed", "error", "paused"}
_LOG_LIMIT = 500


@register_model("adaptive_learning_controller")
class AdaptiveLearningController(Controller):
    """Population-based training + undo/divergence/plateau guards + a single-model lr schedule."""

    description = ("Steers the other models' live hyperparameters: population-based training, "
                   "an lr range test for single models, and guards that undo what made a model worse.")
    metrics = ("train/decisions", "train/exploits", "train/guard_cuts", "train/undos",
               "eval/improvement_vs_fixed", "eval/decisions", "eval/exploits", "eval/undos",
               "eval/fixed_groups")
    hyperparameters = {
        "objective": HParam(str, "eval/loss",
                            help="metrics members are judged by (comma-separated: the first one a group "
                                 "reports wins; fallback: the training loss)"),
        "mode": HParam(str, "auto", choices=("auto", "min", "max"),
                       help="direction of the objective; auto: accuracy/reward-like names are maximised"),
        "lr_name": HParam(str, "lr", help="the hyperparameter the guards and the schedule move"),
        "warmup_rounds": HParam(int, 2, low=1, high=1000, help="rounds before the first decision"),
        "ready_rounds": HParam(int, 1, low=1, high=1000,
                               help="rounds a member is left alone after a change (also the undo's horizon)"),
        "exploit": HParam(bool, True, help="population-based training in groups of 2+ members"),
        "quantile": HParam(float, 0.25, low=0.05, high=0.5, help="bottom/top fraction for exploit"),
        "perturb_factor": HParam(float, 1.25, low=1.01, high=10.0, help="explore: x or / this factor"),
        "resample_prob": HParam(float, 0.1, low=0.0, high=1.0, help="explore: resample from the range"),
        "keep_fixed": HParam(int, 0, low=0, high=100,
                             help="members per group left at their initial settings as a measured control"),
        "divergence_ratio": HParam(float, 1.5, low=1.01, high=100.0),
        "divergence_factor": HParam(float, 0.3, low=0.01, high=0.99),
        "divergence_train_rise": HParam(float, 0.0, low=0.0, high=100.0,
                                        help="> 0: a divergence cut also needs the round's training loss "
                                             "above this multiple of its best since the last change"),
        "patience": HParam(int, 6, low=1, high=1000),
        "plateau_threshold": HParam(float, 0.01, low=0.0, high=0.5),
        "plateau_factor": HParam(float, 0.5, low=0.01, high=0.99),
        "anneal_fraction": HParam(float, 0.1, low=0.0, high=1.0,
                                  help="final fraction of training in which a single model's lr decays"),
        "anneal_factor": HParam(float, 0.7, low=0.05, high=1.0, help="lr multiplier per round while annealing"),
        "schedule": HParam(bool, True, help="single models: lr search, hold, anneal (else: guards only)"),
        "search_fraction": HParam(float, 0.35, low=0.0, high=1.0,
                                  help="longest part of training a single model's lr range test may take"),
        "search_factor": HParam(float, 2.0, low=1.1, high=10.0, help="lr range test: x or / this factor"),
        "search_settle": HParam(float, 1.0, low=0.05, high=1.0,
                                help="lr multiplier when a raise stopped paying (1: keep, 0.5: go back)"),
        "population_anneal": HParam(bool, True, help="groups of 2+: every member's lr decays in the anneal part"),
        "exploit_margin": HParam(float, 1.0, low=0.0, high=100.0,
                                 help="exploit only when the gap exceeds this many noise standard deviations"),
    }

    def __init__(self, hparams: dict[str, Any], seed: int):
        merged, problems = validate_hparams(self.hyperparameters, hparams)
        if problems:
            raise PresetError(problems, source="adaptive_learning_controller hyperparameters")
        super().__init__(merged, seed)
        h = self.hparams
        self.guards = GuardSettings(h["divergence_ratio"], h["divergence_factor"], h["patience"],
                                    h["plateau_threshold"], h["plateau_factor"], h["divergence_train_rise"])
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._anchor: dict[str, list[float]] = {}  # instance -> [epoch, score, loss] at its last change
        self._ceiling: dict[str, float] = {}  # instance -> lr a raise may not exceed
        self._floor: dict[str, float] = {}  # instance -> lr a cut (not a divergence cut) may not go under
        # instance -> the last revertible change: {"epoch", "name", "old", "new", "metric", "score"}
        self._undo: dict[str, dict[str, Any]] = {}
        self._initial: dict[str, dict[str, Any]] = {}  # hparams first seen, for the fixed control
        self._touched: set[str] = set()
        self._log: list[dict[str, Any]] = []  # recent actions
        self._totals = {"decisions": 0, "exploits": 0, "guard_cuts": 0, "undos": 0}
        self._round: dict[str, float] = {}
        # instance -> [searching (1/0), last search factor (0: none yet), rate at the previous lr]
        self._search: dict[str, list[float]] = {}

    # -- policy ----------------------------------------------------------------------------
    def decide(self, view: RunView) -> list[Decision]:
        self._round = {"decisions": 0, "exploits": 0, "guard_cuts": 0, "undos": 0}
        decisions: list[Decision] = []
        for group, members in sorted(view.groups().items()):
            members = sorted(members, key=lambda m: m.instance)
            for m in members:
                self._initial.setdefault(m.instance, plain(m.hparams))
            active = [m for m in members if str(m.state).lower() not in _INACTIVE]
            if not active:
                continue
            objective = resolve_objective(active, self.hparams["objective"], self.hparams["mode"])
            protected = self._protected(active)
            if self.hparams["exploit"] and len(active) >= 2:
                decisions += self._population(group, active, objective, protected)
            else:
                decisions += self._singles(active, objective, protected, alone=True)
        self._round["decisions"] = len(decisions)
        for key in self._round:
            self._totals[key] = self._totals.get(key, 0) + self._round[key]
        return decisions

    def _protected(self, active: list[ModelView]) -> set[str]:
        """The first ``keep_fixed`` members (by name) stay at their initial settings."""
        k = int(self.hparams["keep_fixed"])
        return {m.instance for m in active[:k]} if len(active) > k else set()

    def _ready(self, m: ModelView) -> bool:
        since = m.epoch - int(self._anchor.get(m.instance, [0])[0])
        return m.epoch >= self.hparams["warmup_rounds"] and since >= self.hparams["ready_rounds"]

    def _population(self, group: str, active: list[ModelView], objective: Objective,
                    protected: set[str]) -> list[Decision]:
        views = {m.instance: m for m in active}
        scores = {i: _finite_or_inf(current_score(m, objective)) for i, m in views.items()}
        ranked = rank(scores)
        ready = {i for i, m in views.items() if self._ready(m)}
        out: list[Decision] = []
        exploited = set()
        for target, source in exploit_pairs(ranked, ready, self.hparams["quantile"], self.rng, protected):
            t, s = views[target], views[source]
            gap, noise = scores[target] - scores[source], math.hypot(
                score_noise(score_series(t, objective)), score_noise(score_series(s, objective)))
            if not gap > self.hparams["exploit_margin"] * noise:
                continue  # the ranking may be luck: copying would only throw a run away
            why = (f"{objective.metric} {objective.raw(scores[target]):.4g} is rank "
                   f"{ranked.index(target) + 1}/{len(ranked)}; copies {source} "
                   f"({objective.raw(scores[source]):.4g})")
            out.append(Exploit(target, source, reason=why))
            exploited.add(target)
            self._round["exploits"] += 1
            out += self._explore(t, s, objective)
        rest = [m for m in active if m.instance not in exploited]
        out += self._singles(rest, objective, protected, alone=False)
        if self.hparams["population_anneal"]:
            out += self._anneal_all(views, exploited, protected, out)
        return out

    def _anneal_all(self, views: Mapping[str, ModelView], exploited: set[str], protected: set[str],
                    planned: list[Decision]) -> list[Decision]:
        """The shared cool-down: in the anneal part every member's lr decays each round.

        An exploited member decays from the value its explore set (the last planned one),
        so the decay stays shared: a copy never jumps back above the schedule.
        """
        lr_name, out = self.hparams["lr_name"], []
        for i, m in sorted(views.items()):
            knobs = controllable(m, [lr_name])
            if i in protected or lr_name not in knobs or not self._annealing(m):
                continue
            current = m.hparams.get(lr_name)
            for d in planned:
                if isinstance(d, Exploit) and d.target == i:
                    current = views[d.source].hparams.get(lr_name, current)
                elif isinstance(d, SetHParam) and d.instance == i and d.name == lr_name:
                    current = d.value
            if current is None:
                continue
            new = scaled(knobs[lr_name], current, self.hparams["anneal_factor"])
            if new is not None:
                out.append(SetHParam(i, lr_name, new, reason="shared final anneal"))
                self._record(out[-1], current, m.epoch)
        return out

    def _explore(self, t: ModelView, s: ModelView, objective: Objective) -> list[Decision]:
        knobs = controllable(t)
        values = {k: s.hparams.get(k, t.hparams.get(k)) for k in knobs}
        moves = explore(knobs, values, self.rng, self.hparams["perturb_factor"], self.hparams["resample_prob"])
        out = [SetHParam(t.instance, k, v, reason=f"explore ({how}) after copying {s.instance}")
               for k, (v, how) in moves.items()]
        self._mark_change(t, anchor_from=s, objective=objective)
        for d in out:
            self._record(d, t.hparams.get(d.name), t.epoch)
        return out

    def _singles(self, members: list[ModelView], objective: Objective,
                 protected: set[str], alone: bool) -> list[Decision]:
        """Guards for every member; for a model steered alone also the lr schedule."""
        out: list[Decision] = []
        lr_name = self.hparams["lr_name"]
        for m in members:
            knobs = controllable(m, [lr_name])
            if m.instance in protected or lr_name not in knobs or lr_name not in m.hparams:
                continue
            spec, lr = knobs[lr_name], m.hparams[lr_name]
            undo = self._undo_move(m, spec, lr, objective)
            if undo is not None:
                out.append(undo)
                continue
            scores = self._since_change(m, score_series(m, objective), 1)
            losses_series = train_losses(m) or score_series(m, objective)
            losses = self._since_change(m, losses_series, 2)
            demand = guard_factor(losses, scores, self.guards, self._ready(m))
            if demand is not None:
                factor, why = demand
                new = scaled(spec, lr, factor)
                diverging = why.startswith("divergence")
                if new is not None and not diverging and new < self._floor.get(m.instance, -math.inf):
                    new = None  # a cut here was undone once: it made things worse
                if new is not None:
                    if diverging:
                        # Remember where it blew up: the lr search will not climb back there.
                        self._ceiling[m.instance] = float(lr) * 0.5
                        if m.instance in self._search:
                            self._search[m.instance][0] = 0.0
                    out.append(SetHParam(m.instance, lr_name, new, reason=why))
                    self._round["guard_cuts"] += 1
                    self._mark_change(m, anchor_from=m, objective=objective)
                    self._record(out[-1], lr, m.epoch)
                    if not diverging:
                        self._remember(m, out[-1], lr, objective)
                continue
            if alone and self._annealing(m):
                new = scaled(spec, lr, self.hparams["anneal_factor"])
                if new is not None and new >= self._floor.get(m.instance, -math.inf):
                    out.append(SetHParam(m.instance, lr_name, new, reason="final anneal"))
                    self._mark_change(m, anchor_from=m, objective=objective)
                    self._record(out[-1], lr, m.epoch)
                    self._remember(m, out[-1], lr, objective)
                continue
            if alone and self.hparams["schedule"] and self._searching(m):
                out += self._search_move(m, spec, lr, objective)
        return out

    def _searching(self, m: ModelView) -> bool:
        """Whether a single model's lr range test is still on (it ends for good once over)."""
        state = self._search.setdefault(m.instance, [1.0, 0.0, math.nan])
        limit = self.hparams["search_fraction"] * m.total_epochs
        if state[0] and m.epoch > limit:
            state[0] = 0.0
        return bool(state[0])

    def _search_move(self, m: ModelView, spec: HParam, lr: Any, objective: Objective) -> list[Decision]:
        state = self._search[m.instance]
        step_losses = [v for e, v in m.history.get("train/loss", ()) if int(e) == m.epoch]
        scores = [v for _, v in score_series(m, objective)]
        factor = self.hparams["search_factor"]
        step = search_step(scores, round_trend(step_losses), state[1] or None,
                           None if math.isnan(state[2]) else state[2], up=factor, down=1.0 / factor,
                           settle=self.hparams["search_settle"])
        if step.factor > 1.0:
            if float(lr) * step.factor > self._ceiling.get(m.instance, math.inf):
                step = SearchStep(1.0, True, step.rate, "lr search: at the divergence ceiling, hold")
        new = scaled(spec, lr, step.factor)
        if new is None and not step.done and step.factor != 1.0:
            step = SearchStep(1.0, True, step.rate, "lr search: at the bound, hold")
        state[0] = 0.0 if step.done else 1.0
        state[1] = step.factor if new is not None or step.factor == 1.0 else state[1]
        state[2] = step.rate if step.rate is not None else math.nan
        if new is None:
            return []
        d = SetHParam(m.instance, self.hparams["lr_name"], new, reason=step.why)
        self._mark_change(m, anchor_from=m, objective=objective)
        self._record(d, lr, m.epoch)
        if step.factor > 1.0 or not step.done:
            self._remember(m, d, lr, objective)  # a step back to a tried lr is itself an undo
        return [d]

    def _remember(self, m: ModelView, d: SetHParam, old: Any, objective: Objective) -> None:
        """Keep a change's "before" so the undo guard can judge it once its effect shows."""
        score = current_score(m, objective)
        if score is None or not math.isfinite(score):
            return
        self._undo[m.instance] = {"epoch": m.epoch, "name": d.name, "old": old, "new": d.value,
                                  "metric": objective.metric, "score": score}

    def _undo_move(self, m: ModelView, spec: HParam, current: Any, objective: Objective) -> SetHParam | None:
        """The undo guard: a change that left the objective worse than before it is reverted.

        Judged once, ``ready_rounds`` after the change, against the score the model had
        when the change was made (lower-is-better; any rise counts: the training losses and
        held-out errors it is used with fall steadily while a setting is right). The value
        is then barred for the rest of the run: a raise that was undone sets a ceiling, a
        cut a floor, and the lr search ends. A change someone else overrode since (a
        user, an engine rollback) is not judged.
        """
        rec = self._undo.get(m.instance)
        if rec is None or m.epoch < rec["epoch"] + self.hparams["ready_rounds"]:
            return None
        del self._undo[m.instance]
        if current != rec["new"] or rec["metric"] != objective.metric:
            return None
        now = current_score(m, objective)
        if now is not None and math.isfinite(now) and now <= rec["score"]:
            return None
        old = rec["old"]
        if float(rec["new"]) > float(old):
            self._ceiling[m.instance] = min(self._ceiling.get(m.instance, math.inf), float(old))
        else:
            self._floor[m.instance] = max(self._floor.get(m.instance, -math.inf), float(old))
        if m.instance in self._search:
            self._search[m.instance][0] = 0.0
        was, got = objective.raw(rec["score"]), objective.raw(now) if now is not None else math.nan
        d = SetHParam(m.instance, rec["name"], old,
                      reason=f"undo: {objective.metric} went {was:.4g} -> {got:.4g} after "
                             f"{rec['name']} {old:.4g} -> {rec['new']:.4g}")
        self._round["undos"] += 1
        self._mark_change(m, anchor_from=m, objective=objective)
        self._record(d, current, m.epoch)
        return d

    def _annealing(self, m: ModelView) -> bool:
        """In the last ``anneal_fraction`` of its training a steered model's lr only decays.

        Fixed-rate SGD ends wherever the noise of its last steps left it; decaying the step
        size at the end settles it (the cool-down of warmup-stable-decay schedules), and no
        exploration is worth a blow-up there is no time to recover from.
        """
        return in_anneal(m.epoch, m.total_epochs, self.hparams["anneal_fraction"])

    # -- change tracking -------------------------------------------------------------------
    def _mark_change(self, m: ModelView, anchor_from: ModelView, objective: Objective) -> None:
        score = current_score(anchor_from, objective)
        losses = train_losses(anchor_from)
        loss = losses[-1][1] if losses else (score if score is not None else math.nan)
        self._anchor[m.instance] = [m.epoch, _finite_or_inf(score), float(loss)]
        self._touched.add(m.instance)

    def _since_change(self, m: ModelView, series: list[tuple[int, float]], slot: int) -> list[float]:
        """The series from the last change on, starting at the value that change started from."""
        anchor = self._anchor.get(m.instance)
        if anchor is None:
            return [v for _, v in series]
        start = [anchor[slot]] if math.isfinite(anchor[slot]) else []
        return start + [v for e, v in series if e > anchor[0]]

    def _record(self, d: SetHParam, old: Any, epoch: int) -> None:
        self._log.append({"round": epoch, "instance": d.instance, "kind": "set", "name": d.name,
                          "old": old if isinstance(old, (int, float, str, bool)) else str(old),
                          "new": d.value, "reason": d.reason})
        del self._log[:-_LOG_LIMIT]

    # -- metrics -----------------------------------------------------------------------------
    def metrics_for_round(self) -> Mapping[str, float]:
        r = self._round
        return {"train/decisions": float(r.get("decisions", 0)),
                "train/exploits": float(r.get("exploits", 0)),
                "train/guard_cuts": float(r.get("guard_cuts", 0)),
                "train/undos": float(r.get("undos", 0))}

    def evaluate(self, view: RunView) -> Mapping[str, float]:
        from ._evaluate import improvement_vs_fixed

        out = {"eval/decisions": float(self._totals["decisions"]),
               "eval/exploits": float(self._totals["exploits"]),
               "eval/undos": float(self._totals.get("undos", 0))}
        ratio, groups = improvement_vs_fixed(view, self.hparams["objective"], self.hparams["mode"],
                                             self._initial, self._touched)
        out["eval/fixed_groups"] = float(groups)
        if ratio is not None:
            out["eval/improvement_vs_fixed"] = ratio
        return out

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rng = self.rng.bit_generator.state
        return {
            "rng": {"state": str(rng["state"]["state"]), "inc": str(rng["state"]["inc"]),
                    "has_uint32": int(rng["has_uint32"]), "uinteger": int(rng["uinteger"])},
            "anchor": {k: list(v) for k, v in self._anchor.items()},
            "ceiling": dict(self._ceiling),
            "floor": dict(self._floor),
            "undo": {k: dict(v) for k, v in self._undo.items()},
            "initial": {k: dict(v) for k, v in self._initial.items()},
            "touched": sorted(self._touched),
            "log": [dict(e) for e in self._log],
            "totals": dict(self._totals),
            "round": dict(self._round),
            "search": {k: list(v) for k, v in self._search.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = state["rng"]
        self.rng.bit_generator.state = {
            "bit_generator": "PCG64", "state": {"state": int(r["state"]), "inc": int(r["inc"])},
            "has_uint32": int(r["has_uint32"]), "uinteger": int(r["uinteger"])}
        self._anchor = {k: [float(x) for x in v] for k, v in state["anchor"].items()}
        self._ceiling = {k: float(v) for k, v in state["ceiling"].items()}
        self._floor = {k: float(v) for k, v in state.get("floor", {}).items()}
        self._undo = {k: dict(v) for k, v in state.get("undo", {}).items()}
        self._initial = {k: dict(v) for k, v in state["initial"].items()}
        self._touched = set(state["touched"])
        self._log = [dict(e) for e in state["log"]]
        # Checkpoints from before the bandit was removed carry its keys: ignored.
        self._totals = {k: v for k, v in state["totals"].items() if k in self._totals}
        self._round = {k: v for k, v in state["round"].items() if k in self._totals}
        self._search = {k: [float(x) for x in v] for k, v in state.get("search", {}).items()}


def _finite_or_inf(x: float | None) -> float:
    return x if x is not None and math.isfinite(x) else math.inf

