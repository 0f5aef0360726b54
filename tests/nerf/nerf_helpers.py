"""Helpers of the NeRF tests."""

from __future__ import annotations

from maldnerf.nerf.settings import NerfSettings


def tiny_settings(**overrides) -> NerfSettings:
    """Small, fast NeRF settings for unit tests (CPU)."""
    from maldnerf.settings import from_dict

    base = {
        "iterations": 12,
        "batch_rays": 64,
        "patch_size": 8,
        "patches_per_step": 1,
        "device": "cpu",
        "checkpoint_every": 3,
        "log_every": 4,
        "field": {
            "num_levels": 4,
            "log2_table_size": 10,
            "max_resolution": 64,
            "hidden_dim": 16,
            "color_hidden_dim": 16,
            "color_layers": 1,
            "geo_feat_dim": 7,
        },
        "proposal": {
            "samples": [16],
            "max_resolutions": [32],
            "num_samples": 8,
            "num_levels": 3,
            "log2_table_size": 10,
        },
        "adversarial": {"warmup": 2, "channels": 8, "max_channels": 16},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return from_dict(NerfSettings, base)
