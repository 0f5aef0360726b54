"""The train stage: outputs, IDU, resume after a kill, NaN guard, bad settings."""

from __future__ import annotations

import contextlib
import csv
import json
import logging

import numpy as np
import pytest
import torch
from nerf_helpers import tiny_settings
from safetensors.torch import load_file

from maldnerf.errors import UserError
from maldnerf.nerf import checkpoint, idu_round, trainer
from maldnerf.nerf.idu import idu_iterations, idu_strength
from maldnerf.nerf.settings import IduSettings
from maldnerf.settings import to_dict


class FakeInpainter:
    """Returns a blurred version of what it is given, and records the calls."""

    def __init__(self):
        self.calls = []

    def inpaint(self, images, masks, strength, seeds):
        self.calls.append((len(images), strength, list(seeds)))
        out = []
        for image, mask in zip(images, masks):
            blurred = 0.5 * image + 0.5 * image.mean(axis=(0, 1), keepdims=True)
            out.append(np.where(mask[..., None], blurred, image).astype(np.float32))
        return out


def train(small_scene, tmp_path, settings, idu=None, name="nerf", factory=None, **kwargs):
    idu = idu if idu is not None else IduSettings(enabled=False)
    output, resume = tmp_path / name, tmp_path / f"{name}_resume"
    trainer.run(
        settings,
        idu,
        small_scene["transforms"],
        small_scene["masks"],
        small_scene["targets"],
        output,
        resume,
        factory,
        **kwargs,
    )
    return output, resume


def test_idu_schedule():
    assert idu_strength(0, 100, 0.8, 0.2) == pytest.approx(0.8)
    assert idu_strength(25, 100, 0.8, 0.2) == pytest.approx(0.8 - 0.6 * 0.5)
    assert idu_strength(100, 100, 0.8, 0.2) == pytest.approx(0.2)
    assert idu_iterations(IduSettings(every=4), 12) == [4, 8]
    assert idu_iterations(IduSettings(enabled=False), 12) == []


def test_train_writes_the_output_folder_with_idu(small_scene, tmp_path):
    fake = FakeInpainter()
    calls = []

    def factory():
        calls.append(1)
        return fake

    idu = IduSettings(every=4, t_max=0.8, t_min=0.2, batch_size=3)
    output, resume = train(small_scene, tmp_path, tiny_settings(), idu, factory=factory)
    assert sorted(p.name for p in output.iterdir()) == [
        "idu",
        "model.safetensors",
        "nerf.json",
        "train_log.csv",
    ]
    assert sorted(p.name for p in (output / "idu").iterdir()) == ["round_01.png", "round_02.png"]
    assert len(calls) == 1  # the model is loaded once, lazily
    assert [c[0] for c in fake.calls] == [3, 3, 2] * 2  # 8 views in batches of 3, two rounds
    assert fake.calls[0][1] == pytest.approx(idu_strength(4, 12, 0.8, 0.2))
    info = json.loads((output / "nerf.json").read_text())
    assert [r["iteration"] for r in info["idu_rounds"]] == [4, 8]
    timings = info["timings"]
    assert timings["iterations"] == 12 and timings["rays_per_second"] > 0
    # The stage's wall time holds the NeRF steps and the IDU rounds (and loading, checkpoints).
    assert timings["idu_seconds"] == pytest.approx(sum(r["seconds"] for r in info["idu_rounds"]))
    assert timings["nerf_seconds"] > 0 and timings["idu_seconds"] > 0
    assert timings["seconds"] > timings["nerf_seconds"] + timings["idu_seconds"]
    assert (
        info["parameterization"]["kind"] == "contract" and "world_to_model" in info["normalization"]
    )
    assert "max_rss_bytes" in info["peak_memory"] and "pixel" in info["final_losses"]
    rows = list(csv.DictReader((output / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    assert {"lr", "idu_strength", "rays_per_second", "adversarial", "discriminator"} <= set(rows[0])
    assert rows[-1]["idu_strength"] != ""
    for row in rows:  # adversarial on from step 2: what the discriminator makes of the patches
        stats = {k: float(row[k]) for k in trainer.DISCRIMINATOR_STATS}
        assert all(np.isfinite(v) for v in stats.values()), row
        assert 0.0 <= stats["d_real_accuracy"] <= 1.0 and 0.0 <= stats["d_fake_accuracy"] <= 1.0
    weights = load_file(output / "model.safetensors")
    assert "field.encoding.params" in weights
    assert not (resume / checkpoint.CHECKPOINT).exists()  # removed after success


def test_no_factory_with_idu_on_is_an_error(small_scene, tmp_path):
    with pytest.raises(UserError, match="idu.enabled"):
        train(small_scene, tmp_path, tiny_settings(), IduSettings(every=4))


class Killed(Exception):
    pass


@contextlib.contextmanager
def killed_at_step_8():
    """Inside it, training stops at step 8 as if the process were killed (raises Killed)."""
    original = trainer.Trainer.train_step

    def dies_at_step_8(self, step):
        if step == 8:
            raise Killed
        return original(self, step)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.Trainer, "train_step", dies_at_step_8)
        yield


def test_resume_after_a_kill_gives_the_same_parameters(small_scene, tmp_path, monkeypatch):
    settings = tiny_settings(iterations=12, checkpoint_every=3, keep_checkpoint=True)
    idu = IduSettings(every=5)
    full, _ = train(small_scene, tmp_path, settings, idu, "full", FakeInpainter)

    with killed_at_step_8(), pytest.raises(Killed):
        train(small_scene, tmp_path, settings, idu, "resumed", FakeInpainter)
    resume = tmp_path / "resumed_resume"
    state = torch.load(resume / checkpoint.CHECKPOINT, weights_only=True)
    assert state["step"] == 6 and len(state["idu_rounds"]) == 1
    assert not (tmp_path / "resumed").exists()  # nothing half-written as output
    started = []
    monkeypatch.setattr(trainer.Trainer, "restore", _spy(trainer.Trainer.restore, started))
    train(small_scene, tmp_path, settings, idu, "resumed", FakeInpainter)
    assert started  # it did resume
    a, b = (
        load_file(full / "model.safetensors"),
        load_file(tmp_path / "resumed" / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    info = json.loads((tmp_path / "resumed" / "nerf.json").read_text())
    assert [r["iteration"] for r in info["idu_rounds"]] == [5, 10]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_resumed_gpu_run_continues_where_it_stopped(small_scene, tmp_path, monkeypatch):
    """On a GPU the hash-grid gradient (an atomic scatter-add) is not bit-reproducible, and Adam
    turns last-bit differences of near-zero gradients into step-sized ones: on the H200
    (2026-12-04) a resumed run's MLP weights were within 0.06% (relative L2) of an
    uninterrupted run's, but one tensor differed by 10%. So the resumed run is compared with the
    spread between two uninterrupted runs: it must restart from the checkpoint and end no
    further from the first run than the second run is (with slack for the randomness)."""
    settings = tiny_settings(iterations=12, checkpoint_every=3, keep_checkpoint=True, device="cuda")
    full, _ = train(small_scene, tmp_path, settings, name="full")
    again, _ = train(small_scene, tmp_path, settings, name="again")
    with killed_at_step_8(), pytest.raises(Killed):
        train(small_scene, tmp_path, settings, name="resumed")
    state = torch.load(tmp_path / "resumed_resume" / checkpoint.CHECKPOINT, weights_only=True)
    assert state["step"] == 6
    started = []
    monkeypatch.setattr(trainer.Trainer, "restore", _spy(trainer.Trainer.restore, started))
    train(small_scene, tmp_path, settings, name="resumed")
    assert started

    def flat(folder):
        weights = load_file(folder / "model.safetensors")
        return torch.cat([weights[k].float().flatten() for k in sorted(weights)])

    a, b, c = flat(full), flat(again), flat(tmp_path / "resumed")
    rerun = float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a))
    resumed = float(torch.linalg.vector_norm(a - c) / torch.linalg.vector_norm(a))
    assert resumed <= 3 * rerun + 1e-3, {"resumed": resumed, "rerun": rerun}


def _spy(function, calls):
    def wrapper(self, *args):
        calls.append(1)
        return function(self, *args)

    return wrapper


def test_changed_settings_do_not_resume(small_scene, tmp_path, caplog):
    settings = tiny_settings(iterations=6, keep_checkpoint=True)
    train(small_scene, tmp_path, settings)
    other = tiny_settings(iterations=6, keep_checkpoint=True, batch_rays=32)
    with caplog.at_level(logging.WARNING):
        train(small_scene, tmp_path, other)
    assert "other settings or inputs" in caplog.text


def test_discriminator_stats():
    real = torch.tensor([[[[2.0, -1.0], [3.0, 4.0]]]])
    fake = torch.tensor([[[[-2.0, -1.0], [1.0, -5.0]]]])
    stats = {k: v.item() for k, v in trainer.discriminator_stats(real, fake).items()}
    assert stats == {
        "d_real_logit": 2.0,
        "d_fake_logit": -1.75,
        "d_real_accuracy": 0.75,
        "d_fake_accuracy": 0.75,
    }
    assert set(stats) == set(trainer.DISCRIMINATOR_STATS)


def test_total_norm_matches_torch_and_flags_nonfinite_gradients():
    torch.manual_seed(0)
    grads = [torch.randn(5, 3), torch.randn(7), torch.randn(2, 2, 2).double()]
    want = torch.linalg.vector_norm(torch.cat([g.flatten().double() for g in grads]))
    torch.testing.assert_close(trainer.total_norm(grads), want)
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        for some in (grads, grads[:2]):
            ours, theirs = trainer.total_norm(some), torch.nn.utils.get_total_norm(some)
            assert ours.dtype == theirs.dtype
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0.0)
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    params[0].grad = torch.ones(3)
    assert trainer.Trainer.nonfinite(torch.tensor(1.0), params).item() == 0.0  # no grad: skipped
    for bad in (float("nan"), float("inf")):
        params[1].grad = torch.tensor([1.0, bad])
        assert trainer.Trainer.nonfinite(torch.tensor(1.0), params).item() == 1.0
    params[1].grad = torch.zeros(2)
    assert trainer.Trainer.nonfinite(torch.tensor(float("nan")), params).item() == 1.0


def _customization(folder, lora=b"lora-1"):
    (folder / "base" / "unet").mkdir(parents=True, exist_ok=True)
    (folder / "customization.json").write_text('{"prompt": "a photo of <scene-0>"}')
    (folder / "pytorch_lora_weights.safetensors").write_bytes(lora)
    (folder / "base" / "unet" / "config.json").write_text("{}")
    return folder


def test_fingerprint_covers_the_inpainting_model(small_scene, tmp_path):
    from maldnerf.nerf.idu import ReinpainterSource

    nerf, idu, files = tiny_settings(), IduSettings(), [small_scene["transforms"]]
    folder = _customization(tmp_path / "custom")

    def source(customization=folder, **inpaint):
        settings = {"diffusion": {"model": "tiny", "device": "cpu"}, "inpaint": inpaint}
        return ReinpainterSource(settings, customization)

    base = checkpoint.fingerprint(nerf, idu, files, source(num_steps=20, batch_size=8))
    assert base != checkpoint.fingerprint(nerf, idu, files)
    assert base != checkpoint.fingerprint(nerf, idu, files, source(num_steps=10, batch_size=8))
    assert base != checkpoint.fingerprint(nerf, idu, files, source(None, num_steps=20))
    # Run-only settings (devices, batch sizes, caches) do not restart a run.
    assert base == checkpoint.fingerprint(nerf, idu, files, source(num_steps=20, batch_size=2))
    cpu = ReinpainterSource({"diffusion": {"model": "tiny", "device": "cpu"}, "inpaint": {}})
    cuda = ReinpainterSource({"diffusion": {"model": "tiny", "device": "cuda"}, "inpaint": {}})
    assert checkpoint.fingerprint(nerf, idu, files, cpu) == checkpoint.fingerprint(
        nerf, idu, files, cuda
    )
    # Settings given as dataclasses hash like their plain form.
    as_dataclass = ReinpainterSource({"idu": IduSettings()}, None)
    as_dict = ReinpainterSource({"idu": to_dict(IduSettings())}, None)
    assert checkpoint.fingerprint(nerf, idu, files, as_dataclass) == checkpoint.fingerprint(
        nerf, idu, files, as_dict
    )
    # Every file of the customisation folder counts, by path and content.
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"lora-2")
    changed = checkpoint.fingerprint(nerf, idu, files, source(num_steps=20))
    assert changed != base
    (folder / "base" / "unet" / "config.json").write_text('{"x": 1}')
    assert checkpoint.fingerprint(nerf, idu, files, source(num_steps=20)) != changed
    with pytest.raises(UserError, match="customisation folder not found"):
        checkpoint.fingerprint(nerf, idu, files, source(tmp_path / "missing"))


def test_a_changed_inpainting_model_does_not_resume(small_scene, tmp_path, caplog):
    from maldnerf.nerf.idu import ReinpainterSource

    folder = _customization(tmp_path / "custom")
    source = ReinpainterSource({"inpaint": {"num_steps": 20}}, folder)
    settings = tiny_settings(iterations=6, keep_checkpoint=True)
    resumed = []
    original = trainer.Trainer.restore

    def spy(self, state):
        resumed.append(1)
        return original(self, state)

    def run(idu, source):
        resumed.clear()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            train(
                small_scene,
                tmp_path,
                settings,
                idu,
                factory=FakeInpainter,
                reinpainter_source=source,
            )
        return bool(resumed), "other settings or inputs" in caplog.text

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.Trainer, "restore", spy)
        idu = IduSettings(every=4)
        assert run(idu, source) == (False, False)  # checkpoint at step 3 is kept
        assert run(idu, source) == (True, False)  # same model: resumes
        (folder / "pytorch_lora_weights.safetensors").write_bytes(b"retrained")
        assert run(idu, source) == (False, True)  # customisation changed: starts over
        other = ReinpainterSource({"inpaint": {"num_steps": 5}}, folder)
        assert run(idu, other) == (False, True)  # inpainting settings changed: starts over
        # Without IDU rounds the inpainting model plays no part: changing it still resumes.
        off = IduSettings(enabled=False)
        run(off, source)
        assert run(off, other) == (True, False)


def test_nonfinite_steps_are_skipped_then_stop(small_scene, tmp_path, monkeypatch, caplog):
    from maldnerf.nerf import model as model_module

    original = model_module.pixel_loss
    bad_steps = {"count": 0}

    def sometimes_nan(rgb, target):
        bad_steps["count"] += 1
        value = original(rgb, target)
        return value * float("nan") if bad_steps["count"] in (3, 4) else value

    monkeypatch.setattr(model_module, "pixel_loss", sometimes_nan)
    settings = tiny_settings(iterations=8, log_every=4, adversarial={"enabled": False})
    with caplog.at_level(logging.WARNING):
        output, _ = train(small_scene, tmp_path, settings, name="nan")
    assert "skipped 2 of the last 4 steps" in caplog.text
    assert json.loads((output / "nerf.json").read_text())["skipped_steps"] == 2
    weights = load_file(output / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())

    monkeypatch.setattr(
        model_module, "pixel_loss", lambda rgb, target: original(rgb, target) * float("nan")
    )
    settings = tiny_settings(
        iterations=20, log_every=4, max_nonfinite_steps=3, adversarial={"enabled": False}
    )
    with pytest.raises(UserError, match="NaN/inf for 4 consecutive steps"):
        train(small_scene, tmp_path, settings, name="nan2")


def test_a_skipped_step_leaves_the_parameters_unchanged(small_scene):
    from maldnerf.nerf.data import load_training_views

    _, views = load_training_views(
        small_scene["transforms"], small_scene["masks"], small_scene["targets"]
    )
    t = trainer.Trainer(
        tiny_settings(adversarial={"enabled": False}),
        IduSettings(enabled=False),
        views,
        torch.device("cpu"),
    )
    t.train_step(0)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.model.reconstruction_losses = lambda outputs, rgb: {
        "pixel": outputs["rgb"].sum() * float("inf")
    }
    t.train_step(1)
    for key, value in t.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert t.skipped.item() == 1


def test_lpips_variant_without_weights_fails_before_training(small_scene, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError, match="alexnet-owt-7be5be79.pth"):
        train(small_scene, tmp_path, tiny_settings(inpainted_loss="lpips"))


def test_lpips_variant_with_an_injected_module(small_scene, tmp_path):
    class Fake(torch.nn.Module):
        def forward(self, a, b):
            return (a - b).abs().mean(dim=(1, 2, 3))

    output, _ = train(
        small_scene,
        tmp_path,
        tiny_settings(iterations=4, inpainted_loss="lpips", adversarial={"enabled": False}),
        lpips_module=Fake(),
    )
    rows = list(csv.DictReader((output / "train_log.csv").open()))
    assert rows[-1]["inpainted"] != "" and rows[-1]["adversarial"] == ""
    assert all(rows[-1][k] == "" for k in trainer.DISCRIMINATOR_STATS)  # adversarial off


def test_cuda_device_without_a_gpu_is_an_error(small_scene, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="nerf.device"):
        train(small_scene, tmp_path, tiny_settings(device="cuda"))


def test_a_signal_stops_training_within_seconds_with_a_checkpoint_to_resume(small_scene, tmp_path):
    """Real ``maldnerf train`` processes: SIGTERM (Slurm, Snakemake) stops the first after the
    iteration it is in, with a checkpoint (the periodic ones are too far apart to exist); the
    rerun resumes from it, and SIGINT (Ctrl-C) stops that one the same way."""
    import re
    import signal
    import sys

    from helpers import stop_with_signal, tiny_nerf_dict

    nerf = tiny_nerf_dict(iterations=100_000, checkpoint_every=100_000, log_every=5)
    settings = {"nerf": nerf, "idu": {"enabled": False}}
    resume = tmp_path / "resume"
    command = [sys.executable, "-m", "maldnerf", "--threads", "1", "train"]
    command += ["--transforms", str(small_scene["transforms"])]
    command += ["--masks", str(small_scene["masks"]), "--targets", str(small_scene["targets"])]
    command += ["--customization", "none", "--output", str(tmp_path / "out")]
    command += ["--resume-dir", str(resume), "--settings", json.dumps(settings)]

    def logged_step(text: str) -> int:
        return max((int(n) for n in re.findall(r"step (\d+)/100000", text)), default=0)

    status, seconds = stop_with_signal(
        command, tmp_path / "first.log", lambda text: logged_step(text) >= 10, signal.SIGTERM
    )
    log = (tmp_path / "first.log").read_text()
    assert status == 143 and seconds < 30, log[-2000:]  # one step, then the exit
    assert "SIGTERM received: stopping after the current step" in log
    stopped = torch.load(resume / checkpoint.CHECKPOINT, weights_only=True)["step"]
    assert stopped >= 10 and not (tmp_path / "out").exists()

    status, seconds = stop_with_signal(
        command,
        tmp_path / "second.log",
        lambda text: f"at iteration {stopped}" in text and logged_step(text) > stopped,
        signal.SIGINT,
    )
    log = (tmp_path / "second.log").read_text()
    assert status == 130 and seconds < 30, log[-2000:]  # one step, then the exit
    assert torch.load(resume / checkpoint.CHECKPOINT, weights_only=True)["step"] > stopped


def test_a_signal_during_a_dataset_update_keeps_the_targets_of_before(
    small_scene, tmp_path, monkeypatch
):
    """An IDU round cannot be checkpointed midway: a signal stops it at once, and the checkpoint
    holds the step the round was due at and the targets of before it, so a rerun redoes it."""
    import signal

    from maldnerf import interrupt

    idu = IduSettings(every=4, t_max=0.8, t_min=0.2, batch_size=3)
    real_update = idu_round.update_targets

    def interrupted_update(model, data, *args):
        real_update(model, data, *args)  # the targets change, then the signal comes
        interrupt._handle(signal.SIGTERM, None)  # what SIGTERM runs: it raises inside the round

    monkeypatch.setattr(idu_round, "update_targets", interrupted_update)
    monkeypatch.setattr(interrupt, "_received", None)
    with pytest.raises(interrupt.Interrupted):
        train(small_scene, tmp_path, tiny_settings(), idu, factory=FakeInpainter)
    state = torch.load(tmp_path / "nerf_resume" / checkpoint.CHECKPOINT, weights_only=True)
    assert state["step"] == 4 and state["idu_rounds"] == []
    _, views = trainer.load_training_views(
        small_scene["transforms"], small_scene["masks"], small_scene["targets"]
    )
    assert torch.equal(state["targets"], torch.from_numpy(views.targets))
