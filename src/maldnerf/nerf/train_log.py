"""The training log ``train_log.csv``: its columns and the discriminator's statistics.

One row every ``log_every`` iterations: ``step``, the window's mean of each loss in
:data:`LOG_LOSSES` (unweighted; empty when not computed in the window), the discriminator's
:data:`DISCRIMINATOR_STATS`, then ``lr``, ``disc_lr``, ``idu_strength`` (empty before the
first round), ``rays_per_second``, ``skipped_steps`` and ``seconds`` (NeRF steps so far).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from torch import Tensor

LOG_LOSSES = (
    "total",
    "pixel",
    "interlevel",
    "distortion",
    "decay",
    "adversarial",
    "feature_matching",
    "inpainted",
    "discriminator",
    "r1",
)


DISCRIMINATOR_STATS = ("d_real_logit", "d_fake_logit", "d_real_accuracy", "d_fake_accuracy")


def discriminator_stats(real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
    """What the discriminator makes of this step's patches (before its update), for the log:
    mean logit of the real and of the fake patches, and the fraction of logit positions it
    classifies correctly (real > 0, fake < 0). Accuracies near 0.5 and logits near 0 mean it
    cannot tell the renders from the targets; near 1 and far apart, that it can."""
    real, fake = real_logits.detach().float(), fake_logits.detach().float()
    return {
        "d_real_logit": real.mean(),
        "d_fake_logit": fake.mean(),
        "d_real_accuracy": (real > 0).float().mean(),
        "d_fake_accuracy": (fake < 0).float().mean(),
    }


def log_csv(rows: list[dict[str, Any]]) -> str:
    """The training log as CSV text (empty cells for losses not computed in a window)."""
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["step"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        )
    return buffer.getvalue()
