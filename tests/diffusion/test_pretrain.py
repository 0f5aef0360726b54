"""The pretrain stage at toy sizes: its folder is a diffusers model, its runs are reproducible,
the machine cache is keyed by settings, and its crops teach object removal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from maldnerf.diffusion import pretrain
from maldnerf.diffusion.models import DiffusionSettings, load_base_pipeline
from maldnerf.diffusion.pretrain import PretrainSettings
from maldnerf.diffusion.pretrain_data import render_rooms, sample_batch
from maldnerf.errors import UserError
from maldnerf.settings import from_dict


def toy(**changes) -> PretrainSettings:
    values = dict(
        rooms=2,
        views_per_room=2,
        held_out_rooms=1,
        width=80,
        height=64,
        vae_steps=3,
        unet_steps=4,
        batch_size=2,
        warmup_steps=1,
        evaluation_steps=2,
        device="cpu",
    )
    values.update(changes)
    return PretrainSettings(**values)


@pytest.fixture(scope="module")
def toy_base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain") / "tiny"
    pretrain.run(toy(), folder, use_cache=False)
    return folder


def test_output_is_a_diffusers_model_with_log_sheet_and_scores(toy_base):
    from diffusers import StableDiffusionInpaintPipeline

    stock = StableDiffusionInpaintPipeline.from_pretrained(toy_base, use_safetensors=True)
    assert stock.unet.config.in_channels == 9
    ours = load_base_pipeline(DiffusionSettings(model=str(toy_base)))
    assert ours.vae.config.scaling_factor == stock.vae.config.scaling_factor != 1.0
    info = json.loads((toy_base / pretrain.MANIFEST).read_text())
    assert info["key"] == pretrain.cache_key(toy())
    assert info["caption"] == "a photo of the scene" == DiffusionSettings().generic_prompt
    assert info["training_views"] == 4 and info["held_out"]["views"] >= 1
    assert set(info["held_out"]["masked_psnr_db"]) == {
        "pretrained",
        "random_init",
        "flat_fill",
        "telea",
    }
    rows = (toy_base / pretrain.LOG).read_text().splitlines()
    assert rows[0] == "step,phase,loss,lr,seconds"
    assert [r.split(",")[1] for r in rows[1:]] == ["vae"] * 3 + ["unet"] * 4
    assert (toy_base / pretrain.SHEET).stat().st_size > 0


def test_same_settings_same_weights(toy_base, tmp_path):
    pretrain.run(toy(), tmp_path / "again", use_cache=False)
    for part in ("unet", "vae"):
        name = f"{part}/diffusion_pytorch_model.safetensors"
        a, b = load_file(toy_base / name), load_file(tmp_path / "again" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), part


def test_the_cache_is_filled_once_and_keyed_by_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("MALDNERF_CACHE", str(tmp_path / "cache"))
    pretrain.run(toy(), tmp_path / "first")
    assert pretrain.is_complete(pretrain.cached_folder(toy()))

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the cache holds the model")

    monkeypatch.setattr(pretrain, "train_base", no_training)
    pretrain.run(toy(), tmp_path / "second")  # copied from the cache
    first = load_file(tmp_path / "first" / "unet" / "diffusion_pytorch_model.safetensors")
    second = load_file(tmp_path / "second" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert pretrain.cache_key(toy(unet_steps=5)) != pretrain.cache_key(toy())
    with pytest.raises(AssertionError, match="trained although"):
        pretrain.run(toy(unet_steps=5), tmp_path / "third")


def test_tiny_without_a_built_base_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MALDNERF_CACHE", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="'tiny' is the pretrained tiny base, not built"):
        load_base_pipeline(DiffusionSettings(model="tiny"))


def test_crops_are_reproducible_and_object_removal_holes_are_the_object():
    rooms = render_rooms(3, range(2), 2, (96, 72), 60.0)
    assert rooms.images.shape == (4, 72, 96, 3) and rooms.masks.any(axis=(1, 2)).all()
    # the object is absent from the backgrounds and present in the images, inside its mask only
    inside = np.abs(rooms.images.astype(int) - rooms.backgrounds)[rooms.masks].mean()
    outside = np.abs(rooms.images.astype(int) - rooms.backgrounds)[~rooms.masks].max()
    assert inside > 10 and outside == 0
    holes = toy().holes
    a = sample_batch(rooms, holes, 1.0, 3, 64, seed=1, step=5)
    b = sample_batch(rooms, holes, 1.0, 3, 64, seed=1, step=5)
    c = sample_batch(rooms, holes, 1.0, 3, 64, seed=1, step=6)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.holes, b.holes)
    assert not np.array_equal(a.holes, c.holes)
    assert a.images.shape == (3, 64, 64, 3) and a.holes.any(axis=(1, 2)).all()
    # object removal crops come from the views without the object: no object colour under holes
    random_holes = sample_batch(rooms, holes, 0.0, 3, 64, seed=1, step=5)
    assert random_holes.holes.any(axis=(1, 2)).all()


def test_object_removal_crops_hold_real_pixels_only(monkeypatch):
    """A window around a large mask, taller than the room view, is shrunk into the view: the
    crop's target is real background everywhere (no border, nothing mirrored)."""
    from maldnerf.diffusion import pretrain_data

    rooms = render_rooms(3, range(2), 2, (96, 72), 60.0)
    rooms.masks[0] = False
    rooms.masks[0, 8:64, 10:86] = True  # its window (at least 76 · 1.4 px) overhangs 72 rows
    rooms.masks[1:] = False  # every object-removal crop comes from view 0
    windows = []
    cut = pretrain_data.image_to_model

    def recording(image, window, resolution):
        windows.append(window)
        return cut(image, window, resolution)

    monkeypatch.setattr(pretrain_data, "image_to_model", recording)
    sample_batch(rooms, toy().holes, 1.0, 4, 64, seed=1, step=0)
    assert len(windows) == 4
    for window in windows:
        assert window.size == 72 and window.y0 == 0 and 0 <= window.x0 <= 96 - 72


def test_pretraining_rooms_are_never_the_evaluation_room():
    from maldnerf.prepare.procedural import random_room
    from maldnerf.prepare.synthetic import SyntheticScene

    evaluation = SyntheticScene(0)
    for seed in range(5):
        room = random_room(np.random.default_rng([seed]))
        assert not np.allclose(room.object_box.center, evaluation.object_box.center)
        assert len(room.boxes) != len(evaluation.boxes) or not all(
            np.allclose(a.center, b.center) for a, b in zip(room.boxes, evaluation.boxes)
        )


def test_settings_are_checked():
    with pytest.raises(UserError, match="batch_size must be >= 2"):
        from_dict(PretrainSettings, {"batch_size": 1}, "pretrain")
    with pytest.raises(UserError, match="caption must not be empty"):
        from_dict(PretrainSettings, {"caption": " "}, "pretrain")
