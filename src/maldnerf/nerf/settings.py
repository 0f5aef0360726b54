"""Settings of the ``train`` and ``render`` stages (typed dataclasses, mirrored in the config schema).

Defaults are the embedded CPU default: the 24-view 160x120 synthetic scene trains and renders
in about a minute on two cores. Full-size captures (SPIn-NeRF: 60 views around 1008x567) on a
GPU use the values given as "GPU" in each docstring; ``configs/spinnerf_gpu.yaml`` collects them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ..settings import require


@dataclass
class FieldSettings:
    """The radiance field: a multiresolution hash grid with small density and colour MLPs."""

    num_levels: int = 8
    """Hash-grid levels (GPU: 16)."""
    features_per_level: int = 2
    """Features stored per hash-table entry."""
    log2_table_size: int = 16
    """log2 of the entries per level (GPU: 19); coarse levels that fit are indexed densely."""
    base_resolution: int = 16
    """Grid resolution of the coarsest level, cells per side of the unit cube."""
    max_resolution: int = 1024
    """Grid resolution of the finest level (GPU: 4096 for 1008x567 images). The scene's
    unit ball spans half the grid (the contracted rest the other half)."""
    hidden_dim: int = 64
    """Width of the density MLP (one hidden layer)."""
    geo_feat_dim: int = 15
    """Features the density MLP passes to the colour MLP."""
    color_hidden_dim: int = 64
    """Width of the colour MLP."""
    color_layers: int = 2
    """Hidden layers of the colour MLP."""
    sh_degree: int = 4
    """Spherical-harmonics degree of the view-direction encoding (degree**2 coefficients)."""

    def __post_init__(self) -> None:
        require(1 <= self.num_levels <= 32, "num_levels must be in [1, 32]")
        require(1 <= self.features_per_level <= 8, "features_per_level must be in [1, 8]")
        require(8 <= self.log2_table_size <= 24, "log2_table_size must be in [8, 24]")
        require(
            2 <= self.base_resolution <= self.max_resolution,
            "base_resolution must be >= 2 and <= max_resolution",
        )
        require(self.hidden_dim >= 8 and self.color_hidden_dim >= 8, "MLP widths must be >= 8")
        require(self.geo_feat_dim >= 1, "geo_feat_dim must be >= 1")
        require(self.color_layers >= 1, "color_layers must be >= 1")
        require(1 <= self.sh_degree <= 4, "sh_degree must be in [1, 4]")


@dataclass
class ProposalSettings:
    """Proposal sampling (Zip-NeRF / nerfacc): small density grids, inverse-CDF resampling."""

    samples: list[int] = dataclasses.field(default_factory=lambda: [64])
    """Samples per ray drawn for each proposal network, coarse to fine (GPU: [128, 64])."""
    max_resolutions: list[int] = dataclasses.field(default_factory=lambda: [128])
    """Finest grid resolution of each proposal network, same length as ``samples`` (GPU: [128, 256])."""
    num_samples: int = 32
    """Samples per ray evaluated by the radiance field (GPU: 48)."""
    num_levels: int = 5
    """Hash-grid levels of each proposal network."""
    log2_table_size: int = 14
    """log2 of the entries per level of each proposal network (GPU: 17)."""
    base_resolution: int = 16
    """Coarsest grid resolution of each proposal network."""
    hidden_dim: int = 16
    """Width of each proposal network's MLP."""
    stratified: bool = True
    """Jitter the sample positions during training (one random offset per ray)."""

    def __post_init__(self) -> None:
        require(len(self.samples) >= 1, "samples needs at least one proposal network")
        require(
            len(self.max_resolutions) == len(self.samples),
            "max_resolutions needs one value per entry of samples",
        )
        require(all(s >= 2 for s in self.samples), "samples values must be >= 2")
        require(self.num_samples >= 2, "num_samples must be >= 2")
        require(
            all(r >= self.base_resolution for r in self.max_resolutions),
            "max_resolutions must be >= base_resolution",
        )
        require(1 <= self.num_levels <= 16, "num_levels must be in [1, 16]")
        require(8 <= self.log2_table_size <= 24, "log2_table_size must be in [8, 24]")


@dataclass
class LossWeights:
    """Loss weights. Outside the mask L^r = pixel·Lpix + interlevel·Linter + distortion·Ldistort
    + decay·Ldecay; inside it L^m = adversarial·Ladv + feature_matching·Lfm (+ inpainted·Linp)
    + the interlevel and distortion terms of the patch rays (``regularise_patches``)."""

    pixel: float = 1.0
    """λpix: mean squared error of the rays outside the mask."""
    interlevel: float = 1.0
    """λinter: proposal interlevel loss (Mip-NeRF 360), summed over proposal networks."""
    distortion: float = 0.002
    """λdistort: Mip-NeRF 360 distortion loss in normalised ray distance."""
    decay: float = 0.1
    """λdecay: mean squared hash-grid parameter per level, summed over levels (Zip-NeRF)."""
    adversarial: float = 0.02
    """λadv: non-saturating generator loss of the rendered (fake) masked patches."""
    feature_matching: float = 0.1
    """λfm: L1 distance of the discriminator's intermediate features, real vs fake."""
    r1: float = 0.0390625
    """λGP (γ): R1 penalty γ/2·E|∇ₓ Σ D(x)|² at real patches x in the discriminator loss,
    StyleGAN2's convention: the gradient of the sum of the patch's logit map (4×4 positions for
    patch sizes 8·2^k), its squared norm averaged over the batch; applied lazily every
    ``adversarial.r1_interval`` steps, multiplied by the interval. 10/256: what γ = 10 on the
    map's mean (this project's earlier convention) was, close to StyleGAN2's heuristic
    0.0002·P²/batch for 16–64 px patches; weaker penalties let the discriminator's gradients
    add noise to the renders."""
    inpainted: float = 0.1
    """Weight of the inpainted-region reconstruction loss when ``inpainted_loss`` is not none
    (L1's constant-size gradients overpower the photometric MSE at 1.0)."""

    regularise_patches: bool = True
    """Apply the interlevel and distortion losses to the patch rays inside the mask too (the
    paper's L^m: the proposal networks fit the inpainted volume, floaters there are penalised);
    off, they see the rays outside the mask only (this project's earlier behaviour). Never a pixel
    loss."""

    def __post_init__(self) -> None:
        for name in (
            "pixel",
            "interlevel",
            "distortion",
            "decay",
            "adversarial",
            "feature_matching",
            "r1",
            "inpainted",
        ):
            require(getattr(self, name) >= 0.0, f"{name} must be >= 0")


@dataclass
class AdversarialSettings:
    """Masked adversarial training of the rays inside the mask."""

    enabled: bool = True
    """Use the masked adversarial loss (ablations ``no_adv_*`` switch it off)."""
    warmup: int = 100
    """Iterations before the adversarial loss switches on (GPU full size: ~2000)."""
    channels: int = 32
    """Channels of the discriminator's first layer; doubled at each stride-2 layer."""
    max_channels: int = 256
    """Channel cap of the discriminator."""
    lr: float = 0.001
    """Discriminator learning rate (Adam, betas 0 and 0.99)."""
    r1_interval: int = 4
    """Apply the R1 penalty every this many discriminator steps (lazy regularisation)."""

    def __post_init__(self) -> None:
        require(self.warmup >= 0, "warmup must be >= 0")
        require(self.channels >= 4, "channels must be >= 4")
        require(self.max_channels >= self.channels, "max_channels must be >= channels")
        require(self.lr > 0, "lr must be > 0")
        require(self.r1_interval >= 1, "r1_interval must be >= 1")


@dataclass
class OptimizerSettings:
    """Adam for the radiance field and proposal networks, exponential learning-rate decay."""

    lr: float = 0.01
    """Initial learning rate."""
    lr_final: float = 0.001
    """Learning rate at the last iteration (exponential decay)."""
    warmup: int = 0
    """Iterations of linear learning-rate warm-up from 1% (GPU: 500)."""
    beta1: float = 0.9
    """Adam beta1."""
    beta2: float = 0.99
    """Adam beta2."""
    eps: float = 1e-15
    """Adam epsilon (hash grids want it tiny)."""

    def __post_init__(self) -> None:
        require(self.lr > 0 and self.lr_final > 0, "lr and lr_final must be > 0")
        require(self.warmup >= 0, "warmup must be >= 0")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "betas must be in [0, 1)")
        require(self.eps > 0, "eps must be > 0")


@dataclass
class NerfSettings:
    """Settings the ``train`` stage reads (``render`` reads them back from ``nerf.json``)."""

    iterations: int = 500
    """Training iterations K (GPU full size: 25000)."""
    batch_rays: int = 512
    """Rays outside the mask per iteration (GPU: 65536)."""
    patch_size: int = 16
    """Side P of the square patches rendered inside the mask (GPU full size: 64)."""
    patches_per_step: int = 1
    """Patches per iteration (GPU: 8)."""
    inpainted_loss: Literal["none", "l1", "lpips"] = "none"
    """Reconstruction loss on the inpainted region: none (the full method), l1, or lpips
    (needs torchvision's AlexNet weights in the torch hub cache)."""
    parameterization: Literal["contract", "ndc"] = "contract"
    """Scene space: ``contract`` (Mip-NeRF 360 contraction; 360° and forward-facing captures) or
    ``ndc`` (normalised device coordinates; forward-facing captures only)."""
    near_factor: float = 0.9
    """Rays start at this fraction of the scene's nearest depth bound."""
    far_factor: float = 1.5
    """Rays end at this multiple of the scene's farthest depth bound (raise it for skies)."""
    background: Literal["black", "white"] = "black"
    """Colour behind the last sample."""
    field: FieldSettings = dataclasses.field(default_factory=FieldSettings)
    """The radiance field."""
    proposal: ProposalSettings = dataclasses.field(default_factory=ProposalSettings)
    """Proposal sampling."""
    loss: LossWeights = dataclasses.field(default_factory=LossWeights)
    """Loss weights."""
    adversarial: AdversarialSettings = dataclasses.field(default_factory=AdversarialSettings)
    """Masked adversarial training."""
    optimizer: OptimizerSettings = dataclasses.field(default_factory=OptimizerSettings)
    """Optimiser of the field and proposal networks."""
    seed: int = 0
    """Seed of the initial weights and of every step's randomness (derived from seed and step)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: ``auto`` picks CUDA when available."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """MLP precision: ``auto`` is bf16 autocast on a GPU that supports it, fp32 on the CPU."""
    tf32: bool = True
    """Allow TF32 matrix products on Ampere and newer GPUs."""
    compile: bool = False
    """torch.compile the fields (pays off on a GPU for long runs; recompiles cost minutes)."""
    nerfacc_cuda: Literal["auto", "on", "off"] = "auto"
    """nerfacc's CUDA sampling kernels: ``auto`` uses them on a GPU when they build, ``off`` uses
    the PyTorch path everywhere, ``on`` fails if they are missing."""
    chunk_rays: int = 1024
    """Rays per chunk when rendering views for the dataset update (GPU: 65536; on a CPU
    small chunks stay in cache and are ~3x faster than 8192)."""
    checkpoint_every: int = 100
    """Write a resumable checkpoint every this many iterations (GPU: 1000)."""
    log_every: int = 25
    """Log losses and rays/s every this many iterations (the only host syncs of the loop)."""
    max_nonfinite_steps: int = 20
    """Stop with an error after this many consecutive steps with a NaN/inf loss (each is skipped)."""
    keep_checkpoint: bool = False
    """Keep the resume checkpoint after a successful run (otherwise it is deleted)."""

    def __post_init__(self) -> None:
        require(self.iterations >= 1, "iterations must be >= 1")
        require(self.batch_rays >= 1, "batch_rays must be >= 1")
        require(self.patch_size >= 8, "patch_size must be >= 8 pixels")
        require(self.patches_per_step >= 1, "patches_per_step must be >= 1")
        require(0 < self.near_factor <= 1, "near_factor must be in (0, 1]")
        require(self.far_factor >= 1, "far_factor must be >= 1")
        require(self.chunk_rays >= 64, "chunk_rays must be >= 64")
        require(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        require(self.log_every >= 1, "log_every must be >= 1")
        require(self.max_nonfinite_steps >= 1, "max_nonfinite_steps must be >= 1")

    @property
    def uses_patches(self) -> bool:
        """Whether any loss needs patches rendered inside the mask."""
        return self.adversarial.enabled or self.inpainted_loss != "none"


@dataclass
class IduSettings:
    """Iterative dataset update: re-inpaint the training views from the current NeRF."""

    enabled: bool = True
    """Refresh the inpainting targets during training (off: keep the initial targets)."""
    every: int = 170
    """Iterations U between updates; rounds run at U, 2U, ... below the last iteration
    (GPU full size: 2500)."""
    t_max: float = 0.8
    """Diffusion strength (fraction of the noise schedule) at the start of training."""
    t_min: float = 0.3
    """Strength reached at the end: t(k) = t_max - (t_max - t_min)·sqrt(k/K)."""
    batch_size: int = 4
    """Views passed to the inpainting model at once."""
    snapshot_width: int = 80
    """Width in pixels of each thumbnail in the per-round contact sheet ``idu/round_XX.png``."""

    def __post_init__(self) -> None:
        require(self.every >= 1, "every must be >= 1")
        require(0.0 < self.t_min <= self.t_max <= 1.0, "need 0 < t_min <= t_max <= 1")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.snapshot_width >= 16, "snapshot_width must be >= 16")


@dataclass
class RenderSettings:
    """Settings the ``render`` stage reads."""

    splits: list[Literal["test", "train"]] = dataclasses.field(default_factory=lambda: ["test"])
    """Which views to render: test views always feed evaluation; add train to inspect them."""
    chunk_rays: int = 1024
    """Rays rendered at once (GPU: 65536; on a CPU about 1024 is fastest)."""
    depth: bool = True
    """Write depth maps (colour-mapped PNG and raw float32 .npy in world units)."""
    gif: bool = False
    """Write ``flythrough.gif``: a path through the training cameras."""
    gif_frames: int = 24
    """Frames of the fly-through."""
    gif_scale: float = 0.5
    """Resolution of the fly-through relative to the images."""
    gif_fps: int = 8
    """Frames per second of the fly-through."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to render."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """MLP precision, as for training."""

    def __post_init__(self) -> None:
        require(len(self.splits) >= 1, "splits needs at least one of test, train")
        require(self.chunk_rays >= 64, "chunk_rays must be >= 64")
        require(self.gif_frames >= 2, "gif_frames must be >= 2")
        require(0.05 <= self.gif_scale <= 1.0, "gif_scale must be in [0.05, 1]")
        require(1 <= self.gif_fps <= 60, "gif_fps must be in [1, 60]")
