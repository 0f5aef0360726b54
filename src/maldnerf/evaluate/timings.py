"""The table stage's ``timings.csv``: each job's wall time, peak memory and CPU time.

Read from Snakemake's benchmark files (``benchmark:`` of every rule,
``results/benchmarks/<stage>/<job>.tsv``): ``seconds`` is the job's whole wall time as
Snakemake measured it (process start to exit, so the train stage's includes its dataset
updates), ``max_rss_mb`` its peak resident memory, ``cpu_seconds`` its CPU time. A job
resumed after an interruption is measured for its last run only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TIMING_COLUMNS = ["stage", "job", "seconds", "max_rss_mb", "cpu_seconds"]
"""Columns of ``timings.csv``."""

STAGE_ORDER = [
    "pretrain",
    "prepare",
    "poses",
    "masks",
    "customize",
    "inpaint",
    "train",
    "render",
    "evaluate",
]


def timings(benchmarks: list[Path]) -> list[dict[str, Any]]:
    """Rows of ``timings.csv`` (columns :data:`TIMING_COLUMNS`), in pipeline order.

    ``benchmarks``: files ``<stage>/<job>.tsv`` (Snakemake's ``benchmark:`` format), or folders
    holding them (every ``*/*.tsv`` inside); files that do not exist are skipped. The table's own
    benchmark is left out (it describes the previous run).
    """
    import pandas as pd

    rows = []
    files = []
    for item in map(Path, benchmarks):
        files.extend(sorted(item.glob("*/*.tsv")) if item.is_dir() else [item])
    for path in files:
        if not path.is_file():
            log.warning("%s: no benchmark file (job not run by Snakemake?); not in timings", path)
            continue
        stage = path.parent.name
        if stage == "table":
            continue
        try:
            frame = pd.read_csv(path, sep="\t")
            first = frame.iloc[0]
        except (OSError, ValueError, IndexError, pd.errors.ParserError) as exc:
            log.warning("%s: unreadable benchmark file skipped (%s)", path, exc)
            continue

        def number(column: str, row: Any = first) -> float | None:
            value = pd.to_numeric(row.get(column), errors="coerce")
            return None if pd.isna(value) else float(value)

        rows.append(
            {
                "stage": stage,
                "job": path.stem,
                "seconds": number("s"),
                "max_rss_mb": number("max_rss"),
                "cpu_seconds": number("cpu_time"),
            }
        )
    rank = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    return sorted(
        rows, key=lambda r: (rank.get(r["stage"], len(STAGE_ORDER)), r["stage"], r["job"])
    )
