"""What the benchmarks record about the device they ran on."""

from __future__ import annotations

import platform

import torch


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's (processor, or the architecture when unknown)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
