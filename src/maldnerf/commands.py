"""The work behind each ``maldnerf`` subcommand: parse settings, call the stage."""

from __future__ import annotations

import argparse

from .settings import load_settings


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
