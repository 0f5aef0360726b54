"""The ``table`` stage: one row per variant from every scene's metrics files.

Input: the evaluate stage's files ``results/{scene}/metrics/{variant}.json`` (the scene and the
variant are read from that path) and the variants in the order the config lists them. Outputs:

``results/table.csv``
    columns :data:`COLUMNS`, one row per variant in the given order (variants found in the
    metrics but not in the order follow, sorted). Per-view metrics and the training times
    (:data:`TIMES`: the whole train stage, its NeRF steps and its IDU rounds, in seconds, see
    :mod:`.train_time`) are the mean over scenes of each scene's mean; ``fid`` and
    ``kid`` are computed once from the Inception features of all scenes' test views pooled;
    ``n_scenes`` and ``n_views`` count the scenes and test views that went in.
``results/table_per_scene.csv``
    the same columns per scene and variant (``scene`` first, FID/KID per scene).
``results/table.md``
    both tables in Markdown.
``results/metrics.png``
    a bar chart per metric, one bar per variant.
``results/timings.csv``
    each job's wall time, peak memory and CPU time from Snakemake's benchmark files (see
    :mod:`.timings`).

The per-scene contact sheets are separate jobs (:mod:`.contact_sheet`).

An empty cell is a metric that was not computed; ``notes`` says why (missing weights, no test
masks, a scene without metrics, ...). With ``require_all_scenes`` (the default) a metric missing
in any scene of a variant is left empty rather than averaged over the others; a scene with no
metrics file at all is left out of the variant's row (``n_scenes`` shows it) and named in notes.
The paper's figures never appear in these files.

A metrics file written before a metric existed (e.g. before HaarPSI, GMSD and MS-SSIM were
added) is read as it is: that metric's cells are empty and ``notes`` says
:data:`NOT_IN_FILE`; rerunning the evaluate stage fills them.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..errors import UserError
from ..settings import require
from . import measures
from .plot import LABELS, digits, plot
from .stage import METRICS, PER_VIEW, load_metrics
from .timings import TIMING_COLUMNS, timings
from .train_time import TRAIN_TIMES

log = logging.getLogger(__name__)

TIMES = tuple(TRAIN_TIMES)
"""The training-time columns: ``train_seconds`` (whole stage), ``nerf_seconds``, ``idu_seconds``."""
COLUMNS = ["variant", "n_scenes", "n_views", *METRICS, *TIMES, "notes"]
"""Columns of ``table.csv``."""
SCENE_COLUMNS = ["scene", "variant", "n_views", *METRICS, *TIMES, "notes"]
"""Columns of ``table_per_scene.csv``."""

DISABLED = "disabled in evaluate.metrics"
NOT_IN_FILE = "not in the metrics file (written before the metric existed); rerun evaluate"


def _reason(data: dict[str, Any], metric: str) -> str:
    """Why ``metric`` has no value in the metrics file ``data``."""
    missing = data.get("missing", {})
    if metric in missing:
        return missing[metric]
    where = data if metric in TIMES else data["means"]
    return "not computed" if metric in where else NOT_IN_FILE


@dataclass
class TableSettings:
    """Settings the table stage reads."""

    require_all_scenes: bool = True
    """Leave a variant's metric empty when any of its scenes lacks it (else average the others)."""
    sheet_views: int = 4
    """Test views (rows) per contact sheet, at most the evaluate stage's ``preview_views``."""

    def __post_init__(self) -> None:
        require(self.sheet_views >= 1, "sheet_views must be >= 1")


@dataclass
class Variant:
    """A variant as the table lists it."""

    name: str
    description: str = ""
    """What the variant tests; the first item of its notes."""
    skipped: str | None = None
    """Why the variant was not run (its row is empty apart from this note), or ``None``."""


def parse_variants(values: list[Any]) -> list[Variant]:
    """Variants from names, or mappings ``{"name", "description", "skipped"}``, or one JSON list."""
    if len(values) == 1 and isinstance(values[0], str) and values[0].lstrip().startswith("["):
        try:
            values = json.loads(values[0])
        except json.JSONDecodeError as exc:
            raise UserError(f"--variants: not a valid JSON list ({exc})") from None
    variants = []
    for value in values:
        if isinstance(value, Variant):
            variants.append(value)
        elif isinstance(value, str):
            variants.append(Variant(value))
        elif isinstance(value, dict) and isinstance(value.get("name"), str):
            variants.append(
                Variant(value["name"], value.get("description") or "", value.get("skipped"))
            )
        else:
            raise UserError(f"--variants: {value!r} is neither a name nor a mapping with a 'name'")
    return variants


@dataclass
class _Record:
    scene: str
    variant: str
    path: Path
    data: dict[str, Any] | None  # None: the metrics file does not exist


def _group(reasons: list[tuple[str, str, str]], all_scenes: set[str]) -> list[str]:
    """``(metric, reason, scene)`` triples as notes: ``metrics: reason [scenes]``, grouped."""
    by_reason: dict[str, tuple[list[str], list[str]]] = {}
    for metric, reason, scene in reasons:
        metrics, scenes = by_reason.setdefault(reason, ([], []))
        if metric not in metrics:
            metrics.append(metric)
        if scene and scene not in scenes:
            scenes.append(scene)
    notes = []
    for reason, (metrics, scenes) in by_reason.items():
        where = "" if not scenes or set(scenes) == all_scenes else f" [{', '.join(scenes)}]"
        notes.append(f"{', '.join(metrics)}: {reason}{where}")
    return notes


def _scene_row(record: _Record) -> dict[str, Any]:
    row: dict[str, Any] = {"scene": record.scene, "variant": record.variant}
    if record.data is None:
        row.update(
            {"n_views": None, "notes": f"no metrics file {record.path} (evaluate did not finish)"}
        )
        return row
    data = record.data
    row["n_views"] = data["n_views"]
    for metric in METRICS:
        row[metric] = data["means"].get(metric)
    for key in TIMES:
        row[key] = data.get(key)
    reasons = [
        (m, _reason(data, m), record.scene)
        for m in (*METRICS, *TIMES)
        if m in data.get("missing", {}) or (m in METRICS and m not in data["means"])
    ]
    row["notes"] = "; ".join(_group(reasons, {record.scene}) + list(data.get("notes", [])))
    return row


def _pooled(
    records: list[_Record], metric: str, cache: dict[str, Any]
) -> tuple[float | None, list[tuple[str, str, str]]]:
    """FID or KID of the pooled Inception features of ``records`` (scenes with metrics)."""
    reasons = []
    for r in records:
        assert r.data is not None
        if r.data["missing"].get(metric) == DISABLED:
            reasons.append((metric, DISABLED, r.scene))
        elif not r.data.get("features"):
            reasons.append(
                (metric, r.data["missing"].get(metric, "no Inception features"), r.scene)
            )
    if reasons or not records:
        return None, reasons
    if "features" not in cache:
        renders, truths, hashes = [], [], set()
        for r in records:
            assert r.data is not None
            path = r.path.parent / r.data["features"]
            try:
                with np.load(path, allow_pickle=False) as stored:
                    renders.append(stored["render"])
                    truths.append(stored["ground_truth"])
            except (OSError, KeyError, ValueError) as exc:
                raise UserError(
                    f"{path}: unreadable Inception features ({exc}); rerun evaluate"
                ) from None
            hashes.add(((r.data.get("backbones") or {}).get("inception") or {}).get("sha256"))
        cache["features"] = (np.concatenate(renders), np.concatenate(truths), hashes)
    render, truth, hashes = cache["features"]
    if len(hashes) > 1:
        return None, [(metric, "scenes scored with different Inception weight files", "")]
    if render.shape[0] < 2:
        return None, [(metric, "needs at least 2 test views over all scenes", "")]
    if metric == "fid":
        return measures.frechet_distance(render, truth), []
    kid = records[0].data.get("kid", {}) if records[0].data else {}
    value = measures.kernel_distance(
        render,
        truth,
        int(kid.get("subsets", 100)),
        int(kid.get("subset_size", 1000)),
        int(kid.get("seed", 0)),
    )
    return value, []


def _variant_row(
    settings: TableSettings, variant: Variant, scenes: list[str], records: dict[str, _Record]
) -> dict[str, Any]:
    lead = [variant.description] if variant.description else []
    if variant.skipped:
        return {
            "variant": variant.name,
            "n_scenes": 0,
            "n_views": 0,
            "notes": "; ".join([*lead, variant.skipped]),
        }
    done = [records[s] for s in scenes if s in records and records[s].data is not None]
    absent = [s for s in scenes if s not in records or records[s].data is None]
    done_scenes = {r.scene for r in done}
    row: dict[str, Any] = {
        "variant": variant.name,
        "n_scenes": len(done),
        "n_views": sum(int(r.data["n_views"]) for r in done if r.data),
    }
    reasons: list[tuple[str, str, str]] = []
    extra: list[str] = []
    for metric in (*PER_VIEW, *TIMES):
        values, lacking = [], []
        for r in done:
            assert r.data is not None
            value = r.data.get(metric) if metric in TIMES else r.data["means"].get(metric)
            if value is None:
                lacking.append(r)
                reasons.append((metric, _reason(r.data, metric), r.scene))
            else:
                values.append(float(value))
        partial = bool(lacking) and bool(values)
        if values and (not lacking or not settings.require_all_scenes):
            row[metric] = float(np.mean(values))
            if partial:
                extra.append(f"{metric}: averaged over {len(values)} of {len(done)} scenes")
        else:
            row[metric] = None
    cache: dict[str, Any] = {}
    for metric in ("fid", "kid"):
        row[metric], why = _pooled(done, metric, cache)
        reasons.extend(why)
    notes = list(lead)
    if absent:
        notes.append(f"no metrics for scene(s) {', '.join(absent)} (evaluate did not finish)")
    if not done:
        notes.append("no scene finished")
    notes += _group(reasons, done_scenes)
    for r in done:
        assert r.data is not None
        notes += [f"{n} [{r.scene}]" for n in r.data.get("notes", [])]
    row["notes"] = "; ".join(notes + extra)
    return row


def _fmt(value: Any, metric: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if metric in ("n_scenes", "n_views"):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{digits(metric)}f}"
    return str(value).replace("|", "\\|")


def markdown(table: list[dict[str, Any]], per_scene: list[dict[str, Any]]) -> str:
    """Both tables in Markdown, with a legend."""

    def render(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
        head = [LABELS.get(c, c) for c in columns]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(_fmt(row.get(c), c) for c in columns) + " |" for row in rows]
        return lines

    lines = [
        "# Results",
        "",
        "One row per variant: per-view metrics averaged over test views, then over scenes; FID and",
        "KID over all scenes' test views pooled. Masked metrics are inside the dilated object mask,",
        "outside ones on the rest; M-LPIPS is LPIPS on the mask's bounding box. HaarPSI, GMSD and",
        "MS-SSIM need no weights; their `mask` form scores the bounding box with the render's",
        "pixels outside the mask replaced by the ground truth, their M- form the box as it is.",
        "↑ higher is better, ↓ lower. An empty cell was not computed; `notes` says why.",
        "",
        *render(table, COLUMNS),
        "",
        "## Per scene",
        "",
        *render(per_scene, SCENE_COLUMNS),
        "",
    ]
    return "\n".join(lines)


def run(
    settings: TableSettings,
    metrics: list[Path],
    output_csv: Path,
    variants: list[Any],
    per_scene_csv: Path | None = None,
    markdown_path: Path | None = None,
    plot_path: Path | None = None,
    benchmarks: list[Path] | None = None,
    timings_csv: Path | None = None,
) -> list[dict[str, Any]]:
    """Write the table and its companions; returns the rows of ``table.csv``.

    ``variants``: names in row order, or :class:`Variant` / ``{"name", "description",
    "skipped"}`` mappings (see :func:`parse_variants`). Companions default to
    ``table_per_scene.csv``, ``table.md`` and ``metrics.png`` beside ``output_csv``. With
    ``benchmarks`` (Snakemake's benchmark files or folders, see
    :func:`timings`) ``timings.csv`` (or ``timings_csv``) lists each job's time and memory.
    """
    import pandas as pd

    output_csv = Path(output_csv)
    folder = output_csv.parent
    per_scene_csv = Path(per_scene_csv or folder / "table_per_scene.csv")
    markdown_path = Path(markdown_path or folder / "table.md")
    plot_path = Path(plot_path or folder / "metrics.png")
    listed = parse_variants(list(variants))
    if not metrics and not any(v.skipped for v in listed):
        raise UserError(
            "table: no metrics files given; pass --metrics results/{scene}/metrics/{variant}.json ..."
        )

    records: dict[str, dict[str, _Record]] = defaultdict(dict)  # scene -> variant -> record
    found: list[str] = []
    for path in map(Path, metrics):
        scene, variant = path.parent.parent.name, path.stem
        data = load_metrics(path) if path.exists() else None
        records[scene][variant] = _Record(scene, variant, path, data)
        if variant not in found:
            found.append(variant)
    names = [v.name for v in listed]
    extra = sorted(set(found) - set(names))
    if extra:
        log.warning(
            "variants %s have metrics but are not in the variant list; appended", ", ".join(extra)
        )
    order = list({v.name: v for v in [*listed, *map(Variant, extra)]}.values())
    ran = [v.name for v in order if not v.skipped]
    scenes = list(records)

    table = [
        _variant_row(
            settings, v, scenes, {s: records[s][v.name] for s in scenes if v.name in records[s]}
        )
        for v in order
    ]
    per_scene = [
        _scene_row(records[s].get(v) or _Record(s, v, folder / s / "metrics" / f"{v}.json", None))
        for s in scenes
        for v in ran
    ]

    def csv(rows: list[dict[str, Any]], columns: list[str], path: Path) -> None:
        frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)
        for column in ("n_scenes", "n_views"):
            if column in frame:
                frame[column] = frame[column].astype("Int64")
        atomic.atomic_write(
            path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g", na_rep="")
        )

    csv(table, COLUMNS, output_csv)
    csv(per_scene, SCENE_COLUMNS, per_scene_csv)
    atomic.write_text(markdown_path, markdown(table, per_scene))
    plot(table, plot_path)
    if benchmarks is not None or timings_csv is not None:
        rows = timings(list(benchmarks)) if benchmarks is not None else []
        csv(rows, TIMING_COLUMNS, Path(timings_csv or folder / "timings.csv"))
    log.info("table: %d variants x %d scenes -> %s", len(order), len(scenes), output_csv)
    return table
