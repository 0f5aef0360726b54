"""Pictures for a person to look at: per-variant previews and per-scene contact sheets.

A *preview* (written by the evaluate stage beside the metrics) is a grid without gaps: one row
per test view (the first few), columns ground truth | mask overlay | render, every tile
``tile = (width, height)`` pixels. The table stage cuts the tiles back out and lays the renders of
all variants side by side in a labelled *contact sheet*.
"""

from __future__ import annotations

import numpy as np

from ..images import resize_image, to_uint8

GAP = 2
HEADER = 18


def thumbnail(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` scaled to ``width`` pixels wide (aspect kept)."""
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return resize_image(np.ascontiguousarray(image, np.float32), (width, height))


def mask_overlay(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``image`` with ``mask`` tinted red and outlined in yellow; labelled ``no mask`` if None."""
    import cv2

    overlay = np.ascontiguousarray(image, np.float32).copy()
    if mask is None:
        return label(overlay * 0.6, "no mask")
    overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.array([1.0, 0.0, 0.0], np.float32)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    canvas = to_uint8(overlay)  # OpenCV draws on 8-bit images only
    cv2.drawContours(canvas, contours, -1, (255, 255, 0), 1)
    return canvas.astype(np.float32) / 255.0


def label(
    image: np.ndarray, text: str, color: tuple[float, float, float] = (1, 1, 1)
) -> np.ndarray:
    """Write ``text`` in the top-left corner of ``image`` (with a dark outline)."""
    import cv2

    canvas = to_uint8(image)
    for thickness, shade in ((3, (0, 0, 0)), (1, tuple(int(255 * c) for c in color))):
        cv2.putText(
            canvas, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, shade, thickness, cv2.LINE_AA
        )
    return canvas.astype(np.float32) / 255.0


def grid(tiles: list[list[np.ndarray]]) -> np.ndarray:
    """Tiles of one size assembled into rows and columns without gaps."""
    return np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)


def cut(preview: np.ndarray, tile: tuple[int, int]) -> list[list[np.ndarray]]:
    """Inverse of :func:`grid`: the ``(width, height)`` tiles of a preview, row by row."""
    width, height = tile
    rows, cols = preview.shape[0] // height, preview.shape[1] // width
    return [
        [preview[r * height : (r + 1) * height, c * width : (c + 1) * width] for c in range(cols)]
        for r in range(rows)
    ]


def placeholder(tile: tuple[int, int], text: str) -> np.ndarray:
    """A grey tile saying ``text`` (a render that is not available)."""
    width, height = tile
    return label(np.full((height, width, 3), 0.35, np.float32), text)


def contact_sheet(columns: list[str], rows: list[list[np.ndarray]]) -> np.ndarray:
    """Tiles (all one size) in a white grid with a header row naming each column."""
    import cv2

    height, width = rows[0][0].shape[:2]
    n_cols = len(columns)
    sheet = np.full((HEADER + len(rows) * (height + GAP), n_cols * (width + GAP), 3), 255, np.uint8)
    for c, name in enumerate(columns):
        text = name if len(name) <= width // 6 else name[: max(1, width // 6 - 1)] + "~"
        cv2.putText(
            sheet,
            text,
            (c * (width + GAP) + 3, HEADER - 5),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    for r, row in enumerate(rows):
        top = HEADER + r * (height + GAP)
        for c, tile in enumerate(row):
            left = c * (width + GAP)
            sheet[top : top + height, left : left + width] = to_uint8(tile[:height, :width])
    return sheet.astype(np.float32) / 255.0
