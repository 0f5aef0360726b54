"""The bad-input catalogue, each case run through the real command line or workflow.

A user mistake gives exit status 2 and exactly one ``error:`` line (the last on stderr, no
traceback) that names the file or setting and the fix, and leaves no output a later run would
accept. Inputs that can be converted safely (grayscale, RGBA, 16-bit, EXIF-rotated images) are
converted with a warning. The command-line runs of a module happen a few at a time (one
fixture), each case is then checked by its own test.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers import write_plain_scene
from reliability_helpers import (
    as_json,
    assert_no_output,
    cli_env,
    run_all,
    run_cli,
    smooth_image,
    tiny_customize_settings,
    tiny_nerf_settings,
    user_error,
    write_torch_file,
)
from workflow_helpers import shipped_config, snakemake, write_config

Build = Callable[[Path, dict[str, Path]], tuple[list[Any], Path, dict[str, str]]]


@dataclass
class Case:
    """One catalogue entry: how to provoke it and what the user must see."""

    id: str
    what: str
    build: Build
    expect: tuple[str, ...]
    converted: bool = False
    check: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------- scene folders


def _folder_case(mutate: Callable[[Path], None], **settings: Any) -> Build:
    """``maldnerf prepare`` of a plain-layout folder (4+2 views, 64x48) after ``mutate``."""

    def build(folder: Path, scene: dict[str, Path]):
        source = write_plain_scene(folder / "src")
        mutate(source)
        output = folder / "out"
        args = ["prepare", "--name", "x", "--output", output]
        return [*args, "--settings", as_json({"source": str(source), **settings})], output, {}

    return build


def _image(source: Path, name: str = "v01") -> np.ndarray:
    return np.asarray(Image.open(source / "images" / f"{name}.png"))


def _grayscale(s: Path) -> None:
    Image.fromarray(_image(s)[..., 0]).save(s / "images" / "v01.png")


def _rgba(s: Path) -> None:
    rgba = np.dstack([_image(s), np.full((48, 64), 255, np.uint8)])
    rgba[:, :32, 3] = 0  # left half transparent
    Image.fromarray(rgba).save(s / "images" / "v01.png")


def _sixteen_bit(s: Path) -> None:
    gray = _image(s)[..., 0].astype(np.uint16) * 257
    Image.fromarray(gray).save(s / "images" / "v01.png")


def _exif_rotated(s: Path) -> None:
    """v01 as a camera JPEG: pixels stored portrait, EXIF says rotate 90 degrees clockwise."""
    displayed = smooth_image(48, 64)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(displayed, k=1)).save(s / "images" / "v01.jpg", exif=exif, quality=98)
    (s / "images" / "v01.png").unlink()


def _check_exif(folder: Path) -> None:
    image = np.asarray(Image.open(folder / "out" / "images" / "v01.png")).astype(float)
    assert image.shape == (48, 64, 3)
    assert np.abs(image - smooth_image(48, 64)).mean() < 3.0


def _check_grayscale(folder: Path) -> None:
    out = np.asarray(Image.open(folder / "out" / "images" / "v01.png"))
    src = np.asarray(Image.open(folder / "src" / "images" / "v01.png"))
    assert out.shape == (48, 64, 3) and np.array_equal(out[..., 1], src)


def _check_rgba(folder: Path) -> None:
    out = np.asarray(Image.open(folder / "out" / "images" / "v01.png"))
    src = np.asarray(Image.open(folder / "src" / "images" / "v01.png"))
    assert out.shape == (48, 64, 3)
    assert not out[:, :32].any() and np.array_equal(out[:, 32:], src[:, 32:, :3])


def _check_sixteen_bit(folder: Path) -> None:
    out = np.asarray(Image.open(folder / "out" / "images" / "v01.png"))
    src = np.asarray(Image.open(folder / "src" / "images" / "v01.png")) // 257
    assert out.shape == (48, 64, 3) and np.array_equal(out[..., 2], src)


def _poses_file(s: Path, names: list[str], bad: str | None = None) -> None:
    frames = []
    for index, name in enumerate(names):
        matrix = np.eye(4)
        matrix[0, 3] = 0.1 * index
        if name == bad:
            matrix[1, 1] = np.nan
        folder = "images" if name.startswith("v") else "test"
        frames.append({"file_path": f"{folder}/{name}.png", "transform_matrix": matrix.tolist()})
    (s / "transforms.json").write_text(json.dumps({"fl_x": 60.0, "frames": frames}))


ALL_VIEWS = ["v00", "v01", "v02", "v03", "t00", "t01"]

FOLDER_CASES = [
    Case(
        "corrupt_image",
        "corrupt image file",
        _folder_case(lambda s: (s / "images" / "v01.png").write_bytes(b"\x89PNG\r\n\x1a\n...")),
        ("images/v01.png: cannot read image", "replace or remove the file"),
    ),
    Case(
        "grayscale_image",
        "grayscale image",
        _folder_case(_grayscale),
        ("v01.png: grayscale image converted to RGB",),
        converted=True,
        check=_check_grayscale,
    ),
    Case(
        "rgba_image",
        "RGBA image",
        _folder_case(_rgba),
        ("v01.png: alpha channel dropped (composited on black)",),
        converted=True,
        check=_check_rgba,
    ),
    Case(
        "sixteen_bit_image",
        "16-bit image",
        _folder_case(_sixteen_bit),
        ("v01.png: I;16 image converted to 8 bits per channel",),
        converted=True,
        check=_check_sixteen_bit,
    ),
    Case(
        "exif_rotated_jpeg",
        "EXIF-rotated JPEG",
        _folder_case(_exif_rotated),
        ("v01.jpg: EXIF orientation 6 applied (64x48 as displayed)",),
        converted=True,
        check=_check_exif,
    ),
    Case(
        "mixed_sizes",
        "images of mixed sizes",
        _folder_case(
            lambda s: (
                Image.open(s / "images" / "v02.png").resize((80, 60)).save(s / "images/v02.png")
            )
        ),
        ("images/v02.png: size 80x60 differs from v00.png (64x48)", "must have the same size"),
    ),
    Case(
        "mask_missing",
        "mask missing",
        _folder_case(lambda s: (s / "masks" / "v01.png").unlink()),
        ("masks: no mask for training image(s) v01.png", "add a mask with the same base name"),
    ),
    Case(
        "mask_wrong_size",
        "mask of the wrong size",
        _folder_case(lambda s: Image.new("L", (32, 24), 255).save(s / "masks" / "v01.png")),
        ("masks/v01.png: mask is 32x24 but its image is 64x48", "must match their image's size"),
    ),
    Case(
        "mask_empty",
        "empty mask",
        _folder_case(lambda s: Image.new("L", (64, 48)).save(s / "masks" / "v01.png")),
        ("masks/v01.png: mask is empty", "mark the object in white (255)"),
    ),
    Case(
        "mask_full",
        "mask covering the whole image",
        _folder_case(lambda s: Image.new("L", (64, 48), 255).save(s / "masks" / "v01.png")),
        ("masks/v01.png: mask covers the whole image", "mark only the object"),
    ),
    Case(
        "mask_not_binary",
        "non-binary mask (soft matte)",
        _folder_case(
            lambda s: Image.fromarray(
                np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
            ).save(s / "masks" / "v01.png")
        ),
        ("masks/v01.png: mask is not binary", "object white (255) and the rest black (0)"),
    ),
    Case(
        "mask_name_matches_no_image",
        "mask naming that matches no image",
        _folder_case(lambda s: (s / "masks" / "v01.png").rename(s / "masks" / "view01.png")),
        ("mask(s) view01 match no image", "same base name as their image"),
    ),
    Case(
        "too_few_views",
        "scene folder with too few views",
        _folder_case(
            lambda s: [
                (s / d / f"v0{i}.png").unlink() for i in (1, 2, 3) for d in ("images", "masks")
            ]
        ),
        ("images: 1 training image(s), at least 3 needed", "capture more views"),
    ),
    Case(
        "poses_file_lacks_images",
        "poses file that lacks some images",
        _folder_case(lambda s: _poses_file(s, ALL_VIEWS[:3])),
        ("transforms.json: no pose for image(s) t00, t01, v03", "use 'poses: colmap'"),
    ),
    Case(
        "poses_file_non_finite",
        "poses file with a non-finite matrix",
        _folder_case(lambda s: _poses_file(s, ALL_VIEWS, bad="v02")),
        ("transforms.json: pose of view v02 is not a finite 4x4 matrix", "fix or remove it"),
    ),
]


# ---------------------------------------------------------------------------- later stages


def _colmap_cannot_register(folder: Path, scene: dict[str, Path]):
    """Random-noise photos: nothing for COLMAP to match."""
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as prepare

    source = write_plain_scene(folder / "src")
    prepare(PrepareSettings(source=str(source)), "noise", folder / "scene")
    output = folder / "poses"
    return ["poses", "--scene", folder / "scene", "--output", output], output, {}


def _transforms_copy(folder: Path, scene: dict[str, Path], change: Callable[[dict], None]) -> Path:
    """The scene's transforms.json with absolute paths, changed by ``change``."""
    data = json.loads(scene["transforms"].read_text())
    base = scene["transforms"].parent
    for frame in data["frames"]:
        for key in ("file_path", "mask_path"):
            if key in frame:
                frame[key] = str((base / frame[key]).resolve())
    change(data)
    path = folder / "transforms.json"
    path.write_text(json.dumps(data))
    return path


def _transforms_non_finite(folder: Path, scene: dict[str, Path]):
    def change(data: dict) -> None:
        data["frames"][1]["transform_matrix"][0][3] = float("nan")

    transforms = _transforms_copy(folder, scene, change)
    output = folder / "masks"
    args = ["masks", "--scene", scene["scene"], "--transforms", transforms, "--output", output]
    return args, output, {}


def _train_args(folder: Path, scene: dict[str, Path], settings: Any, **paths: Path) -> list:
    return [
        "train",
        "--transforms",
        paths.get("transforms", scene["transforms"]),
        "--masks",
        paths.get("masks", scene["masks"]),
        "--targets",
        scene["targets"],
        "--customization",
        "none",
        "--output",
        folder / "nerf",
        "--resume-dir",
        folder / "resume",
        "--settings",
        settings if isinstance(settings, str) else as_json(settings),
    ]


def _transforms_lack_a_view(folder: Path, scene: dict[str, Path]):
    def change(data: dict) -> None:
        data["frames"] = [f for f in data["frames"] if f["name"] != "train_002"]

    transforms = _transforms_copy(folder, scene, change)
    args = _train_args(folder, scene, tiny_nerf_settings(), transforms=transforms)
    return args, folder / "nerf", {}


def _train_with_a_full_mask(folder: Path, scene: dict[str, Path]):
    """A masks folder (written by hand, past the masks stage's checks) with one full mask."""
    from PIL import Image

    masks = folder / "masks"
    shutil.copytree(scene["masks"], masks)
    first = sorted((masks / "train").glob("*.png"))[0]
    size = Image.open(first).size
    Image.new("L", size, 255).save(first)
    return _train_args(folder, scene, tiny_nerf_settings(), masks=masks), folder / "nerf", {}


def _train_settings(settings: Any) -> Build:
    def build(folder: Path, scene: dict[str, Path]):
        return _train_args(folder, scene, settings), folder / "nerf", {}

    return build


def _customize(model: str | Callable[[Path], Path]) -> Build:
    """``maldnerf customize`` with ``diffusion.model`` set to ``model`` (or a folder built)."""

    def build(folder: Path, scene: dict[str, Path]):
        name = model if isinstance(model, str) else str(model(folder))
        settings = tiny_customize_settings(Path(name))
        output = folder / "custom"
        args = [
            "customize",
            "--transforms",
            scene["transforms"],
            "--masks",
            scene["masks"],
            "--output",
            output,
            "--resume-dir",
            folder / "resume",
            "--settings",
            as_json(settings),
        ]
        return args, output, {"HF_HOME": str(folder / "hf_home")}

    return build


def _empty_folder(folder: Path) -> Path:
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_bytes(b"\0" * 16)
    return folder / "model"


def _text_to_image_folder(folder: Path) -> Path:
    """A diffusers folder whose UNet takes 4 channels (text-to-image, not inpainting)."""
    model = folder / "sd-text-to-image"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (model / "unet" / "config.json").write_text('{"in_channels": 4, "out_channels": 4}')
    return model


def _customization_folder(folder: Path) -> Path:
    (folder / "scene_lora").mkdir()
    (folder / "scene_lora" / "customization.json").write_text('{"base_model": "tiny"}')
    return folder / "scene_lora"


def _inpaint_with_wrong_customization(folder: Path, scene: dict[str, Path]):
    output = folder / "inpaint"
    args = [
        "inpaint",
        "--transforms",
        scene["transforms"],
        "--masks",
        scene["masks"],
        "--customization",
        scene["masks"],
        "--output",
        output,
        "--settings",
        as_json({"diffusion": {"resolution": 32}}),
    ]
    return args, output, {}


def _evaluate(settings: Callable[[Path], dict[str, Any]]) -> Build:
    """``maldnerf evaluate`` of renders equal to the ground truth, with ``settings``."""

    def build(folder: Path, scene: dict[str, Path]):
        shutil.copytree(scene["scene"] / "test", folder / "render" / "test")
        output = folder / "metrics" / "full.json"
        args = [
            "evaluate",
            "--scene",
            scene["scene"],
            "--masks",
            scene["masks"],
            "--render",
            folder / "render",
            "--output",
            output,
            "--settings",
            as_json(settings(folder)),
        ]
        return args, output, {}

    return build


def _truncated_alexnet(folder: Path, name: str = "alexnet.pth") -> Path:
    import torch

    tensors = {"features.0.weight": torch.randn(64, 3, 11, 11), "features.0.bias": torch.zeros(64)}
    return write_torch_file(folder / name, tensors, truncate_to=0.5)


def _truncated_inception(folder: Path) -> Path:
    path = folder / "inception-2015-12-05.pt"
    write_torch_file(path, {"layers": [0.0] * 1000}, truncate_to=0.4)
    return path


def _train_lpips_truncated(folder: Path, scene: dict[str, Path]):
    hub = folder / "torch" / "hub" / "checkpoints"
    _truncated_alexnet(hub, "alexnet-owt-7be5be79.pth")
    settings = tiny_nerf_settings(inpainted_loss="lpips")
    return (
        _train_args(folder, scene, settings),
        folder / "nerf",
        {"TORCH_HOME": str(folder / "torch")},
    )


STAGE_CASES = [
    Case(
        "colmap_cannot_register",
        "views COLMAP cannot register",
        _colmap_cannot_register,
        ("COLMAP registered 0 of 6 views", "not registered: v00", "colmap.matcher: sequential"),
    ),
    Case(
        "transforms_non_finite",
        "poses file (transforms.json) with a non-finite matrix, given to a later stage",
        _transforms_non_finite,
        ("transforms.json: frame train_001 has a non-finite", "rerun the poses stage"),
    ),
    Case(
        "transforms_lack_a_view",
        "poses file (transforms.json) lacking a view that has a mask",
        _transforms_lack_a_view,
        ("no camera pose for training view(s) train_002", "rerun the poses stage"),
    ),
    Case(
        "settings_unknown_key",
        "settings with an unknown key",
        _train_settings({"nerf": {"iteration": 5}}),
        ("--settings.nerf: unknown setting(s) iteration; known: adversarial",),
    ),
    Case(
        "settings_wrong_type",
        "settings with a wrong type",
        _train_settings({"nerf": {"iterations": "5"}}),
        ("--settings.nerf.iterations: expected an integer, got '5'",),
    ),
    Case(
        "settings_negative_iterations",
        "negative iteration count",
        _train_settings({"nerf": {"iterations": -10}}),
        ("--settings.nerf: iterations must be >= 1",),
    ),
    Case(
        "settings_not_json",
        "settings that are not JSON",
        _train_settings("{nerf: iterations=5}"),
        ("--settings: not valid JSON",),
    ),
    Case(
        "model_unavailable_offline",
        "a model id that is unavailable offline",
        _customize("someone/not-cached"),
        (
            "diffusion.model: 'someone/not-cached' is neither in the local Hugging Face cache",
            "give a local diffusers folder, or use 'tiny'",
        ),
    ),
    Case(
        "model_folder_not_diffusers",
        "diffusion folder of the wrong kind: not a diffusers folder",
        _customize(_empty_folder),
        ("is not a diffusers model folder (no model_index.json)", "pipeline.save_pretrained"),
    ),
    Case(
        "model_folder_text_to_image",
        "diffusion folder of the wrong kind: a text-to-image model",
        _customize(_text_to_image_folder),
        ("UNet with 4 input channels, not an inpainting model", "use an inpainting checkpoint"),
    ),
    Case(
        "model_folder_is_a_customization",
        "diffusion folder of the wrong kind: a customisation given as the model",
        _customize(_customization_folder),
        ("is a scene customisation (output of the customize stage), not a base model",),
    ),
    Case(
        "customization_folder_wrong_kind",
        "diffusion folder of the wrong kind: not a customisation",
        _inpaint_with_wrong_customization,
        ("not a customisation folder (no customization.json)", "or 'none' for the base model"),
    ),
    Case(
        "lpips_weights_truncated",
        "LPIPS (AlexNet) weight file that is truncated",
        _evaluate(lambda f: {"metrics": ["lpips"], "alexnet_weights": str(_truncated_alexnet(f))}),
        (
            "alexnet.pth: cannot load AlexNet weights",
            "truncated or corrupt: delete it and download it again from https://download.pytorch.org",
        ),
    ),
    Case(
        "inception_weights_truncated",
        "Inception weight file that is truncated",
        _evaluate(
            lambda f: {"metrics": ["fid"], "inception_weights": str(_truncated_inception(f))}
        ),
        ("inception-2015-12-05.pt: cannot load Inception weights", "download it again from"),
    ),
    Case(
        "lpips_loss_weights_truncated",
        "truncated AlexNet weights for the LPIPS training loss",
        _train_lpips_truncated,
        ("alexnet-owt-7be5be79.pth: cannot load AlexNet weights", "truncated or corrupt"),
    ),
    Case(
        "patch_larger_than_image",
        "adversarial patches larger than the image (zero-size patch grid)",
        _train_settings(tiny_nerf_settings(patch_size=4096)),
        ("nerf.patch_size: 4096 px patches do not fit in",),
    ),
    Case(
        "mask_full_at_train",
        "a training mask that covers the whole image, given to train",
        _train_with_a_full_mask,
        ("mask covers the whole image, nothing is left to reconstruct", "masks.dilation"),
    ),
    Case(
        "training_diverges",
        "NaN/inf loss in training",
        _train_settings(
            tiny_nerf_settings(
                optimizer={"lr": 1e30, "lr_final": 1e30}, max_nonfinite_steps=3, log_every=2
            )
        ),
        ("nerf: the loss was NaN/inf for", "lower nerf.optimizer.lr"),
    ),
]

CASES = FOLDER_CASES + STAGE_CASES


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, tiny_scene) -> dict[str, tuple[Any, Path, Path]]:
    """Every case run once through the CLI: id -> (completed process, output path, folder)."""
    root = tmp_path_factory.mktemp("catalogue")
    jobs, outputs = {}, {}
    for case in CASES:
        folder = root / case.id
        folder.mkdir()
        args, output, env = case.build(folder, tiny_scene)
        jobs[case.id] = lambda args=args, env=env: run_cli(*args, env=cli_env(**env), timeout=300)
        outputs[case.id] = (output, folder)
    results = run_all(jobs)
    return {key: (results[key], *outputs[key]) for key in jobs}


@pytest.mark.parametrize("case", [c for c in CASES if not c.converted], ids=lambda c: c.id)
def test_bad_input_is_one_line_naming_the_fix_and_leaves_no_output(case, catalogue):
    result, output, _ = catalogue[case.id]
    line = user_error(result)
    for fragment in case.expect:
        assert fragment in line, (fragment, line)
    assert_no_output(output)


@pytest.mark.parametrize("case", [c for c in CASES if c.converted], ids=lambda c: c.id)
def test_convertible_input_is_converted_with_a_warning(case, catalogue):
    result, output, folder = catalogue[case.id]
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    for fragment in case.expect:
        assert any(fragment in line for line in warnings), (fragment, warnings)
    assert (output / "scene.json").is_file()
    assert case.check is not None
    case.check(folder)


# ---------------------------------------------------------------------------- config.yaml


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[last] = value

    return change


CONFIG_CASES = {
    "unknown_key": (_set("nerff", {}), "config.yaml: config: unknown setting(s) nerff; known:"),
    "unknown_nested_key": (
        _set("nerf.iteration", 5),
        "config.yaml: nerf: unknown setting(s) iteration; known: adversarial",
    ),
    "wrong_type": (
        _set("nerf.iterations", "many"),
        "config.yaml: nerf.iterations: expected integer, got 'many'",
    ),
    "unknown_variant_in_run_variants": (
        _set("run_variants", ["full", "fulll"]),
        "config.yaml: run_variants: unknown variant(s) fulll; defined: full, no_adv_l1",
    ),
    "unknown_customization_in_variant": (
        _set("variants.full.customization", "scenery"),
        "config.yaml: variants.full.customization: 'scenery' is not one of scene, none",
    ),
    "negative_iterations": (
        _set("nerf.iterations", -100),
        "config.yaml: nerf: iterations must be >= 1",
    ),
    "negative_iterations_in_variant": (
        _set("variants.no_adv_l1.nerf.iterations", -1),
        "config.yaml: variants.no_adv_l1.nerf: iterations must be >= 1",
    ),
    "negative_customize_steps": (
        _set("customizations.scene.steps", -5),
        "config.yaml: customizations.scene: steps must be >= 1",
    ),
}


@pytest.fixture(scope="module")
def config_runs(tmp_path_factory) -> dict[str, tuple[Any, Path]]:
    root = tmp_path_factory.mktemp("configs")
    jobs = {}
    for name, (change, _) in CONFIG_CASES.items():
        config = copy.deepcopy(shipped_config())
        change(config)
        write_config(root / name, config)
        jobs[name] = lambda d=root / name: (snakemake(d, "--dry-run", timeout=300), d)
    return run_all(jobs)


@pytest.mark.workflow
@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_config_mistake_is_one_line_naming_the_setting(name, config_runs):
    result, directory = config_runs[name]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {CONFIG_CASES[name][1]}"] or (
        len(errors) == 1 and errors[0].startswith(f"error: {CONFIG_CASES[name][1]}")
    ), result.stderr
    assert not (directory / "results").exists()
