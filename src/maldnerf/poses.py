"""The ``poses`` stage: camera poses of every view with COLMAP, or from known poses.

COLMAP (through pycolmap): SIFT features with the object pixels masked out (test views lack
the object, so features on it would mislead matching), exhaustive or sequential matching,
incremental mapping, one shared camera. Every training and test view must register in one
model; otherwise the stage stops and lists the views that did not. With a distorting camera
model the images, masks and test views are undistorted (OpenCV, same intrinsics matrix).

Output folder ``results/{scene}/poses/``::

    transforms.json     cameras in the format of :mod:`maldnerf.cameras` (nerfstudio's)
    keep_masks/<name>.png   nerfstudio's ``mask_path`` of each view: 255 = pixel to use, 0 on
                        the object grown by ``colmap.mask_margin`` px (the pixels COLMAP
                        ignores); all 255 in test views (photos without the object)
    colmap/             the sparse COLMAP model (cameras.bin, images.bin, points3D.bin)
    undistorted/        undistorted ``images``, ``object_masks``, ``test`` and
                        ``test_object_masks`` (only for distorting camera models)
    accuracy.json       when the scene has known poses: per-view rotation (degrees) and
                        translation (% of scene extent) errors after a similarity alignment
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from . import atomic
from .cameras import (
    Cameras,
    Frame,
    load_transforms,
    opencv_to_opengl,
    umeyama,
    write_transforms,
)
from .errors import UserError
from .scene import Scene, load_scene
from .settings import require

log = logging.getLogger(__name__)


@dataclass
class ColmapSettings:
    """How COLMAP estimates the poses (config section ``colmap``)."""

    matcher: Literal["exhaustive", "sequential"] = "exhaustive"
    """Exhaustive matching (every pair, best below ~200 views) or sequential (video-like captures)."""
    sequential_overlap: int = 10
    """Sequential matcher: match each view with this many following views."""
    camera_model: Literal["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"] = (
        "SIMPLE_RADIAL"
    )
    """COLMAP camera model shared by all views; views are undistorted when it has distortion."""
    max_features: int = 8192
    """Maximum SIFT features per view."""
    mask_margin: int = 2
    """Grow the object mask by this many pixels before excluding it from feature extraction
    (and from the keep masks, nerfstudio's ``mask_path``, of transforms.json)."""
    seed: int = 0
    """Random seed of COLMAP's RANSAC."""
    bounds_percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])
    """Percentiles of sparse-point depths taken as each view's near/far bounds."""

    def __post_init__(self) -> None:
        require(self.sequential_overlap >= 1, "sequential_overlap must be >= 1")
        require(self.max_features >= 64, "max_features must be >= 64")
        require(self.mask_margin >= 0, "mask_margin must be >= 0")
        require(
            len(self.bounds_percentiles) == 2
            and 0 <= self.bounds_percentiles[0] < self.bounds_percentiles[1] <= 100,
            "bounds_percentiles must be two increasing percentiles in [0, 100]",
        )


@dataclass
class PosesSettings:
    """Settings the poses stage reads."""

    method: Literal["colmap", "known"] = "colmap"
    """``colmap``: structure from motion; ``known``: the poses that came with the scene."""
    colmap: ColmapSettings = field(default_factory=ColmapSettings)
    """COLMAP options, used when ``method`` is ``colmap``."""


def _pycolmap():
    """Import pycolmap after the PNG writers of Pillow and OpenCV.

    pycolmap's wheel carries its own zlib; loaded first, it breaks later PNG writes of Pillow
    and OpenCV in the same process (``free(): invalid pointer``).
    """
    import zlib  # noqa: F401

    import cv2  # noqa: F401
    import pycolmap
    from PIL import Image  # noqa: F401

    return pycolmap


def run(settings: PosesSettings, scene_dir: Path, output: Path) -> None:
    """Write the poses folder for the prepared scene in ``scene_dir``."""
    scene = load_scene(scene_dir)
    with atomic.output_dir(output) as tmp:
        if settings.method == "known":
            if scene.known_poses is None:
                raise UserError(
                    f"{scene.root}: poses: known, but the scene has no transforms.json or "
                    "poses_bounds.npy; add one or use poses: colmap"
                )
            cameras = load_transforms(scene.known_poses)
            add_keep_masks(cameras, tmp / "keep_masks", settings.colmap.mask_margin)
            write_transforms(tmp / "transforms.json", cameras)
        else:
            cameras, points = _run_colmap(settings.colmap, scene, tmp)
            add_keep_masks(cameras, tmp / "keep_masks", settings.colmap.mask_margin)
            write_transforms(tmp / "transforms.json", cameras)
            if scene.known_poses is not None:
                report = pose_accuracy(cameras, load_transforms(scene.known_poses), points)
                atomic.write_json(tmp / "accuracy.json", report)
                log.info(
                    "pose accuracy against the known poses (%d views, after similarity alignment): "
                    "rotation median %.3f deg, max %.3f deg; translation median %.3f%%, max %.3f%% "
                    "of the scene extent (%.3g units)",
                    len(report["views"]),
                    report["rotation_deg"]["median"],
                    report["rotation_deg"]["max"],
                    report["translation_percent"]["median"],
                    report["translation_percent"]["max"],
                    report["scene_extent"],
                )


def keep_mask(cameras: Cameras, frame: Frame, margin: int) -> np.ndarray:
    """The pixels of ``frame`` to use (bool ``(H, W)``): all but its object mask grown by
    ``margin`` px in a training view, all of a test view (a photo without the object)."""
    from .images import read_mask
    from .masks import dilate

    keep = np.ones((cameras.height, cameras.width), bool)
    if frame.split == "train" and frame.mask is not None:
        keep &= ~dilate(read_mask(frame.mask), margin)
    return keep


def add_keep_masks(cameras: Cameras, folder: Path, margin: int) -> None:
    """Write every frame's :func:`keep_mask` to ``folder/<name>.png`` (0/255) and point the
    frame's ``keep_mask`` (transforms.json's ``mask_path``) at it."""
    from .images import write_mask

    for frame in cameras.frames:
        frame.keep_mask = write_mask(
            folder / f"{frame.name}.png", keep_mask(cameras, frame, margin)
        )


def _run_colmap(settings: ColmapSettings, scene: Scene, out: Path) -> tuple[Cameras, np.ndarray]:
    from .images import read_mask
    from .masks import dilate

    pycolmap = _pycolmap()
    import cv2

    work = out / "work"
    image_dir, mask_dir = work / "images", work / "masks"
    image_dir.mkdir(parents=True)
    mask_dir.mkdir()
    for view in scene.views:
        shutil.copyfile(view.image, image_dir / f"{view.name}.png")
        keep = np.full((scene.height, scene.width), 255, np.uint8)
        if view in scene.train and view.mask is not None:
            keep[dilate(read_mask(view.mask), settings.mask_margin)] = 0
        cv2.imwrite(str(mask_dir / f"{view.name}.png.png"), keep)  # COLMAP: <image name>.png

    pycolmap.set_random_seed(settings.seed)
    database = work / "database.db"
    reader = pycolmap.ImageReaderOptions(
        camera_model=settings.camera_model, mask_path=str(mask_dir)
    )
    threads = int(os.environ.get("MALDNERF_THREADS", "-1"))  # -1: all cores
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    extraction.sift.max_num_features = settings.max_features
    pycolmap.extract_features(
        database,
        image_dir,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    if settings.matcher == "exhaustive":
        pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = settings.sequential_overlap
        pycolmap.match_sequential(
            database, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
        )
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    options.random_seed = settings.seed
    models = pycolmap.incremental_mapping(database, image_dir, work / "sparse", options=options)

    names = [v.name for v in scene.views]
    model = max(models.values(), key=lambda m: m.num_reg_images()) if models else None
    registered = (
        {Path(im.name).stem for im in model.images.values() if im.has_pose} if model else set()
    )
    missing = [n for n in names if n not in registered]
    if missing:
        raise UserError(
            f"COLMAP registered {len(names) - len(missing)} of {len(names)} views of {scene.root}; "
            f"not registered: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}. Try photos "
            "with more overlap, colmap.matcher: sequential, a higher colmap.max_features, or poses: known"
        )
    (out / "colmap").mkdir()
    model.write_binary(str(out / "colmap"))
    cameras, points = _cameras_from_model(model, scene, out, settings)
    shutil.rmtree(work)
    return cameras, points


def _cameras_from_model(
    model, scene: Scene, out: Path, settings: PosesSettings
) -> tuple[Cameras, np.ndarray]:
    camera = next(iter(model.cameras.values()))
    params = np.asarray(camera.params, dtype=np.float64)
    model_name = camera.model_name
    if model_name in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = params[0]
        cx, cy = params[1], params[2]
        distortion = list(params[3:])  # none, [k] or [k1, k2]
    else:
        fx, fy, cx, cy = params[:4]
        distortion = list(params[4:8])
    by_name = {Path(im.name).stem: im for im in model.images.values()}
    points = np.array([p.xyz for p in model.points3D.values()], dtype=np.float64).reshape(-1, 3)
    undistort = any(abs(d) > 0 for d in distortion)
    intrinsics = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    frames = []
    low, high = settings.bounds_percentiles
    for view in scene.views:
        image = by_name[view.name]
        cam_from_world = (
            image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        )
        world_to_camera = np.eye(4)
        world_to_camera[:3, :4] = np.asarray(cam_from_world.matrix())
        c2w = opencv_to_opengl(np.linalg.inv(world_to_camera))
        ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
        xyz = np.array([model.points3D[i].xyz for i in ids]).reshape(-1, 3)
        depth = (xyz @ world_to_camera[:3, :3].T + world_to_camera[:3, 3])[:, 2]
        depth = depth[depth > 0]
        if len(depth) < 5:
            depth = (points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3])[:, 2]
            depth = depth[depth > 0]
        near, far = np.percentile(depth, [low, high])
        split = "train" if view in scene.train else "test"
        image_path, mask_path = view.image, view.mask
        if undistort:
            image_path, mask_path = _undistort_view(
                view.image, view.mask, split, out / "undistorted", intrinsics, distortion
            )
        frames.append(
            Frame(view.name, split, image_path, mask_path, c2w, 0.9 * float(near), 1.1 * float(far))
        )
    if undistort:
        log.info(
            "undistorted all views (camera model %s, coefficients %s)",
            model_name,
            ", ".join(f"{d:.4g}" for d in distortion),
        )
    cameras = Cameras(scene.width, scene.height, float(fx), float(fy), float(cx), float(cy), frames)
    return cameras, points


def _undistort_view(
    image: Path,
    mask: Path | None,
    split: str,
    folder: Path,
    intrinsics: np.ndarray,
    distortion: list[float],
) -> tuple[Path, Path | None]:
    import cv2

    from .images import PNG_COMPRESS_LEVEL

    png = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL]
    coefficients = np.zeros(5)  # OpenCV order k1, k2, p1, p2, k3 matches COLMAP's parameters
    coefficients[: len(distortion)] = distortion
    pixels = cv2.imread(str(image), cv2.IMREAD_COLOR)
    h, w = pixels.shape[:2]
    map_x, map_y = cv2.initUndistortRectifyMap(
        intrinsics, coefficients, None, intrinsics, (w, h), cv2.CV_32FC1
    )
    image_dir = folder / ("images" if split == "train" else "test")
    image_dir.mkdir(parents=True, exist_ok=True)
    image_out = image_dir / image.name
    cv2.imwrite(
        str(image_out),
        cv2.remap(pixels, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
        png,
    )
    mask_out = None
    if mask is not None:
        mask_dir = folder / ("object_masks" if split == "train" else "test_object_masks")
        mask_dir.mkdir(parents=True, exist_ok=True)
        mask_out = mask_dir / mask.name
        values = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(
            str(mask_out),
            cv2.remap(values, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE),
            png,
        )
    return image_out, mask_out


def pose_accuracy(estimated: Cameras, known: Cameras, points: np.ndarray) -> dict:
    """Per-view pose errors of ``estimated`` against ``known`` after aligning camera centres.

    Rotation error: angle (degrees) of ``R_known^T · R_aligned``. Translation error: distance
    between aligned and known camera centres, as a percentage of the scene extent — the
    diagonal of the box holding the 2nd–98th percentile of the aligned sparse points.
    """
    names = [f.name for f in estimated.frames]
    est = np.stack([estimated.frame(n).camera_to_world for n in names])
    ref = np.stack([known.frame(n).camera_to_world for n in names])
    scale, rotation, translation = umeyama(est[:, :3, 3], ref[:, :3, 3])
    centres = scale * est[:, :3, 3] @ rotation.T + translation
    rotations = rotation[None] @ est[:, :3, :3]
    relative = np.transpose(ref[:, :3, :3], (0, 2, 1)) @ rotations
    cosine = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    rotation_error = np.degrees(np.arccos(cosine))
    aligned_points = scale * points @ rotation.T + translation
    low, high = np.percentile(aligned_points, [2, 98], axis=0)
    extent = float(np.linalg.norm(high - low))
    translation_error = 100.0 * np.linalg.norm(centres - ref[:, :3, 3], axis=1) / extent

    def summary(values: np.ndarray) -> dict:
        return {
            "median": float(np.median(values)),
            "mean": float(values.mean()),
            "max": float(values.max()),
        }

    return {
        "rotation_deg": summary(rotation_error),
        "translation_percent": summary(translation_error),
        "scene_extent": extent,
        "alignment_scale": scale,
        "views": {
            n: {"rotation_deg": float(r), "translation_percent": float(t)}
            for n, r, t in zip(names, rotation_error, translation_error)
        },
    }
