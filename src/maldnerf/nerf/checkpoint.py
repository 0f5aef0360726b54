"""Resumable training state in the resume folder (outside the stage's declared output).

``<resume_dir>/checkpoint.pt`` holds only tensors and plain Python values (read back with
``torch.load(weights_only=True)``): the step to run next, model, discriminator and optimiser
states, the current inpainting targets (uint8), the IDU rounds done, the log rows and the
accumulated times (NeRF steps, and the whole stage's wall time). Every step's randomness
derives from ``(seed, step)``, so a run resumed from a checkpoint continues exactly as if it
had not stopped. A ``fingerprint`` of the settings and input files guards against resuming a
run of different settings or inputs; when the run re-inpaints (IDU rounds), it also covers
the inpainting model's settings, the identity of its base model's weights and every file of
its customisation folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from ..digests import file_sha256
from ..errors import UserError
from ..settings import to_dict
from .idu import ReinpainterSource
from .settings import IduSettings, NerfSettings

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
FORMAT = 2  # 2: with the stage's wall time (stage_seconds)

# Settings that do not change what training computes (resuming across them is allowed).
RUN_ONLY = {
    "device",
    "checkpoint_every",
    "log_every",
    "keep_checkpoint",
    "max_nonfinite_steps",
    "chunk_rays",
}


# Inpainting-model settings (at any depth) that do not change the re-inpainted targets.
REINPAINT_RUN_ONLY = {
    "device",
    "attention_slicing",
    "gradient_checkpointing",
    "batch_size",
    "cache_size",
}


def fingerprint(
    nerf: NerfSettings,
    idu: IduSettings,
    files: list[Path],
    reinpainter: ReinpainterSource | None = None,
) -> str:
    """Hash of the settings that shape training and of the input files' bytes; with
    ``reinpainter`` (pass it when the run has IDU rounds) also of the inpainting model's
    settings and of every file in its customisation folder (names relative to the folder)."""
    settings = {k: v for k, v in to_dict(nerf).items() if k not in RUN_ONLY}
    digest = hashlib.sha256(json.dumps([settings, to_dict(idu)], sort_keys=True).encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    if reinpainter is not None:
        digest.update(b"reinpainter")
        digest.update(json.dumps(reinpainter_settings(reinpainter), sort_keys=True).encode())
        digest.update(base_model_identity(reinpainter).encode())
        if reinpainter.customization is not None:
            folder = Path(reinpainter.customization)
            for path in customization_files(folder):
                digest.update(path.relative_to(folder).as_posix().encode())
                digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def base_model_identity(source: ReinpainterSource) -> str:
    """The identity of the re-inpainting base model's weights (see ``models.model_identity``):
    a retrained base behind the same path is another model."""
    from ..diffusion.models import DiffusionSettings, model_identity

    diffusion = source.settings.get("diffusion", DiffusionSettings())
    if not isinstance(diffusion, DiffusionSettings):
        diffusion = DiffusionSettings(**{k: v for k, v in diffusion.items() if k == "model"})
    return model_identity(diffusion)


def reinpainter_settings(source: ReinpainterSource) -> dict[str, Any]:
    """The inpainting model's settings as plain data, without :data:`REINPAINT_RUN_ONLY`."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k not in REINPAINT_RUN_ONLY}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return {name: plain(value) for name, value in source.settings.items()}


def customization_files(folder: Path) -> list[Path]:
    """Every file under a customisation folder, sorted by relative path."""
    if not folder.is_dir():
        raise UserError(
            f"{folder}: customisation folder not found; run the customize stage first, or pass "
            "'none' for the base model"
        )
    return sorted(p for p in folder.rglob("*") if p.is_file())


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
