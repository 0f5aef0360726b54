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
    return _customize(tmp_path_factory.mktemp("customized"), small_scene, quick_customize())


@pytest.fixture(scope="session")
def customized_without_tokens(tmp_path_factory, small_scene: SmallScene) -> Path:
    """A LoRA-only customisation of the tiny model (``num_tokens: 0``), one step."""
    settings = quick_customize(steps=1, tiny_vae_steps=1, num_tokens=0, prompt_template="a photo")
    return _customize(tmp_path_factory.mktemp("customized_without_tokens"), small_scene, settings)


def _customize(root: Path, scene: SmallScene, settings) -> Path:
    """Run the customize stage of the tiny model on ``scene``; returns its output folder."""
    from maldnerf.diffusion.customize import run
    from maldnerf.diffusion.models import DiffusionSettings

    run(
        settings,
        DiffusionSettings(),
        scene.transforms,
        scene.masks_dir,
        root / "custom",
        root / "resume",
    )
    return root / "custom"


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, tiny_pipeline) -> Path:
    """The untrained tiny model saved as a local diffusers folder (a non-``tiny`` model)."""
    folder = tmp_path_factory.mktemp("tiny_folder") / "model"
    tiny_pipeline.save_pretrained(folder, safe_serialization=True)
    return folder
