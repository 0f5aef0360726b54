"""The render stage and a short training run's quality on the small synthetic scene."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from nerf_helpers import tiny_settings

from maldnerf.errors import UserError
from maldnerf.images import read_image, read_mask
from maldnerf.nerf import render, trainer
from maldnerf.nerf.settings import IduSettings, NerfSettings, RenderSettings
from maldnerf.settings import from_dict


@pytest.fixture(scope="module")
def trained(small_scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    trainer.run(
        tiny_settings(iterations=6),
        IduSettings(enabled=False),
        small_scene["transforms"],
        small_scene["masks"],
        small_scene["targets"],
        root / "nerf",
        root / "resume",
        None,
    )
    return root / "nerf"


def test_render_writes_test_views_depth_and_gif(small_scene, trained, tmp_path):
    settings = RenderSettings(splits=["test", "train"], gif=True, gif_frames=3, gif_scale=0.25)
    out = tmp_path / "render"
    render.run(settings, small_scene["transforms"], trained, out)
    assert sorted(p.name for p in (out / "test").iterdir()) == ["test_000.png", "test_001.png"]
    assert len(list((out / "train").iterdir())) == 8
    image = read_image(out / "test" / "test_000.png")
    assert image.shape == (60, 80, 3)
    depth = np.load(out / "depth" / "test_000.npy")
    assert depth.shape == (60, 80) and depth.dtype == np.float32 and np.all(np.isfinite(depth))
    assert (out / "depth" / "test_000.png").is_file() and (out / "flythrough.gif").is_file()
    info = json.loads((out / "render.json").read_text())
    assert info["views"]["test"] == ["test_000", "test_001"] and info["rays_per_second"] > 0


def test_render_needs_a_trained_model(small_scene, tmp_path):
    with pytest.raises(UserError, match="run the train stage"):
        render.run(
            RenderSettings(), small_scene["transforms"], tmp_path / "missing", tmp_path / "out"
        )


def masked_psnr(render_dir, scene, masks):
    """Mean over test views of the PSNR inside the test masks, for the render and a mean fill."""
    ours, fill = [], []
    for path in sorted((scene / "test").glob("*.png")):
        truth = read_image(path)
        mask = read_mask(masks / "test" / path.name)
        mse = ((read_image(render_dir / "test" / path.name) - truth)[mask] ** 2).mean()
        mean_mse = ((truth.reshape(-1, 3).mean(0) - truth)[mask] ** 2).mean()
        ours.append(-10 * np.log10(mse))
        fill.append(-10 * np.log10(mean_mse))
    return float(np.mean(ours)), float(np.mean(fill))


def train_oracle(scene, tmp_path, **overrides) -> tuple[float, float]:
    """Train 200 iterations with the true background as the inpainting target (oracle, IDU
    off) and render the test views; returns the masked PSNR of the renders and of a mean fill."""
    settings = {
        "iterations": 200,
        "batch_rays": 256,
        "patch_size": 8,
        "patches_per_step": 4,
        "device": "cpu",
        "log_every": 50,
        **overrides,
    }
    trainer.run(
        from_dict(NerfSettings, settings),
        IduSettings(enabled=False),
        scene["transforms"],
        scene["masks"],
        scene["targets"],
        tmp_path / "nerf",
        tmp_path / "resume",
        None,
    )
    render.run(
        RenderSettings(depth=False), scene["transforms"], tmp_path / "nerf", tmp_path / "render"
    )
    return masked_psnr(tmp_path / "render", scene["scene"], scene["masks"])


# Masked PSNR of the test views after train_oracle (the mean fill scores 20.51 dB):
#   L1 inside the mask, adversarial off (seeds 0-2)                   23.82-23.92 dB
#   adversarial only: GAN + feature matching, warm-up 20 (seeds 0-4)  22.78-23.99 dB (seed 0: 23.57)
#   no loss inside the mask (seeds 0-4)                               21.66-21.81 dB
# Without any loss inside the mask the renders there already beat the fill by 1.15-1.30 dB
# (the background is seen from other views); a masked loss must add to that. The thresholds
# sit between: fill + 2.0 dB for L1, fill + 1.8 dB (midway between 1.30 and 2.27) for the
# adversarial loss. CPU runs are deterministic, so the tests (seed 0) see 23.9 and 23.6 dB.


def test_oracle_training_beats_a_mean_fill(small_scene, tmp_path):
    """Integration: train briefly with the true background as the target (oracle) and an L1
    loss inside the mask; the masked PSNR of the test views is well above filling the mask
    with the image mean."""
    ours, fill = train_oracle(
        small_scene, tmp_path, inpainted_loss="l1", adversarial={"enabled": False}
    )
    assert ours > fill + 2.0, (ours, fill)
    assert ours > 21.5, ours


def test_oracle_adversarial_only_beats_a_mean_fill(small_scene, tmp_path):
    """The full method's masked loss alone (non-saturating GAN + discriminator feature
    matching, no L1/LPIPS) on the oracle targets beats the mean fill by more than training
    without any loss inside the mask does (see the measurements above)."""
    ours, fill = train_oracle(
        small_scene, tmp_path, inpainted_loss="none", adversarial={"enabled": True, "warmup": 20}
    )
    assert ours > fill + 1.8, (ours, fill)
    rows = list(csv.DictReader((tmp_path / "nerf" / "train_log.csv").open()))
    assert all(np.isfinite(float(r["d_real_logit"])) for r in rows), rows


def known_psnr(scene, masks, render_fn) -> float:
    """Mean over test views of the PSNR outside the test masks of ``render_fn(name)``."""
    values = []
    for path in sorted((scene / "test").glob("*.png")):
        truth, mask = read_image(path), read_mask(masks / "test" / path.name)
        values.append(-10 * np.log10(((render_fn(path.stem) - truth)[~mask] ** 2).mean()))
    return float(np.mean(values))


def test_ndc_training_end_to_end(small_scene, tmp_path):
    """``parameterization: ndc`` on the (forward-facing) small scene: the photometric loss
    falls, the renders and depths are finite, and the test views' known region is rendered
    far better than by the untrained model."""
    import torch

    from maldnerf.cameras import load_transforms
    from maldnerf.nerf.model import build_model, load_model
    from maldnerf.nerf.render import render_view

    settings = {
        "iterations": 100,
        "batch_rays": 256,
        "parameterization": "ndc",
        "adversarial": {"enabled": False},
        "device": "cpu",
        "log_every": 10,
    }
    trainer.run(
        from_dict(NerfSettings, settings),
        IduSettings(enabled=False),
        small_scene["transforms"],
        small_scene["masks"],
        small_scene["targets"],
        tmp_path / "nerf",
        tmp_path / "resume",
        None,
    )
    info = json.loads((tmp_path / "nerf" / "nerf.json").read_text())
    assert info["parameterization"]["kind"] == "ndc"
    rows = list(csv.DictReader((tmp_path / "nerf" / "train_log.csv").open()))
    first, last = float(rows[0]["pixel"]), float(rows[-1]["pixel"])
    assert np.isfinite(last) and last < 0.4 * first, (first, last)
    out = tmp_path / "render"
    render.run(RenderSettings(), small_scene["transforms"], tmp_path / "nerf", out)
    assert all(np.all(np.isfinite(np.load(p))) for p in (out / "depth").glob("*.npy"))
    trained = known_psnr(
        small_scene["scene"], small_scene["masks"], lambda n: read_image(out / "test" / f"{n}.png")
    )
    model, info = load_model(tmp_path / "nerf", torch.device("cpu"))
    initial = build_model(model.settings, model.parameterization).eval()
    cameras = load_transforms(small_scene["transforms"])
    intrinsics = (cameras.fx, cameras.fy, cameras.cx, cameras.cy)

    def untrained(name):
        pose = cameras.frame(name).camera_to_world
        size = (cameras.width, cameras.height)
        return render_view(initial, info["normalization"], pose, intrinsics, *size, 1024)[0]

    start = known_psnr(small_scene["scene"], small_scene["masks"], untrained)
    # Measured (seeds 0-2): 23.6-23.7 dB trained, 12.1-13.0 dB untrained; the pixel loss of
    # the last log window is 0.18-0.21 of the first one's.
    assert trained > start + 8.0 and trained > 21.0, (trained, start)
