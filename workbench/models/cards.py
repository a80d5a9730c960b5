"""The built-in trainers' cards: their class-level declarations, importable without torch.

A card holds what the driver reads to plan a run and the CLI to list models (``accepts``,
``hyperparameters``, ``metrics``, ``cpu_threads``, ``check_hparams``, ...; see
:class:`~workbench.trainer.TrainerCard`). Each built-in trainer inherits its card, so the
declarations are written once, here; :func:`workbench.registry.describe` hands out the
card while the trainer's module (and torch) is not imported.

Only the standard library, ``workbench.trainer`` and ``workbench.precision`` (which
imports torch inside its functions only) may be imported here.
"""
from __future__ import annotations

from typing import Any

from ..precision import PRECISION
from ..trainer import HParam, TrainerCard

__all__ = ["AlphaDeepModelCard", "CausalReasoningEngineCard", "DigitsCNNCard", "DigitsCard", "DigitsMLPCard",
           "EnvironmentSimulatorCard", "PROPAGATIONS", "TERMINATION_MODELS"]


# -- digits_mlp, digits_cnn (workbench.models.digits) -----------------------------------
class DigitsCard(TrainerCard):
    """What the digit classifiers share."""

    accepts = ("images", "labelled_tabular")
    hyperparameters = {
        "lr": HParam(float, 3e-3, low=1e-5, high=1.0, log=True, live=True, help="Adam learning rate"),
        "weight_decay": HParam(float, 1e-4, low=0.0, high=0.1, live=True),
        "batch_size": HParam(int, 32, low=1, high=4096, help="samples per forward pass"),
        "grad_accumulation": HParam(int, 1, low=1, high=4096,
                                    help="forward passes per optimiser step (effective batch = batch_size x this)"),
        "precision": PRECISION,
        "mutual_weight": HParam(float, 1.0, low=0.0, high=10.0, live=True,
                                help="weight of the KL term toward peers' predictions"),
        "temperature": HParam(float, 2.0, low=0.5, high=10.0),
        "mutual_from": HParam(str, "better", choices=("all", "better"),
                              help="all: learn from every peer (deep mutual learning); better: only from peers "
                                   "whose validation NLL is lower than this model's own"),
        "self_distill": HParam(bool, False, help="without peers, distil from its own previous-epoch predictions "
                               "(the control for mutual learning)"),
        "hidden": HParam(int, 128, low=8, high=2048),
    }
    metrics = ("train/loss", "train/kl", "eval/loss", "eval/accuracy", "eval/test_nll",
               "eval/test_accuracy")


class DigitsMLPCard(DigitsCard):
    name = "digits_mlp"
    description = "MLP classifier (2 hidden layers, dropout) on flattened features"


class DigitsCNNCard(DigitsCard):
    name = "digits_cnn"
    accepts = ("images",)
    description = "small CNN classifier (2 conv layers) on images"


# -- environment_simulator (workbench.models.environment_simulator) ----------------------
TERMINATION_MODELS = ("learned", "known_bounds", "learned+bounds")
PROPAGATIONS = ("ts1", "members", "mean")


class EnvironmentSimulatorCard(TrainerCard):
    name = "environment_simulator"
    accepts = ("environment",)
    # The replay buffer and the environment loop stay in host memory; the ensemble, the
    # termination model and the training set live on the model's device.
    host_tensors = ("buffer", "causal_mask")
    description = "PETS-style probabilistic ensemble world model with CEM model-predictive control"
    hyperparameters = {
        "lr": HParam(float, 1e-3, low=1e-5, high=1.0, log=True, live=True, help="Adam learning rate"),
        "weight_decay": HParam(float, 1e-5, low=0.0, high=0.1, live=True),
        "batch_size": HParam(int, 64, low=1, high=4096, help="transitions per ensemble member per step"),
        "steps_per_epoch": HParam(int, 200, low=1, high=100_000),
        "ensemble_size": HParam(int, 5, low=1, high=16),
        "hidden": HParam(int, 64, low=8, high=1024, help="width of each member (of each head if factored)"),
        "layers": HParam(int, 3, low=1, high=6),
        "architecture": HParam(str, "joint", choices=("joint", "factored"),
                               help="factored = one head per next-state variable (can use a causal mask)"),
        "use_causal_mask": HParam(bool, True, help="apply an imported causal_mask to the factored heads"),
        "mask_mode": HParam(str, "hard", choices=("hard", "penalty"),
                            help="hard = masked-out inputs are cut; penalty = kept, their weights priced by mask_penalty"),
        "mask_penalty": HParam(float, 0.1, low=0.0, high=100.0, live=True,
                               help="mask_mode=penalty: group-lasso price of each masked-out input's weights"),
        "mask_patience": HParam(int, 1, low=1, high=100,
                                help="consecutive imported masks that must leave an input out before it is dropped"),
        "mask_restore_gain": HParam(float, 1.0, low=0.0, high=1.0,
                                    help="share of a head's held-out residual a dropped input may explain before "
                                         "it is restored for good (1 = never restore)"),
        "initial_random_steps": HParam(int, 300, low=1, high=1_000_000),
        "env_steps_per_epoch": HParam(int, 300, low=0, high=1_000_000, live=True,
                                      help="real environment steps collected after each epoch"),
        "explore_epsilon": HParam(float, 0.1, low=0.0, high=1.0, live=True,
                                  help="probability of a random action while collecting"),
        "holdout_fraction": HParam(float, 0.2, low=0.05, high=0.5),
        "plan_horizon": HParam(int, 25, low=1, high=200, live=True),
        "plan_population": HParam(int, 200, low=5, high=10_000, live=True),
        "plan_iterations": HParam(int, 3, low=1, high=20, live=True, help="1 = random shooting"),
        "plan_keep_best": HParam(bool, False, live=True,
                                 help="the previous step's best sequence (shifted) competes in every CEM round"),
        "plan_propagation": HParam(str, "ts1", choices=PROPAGATIONS, live=True,
                                   help="ts1 = one member per sequence; members / mean = every member (members x cost)"),
        "termination": HParam(str, "learned", choices=TERMINATION_MODELS,
                              help="how imagined CartPole episodes end in the planner"),
        "termination_temperature": HParam(float, 1.0, low=1.0, high=100.0, live=True,
                                          help="planner's risk aversion: >1 softens the learned boundary"),
        "bounds_cost": HParam(float, 0.0, low=0.0, high=100.0, live=True,
                              help="CartPole planner: weight of a bonus for staying away from the env's thresholds"),
        "bounds_lead": HParam(float, 0.0, low=0.0, high=10.0, live=True,
                              help="bounds bonus looks at the cart's position this many seconds ahead"),
        "eval_episodes": HParam(int, 3, low=0, high=100, live=True,
                                help="real episodes of the planner per evaluation (0 = skip)"),
        "eval_max_steps": HParam(int, 500, low=1, high=10_000, live=True),
        "imagined_count": HParam(int, 0, low=0, high=100_000,
                                 help="imagined transitions exported per epoch (0 = none: no model consumes them)"),
        "imagined_horizon": HParam(int, 10, low=1, high=100),
    }


# -- causal_reasoning_engine (workbench.models.causal) ----------------------------------
class CausalReasoningEngineCard(TrainerCard):
    name = "causal_reasoning_engine"
    accepts = ("tabular", "environment")
    description = "DAGMA causal discovery (linear / MLP) with interventional queries; environment structure masks"
    hyperparameters = {
        "lr": HParam(float, 3e-3, low=1e-5, high=0.1, log=True, live=True, help="Adam step size"),
        "lambda1": HParam(float, 0.02, low=0.0, high=1.0, live=True, help="L1 penalty on edge weights"),
        "lambda2": HParam(float, 0.005, low=0.0, high=1.0, live=True, help="L2 penalty on MLP weights"),
        "w_threshold": HParam(float, 0.3, low=0.0, high=10.0, live=True,
                              help="edges with |weight| at or below this are dropped"),
        "variant": HParam(str, "auto", choices=("auto", "linear", "mlp"),
                          help="auto: mlp when the dataset says its SEM is nonlinear, else linear"),
        "standardize": HParam(bool, False, help="scale columns to unit variance (loses varsortability); "
                              "the mlp variant always does"),
        "true_graph": HParam(str, "", help="a CSV of the known graph (adjacency or cause,effect list): "
                             "scored as eval/shd, eval/tpr, eval/fdr"),
        "hidden": HParam(int, 10, low=1, high=256, help="hidden units per node (mlp variant)"),
        "stages": HParam(int, 4, low=1, high=20, help="central-path stages (mu shrinks 10x per stage)"),
        "stage_iters": HParam(int, 4000, low=10, high=200000, help="max Adam iterations per stage"),
        "iters_per_step": HParam(int, 250, low=1, high=100000, help="Adam iterations per train_step"),
        "fit_epochs": HParam(int, 6, low=1, high=10000, help="epochs over which the planned fit is spread"),
        "env_samples": HParam(int, 3000, low=100, high=200000, help="random-policy transitions collected"),
        "env_iters": HParam(int, 1200, low=10, high=1000000, help="Adam iterations planned (environment)"),
        "env_hidden": HParam(int, 16, low=1, high=256, help="hidden units per output (environment)"),
        "group_lambda": HParam(float, 1e-3, low=0.0, high=1.0, live=True, help="group-lasso penalty (environment)"),
        "mask_threshold": HParam(float, 1e-3, low=0.0, high=1.0, live=True,
                                 help="share of explained variance an input must carry to be in the mask"),
    }
    metrics = ("train/loss", "train/score", "train/h", "train/stage", "train/fit_done", "train/mse",
               "eval/shd", "eval/tpr", "eval/fdr", "eval/nnz", "eval/h_acyclicity", "eval/effect_rel_error",
               "eval/score", "eval/r2")

    cpu_threads = 1  # d x d problems: a second torch thread only adds synchronisation (18x slower at d=11)

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any], path: str) -> tuple[dict[str, Any], list[str]]:
        """Resolve ``true_graph`` to an absolute path (workers may start elsewhere) and check it exists."""
        from pathlib import Path

        if not hparams.get("true_graph"):
            return hparams, []
        file = Path(hparams["true_graph"]).expanduser().resolve()
        if not file.is_file():
            return hparams, [f"{path}.true_graph: file not found: {file}"]
        return {**hparams, "true_graph": str(file)}, []


# -- alpha_deep_model (workbench.models.alpha) ------------------------------------------
class AlphaDeepModelCard(TrainerCard):
    name = "alpha_deep_model"
    accepts = ("game",)
    description = "AlphaZero-style policy-value network trained by self-play with PUCT tree search"
    hyperparameters = {
        "lr": HParam(float, 2e-3, low=1e-5, high=1.0, log=True, live=True, help="Adam learning rate"),
        "weight_decay": HParam(float, 1e-4, low=0.0, high=0.1, live=True, help="L2 penalty on weights"),
        "batch_size": HParam(int, 64, low=1, high=4096, live=True, help="positions per update"),
        "steps_per_epoch": HParam(int, 40, low=1, high=100_000, help="updates per epoch"),
        "games_per_epoch": HParam(int, 32, low=1, high=100_000, live=True, help="self-play games per epoch"),
        "selfplay_tasks": HParam(int, 4, low=1, high=1024, live=True, help="parallel self-play tasks"),
        "simulations": HParam(int, 32, low=2, high=10_000, live=True, help="search simulations per move"),
        "c_puct": HParam(float, 1.5, low=0.1, high=10.0, live=True, help="exploration constant of PUCT"),
        "dirichlet_alpha": HParam(float, 1.0, low=0.01, high=10.0, live=True, help="root noise concentration"),
        "noise_frac": HParam(float, 0.25, low=0.0, high=1.0, live=True, help="weight of root noise"),
        "temp_moves": HParam(int, 4, low=0, high=100, live=True, help="opening plies sampled at temperature 1"),
        "buffer_size": HParam(int, 20_000, low=16, high=10_000_000, help="replay capacity (positions)"),
        "arena_games": HParam(int, 10, low=0, high=10_000, live=True, help="gating games; 0 always accepts"),
        "arena_threshold": HParam(float, 0.55, low=0.0, high=1.0, live=True, help="score needed to accept"),
        "lockstep": HParam(int, 0, low=0, high=100_000, live=True,
                           help="self-play and arena games searched together, one network batch per simulation (0: all of a task's)"),
        "precision": PRECISION,
        "arena_temp_moves": HParam(int, 2, low=0, high=100, live=True, help="sampled opening plies in arena"),
        "eval_games": HParam(int, 10, low=0, high=100_000, live=True, help="eval games per colour per opponent"),
        "eval_simulations": HParam(int, 32, low=2, high=10_000, live=True, help="search simulations in eval"),
        "eval_minimax": HParam(bool, True, live=True, help="tic-tac-toe: test every optimal minimax line"),
        "channels": HParam(int, 32, low=4, high=512, help="convolution channels"),
        "blocks": HParam(int, 2, low=0, high=20, help="residual blocks"),
    }
    metrics = (
        "train/loss", "train/policy_loss", "train/value_loss", "train/buffer_positions",
        "train/arena_score", "train/arena_accepted", "train/selfplay_games", "train/selfplay_positions",
        "train/selfplay_first_player_win_rate", "train/selfplay_draw_rate",
        "eval/win_rate_vs_random", "eval/draw_rate_vs_random", "eval/loss_rate_vs_random",
        "eval/win_rate_vs_minimax", "eval/draw_rate_vs_minimax", "eval/loss_rate_vs_minimax",
        "eval/win_rate_vs_lookahead", "eval/draw_rate_vs_lookahead", "eval/loss_rate_vs_lookahead",
    )

    # The gated best weights travel to self-play and arena tasks on any worker, and the
    # replay buffer is numpy: both stay in host memory. The network trains on the device.
    host_tensors = ("best", "buffer")
