"""Runtime glue of NeRF training: device settings, determinism, per-step randomness, guards.

Precision (bf16 autocast), TF32, nerfacc's CUDA kernels and ``torch.compile`` as the settings
ask (:func:`configure_runtime`); deterministic kernels on the CPU; the random generator of a
step, a function of ``(seed, step)`` only (so a resumed run draws what an uninterrupted one
does); the NaN/inf test of a step (:func:`nonfinite`); the run's peak memory.
"""

from __future__ import annotations

import contextlib
import logging
import resource
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from .model import NerfModel
from .samplers import nerfacc_cuda_available
from .settings import NerfSettings

log = logging.getLogger(__name__)


def resolve_precision(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of the MLPs: bf16 on GPUs that support it under ``auto``."""
    if setting == "bf16" or (
        setting == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    ):
        return torch.bfloat16
    return None


@contextlib.contextmanager
def deterministic(enabled: bool):
    """Deterministic kernels while training on the CPU (multithreaded hash-grid gradient
    accumulation otherwise differs in the last bits between runs); GPUs keep the fast ones."""
    previous = torch.are_deterministic_algorithms_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def total_norm(tensors: list[Tensor]) -> Tensor:
    """The 2-norm of all ``tensors`` together (a scalar on the first one's device).

    What ``torch.nn.utils.get_total_norm`` (torch >= 2.6 only) computes, with
    ``torch.linalg.vector_norm`` alone: the norm of the per-tensor norms (each in its tensor's
    dtype, stacked with type promotion). It is NaN/inf when an element is NaN/inf or the sum
    of squares overflows.
    """
    device = tensors[0].device
    norms = [torch.linalg.vector_norm(t).to(device) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(norms))


def nonfinite(loss: Tensor, parameters) -> Tensor:
    """1.0 (on the device) when the loss or any gradient is NaN/inf, else 0.0."""
    grads = [p.grad for p in parameters if p.grad is not None]
    finite = torch.isfinite(loss)
    if grads:
        finite = finite & torch.isfinite(total_norm(grads))
    return (~finite).float()


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The random generator of one step: a function of ``(seed, step)`` only."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + step * 7_919 + 17) % 2**63)
    return generator


def configure_runtime(nerf: NerfSettings, device: torch.device, model: NerfModel) -> dict[str, Any]:
    """Apply precision, TF32, nerfacc-kernel and compile settings; returns what was chosen."""
    model.autocast_dtype = resolve_precision(nerf.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = nerf.tf32
        torch.backends.cudnn.allow_tf32 = nerf.tf32
    use_kernel = False
    if nerf.nerfacc_cuda != "off" and device.type == "cuda":
        use_kernel = nerfacc_cuda_available()
    if nerf.nerfacc_cuda == "on" and not use_kernel:
        raise UserError(
            "nerf.nerfacc_cuda: on, but nerfacc's CUDA extension is not available here "
            "(needs a GPU and the CUDA toolkit to build it); use auto or off"
        )
    model.use_cuda_kernel = use_kernel
    if nerf.compile:
        model.field.compile()
        for proposal in model.proposals:
            proposal.compile()
    return {
        "device": str(device),
        "precision": str(model.autocast_dtype or torch.float32).replace("torch.", ""),
        "tf32": bool(device.type == "cuda" and nerf.tf32),
        "nerfacc_cuda": use_kernel,
        "compile": nerf.compile,
    }


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory of the run: GPU allocator peaks on CUDA, peak resident set size on the CPU."""
    memory: dict[str, Any] = {
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    }
    if device.type == "cuda":
        memory["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        memory["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        log.info("GPU memory summary:\n%s", torch.cuda.memory_summary(device, abbreviated=True))
    return memory
