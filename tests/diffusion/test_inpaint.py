import json

import numpy as np
import pytest
import torch
from diffusion_helpers import window_resampled

from maldnerf.diffusion.inpaint import (
    Inpainter,
    InpaintSettings,
    load_inpainted,
    load_inpainter,
    run,
)
from maldnerf.diffusion.models import DiffusionSettings
from maldnerf.errors import UserError
from maldnerf.images import read_image


@pytest.fixture(scope="module")
def on_tiny_folder(tiny_folder):
    """The untrained tiny model as a local base model, on the CPU."""
    return DiffusionSettings(model=str(tiny_folder), device="cpu")


@pytest.fixture(scope="module")
def inpainter(tiny_pipeline):
    return Inpainter(tiny_pipeline, "", InpaintSettings(num_steps=8, batch_size=3), "cpu")


def test_outside_mask_pixels_are_kept_exactly(inpainter, small_scene):
    out = inpainter.inpaint(small_scene.images, small_scene.masks)
    assert len(out) == len(small_scene.images)
    for image, mask, result in zip(small_scene.images, small_scene.masks, out):
        assert result.shape == image.shape and result.dtype == np.float32
        assert np.array_equal(result[~mask], image[~mask])
        assert not np.allclose(result[mask], image[mask])
        assert result.min() >= 0.0 and result.max() <= 1.0


@pytest.mark.parametrize("shape", [(64, 200), (230, 70), (64, 64)])
def test_any_aspect_ratio(inpainter, shape):
    rng = np.random.default_rng(1)
    image = rng.random((*shape, 3), dtype=np.float32)
    mask = np.zeros(shape, bool)
    mask[5 : shape[0] - 5, 3:40] = True  # tall: spans nearly the whole height
    (result,) = inpainter.inpaint([image], [mask])
    assert np.array_equal(result[~mask], image[~mask])
    assert not np.array_equal(result[mask], image[mask])


def test_same_seed_same_result_and_batching_does_not_matter(tiny_pipeline, small_scene):
    one = Inpainter(tiny_pipeline, "", InpaintSettings(num_steps=4, batch_size=1), "cpu")
    many = Inpainter(tiny_pipeline, "", InpaintSettings(num_steps=4, batch_size=4), "cpu")
    seeds = [7, 8, 9, 10]
    a = one.inpaint(small_scene.images, small_scene.masks, 0.6, seeds)
    b = one.inpaint(small_scene.images, small_scene.masks, 0.6, seeds)
    c = many.inpaint(small_scene.images, small_scene.masks, 0.6, seeds)
    d = many.inpaint(small_scene.images, small_scene.masks, 0.6, [s + 1 for s in seeds])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.allclose(x, y, atol=1e-5) for x, y in zip(a, c))
    assert not np.allclose(a[0], d[0], atol=1e-3)


def test_full_strength_ignores_what_is_inside_the_mask(inpainter, small_scene):
    image, mask = small_scene.images[0], small_scene.masks[0]
    other = image.copy()
    other[mask] = 0.0
    a = inpainter.inpaint([image], [mask], 1.0, [3])[0]
    b = inpainter.inpaint([other], [mask], 1.0, [3])[0]
    assert np.array_equal(a, b)


def test_reinpainting_changes_the_render_more_at_higher_noise(pretrained_base, small_scene):
    diffusion = DiffusionSettings(model=str(pretrained_base), device="cpu")
    inpainter = load_inpainter(diffusion, InpaintSettings(num_steps=10), None)
    # the "render": the original outside the mask, the true background inside
    renders = [
        np.where(m[..., None], b, i)
        for i, m, b in zip(small_scene.images, small_scene.masks, small_scene.backgrounds)
    ]
    masks, seeds = small_scene.masks, [0, 1, 2, 3]

    def inpaint(t):
        return inpainter.inpaint(renders, masks, t, seeds)

    # The tiny VAE does not reproduce an image exactly, so the change is measured against the
    # autoencoded render (t -> 0).
    reference = inpaint(0.001)
    changes = [
        np.mean([np.abs(o - r)[m].mean() for o, r, m in zip(inpaint(t), reference, masks)])
        for t in (0.05, 0.2, 0.5, 1.0)
    ]
    assert all(a < b for a, b in zip(changes, changes[1:])), changes


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_wide_mask_model_inputs_hold_no_mirrored_pixels(tiny_pipeline, monkeypatch, strength):
    """A 1008×567 view with a 600 px wide mask: its window overhangs the view, and every pixel
    the model receives (conditioning image, and the start image of a re-inpainting) is a
    resampled real pixel or lies in the model's mask (grey), never a mirrored copy."""
    from maldnerf.diffusion.objectives import latent_mask

    inpainter = Inpainter(tiny_pipeline, "", InpaintSettings(num_steps=2, cache_size=0), "cpu")
    rng = np.random.default_rng(5)
    image = rng.random((567, 1008, 3), dtype=np.float32)  # unique values: a copy would show
    mask = np.zeros((567, 1008), bool)
    mask[150:420, 200:800] = True
    window = inpainter.window(mask)
    assert window.size > 567  # overhangs above and below
    r = inpainter.resolution

    real = window_resampled(image, window, r, np.nan)  # NaN where a footprint leaves the image
    outside = np.isnan(real).any(axis=2)
    expected_mask = outside | (window_resampled(mask, window, r, 0.0) > 1e-6)
    assert outside.any() and not expected_mask.all()

    encoded, unet_masks = [], []
    encode, unet = inpainter._encode, inpainter.unet

    def recording_unet(model_input, *args, **kwargs):
        unet_masks.append(model_input[:, inpainter.latent_channels].float().clone())
        return unet(model_input, *args, **kwargs)

    monkeypatch.setattr(inpainter, "_encode", lambda x: encoded.append(x.clone()) or encode(x))
    monkeypatch.setattr(inpainter, "unet", recording_unet)
    (result,) = inpainter.inpaint([image], [mask], strength, [0])

    def as_image(x):
        return ((x[0].permute(1, 2, 0).numpy() + 1.0) / 2.0).astype(np.float32)

    conditioning = as_image(encoded[0])
    known = ~expected_mask
    assert np.allclose(conditioning[known], real[known], atol=1e-6)
    assert np.all(conditioning[expected_mask] == 0.5)  # the hole and the border: grey
    if strength < 1.0:  # the re-inpainting's start image: real pixels wherever not masked
        assert len(encoded) == 2
        start = as_image(encoded[1])
        assert np.allclose(start[known], real[known], atol=1e-6)
        border = window_resampled(np.zeros(mask.shape), window, r, 1.0) >= 1.0
        assert border.any() and np.all(start[border] == 0.5)  # no render content there
    factor = inpainter.factor
    cells = latent_mask(torch.from_numpy(expected_mask).float()[None, None], factor)[0, 0]
    assert unet_masks and all(torch.equal(m[0], cells) for m in unet_masks)
    assert np.array_equal(result[~mask], image[~mask])
    assert not np.array_equal(result[mask], image[mask])


def test_conditioning_latents_are_cached_across_updates(inpainter, small_scene):
    inpainter._cache.clear()
    images, masks = small_scene.images[:2], small_scene.masks[:2]
    inpainter.inpaint(images, masks, 0.5, [0, 1])
    assert len(inpainter._cache) == 2
    renders = [np.where(m[..., None], 0.3, i).astype(np.float32) for i, m in zip(images, masks)]
    encode = inpainter._encode
    calls = []
    inpainter._encode = lambda x: calls.append(x.shape[0]) or encode(x)
    try:
        inpainter.inpaint(renders, masks, 0.5, [0, 1])
    finally:
        inpainter._encode = encode
    assert len(inpainter._cache) == 2
    assert calls == [2]  # only the renders were encoded, the conditioning came from the cache


def test_bad_inputs(inpainter, small_scene):
    image, mask = small_scene.images[0], small_scene.masks[0]
    with pytest.raises(UserError, match="mask has no object pixels"):
        inpainter.inpaint([image], [np.zeros_like(mask)])
    with pytest.raises(UserError, match="smaller than diffusion.resolution 64"):
        inpainter.inpaint([image[:40]], [mask[:40]])
    with pytest.raises(UserError, match="mask is 96x72 but the image is 96x40"):
        inpainter.inpaint([image[:40]], [mask])
    with pytest.raises(ValueError, match="strength"):
        inpainter.inpaint([image], [mask], strength=0.0)
    with pytest.raises(ValueError, match="seeds"):
        inpainter.inpaint([image], [mask], seeds=[1, 2])


def test_out_of_memory_names_the_settings_to_lower(inpainter, small_scene, monkeypatch):
    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(inpainter, "_batch", boom)
    with pytest.raises(UserError, match="lower inpaint.batch_size"):
        inpainter.inpaint(small_scene.images[:1], small_scene.masks[:1])


def test_stage_writes_every_view_and_keeps_outside_pixels(
    small_scene, customized, on_tiny_folder, tmp_path
):
    settings = InpaintSettings(num_steps=3)
    run(
        settings,
        on_tiny_folder,
        small_scene.transforms,
        small_scene.masks_dir,
        customized,
        tmp_path / "inpaint",
    )
    info = json.loads((tmp_path / "inpaint" / "inpaint.json").read_text())
    assert info["prompt"] == "a photo of <scene-0> <scene-1>"
    assert sorted(info["views"]) == small_scene.names
    assert (tmp_path / "inpaint" / "contact_sheet.png").is_file()
    loaded = load_inpainted(tmp_path / "inpaint")
    assert sorted(loaded) == small_scene.names
    for name, mask in zip(small_scene.names, small_scene.masks):
        original = read_image(small_scene.transforms.parent.parent / "images" / f"{name}.png")
        assert np.array_equal(loaded[name][~mask], original[~mask])
        assert info["views"][name]["window"][2] >= 64


def test_stage_without_customization_uses_the_generic_prompt(small_scene, tiny_folder, tmp_path):
    diffusion = DiffusionSettings(model=str(tiny_folder), device="cpu", generic_prompt="a photo")
    run(
        InpaintSettings(num_steps=2),
        diffusion,
        small_scene.transforms,
        small_scene.masks_dir,
        None,
        tmp_path / "inpaint",
    )
    info = json.loads((tmp_path / "inpaint" / "inpaint.json").read_text())
    assert info["prompt"] == "a photo" and info["customization"] is None


def test_missing_inpaint_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="run the inpaint stage first"):
        load_inpainted(tmp_path)


def test_guidance_and_reduced_precision_paths_run(tiny_pipeline, small_scene):
    import copy

    pipeline = copy.deepcopy(tiny_pipeline).to(dtype=torch.bfloat16)
    settings = InpaintSettings(num_steps=3, guidance_scale=4.0, negative_prompt="blurry")
    inpainter = Inpainter(pipeline, "a photo", settings, "cpu")
    out = inpainter.inpaint(small_scene.images[:2], small_scene.masks[:2], 0.7)
    for image, mask, result in zip(small_scene.images, small_scene.masks, out):
        assert result.dtype == np.float32 and np.isfinite(result).all()
        assert np.array_equal(result[~mask], image[~mask])


def test_guidance_runs_the_unconditional_branch(tiny_pipeline, small_scene):
    """With guidance > 1 every DDIM step evaluates the UNet on a batch of two per view (the
    negative/unconditional prompt and the prompt); with 1 on one."""
    import copy

    pipeline = copy.deepcopy(tiny_pipeline)
    calls = []
    original = pipeline.unet.forward

    def counting(sample, timestep, encoder_hidden_states, *args, **kwargs):
        calls.append((sample.shape[0], encoder_hidden_states.shape[0]))
        return original(sample, timestep, encoder_hidden_states, *args, **kwargs)

    pipeline.unet.forward = counting
    views = small_scene.images[:3], small_scene.masks[:3]
    for guidance, per_view in ((1.0, 1), (5.0, 2)):
        calls.clear()
        settings = InpaintSettings(num_steps=4, guidance_scale=guidance, batch_size=8)
        inpainter = Inpainter(pipeline, "a photo", settings, "cpu")
        assert inpainter.guided is (per_view == 2)
        inpainter.inpaint(*views)
        assert calls == [(3 * per_view, 3 * per_view)] * 4, (guidance, calls)


def test_guidance_by_model(pretrained_base, tiny_folder):
    """null guidance: SD2's 7.5 and a negative prompt for real models, off for the tiny base
    (``tiny`` or the folder the pretrain stage wrote, as the workflow passes it)."""
    auto = InpaintSettings()
    real = auto.for_model("stabilityai/stable-diffusion-2-inpainting")
    assert real.guidance_scale == 7.5 and "blurry" in real.negative_prompt
    tiny = auto.for_model("tiny")
    assert tiny.guidance_scale == 1.0 and tiny.negative_prompt == ""
    assert auto.for_model(str(pretrained_base)).guidance_scale == 1.0  # the workflow's folder
    assert auto.for_model(str(tiny_folder)).guidance_scale == 7.5  # any other folder: real
    chosen = InpaintSettings(guidance_scale=3.0, negative_prompt="x").for_model("/some/model")
    assert (chosen.guidance_scale, chosen.negative_prompt) == (3.0, "x")
