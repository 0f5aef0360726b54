"""How long the train stage took, as the evaluate stage copies it into the metrics file.

Read from the train stage's ``nerf.json`` (``timings``, see :mod:`maldnerf.nerf.trainer`):

``train_seconds``
    the whole train stage's wall time: loading, NeRF optimisation, dataset-update (IDU)
    rounds, checkpoints and the output, summed over resumed runs (``timings.seconds``);
``nerf_seconds``
    the NeRF optimisation steps alone (``timings.nerf_seconds``);
``idu_seconds``
    the IDU rounds alone (``timings.idu_seconds``); none for a variant without IDU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRAIN_TIMES = {
    "train_seconds": "seconds",
    "nerf_seconds": "nerf_seconds",
    "idu_seconds": "idu_seconds",
}
"""Metrics-file key -> key under ``timings`` in ``nerf.json``."""


def read_train_times(nerf_dir: Path | None) -> tuple[dict[str, float | None], dict[str, str]]:
    """``({key: seconds or None}, {key: why it is None})`` for every key of :data:`TRAIN_TIMES`."""
    times: dict[str, float | None] = dict.fromkeys(TRAIN_TIMES)
    path = Path(nerf_dir) / "nerf.json" if nerf_dir is not None else None
    if path is None:
        return times, dict.fromkeys(TRAIN_TIMES, "no NeRF folder given")
    if not path.is_file():
        return times, dict.fromkeys(TRAIN_TIMES, f"{path} not found")
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return times, dict.fromkeys(TRAIN_TIMES, f"{path} unreadable ({exc})")
    timings = data.get("timings") if isinstance(data, dict) else None
    idu = data.get("idu") if isinstance(data, dict) else None
    reasons: dict[str, str] = {}
    for key, source in TRAIN_TIMES.items():
        value = timings.get(source) if isinstance(timings, dict) else None
        if key == "idu_seconds" and isinstance(idu, dict) and idu.get("enabled") is False:
            reasons[key] = "no dataset update in this variant (idu.enabled: false)"
        elif isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            times[key] = float(value)
        else:
            reasons[key] = f"{path} has no timings.{source}; rerun train"
    return times, reasons
