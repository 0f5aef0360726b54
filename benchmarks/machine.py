"""What the benchmarks need of the device they time: its name, and waiting for it.

torch is imported inside the functions, so scripts that import torch lazily stay quick to start.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's (processor, or the architecture when unknown)."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished its queued work (CUDA); nothing to wait for on a CPU."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
