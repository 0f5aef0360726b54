import json
import shutil

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


def test_known_poses_required_for_method_known(tmp_path):
    from helpers import write_plain_scene
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as prepare

    prepare(
        PrepareSettings(source=str(write_plain_scene(tmp_path / "src"))), "x", tmp_path / "scene"
    )
    with pytest.raises(UserError, match="poses: known, but the scene has no transforms.json"):
        run(PosesSettings(method="known"), tmp_path / "scene", tmp_path / "poses")
