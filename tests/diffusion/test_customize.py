import json

import numpy as np
import pytest
import torch
from diffusion_helpers import quick_customize, write_small_scene
from safetensors.torch import load_file

from maldnerf.diffusion import customize
from maldnerf.diffusion.customize import (
    CHECKPOINT,
    CustomizeSettings,
    inpainting_loss,
    sample_batch,
)
from maldnerf.diffusion.models import (
    BASE_DIR,
    LORA_FILE,
    MANIFEST,
    TOKENS_FILE,
    DiffusionSettings,
)
from maldnerf.diffusion.views import TrainingView
from maldnerf.errors import UserError
from maldnerf.settings import from_dict


def views_of(scene):
    return [
        TrainingView(n, scene.transforms, i, m)
        for n, i, m in zip(scene.names, scene.images, scene.masks)
    ]


def test_batches_are_a_function_of_seed_and_step(small_scene):
    settings = CustomizeSettings(batch_size=3, seed=5)
    a = sample_batch(views_of(small_scene), settings, 64, step=7)
    b = sample_batch(views_of(small_scene), settings, 64, step=7)
    c = sample_batch(views_of(small_scene), settings, 64, step=8)
    assert a.images.shape == (3, 64, 64, 3) and a.holes.shape == (3, 64, 64)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.holes, b.holes)
    assert a.seed == b.seed != c.seed
    assert not np.array_equal(a.holes, c.holes)
    assert a.holes.any(axis=(1, 2)).all()


def test_object_shaped_holes_are_added_on_request(small_scene):
    dots = dict(batch_size=4, rectangles=(1, 1), rectangle_size=(0.01, 0.01))
    without = sample_batch(
        views_of(small_scene), CustomizeSettings(**dots, object_shaped_holes=0.0), 64, step=0
    )
    with_shapes = sample_batch(
        views_of(small_scene), CustomizeSettings(**dots, object_shaped_holes=1.0), 64, step=0
    )
    assert (without.holes.sum(axis=(1, 2)) == 1).all()
    # an object mask of ~28x30 px in a crop of at most 72 px, scaled to 64 px: > 150 px
    assert (with_shapes.holes.sum(axis=(1, 2)) > 150).all()


def loss_for(pipeline, rectangle, obj=(8, 56, 8, 56)):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64, generator=generator)
    objects = torch.zeros(2, 1, 64, 64)
    objects[..., obj[0] : obj[1], obj[2] : obj[3]] = 1.0
    rectangles = torch.zeros(2, 1, 64, 64)
    rectangles[..., rectangle[0] : rectangle[1], rectangle[2] : rectangle[3]] = 1.0
    text = torch.randn(2, 77, pipeline.text_encoder.config.hidden_size, generator=generator)
    unet = pipeline.unet
    unet.requires_grad_(True)
    try:
        loss = inpainting_loss(
            unet,
            pipeline.vae,
            pipeline.scheduler,
            text,
            images,
            objects,
            rectangles,
            torch.randn(2, 4, 8, 8, generator=generator),
            torch.tensor([10, 700]),
        )
        loss.backward()
        grad = sum(float(p.grad.abs().sum()) for p in unet.parameters() if p.grad is not None)
    finally:
        unet.zero_grad(set_to_none=True)
        unet.requires_grad_(False)
    return float(loss.detach()), grad


def test_loss_is_exactly_zero_for_a_rectangle_inside_the_object(tiny_pipeline):
    loss, grad = loss_for(tiny_pipeline, rectangle=(20, 40, 17, 33))
    assert loss == 0.0 and grad == 0.0
    # the same rectangle outside the object is learned from
    loss, grad = loss_for(tiny_pipeline, rectangle=(20, 40, 17, 33), obj=(0, 4, 0, 4))
    assert loss > 0.0 and grad > 0.0
    # a rectangle overlapping the object counts only its known part
    partial, _ = loss_for(tiny_pipeline, rectangle=(20, 40, 40, 64))
    assert partial > 0.0


def test_customization_files_load_in_a_stock_diffusers_pipeline(customized, tmp_path):
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    info = json.loads((customized / MANIFEST).read_text())
    assert info["tokens"] == ["<scene-0>", "<scene-1>"]
    assert info["prompt"] == "a photo of <scene-0> <scene-1>"
    assert info["base_model"] == "tiny" and info["trained"] == "unet+vae+lora+tokens"
    assert len(info["loss_curve"]) == 4 and np.isfinite(info["final_loss"])
    assert "load_lora_weights" in (customized / "README.md").read_text()

    checkpoint = torch.load(
        customized.parent / "resume" / CHECKPOINT, map_location="cpu", weights_only=True
    )
    trained = checkpoint["tensors"]
    pipe = StableDiffusionInpaintPipeline.from_pretrained(customized / BASE_DIR)
    pipe.load_lora_weights(customized, weight_name=LORA_FILE)
    embeddings = load_file(customized / TOKENS_FILE)
    pipe.load_textual_inversion(list(embeddings.values()), token=list(embeddings.keys()))

    # LoRA weights arrive exactly as trained
    loaded = {name: p for name, p in pipe.unet.named_parameters() if "lora_" in name}
    assert loaded
    for name, p in loaded.items():
        key = "unet." + name.replace(".default_0.", ".default.").replace(".scene.", ".default.")
        assert torch.equal(p.detach(), trained[key]), name
    # so do the base weights (tiny) and the token embeddings
    base = {n: p for n, p in pipe.unet.named_parameters() if "lora_" not in n}
    for name, p in base.items():
        assert torch.equal(p.detach(), trained["unet." + name]), name
    ids = pipe.tokenizer.convert_tokens_to_ids(info["tokens"])
    table = pipe.text_encoder.get_input_embeddings().weight.detach()
    assert torch.equal(table[ids], trained["tokens"])
    assert pipe.tokenizer.tokenize(info["prompt"])[-2:] == info["tokens"]

    # and the stock pipeline runs with the scene prompt
    image = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    mask = Image.fromarray(np.pad(np.full((32, 32), 255, np.uint8), 16))
    out = pipe(
        info["prompt"],
        image=image,
        mask_image=mask,
        height=64,
        width=64,
        num_inference_steps=2,
        output_type="np",
    ).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()


def test_load_pipeline_matches_the_stock_loading(customized):
    from diffusers import StableDiffusionInpaintPipeline

    from maldnerf.diffusion.models import load_pipeline

    ours, prompt = load_pipeline(DiffusionSettings(device="cpu"), customized)
    stock = StableDiffusionInpaintPipeline.from_pretrained(customized / BASE_DIR)
    stock.load_lora_weights(customized, weight_name=LORA_FILE)
    embeddings = load_file(customized / TOKENS_FILE)
    stock.load_textual_inversion(list(embeddings.values()), token=list(embeddings.keys()))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 9, 8, 8, generator=generator)
    with torch.no_grad():
        text_ours = ours.encode_prompt(prompt, "cpu", 1, False)[0]
        text_stock = stock.encode_prompt(prompt, "cpu", 1, False)[0]
        a = ours.unet(x, 500, text_ours).sample
        b = stock.unet(x, 500, text_stock).sample
    assert torch.equal(text_ours, text_stock)
    assert torch.allclose(a, b, atol=1e-5)  # LoRA fused into ours, separate in stock


def test_interrupted_run_resumes_to_the_same_weights(small_scene, tmp_path, monkeypatch):
    settings = quick_customize(steps=3, tiny_vae_steps=2, checkpoint_every=2)
    diffusion = DiffusionSettings()
    args = (small_scene.transforms, small_scene.masks_dir)
    customize.run(settings, diffusion, *args, tmp_path / "straight", tmp_path / "r1")

    original = customize.Trainer.step
    calls = {"n": 0}

    def dying_step(self, step):
        calls["n"] += 1
        if step == 3:
            raise KeyboardInterrupt("killed")
        return original(self, step)

    monkeypatch.setattr(customize.Trainer, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        customize.run(settings, diffusion, *args, tmp_path / "resumed", tmp_path / "r2")
    assert not (tmp_path / "resumed").exists()  # no half-written output
    assert torch.load(tmp_path / "r2" / CHECKPOINT, weights_only=True)["step"] == 2
    monkeypatch.setattr(customize.Trainer, "step", original)
    customize.run(settings, diffusion, *args, tmp_path / "resumed", tmp_path / "r2")

    for name in (
        LORA_FILE,
        TOKENS_FILE,
        f"{BASE_DIR}/unet/diffusion_pytorch_model.safetensors",
        f"{BASE_DIR}/vae/diffusion_pytorch_model.safetensors",
    ):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    losses = [
        json.loads((tmp_path / d / MANIFEST).read_text())["loss_curve"]
        for d in ("straight", "resumed")
    ]
    assert losses[0] == losses[1]


def test_checkpoint_of_other_settings_is_not_reused(small_scene, tmp_path):
    args = (small_scene.transforms, small_scene.masks_dir)
    customize.run(
        quick_customize(steps=2, tiny_vae_steps=1),
        DiffusionSettings(),
        *args,
        tmp_path / "a",
        tmp_path / "resume",
    )
    customize.run(
        quick_customize(steps=2, tiny_vae_steps=1, seed=9),
        DiffusionSettings(),
        *args,
        tmp_path / "b",
        tmp_path / "resume",
    )
    a, b = (json.loads((tmp_path / d / MANIFEST).read_text()) for d in "ab")
    assert a["steps_run_in_this_process"] == b["steps_run_in_this_process"] == 3
    assert a["loss_curve"] != b["loss_curve"]


def test_empty_mask_and_small_images_are_user_errors(tmp_path):
    from maldnerf.images import write_mask

    scene = write_small_scene(tmp_path / "s", views=2)
    write_mask(scene.masks_dir / "train" / f"{scene.names[1]}.png", np.zeros((72, 96), bool))
    with pytest.raises(UserError, match=f"view {scene.names[1]}: mask has no object pixels"):
        customize.run(
            quick_customize(),
            DiffusionSettings(),
            scene.transforms,
            scene.masks_dir,
            tmp_path / "out",
            tmp_path / "resume",
        )
    small = write_small_scene(tmp_path / "small", views=2)
    with pytest.raises(UserError, match="smaller than diffusion.resolution 80"):
        customize.run(
            quick_customize(),
            DiffusionSettings(resolution=80),
            small.transforms,
            small.masks_dir,
            tmp_path / "out",
            tmp_path / "resume",
        )
    assert not (tmp_path / "out").exists()


def test_settings_are_checked():
    with pytest.raises(UserError, match="rectangle_size"):
        from_dict(CustomizeSettings, {"rectangle_size": [0.5, 0.2]}, "customize")
    with pytest.raises(UserError, match="prompt_template"):
        from_dict(CustomizeSettings, {"prompt_template": "a photo"}, "customize")
    settings = from_dict(CustomizeSettings, {"num_tokens": 3}, "customize")
    assert settings.prompt == "a photo of <scene-0> <scene-1> <scene-2>"


def test_lora_only_customization_without_tokens(small_scene, tmp_path):
    from maldnerf.diffusion.models import load_pipeline

    settings = quick_customize(steps=1, tiny_vae_steps=1, num_tokens=0, prompt_template="a photo")
    customize.run(
        settings,
        DiffusionSettings(),
        small_scene.transforms,
        small_scene.masks_dir,
        tmp_path / "out",
        tmp_path / "resume",
    )
    assert load_file(tmp_path / "out" / TOKENS_FILE) == {}
    _, prompt = load_pipeline(DiffusionSettings(device="cpu"), tmp_path / "out")
    assert prompt == "a photo"
