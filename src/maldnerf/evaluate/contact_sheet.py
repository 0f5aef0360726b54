"""The table stage's per-scene picture: every variant's renders of one scene side by side.

Input: the evaluate stage's metrics files ``results/{scene}/metrics/{variant}.json`` of one
scene, in the order the variants are listed (their previews, ``{variant}.preview.png``, lie
beside them). Output ``results/{scene}/contact_sheet.png``: rows = the first ``sheet_views``
test views, columns = ground truth | mask | each variant's render; a variant without a preview
gets grey ``missing`` tiles, and a scene without any (no variant could run) a sheet that says so.

One job per scene, so that adding or removing a scene adds or removes a job instead of
changing the outputs of the table job (Snakemake would not rerun a job for a new output).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .stage import load_metrics

log = logging.getLogger(__name__)


def contact_sheet(scene: str, metrics: list[Path], sheet_views: int) -> np.ndarray:
    """Ground truth | mask | each variant's render for the first ``sheet_views`` test views of
    ``scene`` (the views of its metrics files' previews)."""
    from ..images import read_image, resize_image
    from .sheets import contact_sheet as assemble
    from .sheets import cut, placeholder

    variants = [Path(path).stem for path in metrics]
    tiles: dict[str, dict[str, list[np.ndarray]]] = {}
    order: list[str] = []
    size: tuple[int, int] | None = None
    for variant, path in zip(variants, map(Path, metrics)):
        info = load_metrics(path).get("preview") if path.is_file() else None
        preview = path.parent / info["file"] if info else None
        if preview is None or not preview.is_file():
            continue
        tile = tuple(int(v) for v in info["tile"])
        grid = cut(read_image(preview), tile)  # type: ignore[arg-type]
        if size is None:
            size = tile  # type: ignore[assignment]
        per_view = {}
        for name, row in zip(info["views"], grid):
            if tile != size:
                row = [resize_image(t, size) for t in row]
            per_view[name] = row
            if name not in order:
                order.append(name)
        tiles[variant] = per_view
    if size is None:
        return placeholder((320, 60), f"{scene}: no previews (no variant finished evaluate)")
    order = order[:sheet_views]
    rows = []
    for name in order:
        first = next(t[name] for t in tiles.values() if name in t)
        row = [first[0], first[1]]
        for variant in variants:
            got = tiles.get(variant, {}).get(name)
            row.append(got[2] if got else placeholder(size, "missing"))
        rows.append(row)
    return assemble(["ground truth", "mask", *variants], rows)


def run(scene: str, metrics: list[Path], output: Path, sheet_views: int = 4) -> None:
    """Write the contact sheet of ``scene`` from its ``metrics`` files to ``output``
    (``sheet_views``: the table settings' ``sheet_views``)."""
    from ..images import write_image

    write_image(Path(output), contact_sheet(scene, list(map(Path, metrics)), sheet_views))
    log.info("contact sheet of %s: %d variant(s) -> %s", scene, len(metrics), output)
