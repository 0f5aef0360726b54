"""Hash-grid encoding against a direct per-point reference; spherical harmonics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maldnerf.nerf.encodings import (
    PRIMES,
    HashEncoding,
    SphericalHarmonics,
    level_multipliers,
    level_resolutions,
)


def reference_encoding(enc: HashEncoding, x: np.ndarray) -> np.ndarray:
    """Instant-NGP's encoding written out point by point, level by level, corner by corner."""
    table = enc.params.detach().double().numpy()
    T = enc.table_size
    out = np.zeros((len(x), enc.num_levels, enc.features_per_level))
    for level, res in enumerate(enc.resolutions.tolist()):
        bits = res.bit_length()
        dense = (2**bits) ** 3 <= T
        for n, point in enumerate(np.clip(x, 0.0, 1.0)):
            scaled = point * res
            cell = np.minimum(np.floor(scaled), res - 1).astype(np.int64)
            frac = scaled - cell
            for i in (0, 1):
                for j in (0, 1):
                    for k in (0, 1):
                        vx, vy, vz = int(cell[0] + i), int(cell[1] + j), int(cell[2] + k)
                        if dense:
                            index = vx + vy * 2**bits + vz * 2 ** (2 * bits)
                        else:
                            index = (vx * PRIMES[0]) ^ (vy * PRIMES[1]) ^ (vz * PRIMES[2])
                            index %= T
                        weight = (
                            (frac[0] if i else 1 - frac[0])
                            * (frac[1] if j else 1 - frac[1])
                            * (frac[2] if k else 1 - frac[2])
                        )
                        out[n, level] += weight * table[level * T + index]
    return out.reshape(len(x), -1)


def test_hash_encoding_matches_reference_with_dense_and_hashed_levels():
    torch.manual_seed(0)
    enc = HashEncoding(
        num_levels=5, features_per_level=2, log2_table_size=10, base_resolution=4, max_resolution=64
    )
    with torch.no_grad():
        enc.params.uniform_(-1.0, 1.0)  # large values so errors would show
    # Levels 4 and 6 fit the 1024-entry table densely (8^3 = 512), the finer ones are hashed.
    dense = [(2 ** r.bit_length()) ** 3 <= enc.table_size for r in enc.resolutions.tolist()]
    assert any(dense) and not all(dense)
    x = np.random.default_rng(1).uniform(-0.1, 1.1, size=(40, 3))  # includes points outside
    x[0] = [1.0, 1.0, 1.0]
    x[1] = [0.0, 0.0, 0.0]
    got = enc(torch.tensor(x, dtype=torch.float32)).detach().double().numpy()
    want = reference_encoding(enc, x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_hash_encoding_gradient_reaches_exactly_the_corner_rows():
    enc = HashEncoding(
        num_levels=1, features_per_level=1, log2_table_size=8, base_resolution=4, max_resolution=4
    )
    x = torch.tensor([[0.3, 0.55, 0.9]])
    enc(x).sum().backward()
    grad = enc.params.grad[:, 0]
    assert torch.count_nonzero(grad) == 8  # the 8 corners of the cell
    assert grad.sum().item() == pytest.approx(1.0, abs=1e-6)  # trilinear weights sum to 1


def test_hash_encoding_shapes_and_level_layout():
    enc = HashEncoding(
        num_levels=8,
        features_per_level=2,
        log2_table_size=14,
        base_resolution=16,
        max_resolution=512,
    )
    assert enc(torch.rand(2, 7, 3)).shape == (2, 7, 16)
    assert enc.params.shape == (8 * 2**14, 2)
    assert level_resolutions(8, 16, 512)[0] == 16 and level_resolutions(8, 16, 512)[-1] == 512
    assert all(s.stop - s.start <= enc.table_size for s in enc.level_slices())


def test_reachable_rows_are_exactly_the_rows_the_forward_pass_touches():
    """Dense level (res 2: 27 of 64 rows), small hashed level (res 5: 216 vertices in 256 rows)
    and a large hashed level (res 14: 3375 vertices > 8·256, all rows count)."""
    enc = HashEncoding(
        num_levels=3, features_per_level=1, log2_table_size=8, base_resolution=2, max_resolution=14
    )
    assert enc.resolutions.tolist() == [2, 5, 14]
    assert level_multipliers(2, 256)[0] != PRIMES and level_multipliers(5, 256)[0] == PRIMES
    masks = enc.reachable_masks()
    assert masks[2] is None and enc.reachable_counts == [27, int(masks[1].sum()), 256]
    assert enc.reachable_counts[1] < min(216, 256)  # hash collisions and unreached rows
    for level, (rows, mask, res) in enumerate(
        zip(enc.level_slices(), masks, enc.resolutions.tolist())
    ):
        # Every cell centre of the level touches its 8 corners with weight 1/8.
        centres = torch.stack(torch.meshgrid(*[torch.arange(res)] * 3, indexing="ij"), -1) + 0.5
        enc.params.grad = None
        enc(centres.reshape(-1, 3).float() / res).reshape(-1, 3)[:, level].sum().backward()
        touched = enc.params.grad[rows, 0] != 0
        assert torch.equal(touched, torch.ones_like(touched) if mask is None else mask), level
        assert int(touched.sum()) == enc.reachable_counts[level]


def test_spherical_harmonics_are_orthonormal():
    torch.manual_seed(0)
    sh = SphericalHarmonics(4)
    d = torch.randn(200_000, 3, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    y = sh(d)
    gram = 4 * math.pi * (y.T @ y) / len(d)
    assert y.shape[-1] == 16
    np.testing.assert_allclose(gram.numpy(), np.eye(16), atol=0.03)
