"""Real-environment side: what each environment looks like, and collecting transitions.

Each collection call starts fresh episodes (seeded from the trainer's numpy generator) and
stops when its step budget is spent, so no environment state has to survive a checkpoint.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

__all__ = ["EnvSpec", "env_spec", "make_env", "collect", "random_action"]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Facts about a supported environment that the model and planner need."""

    env_id: str
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    discrete: bool  # True: actions are {0, ..., n_actions-1}, stored as one float
    n_actions: int = 0
    action_low: float = 0.0
    action_high: float = 0.0
    terminates: bool = False
    # Known termination region |state[i]| > bound (CartPole's thresholds), used only by
    # the planner's optional ``known_bounds`` termination model.
    state_bounds: tuple[tuple[int, float], ...] = ()
    # Index of each bounded variable's rate of change (per second), aligned with
    # ``state_bounds``: the planner's bounds cost can look at where a variable is heading.
    bound_rates: tuple[int, ...] = ()

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def short_name(self) -> str:
        return self.env_id.split("-")[0].lower()


_SPECS = {
    "CartPole-v1": EnvSpec(
        "CartPole-v1",
        ("cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"),
        ("push_right",), discrete=True, n_actions=2, terminates=True,
        state_bounds=((0, 2.4), (2, 12 * 2 * np.pi / 360)), bound_rates=(1, -1),
    ),
    "Pendulum-v1": EnvSpec(
        "Pendulum-v1", ("cos_theta", "sin_theta", "theta_dot"), ("torque",),
        discrete=False, action_low=-2.0, action_high=2.0,
    ),
}


def env_spec(env_id: str) -> EnvSpec:
    if env_id not in _SPECS:
        raise ValueError(f"environment_simulator supports {sorted(_SPECS)}, not {env_id!r}")
    return _SPECS[env_id]


def make_env(env_id: str):
    import gymnasium as gym

    return gym.make(env_id)


def random_action(spec: EnvSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.discrete:
        return np.array([float(rng.integers(spec.n_actions))], dtype=np.float32)
    return rng.uniform(spec.action_low, spec.action_high, size=spec.action_dim).astype(np.float32)


def _env_action(spec: EnvSpec, action: np.ndarray):
    return int(round(float(action[0]))) if spec.discrete else action.astype(np.float32)


Policy = Callable[[np.ndarray, bool], np.ndarray]  # (obs, new_episode) -> action vector


def collect(env, spec: EnvSpec, policy: Policy, n_steps: int, rng: np.random.Generator,
            max_episode_steps: int | None = None, epsilon: float = 0.0) -> dict[str, np.ndarray]:
    """Run ``policy`` (epsilon-mixed with uniform random actions) for ``n_steps`` real steps.

    Returns arrays ``obs, act, next_obs, reward, terminated, episode, t``; ``episode``
    numbers episodes within this call, ``t`` is the step index inside its episode.
    """
    rows: dict[str, list] = {k: [] for k in ("obs", "act", "next_obs", "reward", "terminated", "episode", "t")}
    episode, steps = 0, 0
    while steps < n_steps:
        obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
        new_episode, t, done = True, 0, False
        while not done and steps < n_steps and (max_episode_steps is None or t < max_episode_steps):
            explore = epsilon > 0 and rng.random() < epsilon
            action = random_action(spec, rng) if explore else policy(obs, new_episode)
            next_obs, reward, terminated, truncated, _ = env.step(_env_action(spec, action))
            for key, value in (("obs", obs), ("act", action), ("next_obs", next_obs), ("reward", reward),
                               ("terminated", terminated), ("episode", episode), ("t", t)):
                rows[key].append(value)
            obs, new_episode, done = next_obs, False, terminated or truncated
            t += 1
            steps += 1
        episode += 1
    return {
        "obs": np.asarray(rows["obs"], dtype=np.float32).reshape(-1, spec.state_dim),
        "act": np.asarray(rows["act"], dtype=np.float32).reshape(-1, spec.action_dim),
        "next_obs": np.asarray(rows["next_obs"], dtype=np.float32).reshape(-1, spec.state_dim),
        "reward": np.asarray(rows["reward"], dtype=np.float32),
        "terminated": np.asarray(rows["terminated"], dtype=np.float32),
        "episode": np.asarray(rows["episode"], dtype=np.int64),
        "t": np.asarray(rows["t"], dtype=np.int64),
    }


def run_episodes(env, spec: EnvSpec, policy: Policy, seeds: list[int], max_steps: int) -> list[float]:
    """Undiscounted return of ``policy`` on one episode per seed (no exploration)."""
    returns = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, new_episode = 0.0, True
        for _ in range(max_steps):
            obs, reward, terminated, truncated, _ = env.step(_env_action(spec, policy(obs, new_episode)))
            total += float(reward)
            new_episode = False
            if terminated or truncated:
                break
        returns.append(total)
    return returns
