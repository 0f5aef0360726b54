import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maldnerf.cameras import load_transforms, umeyama
from maldnerf.errors import UserError
from maldnerf.poses import PosesSettings, run


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(10, 3))
    angle = 0.7
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    target = 2.5 * points @ rotation.T + np.array([1.0, -2.0, 0.5])
    scale, r, t = umeyama(points, target)
    assert (
        scale == pytest.approx(2.5)
        and np.allclose(r, rotation)
        and np.allclose(t, [1.0, -2.0, 0.5])
    )


def test_colmap_registers_every_view_accurately(synthetic_poses):
    """Bounds: the synthetic scene is noise-free and pinhole; observed errors are ~0.3 deg and
    ~0.1 % of the scene extent (low resolution: 160x120). 1 deg / 1 % leaves 3-10x headroom
    for COLMAP's run-to-run variation while still catching a convention or scale error, which
    produces errors of tens of degrees / percent."""
    cameras = load_transforms(synthetic_poses / "transforms.json")
    assert len(cameras.split("train")) == 24 and len(cameras.split("test")) == 8
    report = json.loads((synthetic_poses / "accuracy.json").read_text())
    assert len(report["views"]) == 32
    assert report["rotation_deg"]["median"] < 1.0
    assert report["translation_percent"]["median"] < 1.0
    assert report["rotation_deg"]["max"] < 2.0 and report["translation_percent"]["max"] < 2.0
    assert all(0 < f.near < f.far for f in cameras.frames)
    assert (synthetic_poses / "colmap" / "images.bin").is_file()
    # SIMPLE_RADIAL has a distortion parameter: views were undistorted next to the model.
    assert all(f.image.is_file() and "undistorted" in str(f.image) for f in cameras.frames)
    # ... and so are the object masks, in a folder of their own; the keep masks follow them.
    for frame in cameras.split("train"):
        assert frame.mask.parent.name == "object_masks"
        object_mask = np.asarray(Image.open(frame.mask)) > 0
        assert not (np.asarray(Image.open(frame.keep_mask)) > 0)[object_mask].any()


def test_views_colmap_cannot_register_are_listed(synthetic_scene, tmp_path):
    scene = tmp_path / "scene"
    shutil.copytree(synthetic_scene / "scene", scene)
    rng = np.random.default_rng(0)
    for name in ("test_002", "test_005"):
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(
            scene / "test" / f"{name}.png"
        )
    with pytest.raises(
        UserError, match="not registered: .*test_002.*test_005.*matcher: sequential"
    ) as info:
        run(PosesSettings(), scene, tmp_path / "poses")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "poses").exists()


def test_known_poses_are_copied(synthetic_scene, tmp_path):
    run(PosesSettings(method="known"), synthetic_scene / "scene", tmp_path / "poses")
    cameras = load_transforms(tmp_path / "poses" / "transforms.json")
    known = load_transforms(synthetic_scene / "scene" / "known_poses.json")
    assert np.allclose(cameras.frames[3].camera_to_world, known.frames[3].camera_to_world)
    assert cameras.frames[3].image.resolve() == known.frames[3].image.resolve()
    assert not (tmp_path / "poses" / "accuracy.json").exists()


def test_transforms_json_means_to_nerfstudio_what_it_means_to_us(synthetic_scene, tmp_path):
    """nerfstudio's dataparser takes the split from the top-level ``*_filenames`` lists (else it
    makes its own 90/10 split) and reads ``mask_path`` as the pixels to use (nonzero = keep);
    our object masks are under ``object_mask_path``."""
    from maldnerf.images import read_mask

    run(PosesSettings(method="known"), synthetic_scene / "scene", tmp_path / "poses")
    path = tmp_path / "poses" / "transforms.json"
    data = json.loads(path.read_text())
    frames = data["frames"]
    train = [f["file_path"] for f in frames if f["split"] == "train"]
    test = [f["file_path"] for f in frames if f["split"] == "test"]
    assert (len(train), len(test)) == (24, 8)
    assert data["train_filenames"] == train
    assert data["val_filenames"] == test and data["test_filenames"] == test
    assert all("mask_path" in f for f in frames)  # nerfstudio: every frame or none
    for frame in frames:
        keep = np.asarray(Image.open(path.parent / frame["mask_path"]))
        assert keep.ndim == 2 and set(np.unique(keep)) <= {0, 255}  # one channel, 0/255
        if frame["split"] == "test":  # photos without the object: every pixel is usable
            assert keep.all()
            continue
        assert Path(frame["mask_path"]).parent.name == "keep_masks"
        object_mask = read_mask(path.parent / frame["object_mask_path"])
        assert object_mask.any() and not (keep > 0)[object_mask].any()
        # Outside the object grown by colmap.mask_margin (2 px) every pixel is kept.
        assert (keep > 0).mean() > 1 - object_mask.mean() - 0.05
    cameras = load_transforms(path)
    assert all(f.keep_mask is not None and f.keep_mask.is_file() for f in cameras.frames)
    assert all(f.mask is not None for f in cameras.split("train"))


def test_known_poses_required_for_method_known(tmp_path):
    from helpers import write_plain_scene
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as prepare

    prepare(
        PrepareSettings(source=str(write_plain_scene(tmp_path / "src"))), "x", tmp_path / "scene"
    )
    with pytest.raises(UserError, match="poses: known, but the scene has no transforms.json"):
        run(PosesSettings(method="known"), tmp_path / "scene", tmp_path / "poses")


def test_sequential_matcher_and_a_pinhole_model_register_every_view(synthetic_scene, tmp_path):
    """The video-capture path: sequential pairs only; a model without distortion keeps the
    original images (nothing to undistort)."""
    from maldnerf.poses import ColmapSettings

    settings = PosesSettings(
        colmap=ColmapSettings(matcher="sequential", sequential_overlap=8, camera_model="PINHOLE")
    )
    run(settings, synthetic_scene / "scene", tmp_path / "poses")
    report = json.loads((tmp_path / "poses" / "accuracy.json").read_text())
    assert len(report["views"]) == 32
    assert report["rotation_deg"]["median"] < 1.0 and report["translation_percent"]["median"] < 1.0
    cameras = load_transforms(tmp_path / "poses" / "transforms.json")
    assert not any("undistorted" in str(f.image) for f in cameras.frames)
    assert not (tmp_path / "poses" / "undistorted").exists()


def test_undistortion_inverts_the_lens_distortion(tmp_path):
    """A pinhole image seen through a radial lens (k1 = -0.2), undistorted, is the pinhole image
    again (up to interpolation), and far from it without undistortion."""
    import cv2

    from maldnerf.poses import _undistort_view

    h, w = 120, 160
    k = np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]])
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    pinhole = np.stack([127 + 100 * np.sin(x / 9), 127 + 100 * np.cos(y / 7), 127 + 0 * x], -1)
    pinhole = pinhole.astype(np.uint8)
    coefficients = np.array([-0.2, 0.0, 0.0, 0.0, 0.0])
    # Where each pixel of the distorted photo looks: the undistorted position of its ray.
    grid = np.stack([x.ravel(), y.ravel()], -1)[:, None, :]
    ideal = cv2.undistortPoints(grid, k, coefficients, P=k).reshape(h, w, 2)
    photo = cv2.remap(pinhole, ideal[..., 0], ideal[..., 1], cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "v.png"), photo)
    out, _ = _undistort_view(tmp_path / "v.png", None, "train", tmp_path / "u", k, [-0.2])
    restored = cv2.imread(str(out), cv2.IMREAD_COLOR).astype(np.float64)
    inner = (slice(10, 110), slice(10, 150), slice(0, 2))  # the textured channels
    error = np.abs(restored[inner] - pinhole[inner]).mean()
    before = np.abs(photo[inner].astype(np.float64) - pinhole[inner]).mean()
    assert error < 0.2 * before, (error, before)
