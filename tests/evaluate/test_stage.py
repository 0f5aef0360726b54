"""The evaluate stage end to end on small scenes written to disk."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evaluate_helpers import SceneFiles, make_scene, tiny_backbones
from maldnerf.errors import UserError
from maldnerf.evaluate.stage import (
    METRICS,
    EvaluateSettings,
    features_path,
    preview_path,
    run,
)
from maldnerf.settings import from_dict


@pytest.fixture
def toy_scene(tmp_path) -> SceneFiles:
    return make_scene(tmp_path / "toy")


NO_WEIGHTS = {
    "alexnet_weights": "/nonexistent/alexnet-owt-7be5be79.pth",
    "inception_weights": "/nonexistent/inception-2015-12-05.pt",
    "device": "cpu",
}


def _run(files, output, backbones=None, transforms=None, **settings):
    run(
        from_dict(EvaluateSettings, {**NO_WEIGHTS, **settings}),
        files.scene,
        files.masks,
        files.render,
        files.nerf,
        output,
        backbones=backbones,
        transforms=transforms,
    )
    return json.loads(output.read_text())


def test_metrics_file_without_weights_has_known_psnr_and_reasons(toy_scene, tmp_path):
    output = tmp_path / "metrics" / "full.json"
    data = _run(toy_scene, output)
    assert data["variant"] == "full" and data["scene"] == "toy"
    assert data["n_views"] == 3 and data["n_views_masked"] == 3
    assert set(data["means"]) == set(METRICS)
    # Offset of 25 levels inside the mask, identical outside.
    assert data["means"]["psnr_masked"] == pytest.approx(20 * math.log10(255 / 25), abs=1e-4)
    assert data["means"]["psnr_outside"] == pytest.approx(100.0)
    assert data["means"]["ssim_outside"] < 1.0  # the window reaches across the mask's edge
    assert data["means"]["ssim_masked"] < data["means"]["ssim_outside"]
    assert [v["name"] for v in data["views"]] == toy_scene.names
    for metric in ("lpips", "m_lpips", "fid", "kid"):
        assert data["means"][metric] is None
        assert "not found at /nonexistent" in data["missing"][metric]
    # Weight-free perceptual metrics are filled without any weights; the render differs from the
    # ground truth only inside the mask, so the masked and crop forms agree.
    for metric in ("haarpsi", "gmsd", "ms_ssim"):
        for column in (metric, f"{metric}_masked", f"m_{metric}"):
            assert data["means"][column] is not None and column not in data["missing"]
        assert data["means"][f"{metric}_masked"] == pytest.approx(data["means"][f"m_{metric}"])
    assert 0 < data["means"]["haarpsi_masked"] < data["means"]["haarpsi"] < 1
    assert data["means"]["gmsd_masked"] > data["means"]["gmsd"] > 0
    assert data["perceptual"]["library"].startswith("piq ")
    assert data["perceptual"]["ms_ssim_scales"] == {
        "ms_ssim": [3],  # 64x48: 3 of the 5 scales fit
        "ms_ssim_masked": [2],  # the 32x32 crop: 2
        "m_ms_ssim": [2],
    }
    assert (data["train_seconds"], data["nerf_seconds"], data["idu_seconds"]) == (12.5, 9.5, 2.5)
    assert not {"train_seconds", "nerf_seconds", "idu_seconds"} & set(data["missing"])
    assert data["backbones"]["lpips"] is None and data["features"] is None
    with np.load(features_path(output)) as stored:
        assert stored["render"].size == 0
    assert preview_path(output).is_file()


def test_tiny_backbones_fill_every_metric_plumbing(toy_scene, tmp_path):
    """PLUMBING: random tiny LPIPS/Inception networks injected; checks shapes and flow only."""
    output = tmp_path / "metrics" / "full.json"
    backbones = tiny_backbones()
    data = _run(toy_scene, output, backbones=backbones)
    assert all(data["means"][m] is not None for m in METRICS), data["missing"]
    assert [m for m in data["missing"] if m in METRICS] == []
    assert all(v["lpips"] is not None and v["m_lpips"] is not None for v in data["views"])
    assert data["backbones"]["inception"]["path"].startswith("TEST: random weights")
    # Inception saw 299x299 clean-fid resized images, renders and ground truth.
    assert set(backbones.inception.calls) == {(3, 3, 299, 299)}
    with np.load(features_path(output)) as stored:
        assert stored["render"].shape == stored["ground_truth"].shape == (3, 16)
        assert list(stored["names"]) == toy_scene.names
    assert data["features"] == features_path(output).name


def test_identical_render_gives_zero_lpips_plumbing(tmp_path):
    """PLUMBING: LPIPS of a render equal to the ground truth is 0 with any weights."""
    files = make_scene(tmp_path / "same", offset=0)
    data = _run(files, tmp_path / "m" / "v.json", backbones=tiny_backbones())
    assert data["means"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert data["means"]["m_lpips"] == pytest.approx(0.0, abs=1e-6)
    assert data["means"]["ssim"] == pytest.approx(1.0)
    assert data["means"]["psnr"] == pytest.approx(100.0)


def test_no_test_masks_leave_the_masked_metrics_empty(tmp_path):
    files = make_scene(tmp_path / "nomask", masks=False)
    data = _run(files, tmp_path / "m" / "v.json", backbones=tiny_backbones())
    for metric in (
        "psnr_masked",
        "psnr_outside",
        "ssim_masked",
        "ssim_outside",
        "m_lpips",
        "haarpsi_masked",
        "m_gmsd",
        "m_ms_ssim",
    ):
        assert data["means"][metric] is None
        assert "mask" in data["missing"][metric]
    assert data["means"]["haarpsi"] is not None
    assert data["means"]["psnr"] is not None and data["means"]["lpips"] is not None


def test_disabled_metrics_are_missing_as_disabled(toy_scene, tmp_path):
    data = _run(toy_scene, tmp_path / "m" / "v.json", metrics=["ssim", "fid"])
    assert data["means"]["ssim"] is not None and data["means"]["psnr"] is None
    assert (
        data["missing"]["psnr"] == data["missing"]["psnr_masked"] == "disabled in evaluate.metrics"
    )
    assert data["missing"]["lpips"] == "disabled in evaluate.metrics"
    for column in ("ms_ssim", "ms_ssim_masked", "m_ms_ssim", "haarpsi", "m_gmsd"):
        assert data["missing"][column] == "disabled in evaluate.metrics"
    assert data["means"]["ssim"] is not None and data["perceptual"] is None
    assert "not found" in data["missing"]["fid"]


def test_a_missing_render_is_an_error_naming_the_file(toy_scene, tmp_path):
    (toy_scene.render / "test" / "t01.png").unlink()
    output = tmp_path / "m" / "v.json"
    with pytest.raises(UserError, match=r"render/test/t01.png: render of test view t01 not found"):
        _run(toy_scene, output)
    assert not output.exists()


def test_a_render_of_the_wrong_size_is_an_error(toy_scene, tmp_path):
    from PIL import Image

    Image.new("RGB", (10, 10)).save(toy_scene.render / "test" / "t00.png")
    with pytest.raises(UserError, match="t00.png: render is 10x10, ground truth .* is 64x48"):
        _run(toy_scene, tmp_path / "m" / "v.json")


def test_a_truncated_weight_file_stops_the_stage(toy_scene, tmp_path):
    bad = tmp_path / "inception-2015-12-05.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="inception-2015-12-05.pt: cannot load Inception weights"):
        _run(toy_scene, tmp_path / "m" / "v.json", inception_weights=str(bad), metrics=["fid"])


def test_settings_are_checked():
    with pytest.raises(UserError, match="ssim_window"):
        from_dict(EvaluateSettings, {"ssim_window": 10}, "evaluate")
    with pytest.raises(UserError, match="evaluate.metrics"):
        from_dict(EvaluateSettings, {"metrics": ["psnr", "bogus"]}, "evaluate")
    with pytest.raises(UserError, match="device"):
        from_dict(EvaluateSettings, {"device": "tpu"}, "evaluate")


def test_command_line_glue(toy_scene, tmp_path):
    import argparse

    from maldnerf.evaluate.commands import (
        add_evaluate_arguments,
        add_table_arguments,
        evaluate,
        table,
    )

    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    output = tmp_path / "results" / "toy" / "metrics" / "full.json"
    args = parser.parse_args(
        ["--scene", str(toy_scene.scene), "--masks", str(toy_scene.masks)]
        + ["--render", str(toy_scene.render), "--nerf", str(toy_scene.nerf)]
        + ["--output", str(output), "--settings", json.dumps({**NO_WEIGHTS, "metrics": ["psnr"]})]
    )
    evaluate(args)
    assert json.loads(output.read_text())["means"]["psnr"] > 20
    parser = argparse.ArgumentParser()
    add_table_arguments(parser)
    csv_path = tmp_path / "results" / "table.csv"
    table(
        parser.parse_args(
            ["--metrics", str(output), "--variants", "full", "--output", str(csv_path)]
        )
    )
    assert csv_path.read_text().splitlines()[1].startswith("full,1,3,")


def test_ground_truth_comes_from_the_poses_file_when_given(toy_scene, tmp_path):
    """With undistorted images the renders match the undistorted test views, not the originals."""
    from PIL import Image

    from maldnerf.cameras import Cameras, Frame, write_transforms

    frames = []
    for name in toy_scene.names:
        render = np.asarray(Image.open(toy_scene.render / "test" / f"{name}.png"))
        path = tmp_path / "poses" / "undistorted" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render).save(path)  # the render is exact against this ground truth
        frames.append(Frame(name, "test", path, None, np.eye(4), 0.1, 10.0))
    h, w = render.shape[:2]
    transforms = write_transforms(
        tmp_path / "poses" / "transforms.json", Cameras(w, h, 50.0, 50.0, w / 2, h / 2, frames)
    )
    data = _run(toy_scene, tmp_path / "m" / "v.json", transforms=transforms)
    assert data["means"]["psnr_masked"] == pytest.approx(100.0)
    frames.pop()
    write_transforms(transforms, Cameras(w, h, 50.0, 50.0, w / 2, h / 2, frames))
    with pytest.raises(UserError, match="no test frame for view"):
        _run(toy_scene, tmp_path / "m2" / "v.json", transforms=transforms)


def test_masked_lpips_sees_only_the_mask_bounding_box_plumbing(tmp_path):
    """PLUMBING: a render that differs only outside the mask's box has M-LPIPS 0, LPIPS > 0;
    one that differs inside the box has M-LPIPS > 0."""
    from PIL import Image

    files = make_scene(tmp_path / "box", offset=0)  # mask rows 12:24, columns 21:32 of 64x48

    def shift(rows: slice, cols: slice, folder) -> None:
        for name in files.names:
            path = files.render / "test" / f"{name}.png"
            image = np.asarray(Image.open(path)).copy()
            image[rows, cols] = 255 - image[rows, cols]
            Image.fromarray(image).save(folder / "test" / f"{name}.png")

    outside = tmp_path / "outside"
    (outside / "test").mkdir(parents=True)
    shift(slice(40, 48), slice(50, 64), outside)  # beyond the box grown to 32 px a side
    inside = tmp_path / "inside"
    (inside / "test").mkdir(parents=True)
    shift(slice(12, 24), slice(21, 32), inside)
    backbones = tiny_backbones()
    results = {}
    for label, render in (("outside", outside), ("inside", inside)):
        output = tmp_path / label / "v.json"
        run(
            from_dict(EvaluateSettings, NO_WEIGHTS),
            files.scene,
            files.masks,
            render,
            None,
            output,
            backbones=backbones,
        )
        results[label] = json.loads(output.read_text())["means"]
    assert results["outside"]["m_lpips"] == pytest.approx(0.0, abs=1e-6)
    assert results["outside"]["lpips"] > 1e-4
    assert results["inside"]["m_lpips"] > 1e-4


def test_images_too_small_for_a_perceptual_metric_leave_it_empty_with_the_reason(tmp_path):
    files = make_scene(tmp_path / "small", size=(20, 15))
    data = _run(files, tmp_path / "m" / "v.json")
    assert data["means"]["haarpsi"] is None and data["means"]["ms_ssim"] is None
    assert data["missing"]["haarpsi"] == (
        "the image needs at least 16 px a side, the image is 20x15 (views t00, t01, t02)"
    )
    assert "raise evaluate.m_lpips_min_size" in data["missing"]["m_haarpsi"]
    assert data["means"]["gmsd"] is not None and data["means"]["psnr"] is not None
