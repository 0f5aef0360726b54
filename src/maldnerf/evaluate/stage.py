"""The ``evaluate`` stage: score one variant's test-view renders of one scene.

Inputs: the prepared scene (its test views are ground truth *without* the object; with the
poses stage's ``transforms.json`` given, the images its test frames name, which are undistorted
as the renders are when COLMAP's camera model has distortion), the masks stage's folder
(dilated test masks: where the object was), the render stage's folder (``test/<name>.png``, one
per test view, same size as the ground truth) and, optionally, the train stage's folder
(``nerf.json`` for the training times).

Metrics (definitions of PSNR, SSIM and FID/KID in :mod:`.measures`):

``psnr``, ``ssim``
    over the full image;
``psnr_masked``, ``ssim_masked``
    over the dilated mask (the inpainted region); ``psnr_outside``, ``ssim_outside`` over the
    rest. Masked SSIM is the mean of the SSIM map over the mask's pixels;
``lpips``
    LPIPS (AlexNet, v0.1, inputs scaled to [-1, 1]) over the full image;
``m_lpips``
    masked LPIPS as in SPIn-NeRF: LPIPS of the crop of the mask's bounding box (the same box in
    the render and the ground truth), the box grown to at least ``m_lpips_min_size`` pixels a
    side so AlexNet's pooling has something to pool;
``haarpsi``, ``gmsd``, ``ms_ssim``
    weight-free perceptual metrics computed with ``piq`` (definitions, library choice and
    MS-SSIM's scales in :mod:`.perceptual`; HaarPSI and MS-SSIM: higher is better, GMSD: lower)
    over the full image;
``haarpsi_masked``, ``gmsd_masked``, ``ms_ssim_masked``
    the same metric inside the mask: on the M-LPIPS crop (below), with every pixel of the crop
    outside the mask taken from the ground truth in the render too, so only the inpainted pixels
    can differ (judged in their ground-truth surroundings); identical pixels inside the mask give
    the perfect score whatever lies outside it;
``m_haarpsi``, ``m_gmsd``, ``m_ms_ssim``
    the same metric on the M-LPIPS crop of both images as they are (the context ring around the
    mask counts too);
``fid``, ``kid``
    clean-fid FID and KID between the set of renders and the set of ground-truth views of the
    scene (Inception features, clean-fid ``clean`` resizing). The table pools the features of all
    scenes (see :mod:`.table`).

Per-view metrics are averaged over the views that have them (a view whose mask is missing or
empty has no masked or outside metrics). A metric that cannot be computed (weights missing, no test masks,
fewer than two views for FID/KID, an image or crop too small for a perceptual metric, disabled in
``evaluate.metrics``) is ``null`` and its reason is
in ``missing``; never a placeholder number.

Outputs, beside ``output_json = results/{scene}/metrics/{variant}.json``:

``{variant}.json``
    ``scene``, ``variant``, ``n_views``, ``n_views_masked``, ``views`` (per view: ``name``, every
    per-view metric and ``ms_ssim_scales``, the MS-SSIM scales each MS-SSIM column used),
    ``means`` (every metric in :data:`METRICS`, ``null`` when missing), ``missing`` (``{metric: reason}``, also the training times when unknown), ``notes``,
    ``train_seconds``, ``nerf_seconds``, ``idu_seconds`` (see :mod:`.train_time`),
    ``backbones`` (weight file and sha256 prefix of each network used),
    ``perceptual`` (the library and version that computed HaarPSI, GMSD and MS-SSIM, and the
    MS-SSIM scales used per column; ``null`` when none of them is enabled),
    ``features`` and ``preview`` (file names below), ``kid`` (KID subset settings) and
    ``settings``. Written last: its presence means the stage finished.
``{variant}.features.npz``
    ``render`` and ``ground_truth`` Inception features ``(n_views, 2048)`` float32 and ``names``;
    empty arrays when FID/KID were not computed.
``{variant}.preview.png``
    ground truth | mask overlay | render for the first ``preview_views`` test views (see
    :mod:`.sheets`).

Read back with :func:`load_metrics`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import atomic
from ..errors import UserError
from ..settings import require
from . import measures
from .perceptual import PERCEPTUAL
from .train_time import read_train_times

log = logging.getLogger(__name__)

Metric = Literal["psnr", "ssim", "lpips", "m_lpips", "haarpsi", "gmsd", "ms_ssim", "fid", "kid"]

PER_VIEW = (
    "psnr",
    "psnr_masked",
    "psnr_outside",
    "ssim",
    "ssim_masked",
    "ssim_outside",
    "lpips",
    "m_lpips",
    *(column for metric in PERCEPTUAL for column in (metric, f"{metric}_masked", f"m_{metric}")),
)
METRICS = (*PER_VIEW, "fid", "kid")
"""Every metric of a metrics file, in table order."""
MASKED = (
    "psnr_masked",
    "psnr_outside",
    "ssim_masked",
    "ssim_outside",
    "m_lpips",
    *(column for metric in PERCEPTUAL for column in (f"{metric}_masked", f"m_{metric}")),
)
FAMILY = {
    **{column: "psnr" for column in ("psnr", "psnr_masked", "psnr_outside")},
    **{column: "ssim" for column in ("ssim", "ssim_masked", "ssim_outside")},
    **{m: m for m in ("lpips", "m_lpips", "fid", "kid")},
    **{c: m for m in PERCEPTUAL for c in (m, f"{m}_masked", f"m_{m}")},
}
"""The ``evaluate.metrics`` entry that turns each metric column on."""


@dataclass
class EvaluateSettings:
    """Settings the evaluate stage reads."""

    metrics: list[Metric] = field(
        default_factory=lambda: [
            "psnr",
            "ssim",
            "lpips",
            "m_lpips",
            "haarpsi",
            "gmsd",
            "ms_ssim",
            "fid",
            "kid",
        ]
    )
    """Metrics to compute; ``psnr`` and ``ssim`` include their masked and outside forms, ``haarpsi``, ``gmsd`` and ``ms_ssim`` their masked and M-LPIPS-crop forms."""
    device: str = "auto"
    """Device for LPIPS and Inception: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``."""
    alexnet_weights: str | None = None
    """torchvision's ``alexnet-owt-7be5be79.pth``; ``null``: ``$TORCH_HOME/hub/checkpoints/`` (``~/.cache/torch``)."""
    lpips_weights: str | None = None
    """LPIPS linear layers (AlexNet, v0.1); ``null``: ``weights/v0.1/alex.pth`` inside the lpips package."""
    inception_weights: str | None = None
    """clean-fid's ``inception-2015-12-05.pt``; ``null``: ``$TORCH_HOME/hub/checkpoints/``, then ``/tmp/``."""
    require_weights: bool = False
    """Make a missing weight file an error instead of leaving its metrics empty."""
    ssim_window: int = 11
    """Width in pixels of the Gaussian SSIM window (odd)."""
    ssim_sigma: float = 1.5
    """Standard deviation of the Gaussian SSIM window, pixels."""
    m_lpips_min_size: int = 32
    """M-LPIPS (and the masked and crop forms of HaarPSI, GMSD, MS-SSIM): the mask's bounding box is grown to at least this many pixels a side."""
    kid_subsets: int = 100
    """KID: number of random subsets averaged (clean-fid default)."""
    kid_subset_size: int = 1000
    """KID: largest subset size (clean-fid default); smaller sets use all their views."""
    seed: int = 0
    """Seed of the KID subset sampling."""
    batch_size: int = 8
    """Images per batch through LPIPS and Inception."""
    preview_views: int = 4
    """Test views shown in the preview (and so in the table's contact sheets)."""
    preview_width: int = 160
    """Width in pixels of each preview tile."""

    def __post_init__(self) -> None:
        require(len(set(self.metrics)) == len(self.metrics), "metrics lists a metric twice")
        require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "device must be auto, cpu, cuda or cuda:N",
        )
        require(
            self.ssim_window >= 3 and self.ssim_window % 2 == 1, "ssim_window must be odd, >= 3"
        )
        require(self.ssim_sigma > 0, "ssim_sigma must be > 0")
        require(self.m_lpips_min_size >= 0, "m_lpips_min_size must be >= 0")
        require(self.kid_subsets >= 1, "kid_subsets must be >= 1")
        require(self.kid_subset_size >= 2, "kid_subset_size must be >= 2")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.preview_views >= 1, "preview_views must be >= 1")
        require(self.preview_width >= 16, "preview_width must be >= 16")


def features_path(output_json: Path) -> Path:
    """The Inception-features file written beside ``output_json``."""
    return output_json.with_name(f"{output_json.stem}.features.npz")


def preview_path(output_json: Path) -> Path:
    """The preview image written beside ``output_json``."""
    return output_json.with_name(f"{output_json.stem}.preview.png")


@dataclass
class _View:
    name: str
    truth: np.ndarray
    render: np.ndarray
    mask: np.ndarray | None


def _load_views(
    scene_dir: Path, masks_dir: Path, render_dir: Path, transforms: Path | None
) -> tuple[str, list[_View]]:
    from ..cameras import load_transforms
    from ..images import read_image
    from ..masks import load_masks
    from ..scene import load_scene

    scene = load_scene(scene_dir)
    if not scene.test:
        raise UserError(
            f"{scene_dir / 'scene.json'}: the scene has no test views (ground truth without the "
            "object); add test views to the scene source to evaluate it"
        )
    test_masks = load_masks(masks_dir).test
    truth_paths = {view.name: view.image for view in scene.test}
    if transforms is not None:
        frames = {f.name: f for f in load_transforms(transforms).split("test")}
        lacking = sorted(set(truth_paths) - set(frames))
        if lacking:
            raise UserError(
                f"{transforms}: no test frame for view(s) {', '.join(lacking)}; rerun the poses stage"
            )
        truth_paths = {name: frames[name].image for name in truth_paths}
    views = []
    for view in scene.test:
        truth_path = truth_paths[view.name]
        render_path = Path(render_dir) / "test" / f"{view.name}.png"
        if not render_path.is_file():
            raise UserError(
                f"{render_path}: render of test view {view.name} not found; rerun the render stage"
            )
        truth, render = read_image(truth_path), read_image(render_path)
        if render.shape != truth.shape:
            raise UserError(
                f"{render_path}: render is {render.shape[1]}x{render.shape[0]}, ground truth "
                f"{truth_path} is {truth.shape[1]}x{truth.shape[0]}; rerun the render stage"
            )
        mask = test_masks.get(view.name)
        if mask is not None and mask.shape != truth.shape[:2]:
            raise UserError(
                f"{Path(masks_dir) / 'test' / (view.name + '.png')}: mask is "
                f"{mask.shape[1]}x{mask.shape[0]}, ground truth is "
                f"{truth.shape[1]}x{truth.shape[0]}; rerun the masks stage"
            )
        views.append(_View(view.name, truth, render, mask))
    return scene.name, views


def _pixel_metrics(settings: EvaluateSettings, view: _View, row: dict[str, Any]) -> None:
    usable = view.mask is not None and view.mask.any()
    if "psnr" in settings.metrics:
        row["psnr"] = measures.psnr(view.render, view.truth)
        if usable:
            row["psnr_masked"] = measures.psnr(view.render, view.truth, view.mask)
            row["psnr_outside"] = measures.psnr(view.render, view.truth, ~view.mask)
    if "ssim" in settings.metrics:
        values = measures.ssim_map(
            view.render, view.truth, settings.ssim_window, settings.ssim_sigma
        )
        row["ssim"] = measures.cropped_mean(values, settings.ssim_window // 2)
        if usable:
            row["ssim_masked"] = measures.masked_mean(values, view.mask)
            row["ssim_outside"] = measures.masked_mean(values, ~view.mask)


def _perceptual_metrics(
    settings: EvaluateSettings,
    view: _View,
    row: dict[str, Any],
    too_small: dict[str, list[tuple[str, str]]],
) -> None:
    """HaarPSI, GMSD, MS-SSIM of one view: full image, inside the mask, on the M-LPIPS crop.

    A form whose image is too small for the metric is left out of ``row`` and its reason added
    to ``too_small[column]`` as ``(view name, reason)``.
    """
    from . import perceptual

    wanted = [m for m in PERCEPTUAL if m in settings.metrics]
    if not wanted:
        return
    box = None if view.mask is None else measures.bounding_box(view.mask, settings.m_lpips_min_size)
    forms: dict[str, tuple[np.ndarray, np.ndarray] | None] = {"": (view.render, view.truth)}
    if box is not None:
        assert view.mask is not None
        top, bottom, left, right = box
        crop = (slice(top, bottom), slice(left, right))
        truth = view.truth[crop]
        forms["_masked"] = (perceptual.composite(view.render[crop], truth, view.mask[crop]), truth)
        forms["m_"] = (view.render[crop], truth)
    scales: dict[str, int] = {}
    for metric in wanted:
        for form, pair in forms.items():
            column = f"m_{metric}" if form == "m_" else f"{metric}{form}"
            assert pair is not None
            try:
                value, details = perceptual.score(metric, *pair)
            except perceptual.TooSmall as exc:
                where = "the image" if form == "" else "the mask's crop"
                too_small.setdefault(column, []).append((view.name, f"{where} {exc}"))
                continue
            row[column] = value
            if "scales" in details:
                scales[column] = details["scales"]
    if scales:
        row["ms_ssim_scales"] = scales


def _to_tensor(images: list[np.ndarray]) -> Any:
    import torch

    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())


def _lpips_metrics(
    settings: EvaluateSettings, distance: Any, views: list[_View], rows: list[dict]
) -> None:
    if "lpips" in settings.metrics:
        for start in range(0, len(views), settings.batch_size):
            batch = views[start : start + settings.batch_size]
            values = distance(
                _to_tensor([v.render for v in batch]), _to_tensor([v.truth for v in batch])
            )
            for row, value in zip(rows[start:], values.tolist()):
                row["lpips"] = float(value)
    if "m_lpips" in settings.metrics:
        for view, row in zip(views, rows):
            box = (
                None
                if view.mask is None
                else measures.bounding_box(view.mask, settings.m_lpips_min_size)
            )
            if box is None:
                continue
            top, bottom, left, right = box
            crop = (slice(top, bottom), slice(left, right))
            value = distance(_to_tensor([view.render[crop]]), _to_tensor([view.truth[crop]]))
            row["m_lpips"] = float(value.reshape(-1)[0])


def inception_features(features: Any, images: list[np.ndarray], batch_size: int = 8) -> np.ndarray:
    """Inception features ``(N, D)`` float32 of float images, resized as clean-fid's ``clean`` mode."""
    import torch
    from cleanfid.resize import build_resizer

    from ..images import to_uint8

    resize = build_resizer("clean")
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.stack([resize(to_uint8(image)) for image in images[start : start + batch_size]])
        tensor = torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32).copy())
        out.append(np.asarray(features(tensor), np.float32))
    return np.concatenate(out, axis=0)


def _preview(settings: EvaluateSettings, views: list[_View]) -> tuple[np.ndarray, dict[str, Any]]:
    from .sheets import grid, label, mask_overlay, thumbnail

    shown = views[: settings.preview_views]
    rows = []
    for view in shown:
        truth = thumbnail(view.truth, settings.preview_width)
        size = (truth.shape[1], truth.shape[0])
        mask = None
        if view.mask is not None:
            from ..images import resize_mask

            mask = resize_mask(view.mask, size)
        rows.append(
            [
                label(truth, view.name),
                mask_overlay(truth, mask),
                thumbnail(view.render, settings.preview_width),
            ]
        )
    height, width = rows[0][0].shape[:2]
    return grid(rows), {"views": [v.name for v in shown], "tile": [width, height]}


def _perceptual_info(wanted: set[str], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The library that computed HaarPSI/GMSD/MS-SSIM and the MS-SSIM scales used per column."""
    if not wanted & set(PERCEPTUAL):
        return None
    from .perceptual import library_version

    scales: dict[str, list[int]] = {}
    for row in rows:
        for column, n in row.get("ms_ssim_scales", {}).items():
            if n not in scales.setdefault(column, []):
                scales[column].append(n)
    return {"library": f"piq {library_version()}", "ms_ssim_scales": scales}


def _means(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    means: dict[str, float | None] = {}
    for metric in PER_VIEW:
        values = [row[metric] for row in rows if row.get(metric) is not None]
        means[metric] = float(np.mean(values)) if values else None
    return means


def run(
    settings: EvaluateSettings,
    scene_dir: Path,
    masks_dir: Path,
    render_dir: Path,
    nerf_dir: Path | None,
    output_json: Path,
    backbones: Any = None,
    transforms: Path | None = None,
) -> None:
    """Score the renders in ``render_dir`` and write ``output_json`` and the files beside it.

    ``backbones`` (a :class:`~.backbones.Backbones`) replaces loading the networks from their
    weight files; tests use it to inject tiny random networks (a test of the plumbing only).
    ``transforms`` (the poses stage's file) names the ground-truth images; see the module doc.
    """
    started = time.perf_counter()
    output_json = Path(output_json)
    scene_name, views = _load_views(
        Path(scene_dir), Path(masks_dir), Path(render_dir), transforms and Path(transforms)
    )
    wanted = set(settings.metrics)
    rows: list[dict[str, Any]] = [{"name": v.name} for v in views]
    missing: dict[str, str] = {}
    notes: list[str] = []

    too_small: dict[str, list[tuple[str, str]]] = {}
    for view, row in zip(views, rows):
        _pixel_metrics(settings, view, row)
        _perceptual_metrics(settings, view, row, too_small)
    n_masked = sum(v.mask is not None and bool(v.mask.any()) for v in views)
    if n_masked == 0:
        reason = "no test view has a (nonempty) mask of the object"
        missing.update({m: reason for m in MASKED})
    elif n_masked < len(views):
        notes.append(f"masked metrics over {n_masked} of {len(views)} views (others have no mask)")

    need_lpips = bool(wanted & {"lpips", "m_lpips"})
    need_inception = bool(wanted & {"fid", "kid"})
    if backbones is None:
        from .backbones import load_backbones

        backbones = load_backbones(
            need_lpips=need_lpips,
            need_inception=need_inception,
            device=settings.device,
            alexnet_weights=settings.alexnet_weights,
            lpips_weights=settings.lpips_weights,
            inception_weights=settings.inception_weights,
            require_weights=settings.require_weights,
        )
    if need_lpips:
        if backbones.lpips is None:
            reason = backbones.missing.get("lpips", "no LPIPS network")
            missing.update({m: reason for m in ("lpips", "m_lpips") if m in wanted})
        else:
            _lpips_metrics(settings, backbones.lpips, views, rows)

    feats_render = feats_truth = np.zeros((0, 0), np.float32)
    means = _means(rows)
    means["fid"] = means["kid"] = None
    if need_inception:
        if backbones.inception is None:
            reason = backbones.missing.get("inception", "no Inception network")
            missing.update({m: reason for m in ("fid", "kid") if m in wanted})
        else:
            feats_render = inception_features(
                backbones.inception, [v.render for v in views], settings.batch_size
            )
            feats_truth = inception_features(
                backbones.inception, [v.truth for v in views], settings.batch_size
            )
            if len(views) < 2:
                missing.update(
                    {m: "needs at least 2 test views" for m in ("fid", "kid") if m in wanted}
                )
            else:
                if "fid" in wanted:
                    means["fid"] = measures.frechet_distance(feats_render, feats_truth)
                if "kid" in wanted:
                    means["kid"] = measures.kernel_distance(
                        feats_render,
                        feats_truth,
                        settings.kid_subsets,
                        settings.kid_subset_size,
                        settings.seed,
                    )

    for column, lacking in too_small.items():
        names = ", ".join(name for name, _ in lacking)
        if means[column] is None:
            hint = "" if column in PERCEPTUAL else "; raise evaluate.m_lpips_min_size"
            missing[column] = f"{lacking[0][1]} (views {names}){hint}"
        else:
            notes.append(f"{column}: {lacking[0][1]} in views {names}; averaged over the others")
    for metric in METRICS:
        if FAMILY[metric] not in wanted:
            missing[metric] = "disabled in evaluate.metrics"
        elif means[metric] is None:
            missing.setdefault(metric, "no test view has pixels for it (the mask covers the image)")
    for row in rows:
        for metric in PER_VIEW:
            row.setdefault(metric, None)

    train_times, why = read_train_times(nerf_dir)
    missing.update(why)

    preview, preview_info = _preview(settings, views)
    features_file, preview_file = features_path(output_json), preview_path(output_json)

    def save_features(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                render=feats_render,
                ground_truth=feats_truth,
                names=np.array([v.name for v in views]),
            )

    from ..images import write_image

    atomic.atomic_write(features_file, save_features)
    write_image(preview_file, preview)
    atomic.write_json(
        output_json,
        {
            "scene": scene_name,
            "variant": output_json.stem,
            "n_views": len(views),
            "n_views_masked": n_masked,
            "means": means,
            "missing": missing,
            "notes": notes,
            **train_times,
            "views": rows,
            "backbones": {
                "lpips": backbones.provenance.get("lpips"),
                "inception": backbones.provenance.get("inception"),
                "device": backbones.device,
            },
            "features": features_file.name if feats_render.size else None,
            "preview": {"file": preview_file.name, **preview_info},
            "perceptual": _perceptual_info(wanted, rows),
            "kid": {
                "subsets": settings.kid_subsets,
                "subset_size": settings.kid_subset_size,
                "seed": settings.seed,
            },
            "settings": asdict(settings),
        },
    )
    shown = ", ".join(f"{m} {means[m]:.4g}" for m in METRICS if means[m] is not None)
    log.info(
        "evaluate %s/%s: %d views in %.1f s: %s",
        scene_name,
        output_json.stem,
        len(views),
        time.perf_counter() - started,
        shown or "no metric computed",
    )


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read a metrics file written by :func:`run` (a one-line error if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found; run the evaluate stage first")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{path}: not a readable metrics file ({exc}); delete it and rerun evaluate"
        ) from None
    required = ("means", "missing", "n_views")
    if not isinstance(data, dict) or any(key not in data for key in required):
        raise UserError(
            f"{path}: not a metrics file of the evaluate stage; delete it and rerun evaluate"
        )
    return data
