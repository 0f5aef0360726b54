"""Masked patches, discriminator, GAN losses, R1 and feature matching."""

from __future__ import annotations

import math

import pytest
import torch
from nerf_helpers import tiny_settings

from maldnerf.nerf import adversarial
from maldnerf.nerf.adversarial import PatchDiscriminator, mask_patches, r1_penalty


def test_mask_patches_is_exactly_zero_outside_the_mask():
    torch.manual_seed(0)
    patches = torch.rand(3, 3, 8, 8) + 0.1
    patches[0, :, 0, 0] = float("nan")  # even a NaN outside the mask becomes 0
    masks = (torch.rand(3, 1, 8, 8) > 0.5).float()
    masks[0, :, 0, 0] = 0.0
    out = mask_patches(patches, masks)
    outside = (masks == 0).expand_as(out)
    assert torch.all(out[outside] == 0.0)
    assert torch.equal(out[~outside], patches[~outside])


@pytest.mark.parametrize("size", [8, 16, 20, 32])
def test_discriminator_shapes(size):
    d = PatchDiscriminator(size, channels=8, max_channels=32)
    logits, features = d(torch.rand(2, 3, size, size))
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] <= 4
    assert len(features) >= 2 and features[-1].shape[1] <= 32


def test_r1_is_nonnegative_and_zero_for_a_constant_discriminator():
    torch.manual_seed(0)
    d = PatchDiscriminator(16, channels=8)
    real = torch.rand(4, 3, 16, 16)
    value = r1_penalty(lambda x: d(x)[0], real)
    assert value.item() > 0.0
    value.backward()  # differentiable w.r.t. the discriminator
    assert d.head.weight.grad is not None
    with torch.no_grad():
        d.head.weight.zero_()  # output = bias everywhere: constant in the input
    assert r1_penalty(lambda x: d(x)[0], real).item() == 0.0
    assert r1_penalty(lambda x: torch.ones(len(x)), real).item() == 0.0


def test_r1_is_the_squared_gradient_of_the_summed_logit_map():
    """StyleGAN2's R1 for a linear patch discriminator, whose gradient is known: with logit map
    ``D(x)[i, j] = Σ_c W[c, i, j]·x[c, i, j]``, ``∇ₓ Σ D(x) = W`` for every sample, so the
    penalty is ``|W|²`` (the mean of the map would give ``|W|² / (H·W)²``, 256× less here)."""
    torch.manual_seed(0)
    weight = torch.randn(3, 4, 4)

    def linear(x):
        return (x * weight).sum(dim=1, keepdim=True)  # (n, 1, 4, 4) logit map

    real = torch.rand(5, 3, 4, 4)
    value = r1_penalty(linear, real)
    torch.testing.assert_close(value, weight.square().sum())

    # Per sample, then the mean over the batch: a doubled sample's gradient counts 4x.
    def scaled(x):
        return linear(x) * torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)

    torch.testing.assert_close(r1_penalty(scaled, real[:2]), 2.5 * weight.square().sum())


def test_gan_losses():
    zero = torch.zeros(4, 1, 2, 2)
    assert adversarial.discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    # The generator loss falls as the discriminator believes the fakes more.
    assert adversarial.generator_loss(zero + 2).item() < adversarial.generator_loss(zero - 2).item()
    feats = [torch.ones(2, 4, 3, 3), torch.zeros(2, 8, 2, 2)]
    fakes = [
        torch.zeros(2, 4, 3, 3, requires_grad=True),
        torch.zeros(2, 8, 2, 2, requires_grad=True),
    ]
    fm = adversarial.feature_matching_loss(feats, fakes)
    assert fm.item() == pytest.approx(0.5)
    fm.backward()
    assert fakes[0].grad is not None


def test_trainer_feeds_the_discriminator_masked_real_and_fake_patches(small_scene):
    """Through the training step: every pixel outside the mask is 0 in both real and fake."""
    from maldnerf.nerf.data import load_training_views
    from maldnerf.nerf.trainer import Trainer

    _, views = load_training_views(
        small_scene["transforms"], small_scene["masks"], small_scene["targets"]
    )
    trainer = Trainer(
        tiny_settings(patch_size=16, patches_per_step=3), _no_idu(), views, torch.device("cpu")
    )
    seen = []
    original = trainer.discriminator.forward

    def spy(x):
        seen.append(x.detach().clone())
        return original(x)

    trainer.discriminator.forward = spy
    captured = {}
    sample = trainer.data.sample_patches

    def keep(*args, **kwargs):
        captured["patches"] = sample(*args, **kwargs)
        return captured["patches"]

    trainer.data.sample_patches = keep
    losses = trainer.train_step(5)  # after warm-up: adversarial on
    assert {"adversarial", "feature_matching", "discriminator"} <= set(losses)
    masks = captured["patches"].masks
    assert masks.sum() > 0 and (1 - masks).sum() > 0
    assert len(seen) >= 3  # generator pass (fake, real) and discriminator pass
    for x in seen:
        outside = (masks == 0).expand_as(x)
        assert torch.all(x[outside] == 0.0)
        assert x[~outside].abs().sum() > 0


def _no_idu():
    from maldnerf.nerf.settings import IduSettings

    return IduSettings(enabled=False)


def test_discriminator_learns_to_tell_real_from_fake_patches():
    """With the trainer's optimiser settings and lazy R1 (γ = 0.5/256, every 4 steps) the
    discriminator separates flat real patches from noisy fakes within 100 steps."""
    torch.manual_seed(0)
    d = PatchDiscriminator(16, channels=16)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.0, 0.99))
    masks = torch.zeros(8, 1, 16, 16)
    masks[:, :, 4:12, 4:12] = 1
    history = []
    for step in range(100):
        real = mask_patches(torch.rand(8, 3, 1, 1).expand(8, 3, 16, 16), masks)
        fake = mask_patches(torch.rand(8, 3, 16, 16), masks)
        loss = adversarial.discriminator_loss(d(real)[0], d(fake)[0])
        history.append(loss.item())
        if step % 4 == 0:
            loss = loss + 0.5 * (0.5 / 256) * 4 * r1_penalty(lambda x: d(x)[0], real)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert history[0] == pytest.approx(2 * math.log(2), abs=0.02)
    assert sum(history[-10:]) / 10 < 1.1
