"""Fixtures of the reliability tests: one tiny prepared scene shared by every stage's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import prepared_synthetic


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> dict[str, Path]:
    """A synthetic 64x48 scene (4 training, 2 test views) through prepare, poses (its known
    poses) and masks, in the stages' own formats."""
    return prepared_synthetic(tmp_path_factory.mktemp("tiny"), 64, 48, 4, 2, known_poses_stage=True)
