"""Transitions of a gymnasium environment, collected here or received from the simulator.

The engine's ``transitions/<dataset>`` artifact is a dict with tensors ``obs``,
``act``, ``next_obs``, ``reward`` and lists ``state_names``, ``action_names``. Until such
an artifact arrives the causal engine collects its own with a uniformly random policy,
so it learns an environment's structure alone.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["STATE_NAMES", "ACTION_NAMES", "PHYSICS", "collect_random_transitions", "as_arrays", "physics_mask"]

STATE_NAMES = {
    # the same names as the environment simulator's, so masks align by name
    "CartPole-v1": ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"],
    "Pendulum-v1": ["cos_theta", "sin_theta", "theta_dot"],
}
ACTION_NAMES = {"CartPole-v1": ["push_right"], "Pendulum-v1": ["torque"]}


def collect_random_transitions(env_id: str, n: int, seed: int) -> dict[str, Any]:
    """``n`` transitions of ``env_id`` under a uniformly random policy, episodes reset as needed.

    Truncated episodes are cut short at 200 steps so the start-state distribution is
    revisited (a random policy rarely lasts that long on CartPole anyway).
    """
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs_l, act_l, next_l, rew_l = [], [], [], []
    obs, _ = env.reset(seed=seed)
    steps = 0
    for _ in range(n):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        obs_l.append(np.asarray(obs, dtype=np.float64))
        act_l.append(np.atleast_1d(np.asarray(action, dtype=np.float64)))
        next_l.append(np.asarray(next_obs, dtype=np.float64))
        rew_l.append(float(reward))
        steps += 1
        if terminated or truncated or steps >= 200:
            obs, _ = env.reset()
            steps = 0
        else:
            obs = next_obs
    env.close()
    obs_dim, act_dim = len(obs_l[0]), len(act_l[0])
    return {
        "obs": torch.tensor(np.stack(obs_l)),
        "act": torch.tensor(np.stack(act_l)),
        "next_obs": torch.tensor(np.stack(next_l)),
        "reward": torch.tensor(rew_l),
        "state_names": STATE_NAMES.get(env_id, [f"s{i}" for i in range(obs_dim)]),
        "action_names": ACTION_NAMES.get(env_id, [f"a{i}" for i in range(act_dim)]),
    }


def as_arrays(artifact: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, deltas)``: inputs = [obs, act], deltas = next_obs - obs, as float64 arrays.

    Discrete actions may come as a 1-D vector of indices; they become one column.
    """
    obs = torch.as_tensor(artifact["obs"]).double().reshape(len(artifact["obs"]), -1).numpy()
    act = torch.as_tensor(artifact["act"]).double().reshape(len(obs), -1).numpy()
    nxt = torch.as_tensor(artifact["next_obs"]).double().reshape(len(obs), -1).numpy()
    return np.concatenate([obs, act], axis=1), nxt - obs


# Which inputs each next-state change depends on in the simulator's own equations
# (gymnasium's Euler step). "weak" couplings enter only through terms such as
# theta_dot**2 * sin(theta) or the velocity clip, tiny under a random policy.
PHYSICS = {
    "CartPole-v1": {
        "strong": [("cart_velocity", "cart_position"), ("pole_angle", "cart_velocity"),
                   ("push_right", "cart_velocity"), ("pole_angular_velocity", "pole_angle"),
                   ("pole_angle", "pole_angular_velocity"), ("push_right", "pole_angular_velocity")],
        "weak": [("pole_angular_velocity", "cart_velocity"), ("pole_angular_velocity", "pole_angular_velocity")],
    },
    "Pendulum-v1": {
        "strong": [(i, o) for o in ("cos_theta", "sin_theta") for i in
                   ("cos_theta", "sin_theta", "theta_dot", "torque")]
        + [("sin_theta", "theta_dot"), ("torque", "theta_dot")],
        "weak": [("theta_dot", "theta_dot")],
    },
}


def physics_mask(env_id: str, inputs: list[str], outputs: list[str], weak: bool = True) -> np.ndarray | None:
    """0/1 matrix ``[input, output]`` of the true dependencies, or None for an unknown environment."""
    spec = PHYSICS.get(env_id)
    if spec is None:
        return None
    mask = np.zeros((len(inputs), len(outputs)))
    for i, o in spec["strong"] + (spec["weak"] if weak else []):
        if i in inputs and o in outputs:
            mask[inputs.index(i), outputs.index(o)] = 1.0
    return mask
