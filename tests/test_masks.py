import json

import numpy as np
import pytest

from maldnerf.cameras import load_transforms
from maldnerf.errors import UserError
from maldnerf.images import read_mask
from maldnerf.masks import (
    BoxSettings,
    MaskSettings,
    box_corners,
    check_coverage,
    dilate,
    load_masks,
    project_box,
    run,
)
from maldnerf.prepare.synthetic import intrinsics_matrix, look_at


def test_dilation_grows_by_radius():
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    grown = dilate(mask, 3)
    assert grown[10, 7] and grown[10, 13] and grown[7, 10] and not grown[10, 6]
    assert not grown[7, 7]  # a disc, not a square
    assert np.array_equal(dilate(mask, 0), mask)


def test_empty_and_full_masks_are_errors():
    with pytest.raises(UserError, match="m.png: mask is empty"):
        check_coverage(np.zeros((4, 4), bool), "m.png")
    with pytest.raises(UserError, match="m.png: mask covers the whole image"):
        check_coverage(np.ones((4, 4), bool), "m.png")


def test_box_corners_and_projection_of_a_box_in_front_of_the_camera():
    box = BoxSettings(center=[0.0, 0.0, -4.0], half_size=[1.0, 1.0, 1.0], yaw=0.0)
    corners = box_corners(box)
    assert corners.shape == (8, 3) and np.allclose(corners.mean(0), [0, 0, -4])
    c2w = look_at(np.zeros(3), np.array([0.0, 0.0, -1.0]))
    k = intrinsics_matrix(100, 100, 90.0)  # focal 50 px
    mask = project_box(corners, c2w, k, 100, 100)
    # The front face at depth 3 spans +-1 unit: +-50/3 px around the centre.
    cols = np.flatnonzero(mask[50])
    assert abs(cols.min() - (50 - 50 / 3)) <= 1.5 and abs(cols.max() - (50 + 50 / 3)) <= 1.5
    behind = BoxSettings(center=[0.0, 0.0, 4.0], half_size=[1.0, 1.0, 1.0])
    assert not project_box(box_corners(behind), c2w, k, 100, 100).any()


def test_masks_stage_outputs(synthetic_scene, synthetic_masks):
    info = json.loads((synthetic_masks / "masks.json").read_text())
    masks = load_masks(synthetic_masks)
    assert len(masks.train) == 24 and len(masks.test) == 8 and masks.dilation == 5
    assert all(0.05 < v < 0.4 for v in info["coverage"].values())
    assert (synthetic_masks / "contact_sheet.png").is_file()


def test_box_masks_match_exact_masks(synthetic_scene, tmp_path):
    known = synthetic_scene / "scene" / "known_poses.json"
    run(
        MaskSettings(dilation=0, source="scene_box"),
        known,
        synthetic_scene / "scene",
        tmp_path / "box",
    )
    run(MaskSettings(dilation=0), known, synthetic_scene / "scene", tmp_path / "files")
    box, files = load_masks(tmp_path / "box"), load_masks(tmp_path / "files")
    ious = [
        (box.train[n] & files.train[n]).sum() / (box.train[n] | files.train[n]).sum()
        for n in files.train
    ]
    assert min(ious) > 0.9  # the object is the box, up to pixel rasterisation


def test_scene_box_follows_colmap_poses_into_their_own_frame(
    synthetic_scene, synthetic_poses, tmp_path
):
    """COLMAP's frame has its own scale and orientation: the scene's box is mapped into it."""
    estimated = synthetic_poses / "transforms.json"
    run(
        MaskSettings(dilation=0, source="scene_box"),
        estimated,
        synthetic_scene / "scene",
        tmp_path / "b",
    )
    box = load_masks(tmp_path / "b")
    exact = {f.name: read_mask(f.mask) for f in load_transforms(estimated).split("train")}
    ious = [(box.train[n] & m).sum() / (box.train[n] | m).sum() for n, m in exact.items()]
    assert min(ious) > 0.85  # exact up to rasterisation and the ~0.1% pose error


def test_a_box_outside_every_view_is_a_one_line_error(synthetic_scene, tmp_path):
    known = synthetic_scene / "scene" / "known_poses.json"
    away = BoxSettings(center=[0.0, 0.0, 50.0], half_size=[0.1, 0.1, 0.1])
    with pytest.raises(UserError, match="the box projects outside this view"):
        run(MaskSettings(source="box", box=away), known, synthetic_scene / "scene", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_masks_stage_rejects_masks_that_dilate_to_everything(synthetic_scene, tmp_path):
    known = synthetic_scene / "scene" / "known_poses.json"
    with pytest.raises(UserError, match="lower masks.dilation"):
        run(MaskSettings(dilation=200), known, synthetic_scene / "scene", tmp_path / "masks")
    assert not (tmp_path / "masks").exists()


def test_scene_box_needs_a_scene_with_a_box(tmp_path, synthetic_scene):
    import shutil

    scene = tmp_path / "scene"
    shutil.copytree(synthetic_scene / "scene", scene)
    manifest = json.loads((scene / "scene.json").read_text())
    manifest["object_box"] = None
    (scene / "scene.json").write_text(json.dumps(manifest))
    cameras = load_transforms(scene / "known_poses.json")
    assert cameras.frames
    with pytest.raises(UserError, match="masks.source: scene_box"):
        run(MaskSettings(source="scene_box"), scene / "known_poses.json", scene, tmp_path / "m")
