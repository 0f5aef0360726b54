"""Encodings: the multiresolution hash grid (Instant-NGP) and spherical harmonics, in PyTorch.

The hash grid is vectorised over levels and the 8 cell corners, so one forward pass is a
handful of large tensor operations and no Python loop over levels: that is what runs at speed
on a GPU and, with ``torch.compile``, fuses into few kernels. Intermediate tensors keep the
points on the last (contiguous) axis, ``(levels, …, points)``, so every broadcast runs over
long contiguous rows (on the CPU this is ~3× faster than points-first).

Level ``l`` has resolution ``floor(base · b^l)`` with ``b = exp((ln max − ln base)/(L − 1))``
and owns rows ``[l·T, (l+1)·T)`` of one parameter table (``T`` = table size, a power of two).
A vertex ``(x, y, z)`` of a level whose grid fits in the table is indexed densely as
``x + y·2^k + z·2^2k`` (``2^k > res``); finer levels use Instant-NGP's spatial hash
``(x·1) xor (y·2654435761) xor (z·805459861) mod T``. Both are xor-combinations of per-axis
terms (dense terms have disjoint bits), which is why one code path serves both.

Not every row of a level is reachable: a dense level's ``(res+1)^3`` vertices use that many of
its ``2^3k`` rows, and a hashed level with fewer vertices than about ``8·T`` leaves rows that
no vertex hashes to. :meth:`HashEncoding.reachable_masks` marks the rows the vertices index
(found by enumerating them, exactly), so the decay loss averages over those rows only; a
hashed level with more vertices is taken as reaching all ``T`` rows (a row is then missed with
probability ``exp(−V/T) < 0.04 %``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

PRIMES = (1, 2654435761, 805459861)
EXACT_REACH_FACTOR = 8  # enumerate a level's reachable rows up to this many vertices per row


def level_resolutions(num_levels: int, base: int, maximum: int) -> list[int]:
    """Grid resolution of each level."""
    if num_levels == 1:
        return [base]
    growth = math.exp((math.log(maximum) - math.log(base)) / (num_levels - 1))
    return [int(math.floor(base * growth**level + 1e-6)) for level in range(num_levels)]


def level_multipliers(resolution: int, table_size: int) -> tuple[tuple[int, int, int], int]:
    """Per-axis multipliers of a level's vertex index and the number of table rows it uses."""
    bits = resolution.bit_length()  # 2**bits > resolution >= every vertex coordinate
    if (2**bits) ** 3 <= table_size:
        return (1, 2**bits, 2 ** (2 * bits)), (2**bits) ** 3
    return PRIMES, table_size


def reachable_rows(
    resolution: int, multipliers: tuple[int, int, int], table_size: int, rows: int
) -> Tensor | None:
    """Bool mask ``(rows,)`` of the level rows its ``(res+1)^3`` vertices index, or ``None``
    when the level has more than ``EXACT_REACH_FACTOR · T`` vertices (all rows count)."""
    side = resolution + 1
    if side**3 > EXACT_REACH_FACTOR * table_size:
        return None
    if multipliers != PRIMES:  # dense: vertex (x, y, z) is row x + y·edge + z·edge² of edge³
        edge = multipliers[1]
        cube = torch.zeros(edge, edge, edge, dtype=torch.bool)
        cube[:side, :side, :side] = True
        return cube.reshape(rows)
    coords = torch.arange(side, dtype=torch.int64)
    tx, ty, tz = ((coords * m) & (table_size - 1) for m in multipliers)
    plane = torch.bitwise_xor(tx[None, :], ty[:, None]).reshape(1, -1)  # one z-slice
    mask = torch.zeros(table_size, dtype=torch.bool)
    step = max(1, (1 << 22) // plane.shape[1])  # z-slices per chunk: about 4M vertices
    for start in range(0, side, step):
        mask[torch.bitwise_xor(plane, tz[start : start + step, None])] = True
    return mask[:rows]


class HashEncoding(nn.Module):
    """Multiresolution hash encoding of points in the unit cube ``[0, 1]^3``.

    ``forward(x)`` maps ``(..., 3)`` to ``(..., num_levels · features_per_level)`` (level-major);
    points outside the cube are clamped onto it.
    """

    def __init__(
        self,
        num_levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        init_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.table_size = 2**log2_table_size
        resolutions = level_resolutions(num_levels, base_resolution, max_resolution)
        levels = [level_multipliers(r, self.table_size) for r in resolutions]
        self.rows_used = [rows for _, rows in levels]
        self._reachable: list[str | None] = []  # buffer name of each level's reachable mask
        self.reachable_counts: list[int] = []  # rows of each level that vertices index
        for level, (resolution, (mults, rows)) in enumerate(zip(resolutions, levels)):
            mask = reachable_rows(resolution, mults, self.table_size, rows)
            name = None if mask is None else f"reachable_{level}"
            if mask is not None:
                self.register_buffer(name, mask, persistent=False)
            self._reachable.append(name)
            self.reachable_counts.append(rows if mask is None else int(mask.sum()))
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.int64), False)
        multipliers = torch.tensor([m for m, _ in levels], dtype=torch.int64)
        self.register_buffer("multipliers", multipliers[:, :, None, None], False)  # (L, 3, 1, 1)
        level_bits = torch.arange(num_levels, dtype=torch.int64) * self.table_size
        self.register_buffer("level_bits", level_bits[:, None, None], False)  # (L, 1, 1)
        self.register_buffer("face", torch.tensor([0, 1], dtype=torch.int64)[:, None], False)
        self.params = nn.Parameter(
            torch.empty(num_levels * self.table_size, features_per_level).uniform_(
                -init_scale, init_scale
            )
        )

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def level_slices(self) -> list[slice]:
        """Rows of ``params`` each level uses."""
        return [
            slice(level * self.table_size, level * self.table_size + rows)
            for level, rows in enumerate(self.rows_used)
        ]

    def reachable_masks(self) -> list[Tensor | None]:
        """Per level, a bool mask over the rows of :meth:`level_slices` marking those some
        vertex indexes, or ``None`` when every row counts (see the module docstring)."""
        return [None if name is None else getattr(self, name) for name in self._reachable]

    def lookup(self, rows: Tensor) -> Tensor:
        """Table rows ``(M,)`` (int64) → their features ``(M, F)``.

        ``index_select``, whose backward is a scatter-add: on the CPU the encoding's forward +
        backward is ~1.2× faster (a training step ~1.14×) than with advanced indexing
        (``params[rows]``, whose backward is an accumulating ``index_put_``), measured by
        ``benchmarks/speedups.py``.
        """
        return self.params.index_select(0, rows)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        points = x.reshape(-1, 3).float().clamp(0.0, 1.0).T.contiguous()  # (3, N)
        n, levels = points.shape[1], self.num_levels
        res = self.resolutions.to(points.dtype)[:, None, None]
        scaled = points[None] * res  # (L, 3, N)
        cell = torch.minimum(scaled.floor(), res - 1.0)
        frac = scaled - cell
        # Per axis the two faces of the cell (L, 3, 2, N); corner (i, j, k) combines them.
        faces = cell.to(torch.int64)[:, :, None, :] + self.face
        terms = (faces * self.multipliers) & (self.table_size - 1)
        ix = terms[:, 0] | self.level_bits  # level row offset, disjoint from the index bits
        index = _outer3(ix, terms[:, 1], terms[:, 2], torch.bitwise_xor)  # (L, 2, 2, 2, N)
        w = torch.stack([1.0 - frac, frac], dim=2)  # (L, 3, 2, N)
        weights = _outer3(w[:, 0], w[:, 1], w[:, 2], torch.mul)
        features = self.lookup(index.reshape(-1)).reshape(levels, 8, n, -1)  # (L, 8, N, F)
        out = (features * weights.reshape(levels, 8, n, 1)).sum(dim=1)  # (L, N, F)
        return out.permute(1, 0, 2).reshape(*shape, self.output_dim)


def _outer3(a: Tensor, b: Tensor, c: Tensor, op) -> Tensor:
    """``op``-combine three ``(L, 2, N)`` tensors into ``(L, 2, 2, 2, N)`` (x, y, z bits)."""
    return op(op(a[:, :, None, None], b[:, None, :, None]), c[:, None, None, :])


# Real spherical harmonics constants (as in Instant-NGP / Plenoxels).
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


class SphericalHarmonics(nn.Module):
    """Real spherical harmonics of unit directions up to ``degree`` (``degree**2`` outputs)."""

    def __init__(self, degree: int = 4) -> None:
        super().__init__()
        if not 1 <= degree <= 4:
            raise ValueError("spherical harmonics degree must be in [1, 4]")
        self.degree = degree

    @property
    def output_dim(self) -> int:
        return self.degree**2

    def forward(self, directions: Tensor) -> Tensor:
        x, y, z = directions.unbind(-1)
        out = [torch.full_like(x, _C0)]
        if self.degree > 1:
            out += [-_C1 * y, _C1 * z, -_C1 * x]
        if self.degree > 2:
            xx, yy, zz = x * x, y * y, z * z
            out += [
                _C2[0] * x * y,
                _C2[1] * y * z,
                _C2[2] * (2.0 * zz - xx - yy),
                _C2[3] * x * z,
                _C2[4] * (xx - yy),
            ]
        if self.degree > 3:
            out += [
                _C3[0] * y * (3 * xx - yy),
                _C3[1] * x * y * z,
                _C3[2] * y * (4 * zz - xx - yy),
                _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
                _C3[4] * x * (4 * zz - xx - yy),
                _C3[5] * z * (xx - yy),
                _C3[6] * x * (xx - 3 * yy),
            ]
        return torch.stack(out, dim=-1)
