import json

import pytest
import torch

from maldnerf.diffusion.architectures import build_random_pipeline, tiny_tokenizer
from maldnerf.diffusion.models import (
    DiffusionSettings,
    load_base_pipeline,
    load_pipeline,
    model_resolution,
    out_of_memory_hint,
    resolve_device,
    resolve_dtype,
)
from maldnerf.errors import UserError
from maldnerf.settings import from_dict


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_model_is_an_inpainting_sd_architecture(tiny_pipeline):
    unet, vae = tiny_pipeline.unet, tiny_pipeline.vae
    assert unet.config.in_channels == 9 and unet.config.out_channels == 4
    assert 1e6 < sum(p.numel() for p in unet.parameters()) < 3.5e6
    with torch.no_grad():
        latent = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode()
    assert latent.shape == (1, 4, 8, 8)  # Stable Diffusion's 8x downscale
    assert model_resolution(DiffusionSettings(), tiny_pipeline) == 64
    assert model_resolution(DiffusionSettings(resolution=96), tiny_pipeline) == 96


def test_tiny_model_is_deterministic_in_its_seed(tiny_pipeline):
    again = build_random_pipeline("tiny", seed=0)
    other = build_random_pipeline("tiny", seed=1)
    assert same_weights(tiny_pipeline.unet, again.unet)
    assert same_weights(tiny_pipeline.text_encoder, again.text_encoder)
    assert not same_weights(tiny_pipeline.unet, other.unet)


def test_tiny_tokenizer_handles_any_text():
    tokenizer = tiny_tokenizer()
    assert tokenizer.model_max_length == 77
    ids = tokenizer("a photo of the scene", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == tokenizer.bos_token_id
    assert tokenizer.tokenize("photo") == ["photo</w>"]
    ids = tokenizer("Größe 日本").input_ids  # byte fallback: no unknown tokens inside
    assert len(ids) > 4 and tokenizer.unk_token_id not in ids[1:-1]


def test_save_and_reload_a_local_folder_offline(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "model")
    loaded = load_base_pipeline(DiffusionSettings(model=str(tmp_path / "model")))
    assert same_weights(loaded.unet, tiny_pipeline.unet)
    assert same_weights(loaded.vae, tiny_pipeline.vae)
    assert same_weights(loaded.text_encoder, tiny_pipeline.text_encoder)
    text = "a photo of x"
    assert loaded.tokenizer(text).input_ids == tiny_pipeline.tokenizer(text).input_ids
    pipeline, prompt = load_pipeline(DiffusionSettings(model=str(tmp_path / "model"), device="cpu"))
    assert prompt == "a photo of the scene" and pipeline.unet.dtype == torch.float32


def test_text_to_image_folder_is_rejected(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "model")
    config_path = tmp_path / "model" / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["in_channels"] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(UserError, match="4 input channels, not an inpainting model"):
        load_base_pipeline(DiffusionSettings(model=str(tmp_path / "model")))


def test_folder_without_model_index_is_rejected(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(UserError, match="not a diffusers model folder"):
        load_base_pipeline(DiffusionSettings(model=str(tmp_path / "junk")))


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_base_pipeline(DiffusionSettings(model=str(tmp_path / "no" / "such" / "model")))


def test_model_not_in_cache_says_so_and_names_the_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(UserError) as error:
        load_base_pipeline(DiffusionSettings(model="maldnerf-test/not-a-cached-model"))
    message = str(error.value)
    assert "\n" not in message
    assert "local Hugging Face cache" in message and "'tiny'" in message and "folder" in message


def test_device_and_dtype_choices():
    cpu = DiffusionSettings(device="cpu")
    assert resolve_device(cpu).type == "cpu"
    assert resolve_dtype(cpu, resolve_device(cpu)) == torch.float32
    assert resolve_dtype(DiffusionSettings(dtype="bfloat16"), torch.device("cpu")) == torch.bfloat16
    with pytest.raises(UserError, match="float16 is not supported on the CPU"):
        resolve_dtype(DiffusionSettings(dtype="float16"), torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device(DiffusionSettings(device="cuda"))


def test_settings_are_checked():
    with pytest.raises(UserError, match="resolution"):
        from_dict(DiffusionSettings, {"resolution": 60}, "diffusion")
    assert from_dict(DiffusionSettings, {"resolution": None}, "diffusion").resolution is None


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_setting_accepts_gpu_numbers(device):
    assert from_dict(DiffusionSettings, {"device": device}, "diffusion").device == device


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", " cuda"])
def test_device_setting_rejects_other_names(device):
    with pytest.raises(UserError) as error:
        from_dict(DiffusionSettings, {"device": device}, "diffusion")
    message = str(error.value)
    assert message.startswith("diffusion: device must be auto, cpu, cuda or cuda:N")
    assert repr(device) in message and "\n" not in message


def test_gpu_number_is_resolved_and_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device(DiffusionSettings(device="cuda:1")) == torch.device("cuda:1")
    assert resolve_device(DiffusionSettings(device="cuda")) == torch.device("cuda")
    with pytest.raises(UserError, match=r"cuda:2 requested but there are only 2 CUDA device"):
        resolve_device(DiffusionSettings(device="cuda:2"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="diffusion.device: cuda:0 requested but no CUDA device"):
        resolve_device(DiffusionSettings(device="cuda:0"))


def pickled_folder(pipeline, folder):
    """``pipeline`` saved with pickled (``.bin``) UNet and VAE weights."""
    pipeline.save_pretrained(folder, safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    assert not list((folder / "unet").glob("*.safetensors"))
    return folder


def test_folder_with_only_pickled_weights_is_rejected(tiny_pipeline, tmp_path):
    folder = pickled_folder(tiny_pipeline, tmp_path / "model")
    with pytest.raises(UserError) as error:
        load_base_pipeline(DiffusionSettings(model=str(folder)))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"diffusion.model: {folder / 'unet'} has only pickled weights")
    assert (
        "safetensors" in message and "save_pretrained(folder, safe_serialization=True)" in message
    )


def test_cached_hub_model_with_only_pickled_weights_is_rejected(
    tiny_pipeline, tmp_path, monkeypatch
):
    """A hub id whose cached snapshot has no safetensors files (offline, nothing downloads)."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--maldnerf-test--pickled-inpaint"
    snapshot = "0" * 40
    pickled_folder(tiny_pipeline, repo / "snapshots" / snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError) as error:
        load_base_pipeline(DiffusionSettings(model="maldnerf-test/pickled-inpaint"))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("diffusion.model: 'maldnerf-test/pickled-inpaint' has no safetensors")
    assert "save_pretrained(folder, safe_serialization=True)" in message


def test_pickled_weights_are_not_loaded_even_unchecked(tiny_pipeline, tmp_path, monkeypatch):
    """from_pretrained itself reads safetensors only (use_safetensors=True)."""
    from maldnerf.diffusion import model_folders

    folder = pickled_folder(tiny_pipeline, tmp_path / "model")
    monkeypatch.setattr(model_folders, "check_safetensors", lambda folder, where: None)
    with pytest.raises(UserError, match=r"lacks safetensors weights .*safe_serialization=True"):
        load_base_pipeline(DiffusionSettings(model=str(folder)))


def test_out_of_memory_becomes_a_one_line_user_error():
    expected = "GPU out of memory while testing; lower the batch"
    with pytest.raises(UserError, match=expected), out_of_memory_hint("testing", "lower the batch"):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
