"""Noise levels: the IDU schedule t(k) and the mapping from a noise level t to DDIM timesteps.

A noise level ``t`` in (0, 1] is a fraction of the diffusion process of ``T`` training timesteps
(``T = 1000`` for Stable Diffusion). Re-inpainting at level ``t`` with a ``num_steps`` schedule:

- runs ``n = ceil(t · num_steps)`` DDIM steps (so lower ``t`` costs proportionally less);
- at the timesteps ``τ_i = round(t · T · (n − i) / n) − 1`` for ``i = 0 … n − 1`` (``trailing``
  spacing: the first step is at ``t · T − 1``, steps are ``≈ T / num_steps`` apart), followed by
  a final step to the clean latent (ᾱ = 1);
- the encoded render is noised to ``τ_0``: ``x = sqrt(ᾱ_τ0) · z + sqrt(1 − ᾱ_τ0) · ε``, except at
  ``t = 1`` where ``x = ε`` (pure noise), so ``t = 1`` is exactly the full inpainting of the view
  and does not depend on what was inside the mask.

Example, ``num_steps = 20``: ``t = 1`` → 20 steps from τ = 999; ``t = 0.5`` → 10 steps from
τ = 499 (499, 449, …, 49); ``t = 0.02`` → 1 step from τ = 19.
"""

from __future__ import annotations

import math


def idu_strength(k: int | float, K: int | float, t_max: float, t_min: float) -> float:
    """Noise level of the iterative dataset update at iteration ``k`` of ``K``.

    ``t(k) = t_max − (t_max − t_min) · sqrt(k / K)``: falls quickly early in training and slowly
    late, so coarse structure is settled first and fine detail last. ``k`` is clamped to
    ``[0, K]``.
    """
    if K <= 0:
        raise ValueError(f"K must be > 0, got {K}")
    if not 0.0 < t_min <= t_max <= 1.0:
        raise ValueError(f"need 0 < t_min <= t_max <= 1, got t_min={t_min}, t_max={t_max}")
    progress = min(max(float(k) / float(K), 0.0), 1.0)
    return float(t_max - (t_max - t_min) * math.sqrt(progress))


def num_ddim_steps(strength: float, num_steps: int) -> int:
    """Number of DDIM steps run at noise level ``strength`` with a ``num_steps`` schedule."""
    check_strength(strength)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return max(1, math.ceil(strength * num_steps - 1e-9))


def ddim_timesteps(strength: float, num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """The decreasing DDIM timesteps visited at noise level ``strength`` (see module docstring)."""
    n = num_ddim_steps(strength, num_steps)
    top = strength * num_train_timesteps
    steps = [round(top * (n - i) / n) - 1 for i in range(n)]
    return [min(max(s, 0), num_train_timesteps - 1) for s in steps]


def check_strength(strength: float) -> None:
    """Raise ``ValueError`` unless ``0 < strength <= 1``."""
    if not (isinstance(strength, int | float) and 0.0 < strength <= 1.0):
        raise ValueError(f"strength (noise level t) must be in (0, 1], got {strength!r}")
