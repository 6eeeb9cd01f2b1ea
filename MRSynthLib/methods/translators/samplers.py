"""Diffusion sampling as pure numpy functions, shared by every backend (the network is a callable).

Noise path, ``t`` in ``[0, 1]`` (0 = data, 1 = pure noise)::

    x_t = alpha(t) * x0 + sigma(t) * eps

Two schedules, each with the network predicting a *velocity* ``v``:

- ``cosine`` (DDPM, variance preserving, continuous time): ``alpha = cos(pi t / 2)``,
  ``sigma = sin(pi t / 2)``; ``v = alpha * eps - sigma * x0`` (v-prediction). ``dx/dt = (pi / 2) v``.
- ``linear`` (rectified flow): ``alpha = 1 - t``, ``sigma = t``; ``v = eps - x0``. ``dx/dt = v``.

For both, ``x0`` and ``eps`` are linear in ``(x_t, v)`` (:meth:`Schedule.split`), so both samplers work
with both schedules:

- :func:`ddim_sample`: DDIM (``eta = 0`` deterministic, ``eta = 1`` ancestral-like), any Gaussian path;
- :func:`euler_sample`: explicit Euler steps of the probability-flow ODE ``dx/dt = c v``; with the
  ``linear`` schedule this is the rectified-flow sampler.

Every function is deterministic given its inputs; randomness enters only through the arrays passed in
(initial noise, per-step noise from :func:`seeded_normal`), so a seed fixes the result on any backend.
Arrays are float32 ``(B, ...)``; time is a Python float shared by the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

SCHEDULES = ("cosine", "linear")
SAMPLERS = ("ddim", "euler")

Velocity = Callable[[np.ndarray, float], np.ndarray]
"""``velocity(x_t (B, ...), t) -> v (B, ...)``: the network's prediction at time ``t``."""


@dataclass(frozen=True)
class Schedule:
    """A noise path ``x_t = alpha(t) x0 + sigma(t) eps``; ``kind`` is ``cosine`` or ``linear``."""

    kind: str = "cosine"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.kind!r}")

    def alpha(self, t):
        """``alpha(t)`` for a float or an array of times."""
        return np.cos(np.pi * t / 2) if self.kind == "cosine" else 1.0 - t

    def sigma(self, t):
        return np.sin(np.pi * t / 2) if self.kind == "cosine" else t

    def velocity_coefficients(self, t) -> tuple:
        """``(c_x0, c_eps)`` with ``v = c_x0 * x0 + c_eps * eps`` (floats, or arrays shaped like ``t``)."""
        if self.kind == "cosine":
            return -self.sigma(t), self.alpha(t)
        one = np.ones_like(t, dtype=float) if np.ndim(t) else 1.0
        return -one, one

    @property
    def velocity_scale(self) -> float:
        """``c`` in ``dx/dt = c * v``."""
        return math.pi / 2 if self.kind == "cosine" else 1.0

    def noised(self, x0: np.ndarray, eps: np.ndarray, t: float) -> np.ndarray:
        return (self.alpha(t) * x0 + self.sigma(t) * eps).astype(np.float32)

    def velocity(self, x0: np.ndarray, eps: np.ndarray, t: float) -> np.ndarray:
        """The training target ``v`` for data ``x0`` and noise ``eps`` at ``t``."""
        c_x0, c_eps = self.velocity_coefficients(t)
        return (c_x0 * x0 + c_eps * eps).astype(np.float32)

    def split(self, x: np.ndarray, v: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """``(x0, eps)`` implied by ``x_t`` and a velocity ``v`` at ``t``."""
        a, s = self.alpha(t), self.sigma(t)
        if self.kind == "cosine":  # a^2 + s^2 = 1
            return (a * x - s * v).astype(np.float32), (s * x + a * v).astype(np.float32)
        return (x - t * v).astype(np.float32), (x + (1.0 - t) * v).astype(np.float32)


@dataclass(frozen=True)
class SamplingConfig:
    """How a bundle's denoiser is sampled (stored in the card as ``networks.diffusion``).

    ``latent_scale``: the denoiser works on ``latent * latent_scale`` (about unit variance).
    """

    schedule: str = "cosine"
    sampler: str = "ddim"
    steps: int = 20
    eta: float = 0.0
    latent_scale: float = 1.0

    def __post_init__(self) -> None:
        Schedule(self.schedule)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}")
        if int(self.steps) < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], not {self.eta}")
        if not self.latent_scale > 0:
            raise ValueError(f"latent_scale must be > 0, not {self.latent_scale}")

    @classmethod
    def from_dict(cls, data: dict) -> SamplingConfig:
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def time_grid(steps: int) -> np.ndarray:
    """``(steps + 1,)`` times from 1 (noise) down to 0 (data), evenly spaced."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    return np.linspace(1.0, 0.0, steps + 1)


def seeded_normal(shape: Sequence[int], seed: int, *keys: int) -> np.ndarray:
    """Standard normal float32 noise that depends only on ``(seed, *keys)`` and ``shape``."""
    return np.random.default_rng([int(seed), *[int(k) for k in keys]]).standard_normal(tuple(shape), dtype=np.float32)


def ddim_step(x: np.ndarray, v: np.ndarray, t: float, s: float, schedule: Schedule, eta: float = 0.0,
              noise: np.ndarray | None = None) -> np.ndarray:
    """One DDIM step from time ``t`` to ``s < t`` given the velocity ``v`` predicted at ``t``.

    ``x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z`` with ``c = eta * (sigma_s / sigma_t) *
    sqrt(sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2)`` (the DDPM posterior spread times ``eta``).
    """
    x0, eps = schedule.split(x, v, t)
    a_s, s_s = schedule.alpha(s), schedule.sigma(s)
    c = 0.0
    if eta > 0 and s_s > 0 and noise is not None:
        a_t, s_t = schedule.alpha(t), schedule.sigma(t)
        spread = max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)
        c = eta * (s_s / s_t) * math.sqrt(spread)
    out = a_s * x0 + math.sqrt(max(s_s**2 - c**2, 0.0)) * eps
    if c > 0:
        out = out + c * noise
    return out.astype(np.float32)


def ddim_sample(velocity: Velocity, x_start: np.ndarray, schedule: Schedule, steps: int, eta: float = 0.0,
                step_noise: Callable[[int], np.ndarray] | None = None,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Integrate from pure noise ``x_start`` (at ``t = 1``) to data with ``steps`` DDIM steps.

    Args:
        velocity: the network, ``velocity(x, t)``.
        step_noise: ``step_noise(i)`` → fresh noise shaped like ``x`` for step ``i`` (needed when ``eta > 0``).
        progress: called with the index of each step before it runs.
    Returns:
        ``x0`` estimate, same shape as ``x_start``.
    """
    if eta > 0 and step_noise is None:
        raise ValueError("ddim_sample with eta > 0 needs step_noise")
    times = time_grid(steps)
    x = np.asarray(x_start, dtype=np.float32)
    for i in range(steps):
        if progress is not None:
            progress(i)
        t, s = float(times[i]), float(times[i + 1])
        noise = step_noise(i) if eta > 0 and s > 0 else None
        x = ddim_step(x, velocity(x, t), t, s, schedule, eta, noise)
    return x


def euler_sample(velocity: Velocity, x_start: np.ndarray, schedule: Schedule, steps: int,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Integrate the probability-flow ODE ``dx/dt = c v`` from ``t = 1`` to 0 with ``steps`` Euler steps
    (rectified-flow sampling for the ``linear`` schedule)."""
    times = time_grid(steps)
    x = np.asarray(x_start, dtype=np.float32)
    for i in range(steps):
        if progress is not None:
            progress(i)
        t, s = float(times[i]), float(times[i + 1])
        x = (x + (s - t) * schedule.velocity_scale * velocity(x, t)).astype(np.float32)
    return x


def sample(config: SamplingConfig, velocity: Velocity, x_start: np.ndarray,
           step_noise: Callable[[int], np.ndarray] | None = None,
           progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Run the sampler ``config.sampler`` with ``config.steps`` steps (and ``config.eta`` for DDIM)."""
    schedule = Schedule(config.schedule)
    if config.sampler == "euler":
        return euler_sample(velocity, x_start, schedule, int(config.steps), progress)
    return ddim_sample(velocity, x_start, schedule, int(config.steps), config.eta, step_noise, progress)
