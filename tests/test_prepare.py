import json

import numpy as np
import pytest
from PIL import Image

from helpers import write_plain_scene
from maldnerf.cameras import load_transforms
from maldnerf.errors import UserError
from maldnerf.prepare.known_poses import read_known_poses
from maldnerf.prepare.stage import PrepareSettings, run
from maldnerf.prepare.synthetic import SyntheticSettings
from maldnerf.scene import load_scene


def prepare(tmp_path, source, **settings):
    out = tmp_path / "out"
    run(PrepareSettings(source=str(source), **settings), "demo", out)
    return load_scene(out)


def test_plain_layout(tmp_path):
    scene = prepare(tmp_path, write_plain_scene(tmp_path / "src"))
    assert [v.name for v in scene.train] == ["v00", "v01", "v02", "v03"]
    assert [v.name for v in scene.test] == ["t00", "t01"] and scene.test[0].mask is None
    assert (scene.width, scene.height) == (64, 48) and scene.known_poses is None
    assert np.asarray(Image.open(scene.train[0].mask)).max() == 255


def test_downscale_shrinks_images_and_masks(tmp_path):
    scene = prepare(tmp_path, write_plain_scene(tmp_path / "src"), downscale=2)
    assert (scene.width, scene.height) == (32, 24)
    assert Image.open(scene.train[0].image).size == (32, 24) == Image.open(scene.train[0].mask).size


def test_spinnerf_layout_and_llff_poses(tmp_path):
    src = tmp_path / "spin"
    (src / "images_4" / "label").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
            src / "images_4" / f"{i:03d}.png"
        )
        label = np.zeros((30, 40), np.uint8)
        label[10:20, 10:20] = 1  # SPIn-NeRF labels: nonzero is the object
        Image.fromarray(label).save(src / "images_4" / "label" / f"{i:03d}.png")
    rows = []
    for i in range(7):
        # LLFF columns: down, right, back, translation, hwf (full resolution 120 x 160, focal 100).
        pose = np.stack([[0, -1, 0], [1, 0, 0], [0, 0, 1]], axis=1).astype(float)
        pose = np.concatenate([pose, [[i], [0], [0]], [[120], [160], [100]]], axis=1)
        rows.append(np.concatenate([pose.reshape(-1), [1.0, 10.0]]))
    np.save(src / "poses_bounds.npy", np.array(rows))
    scene = prepare(tmp_path, src, spinnerf_test_views=3)
    assert [v.name for v in scene.test] == ["000", "001", "002"]
    assert [v.name for v in scene.train] == ["003", "004", "005", "006"]
    cameras = load_transforms(scene.known_poses)
    assert cameras.fx == pytest.approx(25.0)  # 100 px at 160 wide -> 25 px at 40 wide
    frame = cameras.frame("004")
    assert (
        np.allclose(frame.camera_to_world[:3, :3], np.eye(3)) and frame.camera_to_world[0, 3] == 4
    )
    assert (frame.near, frame.far) == (1.0, 10.0)


def test_llff_poses_of_another_aspect_ratio_are_an_error(tmp_path):
    """poses_bounds.npy has one focal length for its (H, W): images of another aspect ratio
    would get fx != fy silently (here 30x40 images, poses recorded for 120x200)."""
    src = tmp_path / "spin"
    (src / "images_4" / "label").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((30, 40, 3), 100, np.uint8)).save(src / "images_4" / f"{i:03d}.png")
        label = np.zeros((30, 40), np.uint8)
        label[10:20, 10:20] = 1
        Image.fromarray(label).save(src / "images_4" / "label" / f"{i:03d}.png")
    pose = np.concatenate([np.eye(3), [[0], [0], [0]], [[120], [200], [100]]], axis=1)
    row = np.concatenate([pose.reshape(-1), [1.0, 10.0]])
    np.save(src / "poses_bounds.npy", np.stack([row] * 4))
    with pytest.raises(UserError, match=r"poses_bounds.npy: poses recorded for 200x120 .* 40x30"):
        prepare(tmp_path, src, spinnerf_test_views=1)


def test_transforms_json_instant_ngp_style(tmp_path):
    src = write_plain_scene(tmp_path / "src", n_train=3, n_test=1)
    frames = [
        {"file_path": f"images/v{i:02d}", "transform_matrix": np.eye(4).tolist()} for i in range(3)
    ]
    frames.append({"file_path": "test/t00.png", "transform_matrix": np.eye(4).tolist()})
    (src / "transforms.json").write_text(
        json.dumps({"camera_angle_x": np.pi / 2, "frames": frames})
    )
    scene = prepare(tmp_path, src)
    cameras = load_transforms(scene.known_poses)
    assert cameras.fx == pytest.approx(32.0) and len(cameras.frames) == 4


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda s: s.rename(s.parent / "elsewhere"), "scene folder not found"),
        (
            lambda s: (s / "images" / "v01.png").write_bytes(b"garbage"),
            "v01.png: cannot read image",
        ),
        (
            lambda s: Image.new("RGB", (50, 48)).save(s / "images" / "v02.png"),
            "v02.png: size 50x48 differs",
        ),
        (lambda s: (s / "masks" / "v03.png").unlink(), "no mask for training image\\(s\\) v03.png"),
        (
            lambda s: Image.new("L", (10, 10)).save(s / "masks" / "v03.png"),
            "v03.png: mask is 10x10 but its image is 64x48",
        ),
        (
            lambda s: Image.new("L", (64, 48)).save(s / "masks" / "v03.png"),
            "v03.png: mask is empty",
        ),
        (
            lambda s: Image.new("L", (64, 48), 255).save(s / "masks" / "v03.png"),
            "v03.png: mask covers the whole image",
        ),
        (
            lambda s: Image.new("L", (64, 48), 255).save(s / "masks" / "extra.png"),
            "mask\\(s\\) extra match no image",
        ),
        (
            lambda s: [(s / "images" / f"v0{i}.png").unlink() for i in (1, 2, 3)],
            "1 training image\\(s\\), at least 3 needed",
        ),
    ],
)
def test_bad_folders_fail_with_one_line_and_leave_nothing(tmp_path, break_it, message):
    src = write_plain_scene(tmp_path / "src")
    break_it(src)
    with pytest.raises(UserError, match=message) as info:
        prepare(tmp_path, src)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_known_poses_missing_a_view_or_non_finite(tmp_path):
    src = write_plain_scene(tmp_path / "src", n_train=3, n_test=0)
    frames = [
        {"file_path": f"images/v{i:02d}.png", "transform_matrix": np.eye(4).tolist()}
        for i in range(2)
    ]
    (src / "transforms.json").write_text(json.dumps({"fl_x": 50.0, "frames": frames}))
    with pytest.raises(UserError, match="no pose for image\\(s\\) v02"):
        prepare(tmp_path, src)
    bad = np.eye(4)
    bad[0, 3] = np.nan
    frames.append({"file_path": "images/v02.png", "transform_matrix": bad.tolist()})
    (src / "transforms.json").write_text(json.dumps({"fl_x": 50.0, "frames": frames}))
    with pytest.raises(UserError, match="pose of view v02 is not a finite 4x4 matrix"):
        read_known_poses(src / "transforms.json", ["v00", "v01", "v02"], (64, 48))


def test_synthetic_source_writes_everything(synthetic_scene):
    scene = load_scene(synthetic_scene / "scene")
    assert len(scene.train) == 24 and len(scene.test) == 8
    assert all(v.mask is not None and v.mask.is_file() for v in scene.views)
    assert (scene.background / "train_000.png").is_file()
    cameras = load_transforms(scene.known_poses)
    assert len(cameras.frames) == 32 and all(f.near < f.far for f in cameras.frames)


def test_bad_settings_name_the_setting():
    from maldnerf.settings import from_dict

    with pytest.raises(UserError, match="prepare: downscale must be an integer >= 1"):
        from_dict(PrepareSettings, {"downscale": 0}, "prepare")
    with pytest.raises(
        UserError, match="prepare.synthetic.n_train: expected an integer, got 'many'"
    ):
        from_dict(PrepareSettings, {"synthetic": {"n_train": "many"}}, "prepare")
    assert from_dict(SyntheticSettings, {"width": 64}).width == 64
