"""The NeRF model: proposal sampler → field → weights → renderers, and its losses.

One forward pass serves training and evaluation; :func:`render_rays` only adds chunking and
no-grad. The model's weights are the fields' parameters (``model.safetensors``); everything
else needed to rebuild it (settings, parameterisation) is in ``nerf.json``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..settings import from_dict
from .encodings import HashEncoding
from .fields import NerfField, ProposalField
from .losses import decay_loss, distortion_loss, interlevel_loss, pixel_loss
from .parameterization import Parameterization, SceneNormalization, parameterization_from_dict
from .rays import Rays
from .renderers import render_accumulation, render_depth, render_rgb, weights
from .samplers import ProposalSampler
from .settings import NerfSettings


class NerfModel(nn.Module):
    """Radiance field with proposal sampling in a scene parameterisation."""

    def __init__(self, settings: NerfSettings, parameterization: Parameterization) -> None:
        super().__init__()
        self.settings = settings
        self.parameterization = parameterization
        self.field = NerfField(settings.field)
        self.proposals = nn.ModuleList(
            ProposalField(settings.proposal, r) for r in settings.proposal.max_resolutions
        )
        self.sampler = ProposalSampler(settings.proposal.samples, settings.proposal.num_samples)
        color = 1.0 if settings.background == "white" else 0.0
        self.register_buffer("background", torch.full((3,), color), persistent=False)
        self.autocast_dtype: torch.dtype | None = None  # bf16 on GPUs that support it
        self.use_cuda_kernel = False  # nerfacc's CUDA sampling kernels

    def encodings(self) -> list[HashEncoding]:
        return [self.field.encoding] + [p.encoding for p in self.proposals]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.background.device.type, dtype=self.autocast_dtype)

    def forward(
        self, rays: Rays, stratified: bool = False, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        space = self.parameterization

        def proposal_fn(net: ProposalField):
            def density(edges: Tensor) -> tuple[Tensor, Tensor]:
                positions, distances, _ = space.samples(rays, edges)
                with self._autocast():
                    return net(positions).float(), distances

            return density

        edges, levels = self.sampler.sample(
            len(rays),
            [proposal_fn(net) for net in self.proposals],
            stratified,
            generator,
            rays.origins.device,
            self.use_cuda_kernel,
        )
        positions, distances, depths = space.samples(rays, edges)
        with self._autocast():
            density, rgb = self.field(positions, rays.viewdirs)
        w, trans = weights(density.float(), distances)
        return {
            "rgb": render_rgb(w, rgb.float(), self.background),
            "depth": render_depth(w, depths),
            "accumulation": render_accumulation(w),
            "weights": w,
            "edges": edges,
            "cdfs": 1.0 - torch.cat([trans, torch.zeros_like(trans[:, :1])], dim=1),
            "proposal_levels": levels,
        }

    def reconstruction_losses(
        self, outputs: dict[str, Any], target_rgb: Tensor
    ) -> dict[str, Tensor]:
        """Unweighted L^r terms, and the regularisers of L^m.

        The photometric loss is on the first ``n = len(target_rgb)`` rays of ``outputs`` (those
        outside the mask) only. Any rays after them are the patches rendered inside the mask:
        with ``loss.regularise_patches`` (the paper's L^m) the interlevel and distortion losses
        are the mean over all rays, so the proposal networks follow the inpainted volume and
        floaters there are penalised; without it they see the first ``n`` rays only. The decay
        loss is on the hash-grid parameters, not on rays.
        """
        n = target_rgb.shape[0]
        m = len(outputs["rgb"]) if self.settings.loss.regularise_patches else n
        levels = [(e[:m], c[:m]) for e, c in outputs["proposal_levels"]]
        edges = outputs["edges"][:m]
        return {
            "pixel": pixel_loss(outputs["rgb"][:n], target_rgb),
            "interlevel": interlevel_loss(edges, outputs["cdfs"][:m], levels, self.use_cuda_kernel),
            "distortion": distortion_loss(outputs["weights"][:m], edges),
            "decay": decay_loss(self.encodings()),
        }


@torch.no_grad()
def render_rays(model: NerfModel, rays: Rays, chunk: int) -> dict[str, Tensor]:
    """Render ``rays`` in chunks without gradients: rgb ``(n, 3)``, depth and accumulation ``(n,)``."""
    parts: dict[str, list[Tensor]] = {"rgb": [], "depth": [], "accumulation": []}
    for start in range(0, len(rays), chunk):
        out = model(rays[start : start + chunk])
        for key, values in parts.items():
            values.append(out[key])
    return {key: torch.cat(values) for key, values in parts.items()}


def build_model(
    settings: NerfSettings, parameterization: Parameterization, seed: int | None = None
) -> NerfModel:
    """A freshly initialised model (on the CPU; initialisation depends only on ``seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed if seed is None else seed)
        return NerfModel(settings, parameterization)


def load_model(nerf_dir: Path, device: torch.device) -> tuple[NerfModel, dict[str, Any]]:
    """Rebuild the trained model of a ``nerf/{variant}`` folder; returns it and ``nerf.json``."""
    from safetensors.torch import load_file

    info_path, weights_path = nerf_dir / "nerf.json", nerf_dir / "model.safetensors"
    for path in (info_path, weights_path):
        if not path.is_file():
            raise UserError(f"{path}: not found; run the train stage first")
    info = json.loads(info_path.read_text())
    settings = from_dict(NerfSettings, info["settings"], f"{info_path}: settings")
    model = NerfModel(settings, parameterization_from_dict(info["parameterization"]))
    try:
        model.load_state_dict(load_file(weights_path))
    except RuntimeError as exc:
        raise UserError(
            f"{weights_path}: weights do not match nerf.json ({exc}); rerun train"
        ) from None
    model.eval().to(device)
    info["normalization"] = SceneNormalization.from_dict(info["normalization"])
    return model, info
