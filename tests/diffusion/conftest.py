"""Fixtures of the diffusion tests: a small scene on disk and tiny models (nothing downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from diffusion_helpers import SmallScene, quick_customize, write_small_scene

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and lose a lot on a shared, busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory) -> SmallScene:
    return write_small_scene(tmp_path_factory.mktemp("small_scene"))


@pytest.fixture(scope="session")
def tiny_pipeline():
    """The untrained tiny pipeline (float32, CPU). Tests must not modify it."""
    from maldnerf.diffusion.models import build_random_pipeline

    return build_random_pipeline("tiny", seed=0)


@pytest.fixture(scope="session")
def customized(tmp_path_factory, small_scene: SmallScene) -> Path:
    """A customisation of the tiny model trained for a few steps on the small scene."""
    from maldnerf.diffusion.customize import run
    from maldnerf.diffusion.models import DiffusionSettings

    root = tmp_path_factory.mktemp("customized")
    run(
        quick_customize(),
        DiffusionSettings(),
        small_scene.transforms,
        small_scene.masks_dir,
        root / "custom",
        root / "resume",
    )
    return root / "custom"
