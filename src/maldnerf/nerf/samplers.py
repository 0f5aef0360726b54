"""Samplers: inverse-CDF (importance) resampling and the proposal sampler.

Samples live in normalised ray distance ``s ∈ [0, 1]`` (see :mod:`.parameterization`); a
ray's samples are ``k`` intervals given by ``k + 1`` sorted edges. :func:`importance_sampling`
is a PyTorch transcription of nerfacc's CUDA kernel (batched form): ``k`` points at the
quantiles ``(i + u)/k`` of the piecewise-linear CDF (``u = 0.5``, or one uniform jitter per
ray when stratified), interval edges at their midpoints, the outer edges half a spacing out,
clipped to the old range. On a GPU with nerfacc's CUDA extension built the same computation
runs in nerfacc's kernel (:func:`use_nerfacc_cuda`); tests check both agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_NERFACC_CUDA: bool | None = None


def nerfacc_cuda_available() -> bool:
    """Whether nerfacc's CUDA extension is importable (builds it on first use; cached)."""
    global _NERFACC_CUDA
    if _NERFACC_CUDA is None:
        _NERFACC_CUDA = False
        if torch.cuda.is_available():
            try:
                from nerfacc.cuda._backend import _C

                _NERFACC_CUDA = _C is not None
            except Exception as exc:  # a failed JIT build is not fatal: use PyTorch
                log.warning("nerfacc CUDA extension unavailable (%s); using PyTorch sampling", exc)
    return _NERFACC_CUDA


def importance_sampling_torch(
    edges: Tensor, cdfs: Tensor, num: int, jitter: Tensor | None = None
) -> Tensor:
    """Resample ``num`` intervals per ray from interval ``edges`` ``(n, b+1)`` and the CDF at
    them ``cdfs`` ``(n, b+1)`` (non-decreasing). ``jitter`` ``(n, 1)`` in [0, 1) is one offset
    per ray (``None``: 0.5, deterministic). Returns new sorted edges ``(n, num+1)``."""
    u_floor, u_ceil = cdfs[:, :1], cdfs[:, -1:]
    bias = 0.5 if jitter is None else jitter
    steps = torch.arange(num, device=edges.device, dtype=cdfs.dtype)
    u = u_floor + (steps + bias) * ((u_ceil - u_floor) / num)  # (n, num)
    # cdfs[p - 1] <= u < cdfs[p], searching all but the last edge (as nerfacc does).
    p = torch.searchsorted(cdfs[:, :-1].contiguous(), u.contiguous(), right=True)
    last = cdfs.shape[1] - 1
    p0, p1 = (p - 1).clamp(0, last), p.clamp(0, last)
    u_lo, u_hi = cdfs.gather(1, p0), cdfs.gather(1, p1)
    t_lo, t_hi = edges.gather(1, p0), edges.gather(1, p1)
    span = u_hi - u_lo
    flat = span < 1e-10
    t = torch.where(
        flat, 0.5 * (t_lo + t_hi), t_lo + (u - u_lo) * (t_hi - t_lo) / torch.where(flat, 1.0, span)
    )
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    first = torch.maximum(t[:, :1] - 0.5 * (t[:, 1:2] - t[:, :1]), edges[:, :1])
    final = torch.minimum(t[:, -1:] + 0.5 * (t[:, -1:] - t[:, -2:-1]), edges[:, -1:])
    return torch.cat([first, mids, final], dim=1)


def importance_sampling(
    edges: Tensor,
    cdfs: Tensor,
    num: int,
    stratified: bool,
    generator: torch.Generator | None = None,
    use_cuda_kernel: bool = False,
) -> Tensor:
    """:func:`importance_sampling_torch`, or nerfacc's CUDA kernel when ``use_cuda_kernel``.

    With the CUDA kernel, stratified jitter comes from CUDA's global generator instead of
    ``generator`` (same distribution, not the same numbers).
    """
    if use_cuda_kernel:
        from nerfacc import RayIntervals
        from nerfacc import importance_sampling as nerfacc_sampling

        intervals, _ = nerfacc_sampling(
            RayIntervals(vals=edges.contiguous()), cdfs.contiguous(), num, stratified
        )
        return intervals.vals
    jitter = None
    if stratified:
        jitter = torch.rand(
            (edges.shape[0], 1), generator=generator, device=edges.device, dtype=edges.dtype
        )
    return importance_sampling_torch(edges, cdfs, num, jitter)


def searchsorted_outer(key_edges: Tensor, query_edges: Tensor, use_cuda_kernel: bool = False):
    """Indices ``(left, right)`` with ``key[left] <= query < key[right]`` (clamped to the
    key's range), per ray: nerfacc's ``searchsorted`` in PyTorch (or nerfacc's CUDA kernel)."""
    if use_cuda_kernel:
        from nerfacc import RayIntervals, searchsorted

        return searchsorted(
            RayIntervals(vals=key_edges.contiguous()), RayIntervals(vals=query_edges.contiguous())
        )
    last = key_edges.shape[1] - 1
    p = torch.searchsorted(key_edges[:, :-1].contiguous(), query_edges.contiguous(), right=True)
    return (p - 1).clamp(0, last), p.clamp(0, last)


def uniform_edges(n_rays: int, num: int, device: torch.device | str, dtype=torch.float32) -> Tensor:
    """``num`` equal intervals over ``s ∈ [0, 1]`` for every ray, ``(n, num+1)``."""
    return torch.linspace(0.0, 1.0, num + 1, device=device, dtype=dtype).expand(n_rays, num + 1)


class ProposalSampler:
    """Proposal sampling: each proposal density resamples the previous level's intervals.

    ``sample(density_fns, ...)`` starts from the single interval ``[0, 1]`` with a flat CDF,
    and for each proposal function draws its samples, evaluates the density (with gradients,
    so the interlevel loss can train it), turns it into a CDF (1 − transmittance at each edge),
    and finally draws the field's samples. Returns the final edges and, per proposal level, its
    edges and CDF for the interlevel loss.
    """

    def __init__(self, proposal_samples: list[int], num_samples: int) -> None:
        self.proposal_samples = list(proposal_samples)
        self.num_samples = num_samples

    def sample(
        self,
        n_rays: int,
        density_fns: list[Callable[[Tensor], tuple[Tensor, Tensor]]],
        stratified: bool,
        generator: torch.Generator | None,
        device: torch.device | str,
        use_cuda_kernel: bool = False,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """``density_fns[i](edges)`` returns ``(densities (n, k), distances (n, k+1))``."""
        from .renderers import transmittance

        edges = torch.tensor([0.0, 1.0], device=device).expand(n_rays, 2)
        cdfs = edges
        levels: list[tuple[Tensor, Tensor]] = []
        for density_fn, num in zip(density_fns, self.proposal_samples):
            with torch.no_grad():
                edges = importance_sampling(
                    edges, cdfs, num, stratified, generator, use_cuda_kernel
                )
            densities, distances = density_fn(edges)
            trans = transmittance(densities, distances)
            cdfs = 1.0 - torch.cat([trans, torch.zeros_like(trans[:, :1])], dim=1)
            levels.append((edges, cdfs))
        with torch.no_grad():
            edges = importance_sampling(
                edges, cdfs.detach(), self.num_samples, stratified, generator, use_cuda_kernel
            )
        return edges, levels
