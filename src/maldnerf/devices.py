"""Where a stage runs: the ``device`` settings (``auto``, ``cpu``, ``cuda`` or ``cuda:N``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import torch


def resolve_device(setting: str, where: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; CUDA without a GPU is an error naming the
    setting ``where`` (e.g. ``nerf.device``)."""
    import torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"{where}: {setting} requested but no CUDA device is available; use auto or cpu"
        )
    return torch.device(setting)
