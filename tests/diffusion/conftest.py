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
def customized(tmp_path_factory, small_scene: SmallScene, tiny_folder: Path) -> Path:
    """A customisation (LoRA + 2 tokens) of ``tiny_folder`` trained a few steps on the small
    scene."""
    return _customize(
        tmp_path_factory.mktemp("customized"), small_scene, quick_customize(), tiny_folder
    )


@pytest.fixture(scope="session")
def customized_without_tokens(tmp_path_factory, small_scene: SmallScene, tiny_folder: Path) -> Path:
    """A LoRA-only customisation of ``tiny_folder`` (``num_tokens: 0``), one step."""
    settings = quick_customize(steps=1, num_tokens=0, prompt_template="a photo")
    root = tmp_path_factory.mktemp("customized_without_tokens")
    return _customize(root, small_scene, settings, tiny_folder)


def _customize(root: Path, scene: SmallScene, settings, model: Path) -> Path:
    """Run the customize stage of ``model`` on ``scene``; returns its output folder."""
    from maldnerf.diffusion.customize import run
    from maldnerf.diffusion.models import DiffusionSettings

    run(
        settings,
        DiffusionSettings(model=str(model), device="cpu"),
        scene.transforms,
        scene.masks_dir,
        root / "custom",
        root / "resume",
    )
    return root / "custom"
