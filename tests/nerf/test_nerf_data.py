"""Training data: cross-checks of poses, masks and targets; ray and patch sampling; rays."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from maldnerf.errors import UserError
from maldnerf.images import write_mask
from maldnerf.nerf.data import RayData, load_training_views
from maldnerf.nerf.parameterization import (
    ContractParameterization,
    NdcParameterization,
    contract,
    make_parameterization,
    normalize_scene,
)
from maldnerf.nerf.rays import Rays, image_rays, pixel_rays


def copy_inputs(small_scene, tmp_path):
    transforms = tmp_path / "transforms.json"
    data = json.loads(small_scene["transforms"].read_text())
    for frame in data["frames"]:
        frame["file_path"] = str(small_scene["scene"] / frame["file_path"])
        frame.pop("mask_path", None)
    transforms.write_text(json.dumps(data))
    masks = tmp_path / "masks"
    shutil.copytree(small_scene["masks"], masks)
    targets = tmp_path / "targets"
    shutil.copytree(small_scene["targets"], targets)
    return transforms, masks, targets


def test_load_training_views(small_scene):
    cameras, views = load_training_views(
        small_scene["transforms"], small_scene["masks"], small_scene["targets"]
    )
    assert views.images.shape == (8, 60, 80, 3) and views.images.dtype == np.uint8
    assert views.masks.dtype == bool and views.masks.any()
    # Oracle targets differ from the images inside the mask only.
    outside = ~views.masks
    assert np.abs(views.images[outside].astype(int) - views.targets[outside]).max() <= 2
    assert 0 < views.near < views.far


def test_pose_missing_for_a_training_image_is_an_error(small_scene, tmp_path):
    transforms, masks, targets = copy_inputs(small_scene, tmp_path)
    data = json.loads(transforms.read_text())
    data["frames"] = [f for f in data["frames"] if f["name"] != "train_003"]
    transforms.write_text(json.dumps(data))
    with pytest.raises(UserError, match="no camera pose for training view.*train_003"):
        load_training_views(transforms, masks, targets)


def test_missing_target_and_full_mask_are_errors(small_scene, tmp_path):
    transforms, masks, targets = copy_inputs(small_scene, tmp_path)
    (targets / "train_002.png").unlink()
    with pytest.raises(UserError, match="train_002.png: no inpainted target"):
        load_training_views(transforms, masks, targets)
    shutil.copy(small_scene["targets"] / "train_002.png", targets / "train_002.png")
    write_mask(masks / "train" / "train_004.png", np.ones((60, 80), bool))
    with pytest.raises(UserError, match="train_004.png: mask covers the whole image"):
        load_training_views(transforms, masks, targets)


def make_data(small_scene) -> RayData:
    _, views = load_training_views(
        small_scene["transforms"], small_scene["masks"], small_scene["targets"]
    )
    norm = normalize_scene("contract", views.camera_to_world, views.near, views.far)
    return RayData(views, norm.camera_to_model(views.camera_to_world), torch.device("cpu"))


def test_rays_outside_the_mask_and_patches_overlapping_it(small_scene):
    data = make_data(small_scene)
    gen = torch.Generator().manual_seed(0)
    view, y, x = data._unflatten(
        data.outside[torch.randint(len(data.outside), (500,), generator=gen)]
    )
    assert not data.masks[view, y, x].any()
    rays, rgb = data.sample_rays(100, gen)
    assert len(rays) == 100 and rgb.shape == (100, 3) and rgb.min() >= 0 and rgb.max() <= 1
    patches = data.sample_patches(20, 16, gen)
    assert patches.real.shape == (20, 3, 16, 16) and patches.masks.shape == (20, 1, 16, 16)
    assert len(patches.rays) == 20 * 16 * 16
    assert torch.all(patches.masks.sum(dim=(1, 2, 3)) >= 1)  # every patch overlaps the mask
    assert torch.all(patches.top >= 0) and torch.all(patches.top + 16 <= 60)
    assert torch.all(patches.left >= 0) and torch.all(patches.left + 16 <= 80)
    # The patch's pixels are the target's pixels.
    i = 3
    v, top, left = int(patches.view[i]), int(patches.top[i]), int(patches.left[i])
    expected = data.targets[v, top : top + 16, left : left + 16].float().permute(2, 0, 1) / 255
    assert torch.equal(patches.real[i], expected)


def test_patch_larger_than_the_image_is_an_error(small_scene):
    data = make_data(small_scene)
    with pytest.raises(UserError, match="patch_size"):
        data.sample_patches(1, 64, torch.Generator().manual_seed(0))


def test_pixel_rays_follow_the_opengl_convention():
    c2w = torch.eye(4)[None]
    rays = pixel_rays(
        c2w,
        (10.0, 10.0, 2.0, 2.0),
        torch.zeros(2, dtype=torch.long),
        torch.tensor([1, 0]),
        torch.tensor([1, 3]),
    )
    # Pixel (y=1, x=1) centre is (1.5, 1.5): direction (-0.05, +0.05, -1); camera-z is -1 (t = depth).
    torch.testing.assert_close(rays.directions[0], torch.tensor([-0.05, 0.05, -1.0]))
    assert torch.all(rays.directions[:, 2] == -1.0)
    torch.testing.assert_close(rays.viewdirs.norm(dim=-1), torch.ones(2))
    assert len(image_rays(torch.eye(4), (10.0, 10.0, 2.0, 2.0), 4, 3)) == 12


def test_contraction_and_depths():
    x = torch.tensor([[0.5, 0.0, 0.0], [3.0, 0.0, 0.0], [1e6, 0.0, 0.0]])
    c = contract(x)
    assert c[0, 0] == 0.5 and 1.0 < c[1, 0] < 2.0 and c[2, 0] == pytest.approx(2.0)
    p = ContractParameterization(1.0, 10.0)
    rays = Rays(
        torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    )
    t = p.s_to_t(rays, torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(t, torch.tensor([[1.0, 10.0]]))
    positions, distances, depths = p.samples(rays, torch.tensor([[0.0, 0.5, 1.0]]))
    assert positions.shape == (1, 2, 3) and torch.all((positions >= 0) & (positions <= 1))
    assert torch.all(depths > 1.0) and torch.all(depths < 10.0)


def test_ndc_depths_match_the_world_points():
    # Cameras looking down -z at the origin; scene depth 2..10.
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[:, 0, 3] = [-0.1, 0.0, 0.1]
    norm = normalize_scene("ndc", c2w, 2.0, 10.0)
    param = make_parameterization("ndc", norm, 2.0, 15.0, 50.0, 50.0, 64, 48)
    assert isinstance(param, NdcParameterization)
    matrix = torch.tensor(norm.camera_to_model(c2w), dtype=torch.float32)
    rays = pixel_rays(
        matrix,
        (50.0, 50.0, 32.0, 24.0),
        torch.tensor([0, 2]),
        torch.tensor([5, 40]),
        torch.tensor([10, 60]),
    )
    s = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.4, 0.8]])
    t = param.s_to_t(rays, s)
    # The NDC point at s must be the projection of the world point at depth t.
    points = rays.origins[:, None] + t[..., None] * rays.directions[:, None]
    x, y, z = points.unbind(-1)
    ndc = torch.stack([-2 * 50 / 64 * x / z, -2 * 50 / 48 * y / z, 1 + 2 / z], -1)
    o, d, _, _ = param._ndc(rays)
    expected = o[:, None] + (s * param.s_far)[..., None] * d[:, None]
    torch.testing.assert_close(ndc, expected, atol=1e-4, rtol=1e-4)
    assert torch.all(t[:, 1:] > t[:, :-1])


def test_ndc_rejects_a_360_capture():
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    c2w = np.tile(np.eye(4), (8, 1, 1))
    for i, a in enumerate(angles):
        c2w[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    with pytest.raises(UserError, match="forward-facing"):
        normalize_scene("ndc", c2w, 1.0, 5.0)
