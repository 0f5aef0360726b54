"""The table stage's bar chart ``results/metrics.png``: one panel per metric, a bar per variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import atomic
from .stage import METRICS

LABELS = {
    "psnr": "PSNR ↑",
    "psnr_masked": "PSNR mask ↑",
    "psnr_outside": "PSNR outside ↑",
    "ssim": "SSIM ↑",
    "ssim_masked": "SSIM mask ↑",
    "ssim_outside": "SSIM outside ↑",
    "lpips": "LPIPS ↓",
    "m_lpips": "M-LPIPS ↓",
    "haarpsi": "HaarPSI ↑",
    "haarpsi_masked": "HaarPSI mask ↑",
    "m_haarpsi": "M-HaarPSI ↑",
    "gmsd": "GMSD ↓",
    "gmsd_masked": "GMSD mask ↓",
    "m_gmsd": "M-GMSD ↓",
    "ms_ssim": "MS-SSIM ↑",
    "ms_ssim_masked": "MS-SSIM mask ↑",
    "m_ms_ssim": "M-MS-SSIM ↑",
    "fid": "FID ↓",
    "kid": "KID ↓",
    "train_seconds": "train s",
    "nerf_seconds": "NeRF s",
    "idu_seconds": "IDU s",
}
"""Column and panel titles (↑ higher is better, ↓ lower)."""
DIGITS = {
    "psnr": 2,
    "ssim": 4,
    "lpips": 4,
    "m_lpips": 4,
    "fid": 2,
    "kid": 4,
    "train_seconds": 1,
    "nerf_seconds": 1,
    "idu_seconds": 1,
}
"""Decimals shown per metric (``psnr_masked`` as ``psnr``, and so on)."""


def digits(metric: str) -> int:
    """Decimals to show for ``metric``."""
    return DIGITS.get(metric, DIGITS.get(metric.split("_")[0], 4))


def plot(table: list[dict[str, Any]], path: Path) -> None:
    """Bar chart per metric (and training time), one bar per variant, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [*METRICS, "train_seconds"]
    cols = 4
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    names = [row["variant"] for row in table]
    colors = [plt.cm.tab10(i % 10) for i in range(len(names))]
    for ax, metric in zip(axes.flat, metrics):
        values = [row.get(metric) for row in table]
        present = [v for v in values if v is not None]
        ax.bar(
            range(len(names)),
            [v if v is not None else 0.0 for v in values],
            color=[c if v is not None else (0, 0, 0, 0) for c, v in zip(colors, values)],
        )
        top = max(present, default=1.0)
        for i, value in enumerate(values):
            text = "n/a" if value is None else f"{value:.{digits(metric)}f}"
            ax.text(
                i,
                (value or 0.0) if value is not None else 0.0,
                text,
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_ylim(min(0.0, min(present, default=0.0)), top * 1.15 if top > 0 else 1.0)
        ax.set_title(LABELS[metric], fontsize=9)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(
        "Metrics per variant (mean over scenes; FID/KID pooled; n/a = not computed)", fontsize=10
    )
    fig.tight_layout()
    try:
        atomic.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
