"""Fields: the radiance field (density + view-dependent colour) and proposal density fields.

Both take sample positions already mapped into the unit cube by the scene parameterisation
(:mod:`.parameterization`). Density is ``trunc_exp(raw - 1)`` (Instant-NGP / nerfacto), colour a
sigmoid. MLPs run in the autocast precision of the caller; outputs are float32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .encodings import HashEncoding, SphericalHarmonics
from .settings import FieldSettings, ProposalSettings


class _TruncExp(torch.autograd.Function):
    """exp with its gradient clamped (exp(x) for x <= 15), so large densities cannot blow up."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    return _TruncExp.apply(x)


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden`` and a linear output layer."""
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


class NerfField(nn.Module):
    """Hash grid → density MLP → (density, geometry features); + SH(direction) → colour MLP."""

    def __init__(self, settings: FieldSettings) -> None:
        super().__init__()
        self.encoding = HashEncoding(
            settings.num_levels,
            settings.features_per_level,
            settings.log2_table_size,
            settings.base_resolution,
            settings.max_resolution,
        )
        self.geo_feat_dim = settings.geo_feat_dim
        self.density_mlp = mlp(
            self.encoding.output_dim, settings.hidden_dim, 1, 1 + settings.geo_feat_dim
        )
        self.direction_encoding = SphericalHarmonics(settings.sh_degree)
        self.color_mlp = mlp(
            settings.geo_feat_dim + self.direction_encoding.output_dim,
            settings.color_hidden_dim,
            settings.color_layers,
            3,
        )

    def get_density(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Density ``(...)`` and geometry features ``(..., geo_feat_dim)`` at unit-cube positions."""
        raw = self.density_mlp(self.encoding(positions))
        density = trunc_exp(raw[..., 0].float() - 1.0)
        return density, raw[..., 1:]

    def get_outputs(self, geo_features: Tensor, directions: Tensor) -> Tensor:
        """Colour ``(..., 3)`` in [0, 1] from geometry features and unit view directions."""
        sh = self.direction_encoding(directions).to(geo_features.dtype)
        return torch.sigmoid(self.color_mlp(torch.cat([geo_features, sh], dim=-1)).float())

    def forward(self, positions: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """Density ``(n, s)`` and colour ``(n, s, 3)`` for positions ``(n, s, 3)``, directions ``(n, 3)``."""
        density, geo = self.get_density(positions)
        directions = directions[:, None, :].expand(positions.shape)
        return density, self.get_outputs(geo, directions)


class ProposalField(nn.Module):
    """A small hash grid and MLP giving density only (Mip-NeRF 360 proposal network)."""

    def __init__(self, settings: ProposalSettings, max_resolution: int) -> None:
        super().__init__()
        self.encoding = HashEncoding(
            settings.num_levels,
            2,
            settings.log2_table_size,
            settings.base_resolution,
            max_resolution,
        )
        self.mlp = mlp(self.encoding.output_dim, settings.hidden_dim, 1, 1)

    def get_density(self, positions: Tensor) -> Tensor:
        return trunc_exp(self.mlp(self.encoding(positions))[..., 0].float() - 1.0)

    def forward(self, positions: Tensor) -> Tensor:
        return self.get_density(positions)
