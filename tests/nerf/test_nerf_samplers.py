"""Inverse-CDF resampling: nerfacc's kernel semantics, sortedness, bounds, concentration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maldnerf.nerf.samplers import (
    ProposalSampler,
    importance_sampling,
    importance_sampling_torch,
    nerfacc_cuda_available,
    searchsorted_outer,
)


def reference_sampling(
    edges: np.ndarray, cdfs: np.ndarray, num: int, bias: np.ndarray
) -> np.ndarray:
    """nerfacc's CUDA kernels (importance_sampling + compute_intervals), one ray at a time."""
    out = np.zeros((len(edges), num + 1))
    for r in range(len(edges)):
        c, e = cdfs[r], edges[r]
        last = len(c) - 1
        step = (c[last] - c[0]) / num
        t = np.zeros(num)
        for i in range(num):
            u = c[0] + (i + bias[r]) * step
            p = 0  # upper_bound over [0, last)
            while p < last and c[p] <= u:
                p += 1
            p0, p1 = max(min(p - 1, last), 0), max(min(p, last), 0)
            if c[p1] - c[p0] < 1e-10:
                t[i] = 0.5 * (e[p0] + e[p1])
            else:
                t[i] = (u - c[p0]) * (e[p1] - e[p0]) / (c[p1] - c[p0]) + e[p0]
        out[r, 0] = max(t[0] - 0.5 * (t[1] - t[0]), e[0])
        out[r, 1:num] = 0.5 * (t[1:] + t[:-1])
        out[r, num] = min(t[-1] + 0.5 * (t[-1] - t[-2]), e[-1])
    return out


def random_case(rays: int = 6, bins: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.uniform(0, 1, (rays, bins + 1)), axis=1)
    edges[:, 0], edges[:, -1] = 0.0, 1.0
    w = rng.uniform(0, 1, (rays, bins)) * (rng.uniform(0, 1, (rays, bins)) > 0.3)
    cdfs = np.concatenate([np.zeros((rays, 1)), np.cumsum(w, axis=1)], axis=1)
    cdfs /= np.maximum(cdfs[:, -1:], 1e-9)
    return edges, cdfs


@pytest.mark.parametrize("stratified", [False, True])
def test_importance_sampling_matches_nerfacc_kernel_semantics(stratified):
    edges, cdfs = random_case()
    bias = (
        np.random.default_rng(3).uniform(0, 1, len(edges))
        if stratified
        else np.full(len(edges), 0.5)
    )
    jitter = torch.tensor(bias, dtype=torch.float32)[:, None] if stratified else None
    got = importance_sampling_torch(
        torch.tensor(edges, dtype=torch.float32), torch.tensor(cdfs, dtype=torch.float32), 9, jitter
    )
    np.testing.assert_allclose(got.numpy(), reference_sampling(edges, cdfs, 9, bias), atol=1e-5)


def test_resampled_edges_are_sorted_and_inside_the_bounds():
    edges, cdfs = random_case(rays=50, bins=12, seed=5)
    edges = edges * 3.0 + 1.0  # bounds [1, 4]
    gen = torch.Generator().manual_seed(0)
    new = importance_sampling(
        torch.tensor(edges, dtype=torch.float32),
        torch.tensor(cdfs, dtype=torch.float32),
        20,
        True,
        gen,
    )
    assert new.shape == (50, 21)
    assert torch.all(new[:, 1:] >= new[:, :-1])
    assert torch.all(new >= 1.0) and torch.all(new <= 4.0)


def test_resampling_concentrates_where_the_weights_are():
    edges = torch.linspace(0, 1, 11).expand(4, 11)
    w = torch.full((4, 10), 0.01)
    w[:, 4] = 1.0  # almost all mass in [0.4, 0.5]
    cdfs = torch.cat([torch.zeros(4, 1), torch.cumsum(w, 1)], 1)
    cdfs = cdfs / cdfs[:, -1:]
    new = importance_sampling_torch(edges, cdfs, 32)
    mids = 0.5 * (new[:, 1:] + new[:, :-1])
    inside = ((mids >= 0.4) & (mids <= 0.5)).float().mean()
    assert inside > 0.85
    # And the samples are dense there: the intervals inside are much shorter than outside.
    widths = new[:, 1:] - new[:, :-1]
    assert (
        widths[(mids >= 0.4) & (mids <= 0.5)].mean()
        < 0.2 * widths[(mids < 0.4) | (mids > 0.5)].mean()
    )


def test_searchsorted_outer_brackets_queries():
    key = torch.tensor([[0.0, 0.25, 0.75, 1.0]])
    query = torch.tensor([[0.0, 0.3, 0.75, 1.0]])
    left, right = searchsorted_outer(key, query)
    assert left.tolist() == [[0, 1, 2, 2]]
    assert right.tolist() == [[1, 2, 3, 3]]


def test_proposal_sampler_returns_sorted_edges_in_unit_range():
    sampler = ProposalSampler([12, 10], 8)

    def density(edges):
        mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
        return torch.exp(-((mids - 0.6) ** 2) / 0.001) * 50, edges * 5.0

    gen = torch.Generator().manual_seed(0)
    edges, levels = sampler.sample(5, [density, density], True, gen, "cpu")
    assert edges.shape == (5, 9) and len(levels) == 2
    assert torch.all(edges[:, 1:] >= edges[:, :-1]) and edges.min() >= 0 and edges.max() <= 1
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    assert ((mids - 0.6).abs() < 0.1).float().mean() > 0.7


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nerfacc_cuda_kernels_agree_with_pytorch():
    if not nerfacc_cuda_available():
        pytest.skip("nerfacc's CUDA extension could not be built")
    edges, cdfs = random_case(rays=64, bins=16, seed=7)
    e = torch.tensor(edges, dtype=torch.float32, device="cuda")
    c = torch.tensor(cdfs, dtype=torch.float32, device="cuda")
    torch_path = importance_sampling(e, c, 24, False, use_cuda_kernel=False)
    cuda_path = importance_sampling(e, c, 24, False, use_cuda_kernel=True)
    torch.testing.assert_close(cuda_path, torch_path, atol=1e-5, rtol=1e-5)
    q = torch_path
    for a, b in zip(searchsorted_outer(e, q, False), searchsorted_outer(e, q, True)):
        assert torch.equal(a, b)
