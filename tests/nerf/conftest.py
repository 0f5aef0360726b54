"""Fixtures of the NeRF tests: a small synthetic scene with known poses, masks and targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import prepared_synthetic


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory) -> dict[str, Path]:
    """A 80x60 synthetic scene (8 training, 2 test views) with its known poses as the
    transforms file, dilated masks, and the true backgrounds as (oracle) inpainting targets."""
    return prepared_synthetic(
        tmp_path_factory.mktemp("small"), 80, 60, 8, 2, known_poses_stage=False
    )
