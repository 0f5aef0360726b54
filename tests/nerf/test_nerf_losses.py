"""Losses against hand-computed small cases."""

from __future__ import annotations

import pytest
import torch

from maldnerf.errors import UserError
from maldnerf.nerf import losses
from maldnerf.nerf.encodings import HashEncoding


def test_distortion_loss_hand_computed():
    # Two intervals [0, .5], [.5, 1] with weight .5 each: midpoints .25 and .75.
    # Pairs: 2 * .5 * .5 * |.25 - .75| = .25; self term: (.25 * .5 + .25 * .5) / 3 = 1/12.
    w = torch.tensor([[0.5, 0.5]])
    edges = torch.tensor([[0.0, 0.5, 1.0]])
    assert losses.distortion_loss(w, edges).item() == pytest.approx(0.25 + 1 / 12, abs=1e-7)
    # All weight in one short interval: only the self term, w^2 * width / 3.
    w = torch.tensor([[0.0, 1.0, 0.0]])
    edges = torch.tensor([[0.0, 0.4, 0.5, 1.0]])
    assert losses.distortion_loss(w, edges).item() == pytest.approx(0.1 / 3, abs=1e-7)


def test_distortion_loss_matches_the_double_sum():
    torch.manual_seed(0)
    w = torch.rand(5, 9)
    edges = torch.sort(torch.rand(5, 10), dim=1).values
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    brute = (w[:, :, None] * w[:, None, :] * (mids[:, :, None] - mids[:, None, :]).abs()).sum(
        (1, 2)
    )
    brute = brute + (w**2 * (edges[:, 1:] - edges[:, :-1])).sum(1) / 3
    assert losses.distortion_loss(w, edges).item() == pytest.approx(brute.mean().item(), rel=1e-5)


def test_interlevel_loss_hand_computed():
    # Field: weights .8 on [0, .5] and .2 on [.5, 1].
    edges = torch.tensor([[0.0, 0.5, 1.0]])
    cdfs = torch.tensor([[0.0, 0.8, 1.0]])
    # Proposal: weights .1, .1, .8 on [0, .25], [.25, .75], [.75, 1].
    key_edges = torch.tensor([[0.0, 0.25, 0.75, 1.0]])
    key_cdfs = torch.tensor([[0.0, 0.1, 0.2, 1.0]])
    # [0, .5] overlaps the first two proposal intervals: bound .2 < .8 -> (.8 - .2)^2 / .8 = .45;
    # [.5, 1] overlaps the last two: bound .9 >= .2 -> 0.
    loss = losses.interlevel_loss(edges, cdfs, [(key_edges, key_cdfs)])
    assert loss.item() == pytest.approx(0.45, abs=1e-5)
    # A proposal that bounds everything costs nothing; two levels add up.
    assert losses.interlevel_loss(edges, cdfs, [(edges, cdfs)]).item() == pytest.approx(
        0.0, abs=1e-6
    )
    two = losses.interlevel_loss(edges, cdfs, [(key_edges, key_cdfs)] * 2)
    assert two.item() == pytest.approx(0.9, abs=1e-5)


def test_interlevel_loss_trains_only_the_proposal():
    edges = torch.tensor([[0.0, 0.5, 1.0]])
    cdfs = torch.tensor([[0.0, 0.8, 1.0]], requires_grad=True)
    key_cdfs = torch.tensor([[0.0, 0.1, 0.2, 1.0]], requires_grad=True)
    losses.interlevel_loss(
        edges, cdfs, [(torch.tensor([[0.0, 0.25, 0.75, 1.0]]), key_cdfs)]
    ).backward()
    assert cdfs.grad is None and key_cdfs.grad is not None


def test_decay_loss_is_sum_of_per_level_mean_squares():
    enc = HashEncoding(
        num_levels=3, features_per_level=2, log2_table_size=8, base_resolution=2, max_resolution=16
    )
    with torch.no_grad():
        enc.params.fill_(2.0)
    # Every level's used rows hold 2.0: mean square 4 per level, 3 levels.
    assert losses.decay_loss([enc]).item() == pytest.approx(12.0)


def test_decay_loss_averages_over_the_reachable_rows_only():
    """Dense levels address (2^k)^3 rows but their (res+1)^3 vertices reach fewer: rows no
    vertex reaches neither count in the mean nor dilute it."""
    enc = HashEncoding(
        num_levels=2, features_per_level=2, log2_table_size=8, base_resolution=2, max_resolution=5
    )
    masks = enc.reachable_masks()
    assert enc.reachable_counts[0] == 27 and enc.rows_used[0] == 64  # dense, res 2
    with torch.no_grad():
        enc.params.zero_()
        for rows, mask in zip(enc.level_slices(), masks):
            level = enc.params[rows]
            level[mask] = 3.0  # reachable rows hold 3 (mean square 9), the others 0
    assert losses.decay_loss([enc]).item() == pytest.approx(18.0)
    with torch.no_grad():
        for rows, mask in zip(enc.level_slices(), masks):
            enc.params[rows][~mask] = 100.0  # unreachable rows do not count at all
    assert losses.decay_loss([enc]).item() == pytest.approx(18.0)


def test_masked_l1_counts_only_masked_pixels():
    fake = torch.zeros(1, 3, 2, 2)
    real = torch.ones(1, 3, 2, 2)
    masks = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    real[:, :, 1, 1] = 100.0  # outside the mask: ignored
    assert losses.masked_l1(fake, real, masks).item() == pytest.approx(1.0)


def test_lpips_without_backbone_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(UserError, match="alexnet-owt-7be5be79.pth"):
        losses.load_lpips(torch.device("cpu"))


def test_lpips_loss_upsamples_small_patches():
    seen = []

    class Fake(torch.nn.Module):
        def forward(self, a, b):
            seen.append((a.shape, float(a.min()), float(a.max())))
            return (a - b).abs().mean(dim=(1, 2, 3))

    loss = losses.LpipsLoss(Fake())(torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8))
    assert seen[0][0] == (2, 3, 64, 64) and seen[0][1] == -1.0  # inputs scaled to [-1, 1]
    assert loss.item() == pytest.approx(2.0)


def _outputs_with_patches(small_scene, **overrides):
    """A tiny trainer's model and its outputs for 32 rays outside the mask followed by two 8×8
    patches inside it (the patch rays' outputs poisoned with NaN), and the 32 rays alone."""
    from nerf_helpers import tiny_settings

    from maldnerf.nerf.data import load_training_views
    from maldnerf.nerf.rays import Rays
    from maldnerf.nerf.settings import IduSettings
    from maldnerf.nerf.trainer import Trainer, step_generator

    _, views = load_training_views(
        small_scene["transforms"], small_scene["masks"], small_scene["targets"]
    )
    settings = tiny_settings(**overrides)
    trainer = Trainer(settings, IduSettings(enabled=False), views, torch.device("cpu"))
    generator = step_generator(0, 0, torch.device("cpu"))
    rays, rgb = trainer.data.sample_rays(32, generator)
    patches = trainer.data.sample_patches(2, 8, generator)
    model = trainer.model
    with torch.no_grad():
        alone = model(rays)
        both = model(Rays.cat([rays, patches.rays]))
    return model, alone, both, rgb


def _poison_patch_rays(outputs, n):
    """NaN in every per-ray output after the first ``n`` rays: a term reading them turns NaN."""
    for key in ("rgb", "weights", "edges", "cdfs"):
        outputs[key][n:] = float("nan")
    for edges, cdfs in outputs["proposal_levels"]:
        edges[n:], cdfs[n:] = float("nan"), float("nan")


def test_regularisers_cover_the_patch_rays_but_the_pixel_loss_does_not(small_scene):
    """The paper's L^m includes the regularisers: interlevel and distortion are the mean over
    the rays outside the mask *and* the patch rays inside it; the photometric loss reads only
    the first ``len(rgb)`` rays (issue #16; before, the patch rays took no part at all)."""
    model, alone, both, rgb = _outputs_with_patches(small_scene)
    n = len(rgb)
    with torch.no_grad():
        mixed = model.reconstruction_losses(both, rgb)
        levels = both["proposal_levels"]
        want_interlevel = losses.interlevel_loss(both["edges"], both["cdfs"], levels)
        want_distortion = losses.distortion_loss(both["weights"], both["edges"])
        outside = model.reconstruction_losses(alone, rgb)
    assert set(mixed) == {"pixel", "interlevel", "distortion", "decay"}
    torch.testing.assert_close(mixed["interlevel"], want_interlevel)
    torch.testing.assert_close(mixed["distortion"], want_distortion)
    for key in ("pixel", "decay"):
        torch.testing.assert_close(mixed[key], outside[key], rtol=1e-4, atol=1e-7, msg=key)
    # The patch rays change the regularisers (a fresh model's interlevel loss is not zero) ...
    assert not torch.allclose(mixed["interlevel"], outside["interlevel"])
    # ... and only them: poisoned patch rays turn exactly the two regularisers NaN.
    _poison_patch_rays(both, n)
    with torch.no_grad():
        poisoned = model.reconstruction_losses(both, rgb)
    assert torch.isnan(poisoned["interlevel"]) and torch.isnan(poisoned["distortion"])
    torch.testing.assert_close(poisoned["pixel"], outside["pixel"], rtol=1e-4, atol=1e-7)


def test_regularise_patches_off_uses_only_the_rays_outside_the_mask(small_scene):
    """``loss.regularise_patches: false`` (the behaviour before issue #16): no term of L^r
    reads the patch rays rendered after the first ``len(rgb)`` rays."""
    model, alone, both, rgb = _outputs_with_patches(small_scene, loss={"regularise_patches": False})
    _poison_patch_rays(both, len(rgb))
    with torch.no_grad():
        want = model.reconstruction_losses(alone, rgb)
        mixed = model.reconstruction_losses(both, rgb)
    assert set(mixed) == {"pixel", "interlevel", "distortion", "decay"}
    for key, value in want.items():
        assert torch.isfinite(mixed[key]), key
        torch.testing.assert_close(mixed[key], value, rtol=1e-4, atol=1e-7, msg=key)
