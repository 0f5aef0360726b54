"""The work behind each ``maldnerf`` subcommand: parse settings, call the stage."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from .config import NO_CUSTOMIZATION
from .diffusion.customize import CustomizeSettings
from .diffusion.inpaint import InpaintSettings
from .diffusion.models import DiffusionSettings
from .nerf.settings import IduSettings, NerfSettings, RenderSettings
from .settings import load_settings


def pretrain(args: argparse.Namespace) -> None:
    import os

    from .diffusion.pretrain import PretrainSettings, run

    workers = int(os.environ.get("MALDNERF_THREADS") or os.cpu_count() or 1)  # --threads
    run(load_settings(PretrainSettings, args.settings), args.output, workers, args.use_cache)


def prepare(args: argparse.Namespace) -> None:
    from .prepare.stage import PrepareSettings, run

    run(load_settings(PrepareSettings, args.settings), args.name, args.output)


def poses(args: argparse.Namespace) -> None:
    from .poses import PosesSettings, run

    run(load_settings(PosesSettings, args.settings), args.scene, args.output)


def masks(args: argparse.Namespace) -> None:
    from .masks import MaskSettings, run

    run(load_settings(MaskSettings, args.settings), args.transforms, args.scene, args.output)


def schema(args: argparse.Namespace) -> None:
    from . import atomic
    from .errors import UserError
    from .schema import render_schema

    text = render_schema()
    if args.check:
        if args.output is None or not args.output.is_file() or args.output.read_text() != text:
            raise UserError(
                f"{args.output}: config schema is out of date; run `maldnerf schema --output {args.output}`"
            )
    elif args.output is None:
        print(text, end="")
    else:
        atomic.write_text(args.output, text)


@dataclass
class CustomizeCommand:
    """Settings of ``maldnerf customize``."""

    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    customize: CustomizeSettings = field(default_factory=CustomizeSettings)


@dataclass
class InpaintCommand:
    """Settings of ``maldnerf inpaint`` (the model, and how it inpaints)."""

    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    inpaint: InpaintSettings = field(default_factory=InpaintSettings)


def _customization(value: str) -> Path | None:
    return None if value == NO_CUSTOMIZATION else Path(value)


def customize(args: argparse.Namespace) -> None:
    from .diffusion.customize import run

    settings = load_settings(CustomizeCommand, args.settings)
    run(
        settings.customize,
        settings.diffusion,
        args.transforms,
        args.masks,
        args.output,
        args.resume_dir,
    )


def inpaint(args: argparse.Namespace) -> None:
    from .diffusion.inpaint import run

    settings = load_settings(InpaintCommand, args.settings)
    run(
        settings.inpaint,
        settings.diffusion,
        args.transforms,
        args.masks,
        _customization(args.customization),
        args.output,
    )


@dataclass
class TrainCommand:
    """Settings of ``maldnerf train``: the NeRF, the dataset update, and the diffusion model
    and inpainting settings the update re-inpaints with (``diffusion.device: auto`` follows
    ``nerf.device``, so both models share one device)."""

    nerf: NerfSettings = field(default_factory=NerfSettings)
    idu: IduSettings = field(default_factory=IduSettings)
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    inpaint: InpaintSettings = field(default_factory=InpaintSettings)


def train(args: argparse.Namespace) -> None:
    import dataclasses

    from .diffusion.inpainter import load_inpainter
    from .nerf.idu import ReinpainterSource
    from .nerf.trainer import run

    settings = load_settings(TrainCommand, args.settings)
    customization = _customization(args.customization)
    diffusion = settings.diffusion
    if diffusion.device == "auto":
        diffusion = dataclasses.replace(diffusion, device=settings.nerf.device)

    def reinpainter():
        return load_inpainter(diffusion, settings.inpaint, customization)

    run(
        settings.nerf,
        settings.idu,
        args.transforms,
        args.masks,
        args.targets,
        args.output,
        args.resume_dir,
        reinpainter,
        reinpainter_source=ReinpainterSource(
            {"diffusion": settings.diffusion, "inpaint": settings.inpaint}, customization
        ),
    )


def render(args: argparse.Namespace) -> None:
    from .nerf.render import run

    run(load_settings(RenderSettings, args.settings), args.transforms, args.nerf, args.output)
