import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from diffusion_helpers import (
    quick_customize,
    readme_snippet,
    run_readme_snippet,
    write_small_scene,
)
from safetensors.torch import load_file

from maldnerf.diffusion import customize
from maldnerf.diffusion.customize import CHECKPOINT, CustomizeSettings, sample_batch
from maldnerf.diffusion.customize_trainer import loss_weights
from maldnerf.diffusion.models import LORA_FILE, MANIFEST, TOKENS_FILE, DiffusionSettings
from maldnerf.diffusion.objectives import inpainting_loss
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
    """The customisation loss and its gradient for one rectangle hole and an object mask."""
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
            rectangles,
            loss_weights(rectangles, objects, 8),
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


def test_customization_files_load_in_a_stock_diffusers_pipeline(customized, tiny_folder):
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    info = json.loads((customized / MANIFEST).read_text())
    assert info["tokens"] == ["<scene-0>", "<scene-1>"]
    assert info["prompt"] == "a photo of <scene-0> <scene-1>"
    assert info["base_model"] == str(tiny_folder) and info["trained"] == "lora+tokens"
    assert len(info["loss_curve"]) == 4 and np.isfinite(info["final_loss"])
    assert "load_lora_weights" in (customized / "README.md").read_text()

    checkpoint = torch.load(
        customized.parent / "resume" / CHECKPOINT, map_location="cpu", weights_only=True
    )
    trained = checkpoint["tensors"]
    pipe = StableDiffusionInpaintPipeline.from_pretrained(tiny_folder)
    pipe.load_lora_weights(customized, weight_name=LORA_FILE)
    embeddings = load_file(customized / TOKENS_FILE)
    pipe.load_textual_inversion(list(embeddings.values()), token=list(embeddings.keys()))

    # LoRA weights and token embeddings arrive exactly as trained
    loaded = {name: p for name, p in pipe.unet.named_parameters() if "lora_" in name}
    assert loaded
    for name, p in loaded.items():
        key = "unet." + name.replace(".default_0.", ".default.").replace(".scene.", ".default.")
        assert torch.equal(p.detach(), trained[key]), name
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


def test_load_pipeline_matches_the_stock_loading(customized, tiny_folder):
    from diffusers import StableDiffusionInpaintPipeline

    from maldnerf.diffusion.models import load_pipeline

    ours, prompt = load_pipeline(
        DiffusionSettings(model=str(tiny_folder), device="cpu"), customized
    )
    stock = StableDiffusionInpaintPipeline.from_pretrained(tiny_folder)
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


def test_a_customisation_of_another_base_model_is_refused(customized, tmp_path):
    from maldnerf.diffusion.models import load_pipeline
    from maldnerf.errors import UserError

    other = DiffusionSettings(model=str(tmp_path / "other"), device="cpu")
    with pytest.raises(UserError, match="trained on base model"):
        load_pipeline(other, customized)


def test_interrupted_run_resumes_to_the_same_weights(
    small_scene, tiny_folder, tmp_path, monkeypatch
):
    settings = quick_customize(steps=5, checkpoint_every=2)
    diffusion = DiffusionSettings(model=str(tiny_folder), device="cpu")
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
    assert calls["n"] == 4  # steps 0-2 ran, step 3 was interrupted
    monkeypatch.setattr(customize.Trainer, "step", original)
    customize.run(settings, diffusion, *args, tmp_path / "resumed", tmp_path / "r2")

    for name in (LORA_FILE, TOKENS_FILE):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    losses = [
        json.loads((tmp_path / d / MANIFEST).read_text())["loss_curve"]
        for d in ("straight", "resumed")
    ]
    assert losses[0] == losses[1]


def test_checkpoint_of_other_settings_or_base_is_not_reused(
    small_scene, tiny_folder, tiny_pipeline, tmp_path
):
    args = (small_scene.transforms, small_scene.masks_dir)
    diffusion = DiffusionSettings(model=str(tiny_folder), device="cpu")
    for name, settings in (
        ("a", quick_customize(steps=2)),
        ("b", quick_customize(steps=2, seed=9)),
    ):
        customize.run(settings, diffusion, *args, tmp_path / name, tmp_path / "resume")
    a, b = (json.loads((tmp_path / d / MANIFEST).read_text()) for d in "ab")
    assert a["steps_run_in_this_process"] == b["steps_run_in_this_process"] == 2
    assert a["loss_curve"] != b["loss_curve"]
    # the same settings on other base weights behind the same path start afresh too
    other = tmp_path / "other_base"
    tiny_pipeline.save_pretrained(other, safe_serialization=True)
    same_path = DiffusionSettings(model=str(other), device="cpu")
    settings = quick_customize(steps=2, seed=9)
    customize.run(settings, same_path, *args, tmp_path / "c", tmp_path / "resume2")
    (other / "unet" / "config.json").write_text(
        (other / "unet" / "config.json").read_text().replace("{", '{"retrained": 1, ', 1)
    )
    customize.run(settings, same_path, *args, tmp_path / "d", tmp_path / "resume2")
    c, d = (json.loads((tmp_path / x / MANIFEST).read_text()) for x in "cd")
    assert c["steps_run_in_this_process"] == d["steps_run_in_this_process"] == 2


def test_empty_mask_and_small_images_are_user_errors(tiny_folder, tmp_path):
    from maldnerf.images import write_mask

    scene = write_small_scene(tmp_path / "s", views=2)
    write_mask(scene.masks_dir / "train" / f"{scene.names[1]}.png", np.zeros((72, 96), bool))
    with pytest.raises(UserError, match=f"view {scene.names[1]}: mask has no object pixels"):
        customize.run(
            quick_customize(),
            DiffusionSettings(model=str(tiny_folder)),
            scene.transforms,
            scene.masks_dir,
            tmp_path / "out",
            tmp_path / "resume",
        )
    small = write_small_scene(tmp_path / "small", views=2)
    with pytest.raises(UserError, match="smaller than diffusion.resolution 80"):
        customize.run(
            quick_customize(),
            DiffusionSettings(model=str(tiny_folder), resolution=80),
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


def test_lora_only_customization_without_tokens(customized_without_tokens, tiny_folder):
    from maldnerf.diffusion.models import load_pipeline

    assert load_file(customized_without_tokens / TOKENS_FILE) == {}
    diffusion = DiffusionSettings(model=str(tiny_folder), device="cpu")
    _, prompt = load_pipeline(diffusion, customized_without_tokens)
    assert prompt == "a photo"


@pytest.mark.parametrize("num_tokens", [0, 2])
def test_readme_snippet_runs_as_written(
    num_tokens, customized, customized_without_tokens, small_scene, tmp_path
):
    folder = customized if num_tokens else customized_without_tokens
    snippet = readme_snippet(folder)
    assert ("load_textual_inversion" in snippet) == bool(num_tokens)
    variables = run_readme_snippet(folder, tmp_path, small_scene.images[0], small_scene.masks[0])
    assert variables["result"].size == (64, 64)
    tokens = json.loads((folder / MANIFEST).read_text())["tokens"]
    assert len(tokens) == num_tokens
    vocabulary = variables["pipe"].tokenizer.get_vocab()
    assert all(token in vocabulary for token in tokens)  # the tokens were loaded


@pytest.fixture(scope="module")
def real_model_run(tiny_folder, small_scene, tmp_path_factory):
    """A customisation of a local-folder (non-``tiny``) model, and its trainer after training.

    Learning rates are raised so that a few steps change the LoRA and the tokens measurably.
    """
    trainers = []

    class RecordingTrainer(customize.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    root = tmp_path_factory.mktemp("real_model")
    settings = quick_customize(steps=6, learning_rate=1e-2, token_learning_rate=0.1)
    diffusion = DiffusionSettings(model=str(tiny_folder), device="cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(customize, "Trainer", RecordingTrainer)
        customize.run(
            settings,
            diffusion,
            small_scene.transforms,
            small_scene.masks_dir,
            root / "custom",
            root / "resume",
        )
    (trainer,) = trainers
    return root / "custom", trainer, diffusion


def test_real_model_customization_holds_only_lora_and_tokens(real_model_run, tiny_folder):
    folder, _, _ = real_model_run
    info = json.loads((folder / MANIFEST).read_text())
    assert info["base_model"] == str(tiny_folder) and info["trained"] == "lora+tokens"
    assert len(info["loss_curve"]) == 6
    # no copy of the base model: only the LoRA, the tokens and the two text files
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [LORA_FILE, TOKENS_FILE, MANIFEST, "README.md"]
    )
    lora = load_file(folder / LORA_FILE)
    assert lora and all(k.startswith("unet.") and ".lora." in k for k in lora)
    unet_bytes = (tiny_folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert sum(p.stat().st_size for p in folder.iterdir()) < unet_bytes / 10
    assert sorted(load_file(folder / TOKENS_FILE)) == ["<scene-0>", "<scene-1>"]
    checkpoint = torch.load(
        folder.parent / "resume" / CHECKPOINT, map_location="cpu", weights_only=True
    )
    assert all("lora_" in k or k == "tokens" for k in checkpoint["tensors"])


def test_real_model_training_changes_only_lora_and_new_token_rows(real_model_run, tiny_pipeline):
    _, trainer, _ = real_model_run
    # UNet base weights and the VAE are untouched
    unet = {
        k.replace(".base_layer.", "."): v
        for k, v in trainer.unet.state_dict().items()
        if "lora_" not in k
    }
    original = tiny_pipeline.unet.state_dict()
    assert unet.keys() == original.keys()
    assert all(torch.equal(unet[k], original[k]) for k in original)
    vae, original = trainer.vae.state_dict(), tiny_pipeline.vae.state_dict()
    assert all(torch.equal(vae[k], original[k]) for k in original)
    assert any(
        float(p.detach().abs().max()) > 0
        for n, p in trainer.unet.named_parameters()
        if "lora_B" in n
    )
    # text encoder: the original embedding rows and all other weights are unchanged ...
    text, original = trainer.text_encoder.state_dict(), tiny_pipeline.text_encoder.state_dict()
    table_key = next(k for k in original if k.endswith("token_embedding.weight"))
    assert all(torch.equal(text[k], original[k]) for k in original if k != table_key)
    table, before = text[table_key], original[table_key]
    vocab = before.shape[0]
    assert table.shape[0] == vocab + 2 and trainer.token_ids == [vocab, vocab + 1]
    assert torch.equal(table[:vocab], before)
    # ... and the new rows moved away from their initialisation (the embedding of "scene")
    init_ids = tiny_pipeline.tokenizer("scene", add_special_tokens=False).input_ids
    init = before[init_ids].mean(dim=0)
    assert all(float((table[i] - init).abs().max()) > 1e-2 for i in trainer.token_ids)


def test_real_model_customization_loads_in_stock_diffusers(
    real_model_run, tiny_folder, small_scene, tmp_path
):
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    from maldnerf.diffusion.models import load_pipeline
    from maldnerf.images import to_uint8

    folder, _, diffusion = real_model_run
    ours, prompt = load_pipeline(diffusion, folder)
    stock = StableDiffusionInpaintPipeline.from_pretrained(
        tiny_folder, safety_checker=None, requires_safety_checker=False
    )
    stock.set_progress_bar_config(disable=True)
    stock.load_lora_weights(folder, weight_name=LORA_FILE)
    embeddings = load_file(folder / TOKENS_FILE)
    stock.load_textual_inversion(list(embeddings.values()), token=list(embeddings.keys()))
    assert prompt == "a photo of <scene-0> <scene-1>"

    image = Image.fromarray(to_uint8(small_scene.images[0]))
    mask = Image.fromarray(small_scene.masks[0].astype(np.uint8) * 255)

    def inpaint(pipeline):
        return pipeline(
            prompt,
            image=image,
            mask_image=mask,
            height=64,
            width=64,
            num_inference_steps=4,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images[0]

    a, b = inpaint(ours), inpaint(stock)
    stock.disable_lora()
    without_lora = inpaint(stock)
    difference = float(np.abs(a - b).max())
    lora_effect = float(np.abs(without_lora - b).max())
    # same output (the LoRA is fused into ours, separate in stock: ~1e-6 apart), and the LoRA
    # matters: without it the output differs by ~0.4
    assert difference < 1e-4, difference
    assert lora_effect > 1e-2, lora_effect

    # the README snippet works for a non-tiny base model too
    stock.enable_lora()
    variables = run_readme_snippet(folder, tmp_path, small_scene.images[0], small_scene.masks[0])
    assert variables["result"].size == (64, 64)


def test_a_signal_stops_training_within_seconds_with_a_checkpoint_to_resume(
    small_scene, tiny_folder, tmp_path
):
    """Real ``maldnerf customize`` processes: SIGINT (Ctrl-C) stops the first after the step it
    is in, with a checkpoint (the periodic ones are too far apart to exist); the rerun resumes
    from it, and SIGTERM (Slurm, Snakemake) stops that one the same way."""
    import re
    import signal
    import sys

    from helpers import stop_with_signal

    settings = {
        "diffusion": {"model": str(tiny_folder), "device": "cpu"},
        "customize": {**asdict(quick_customize(steps=100_000)), "checkpoint_every": 100_000},
    }
    resume = tmp_path / "resume"
    command = [sys.executable, "-m", "maldnerf", "--threads", "1", "customize"]
    command += ["--transforms", str(small_scene.transforms), "--masks", str(small_scene.masks_dir)]
    command += ["--output", str(tmp_path / "out"), "--resume-dir", str(resume)]
    command += ["--settings", json.dumps(settings)]

    def steps(text: str) -> int:  # the progress bar's count
        return max((int(n) for n in re.findall(r"\| *(\d+)/100000 ", text)), default=0)

    status, seconds = stop_with_signal(
        command, tmp_path / "first.log", lambda text: steps(text) >= 4, signal.SIGINT
    )
    log = (tmp_path / "first.log").read_text()
    assert status == 130 and seconds < 30, log[-2000:]  # one step, then the exit
    assert "SIGINT received: stopping after the current step" in log
    stopped = torch.load(resume / CHECKPOINT, weights_only=True)["step"]
    assert stopped >= 4 and not (tmp_path / "out").exists()

    status, seconds = stop_with_signal(
        command,
        tmp_path / "second.log",
        lambda text: f"resuming from step {stopped} " in text and steps(text) > stopped,
        signal.SIGTERM,
    )
    log = (tmp_path / "second.log").read_text()
    assert status == 143 and seconds < 30, log[-2000:]  # one step, then the exit
    assert torch.load(resume / CHECKPOINT, weights_only=True)["step"] > stopped
