"""Side-by-side measurements of CPU hot spots and the changes made for them.

Each figure compares two ways of doing the same work in this one run (best of ``--repeat``):

- PNG writing (``maldnerf.images.write_image``): Pillow's default zlib level 6 against the
  level 1 the package uses, for a SPIn-NeRF-sized (1008×567) and a default-sized (160×120)
  render; also the file sizes.

Usage: ``python benchmarks/cpu_hotspots.py [--repeat 5] [--output FILE.json]``
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
from PIL import Image

from maldnerf.images import PNG_COMPRESS_LEVEL
from maldnerf.prepare.synthetic import SyntheticScene, intrinsics_matrix, look_at


def render(width: int, height: int) -> np.ndarray:
    """A synthetic render (textured, like the pipeline's images) as uint8."""
    scene = SyntheticScene(0)
    c2w = look_at(np.array([0.0, 0.15, 1.3]), np.array([0.0, -0.45, -2.6]))
    image, _, _ = scene.render(
        c2w,
        intrinsics_matrix(width, height, 60.0),
        width,
        height,
        include_object=True,
        supersampling=1,
    )
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def best_write(pixels: np.ndarray, level: int, repeat: int) -> tuple[float, int]:
    """Best seconds of one PNG encode at zlib ``level``, and the encoded size in bytes."""
    times, size = [], 0
    for _ in range(repeat):
        buffer = io.BytesIO()
        start = time.perf_counter()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
        times.append(time.perf_counter() - start)
        size = buffer.tell()
    return min(times), size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions; the best is kept")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    figures = {}
    for width, height in ((1008, 567), (160, 120)):
        pixels = render(width, height)
        default_s, default_bytes = best_write(pixels, 6, args.repeat)
        used_s, used_bytes = best_write(pixels, PNG_COMPRESS_LEVEL, args.repeat)
        key = f"png_{width}x{height}"
        figures[key] = {
            "level_6_seconds": default_s,
            f"level_{PNG_COMPRESS_LEVEL}_seconds": used_s,
            "speedup": default_s / used_s,
            "level_6_bytes": default_bytes,
            f"level_{PNG_COMPRESS_LEVEL}_bytes": used_bytes,
            "size_ratio": used_bytes / default_bytes,
        }
        print(
            f"PNG write {width}x{height}: level 6 {1000 * default_s:.1f} ms, level "
            f"{PNG_COMPRESS_LEVEL} {1000 * used_s:.1f} ms ({default_s / used_s:.1f}x faster), "
            f"files {used_bytes / default_bytes:.2f}x the size"
        )
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
