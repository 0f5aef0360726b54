"""The ``evaluate``, ``table`` and ``contact-sheet`` subcommands: arguments and calls.

:mod:`maldnerf.cli` adds the subcommands with :func:`add_evaluate_arguments`,
:func:`add_table_arguments` and :func:`add_contact_sheet_arguments` and runs :func:`evaluate`,
:func:`table` / :func:`contact_sheet`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..settings import SETTINGS_HELP, load_settings


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``maldnerf evaluate``."""
    parser.add_argument("--scene", required=True, type=Path, help="prepared-scene folder")
    parser.add_argument("--masks", required=True, type=Path, help="masks folder of the scene")
    parser.add_argument(
        "--transforms",
        type=Path,
        default=None,
        help="transforms.json of the poses stage: the ground truth is its test frames' images "
        "(undistorted when COLMAP's camera model has distortion, as the renders are); "
        "default: the prepared scene's test views",
    )
    parser.add_argument(
        "--render", required=True, type=Path, help="render folder (test/<name>.png inside)"
    )
    parser.add_argument(
        "--nerf", type=Path, default=None, help="train folder (nerf.json: training time); optional"
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="metrics JSON to write, results/{scene}/metrics/{variant}.json "
        "({variant}.features.npz and {variant}.preview.png are written beside it)",
    )
    parser.add_argument("--settings", default=None, metavar="JSON", help=SETTINGS_HELP)


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``maldnerf table``."""
    parser.add_argument(
        "--metrics",
        required=True,
        nargs="*",
        type=Path,
        help="metrics files results/{scene}/metrics/{variant}.json (scene and variant from the "
        "path); none when no requested variant can run here",
    )
    parser.add_argument(
        "--variants",
        required=True,
        nargs="+",
        help="variant names in table row order, or one JSON list of names or "
        '{"name", "description", "skipped"} mappings (a skipped variant gets an empty row '
        "with the reason)",
    )
    parser.add_argument("--output", required=True, type=Path, help="table CSV to write")
    parser.add_argument(
        "--per-scene",
        type=Path,
        default=None,
        help="per-scene CSV (default: table_per_scene.csv beside --output)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="Markdown table (default: table.md beside --output)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="bar chart PNG (default: metrics.png beside --output)",
    )
    parser.add_argument(
        "--benchmarks",
        type=Path,
        nargs="*",
        default=None,
        help="Snakemake benchmark files <stage>/<job>.tsv (or folders holding them) of the jobs "
        "to summarise; writes a timings CSV",
    )
    parser.add_argument(
        "--timings",
        type=Path,
        default=None,
        help="timings CSV (default: timings.csv beside --output)",
    )
    parser.add_argument("--settings", default=None, metavar="JSON", help=SETTINGS_HELP)


def add_contact_sheet_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``maldnerf contact-sheet``."""
    parser.add_argument("--scene", required=True, help="scene name (shown when it has no renders)")
    parser.add_argument(
        "--metrics",
        required=True,
        nargs="*",
        type=Path,
        help="the scene's metrics files results/{scene}/metrics/{variant}.json, in column order "
        "(their previews beside them); none when no variant can run here",
    )
    parser.add_argument(
        "--output", required=True, type=Path, help="PNG to write, results/{scene}/contact_sheet.png"
    )
    parser.add_argument("--settings", default=None, metavar="JSON", help=SETTINGS_HELP)


def evaluate(args: argparse.Namespace) -> None:
    from .stage import EvaluateSettings, run

    run(
        load_settings(EvaluateSettings, args.settings),
        args.scene,
        args.masks,
        args.render,
        args.nerf,
        args.output,
        transforms=args.transforms,
    )


def table(args: argparse.Namespace) -> None:
    from .table import TableSettings, run

    run(
        load_settings(TableSettings, args.settings),
        args.metrics,
        args.output,
        args.variants,
        per_scene_csv=args.per_scene,
        markdown_path=args.markdown,
        plot_path=args.plot,
        benchmarks=args.benchmarks,
        timings_csv=args.timings,
    )


def contact_sheet(args: argparse.Namespace) -> None:
    from .contact_sheet import run
    from .table import TableSettings

    settings = load_settings(TableSettings, args.settings)
    run(args.scene, args.metrics, args.output, settings.sheet_views)
