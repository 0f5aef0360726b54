"""Scoring: the ``evaluate`` stage (metrics of one variant on one scene) and the ``table`` stage.

- :mod:`.measures`: PSNR, SSIM (full, masked, outside), FID and KID from features (numpy).
- :mod:`.backbones`: LPIPS (AlexNet) and clean-fid Inception from local weight files only.
- :mod:`.stage`: the evaluate stage, ``results/{scene}/metrics/{variant}.json``.
- :mod:`.table`: the table stage, ``results/table.csv`` and its companions.
- :mod:`.sheets`: previews and contact sheets for a person to look at.
- :mod:`.commands`: the ``evaluate`` and ``table`` subcommands.
"""

from .stage import METRICS, EvaluateSettings, load_metrics, run
from .table import TableSettings

__all__ = ["METRICS", "EvaluateSettings", "TableSettings", "load_metrics", "run"]
