"""Resumable training state in the resume folder (outside the stage's declared output).

``<resume_dir>/checkpoint.pt`` holds only tensors and plain Python values (read back with
``torch.load(weights_only=True)``): the step to run next, model, discriminator and optimiser
states, the current inpainting targets (uint8), the IDU rounds done, the log rows and the
accumulated training time. Every step's randomness derives from ``(seed, step)``, so a run
resumed from a checkpoint continues exactly as if it had not stopped. A ``fingerprint`` of the
settings and input files guards against resuming a run of different settings or inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from ..settings import to_dict
from .settings import IduSettings, NerfSettings

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
FORMAT = 1

# Settings that do not change what training computes (resuming across them is allowed).
RUN_ONLY = {
    "device",
    "checkpoint_every",
    "log_every",
    "keep_checkpoint",
    "max_nonfinite_steps",
    "chunk_rays",
}


def fingerprint(nerf: NerfSettings, idu: IduSettings, files: list[Path]) -> str:
    """Hash of the settings that shape training and of the input files' bytes."""
    settings = {k: v for k, v in to_dict(nerf).items() if k not in RUN_ONLY}
    digest = hashlib.sha256(json.dumps([settings, to_dict(idu)], sort_keys=True).encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def save(resume_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically as the checkpoint."""
    state = {"format": FORMAT, **state}
    return atomic.write_torch(resume_dir / CHECKPOINT, state)


def load(resume_dir: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint in ``resume_dir`` if it belongs to this run, else ``None``."""
    path = resume_dir / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: start over rather than fail
        log.warning("%s: unreadable checkpoint (%s); starting from scratch", path, exc)
        return None
    if state.get("format") != FORMAT or state.get("fingerprint") != expected_fingerprint:
        log.warning("%s: checkpoint is from other settings or inputs; starting from scratch", path)
        return None
    return state


def remove(resume_dir: Path) -> None:
    """Delete the checkpoint (after a successful run)."""
    (resume_dir / CHECKPOINT).unlink(missing_ok=True)
