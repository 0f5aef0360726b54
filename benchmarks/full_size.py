"""The full-size settings the benchmarks measure: ``configs/spinnerf_gpu.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FULL_SIZE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "spinnerf_gpu.yaml"


def full_size_sections() -> dict[str, Any]:
    """Every section of the full-size config except its example scenes and variant list."""
    data = yaml.safe_load(FULL_SIZE_CONFIG.read_text())
    return {k: v for k, v in data.items() if k not in ("scenes", "variants", "run_variants")}
