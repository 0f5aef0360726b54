"""Helpers of the NeRF tests."""

from __future__ import annotations

from maldnerf.nerf.settings import NerfSettings


def tiny_settings(**overrides) -> NerfSettings:
    """Small, fast NeRF settings for unit tests (CPU)."""
    from helpers import tiny_nerf_dict
    from maldnerf.settings import from_dict

    return from_dict(NerfSettings, tiny_nerf_dict(**{"patches_per_step": 1, **overrides}))
