"""Command line: one subcommand per pipeline stage.

Every subcommand takes explicit input and output paths and the stage's settings as JSON
(``--settings '{"key": value}'`` or ``--settings @file.json``/``@file.yaml``); settings not given
take their documented defaults. The Snakemake rules call exactly these commands. Mistakes in
the input are reported as one ``error:`` line and exit status 2; running out of GPU memory or
disk space as one line and exit status 3; an interruption exits with 128 + the signal number
(130 for Ctrl-C/SIGINT, 143 for SIGTERM), customize and train after a checkpoint (see
:mod:`maldnerf.interrupt`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from . import interrupt
from .errors import UserError
from .settings import SETTINGS_HELP

OUT_OF_MEMORY_HINTS = {
    "customize": "lower customize.batch_size or diffusion.resolution, or set diffusion.gradient_checkpointing: true",
    "inpaint": "lower inpaint.batch_size or diffusion.resolution",
    "train": "lower nerf.batch_rays, nerf.patch_size, nerf.patches_per_step, nerf.chunk_rays, "
    "idu.batch_size or diffusion.resolution",
    "render": "lower render.chunk_rays",
    "evaluate": "run evaluate on the CPU (evaluate.device: cpu)",
}

INPUTS = {
    "scene": "prepared-scene folder of the prepare stage",
    "transforms": "transforms.json of the poses stage",
    "masks": "masks folder of the masks stage",
    "targets": "inpaint folder of the inpaint stage: the initial inpainting targets",
    "nerf": "NeRF folder of the train stage",
}
SETTINGS_CLASSES = {
    "pretrain": "diffusion.pretrain:PretrainSettings",
    "prepare": "prepare.stage:PrepareSettings",
    "poses": "poses:PosesSettings",
    "masks": "masks:MaskSettings",
    "customize": "commands:CustomizeCommand",
    "inpaint": "commands:InpaintCommand",
    "train": "commands:TrainCommand",
    "render": "nerf.settings:RenderSettings",
    "evaluate": "evaluate.stage:EvaluateSettings",
    "table": "evaluate.table:TableSettings",
    "contact-sheet": "evaluate.table:TableSettings",
}
"""The dataclass behind each stage's ``--settings`` (module in the package : class)."""

CUSTOMIZATION_HELP = "customisation folder of the customize stage, or 'none' for the base model"
RESUME_HELP = "folder for resumable checkpoints, outside --output (kept when the stage fails)"


class StageParser(argparse.ArgumentParser):
    """A subcommand whose ``--help`` ends with every key of its ``--settings`` (read from the
    settings dataclass only when help is shown)."""

    def __init__(self, *args, settings: str | None = None, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.settings = settings

    def format_help(self) -> str:
        if self.settings and not self.epilog:
            from .schema import settings_help

            module, name = self.settings.split(":")
            self.epilog = settings_help(
                getattr(importlib.import_module(f"maldnerf.{module}"), name)
            )
        return super().format_help()


def _stage_parser(
    commands: argparse._SubParsersAction,
    name: str,
    help_text: str,
    inputs: tuple[str, ...],
    output_help: str,
    settings_shape: str | None = None,
    customization: bool = False,
    resume: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand with required ``--<input>`` paths, ``--output`` and ``--settings``."""
    parser = commands.add_parser(name, help=help_text, settings=SETTINGS_CLASSES[name])
    for item in inputs:
        parser.add_argument(f"--{item}", required=True, type=Path, help=INPUTS[item])
    if customization:
        parser.add_argument("--customization", required=True, help=CUSTOMIZATION_HELP)
    parser.add_argument("--output", required=True, type=Path, help=output_help)
    if resume:
        parser.add_argument("--resume-dir", required=True, type=Path, help=RESUME_HELP)
    help_settings = (
        SETTINGS_HELP if settings_shape is None else f"{SETTINGS_HELP}; shape: {settings_shape}"
    )
    parser.add_argument("--settings", default=None, metavar="JSON", help=help_settings)
    parser.set_defaults(run=_stage("commands", name))
    return parser


def _stage(module: str, function: str = "main") -> Callable[[argparse.Namespace], None]:
    """Import the stage module only when its subcommand runs (keeps --help fast)."""

    def call(args: argparse.Namespace) -> None:
        getattr(importlib.import_module(f"maldnerf.{module}"), function)(args)

    return call


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maldnerf",
        description="Remove an object from a captured 3D scene (MALD-NeRF), one stage at a time.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for PyTorch and COLMAP (default: all cores)",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="STAGE", parser_class=StageParser
    )

    p = _stage_parser(
        commands,
        "pretrain",
        "train the generic tiny base diffusion model on generated rooms (built once per machine)",
        (),
        "model folder to write (a diffusers folder)",
    )
    p.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="neither read nor fill the machine's cache of built base models ($MALDNERF_CACHE, "
        "else ~/.cache/maldnerf)",
    )
    p = _stage_parser(
        commands,
        "prepare",
        "generate or import a scene into the prepared-scene folder",
        (),
        "prepared-scene folder to write",
    )
    p.add_argument("--name", required=True, help="scene name written to the manifest")
    _stage_parser(
        commands,
        "poses",
        "camera poses with COLMAP (or from known poses)",
        ("scene",),
        "poses folder to write (transforms.json inside)",
        '{"method": ..., "colmap": {...}}',
    )
    _stage_parser(
        commands,
        "masks",
        "validate, binarise and dilate the object masks",
        ("scene", "transforms"),
        "masks folder to write",
    )
    _stage_parser(
        commands,
        "customize",
        "scene-customise the diffusion model (LoRA + tokens)",
        ("transforms", "masks"),
        "customisation folder to write",
        '{"diffusion": {...}, "customize": {...}}',
        resume=True,
    )
    _stage_parser(
        commands,
        "inpaint",
        "inpaint every training view inside its mask",
        ("transforms", "masks"),
        "inpaint folder to write",
        '{"diffusion": {...}, "inpaint": {...}}',
        customization=True,
    )
    _stage_parser(
        commands,
        "train",
        "train the NeRF of a scene and variant (MALD-NeRF)",
        ("transforms", "masks", "targets"),
        "NeRF folder to write",
        '{"nerf": {...}, "idu": {...}, "diffusion": {...}, "inpaint": {...}} '
        "(diffusion and inpaint: the model that re-inpaints the targets)",
        customization=True,
        resume=True,
    )
    _stage_parser(
        commands,
        "render",
        "render the test (and training) views of a trained NeRF",
        ("transforms", "nerf"),
        "render folder to write",
    )

    from .evaluate.commands import (
        add_contact_sheet_arguments,
        add_evaluate_arguments,
        add_table_arguments,
    )

    p = commands.add_parser(
        "evaluate",
        help="score the renders of the test views",
        settings=SETTINGS_CLASSES["evaluate"],
    )
    add_evaluate_arguments(p)
    p.set_defaults(run=_stage("evaluate.commands", "evaluate"))

    p = commands.add_parser(
        "table",
        help="the results table, its plot and the job timings",
        settings=SETTINGS_CLASSES["table"],
    )
    add_table_arguments(p)
    p.set_defaults(run=_stage("evaluate.commands", "table"))

    p = commands.add_parser(
        "contact-sheet",
        help="one scene's renders of every variant side by side (part of the table stage)",
        settings=SETTINGS_CLASSES["contact-sheet"],
    )
    add_contact_sheet_arguments(p)
    p.set_defaults(run=_stage("evaluate.commands", "contact_sheet"))

    p = commands.add_parser(
        "schema", help="write the config JSON schema generated from the settings"
    )
    p.add_argument("--output", type=Path, default=None, help="file to write (default: print it)")
    p.add_argument("--check", action="store_true", help="only check that --output is up to date")
    p.set_defaults(run=_stage("commands", "schema"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALDNERF_THREADS"):
            os.environ[name] = str(args.threads)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    if argv is None:  # the process's own command line (not a call from Python, e.g. a test)
        interrupt.install()
    try:
        args.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, interrupt.Interrupted) else signal.SIGINT
        print(
            f"error: {str(exc) or 'interrupted'}; rerun the same command to go on", file=sys.stderr
        )
        return 128 + signum
    except MemoryError:
        print(
            "error: out of memory; lower the batch size or image resolution settings",
            file=sys.stderr,
        )
        return 3
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":
            print(
                f"error: GPU out of memory in stage {args.command}; {OUT_OF_MEMORY_HINTS.get(args.command, 'lower the batch size or resolution')}",
                file=sys.stderr,
            )
            return 3
        failure = write_failure(exc)
        if failure is None:
            raise
        print(f"error: {failure}; {WRITE_FAILURE_HINT}", file=sys.stderr)
        return 3
    return 0


# errno values of a write that failed for lack of room or rights, not because of a bug.
WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system or the process's file size limit",
    errno.EROFS: "read-only file system",
}
WRITE_FAILURE_HINT = (
    "free space (or point results/ at a larger disk) and rerun the same command: customize "
    "and train resume from their last checkpoint, which a failed write leaves intact"
)


def write_failure(exc: BaseException) -> str | None:
    """A one-line description of a failed write (disk full, quota, read-only) behind ``exc``,
    or ``None`` when ``exc`` is not one. Libraries that write in native code (safetensors)
    report these only in their message (``os error 28``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in WRITE_ERRNOS:
            where = f"writing {current.filename}: " if current.filename else ""
            return f"{where}{WRITE_ERRNOS[current.errno]}"
        text = str(current)
        for number, reason in WRITE_ERRNOS.items():
            if f"os error {number})" in text or os.strerror(number) in text:
                return reason
        current = current.__cause__ or current.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
