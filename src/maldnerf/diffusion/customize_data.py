"""Training data of the customize stage: settings, and each step's crops of the scene's views.

Each sample is a random square crop of a training view (side a random fraction of the shorter
image side, at least the model resolution) resized to the model resolution, with holes drawn by
:mod:`.holes`: 1-3 random rectangles (the paper's choice) and, with probability
``object_shaped_holes``, one hole shaped like a dilated object mask of a random view. The model
learns to fill the holes back in from the rest of the crop; pixels under the object are unknown,
so the trainer leaves them out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..settings import require
from .holes import HoleSettings, draw_holes, object_shapes, random_window
from .views import TrainingView


@dataclass
class CustomizeSettings:
    """Settings of the customize stage."""

    steps: int = 500
    """Training steps of the LoRA and the tokens."""
    batch_size: int = 8
    """Crops per step."""
    learning_rate: float = 1e-4
    """Learning rate of the LoRA weights (AdamW)."""
    lora_rank: int = 8
    """LoRA rank."""
    lora_alpha: float = 8.0
    """LoRA alpha (the update is scaled by alpha / rank)."""
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    """UNet modules that get a LoRA (attention projections)."""
    num_tokens: int = 2
    """Number of learned text tokens ``<scene-i>``; 0 keeps the prompt template's text only."""
    token_learning_rate: float = 5e-3
    """Learning rate of the token embeddings."""
    token_init: str = "scene"
    """Word whose embedding initialises the new tokens."""
    prompt_template: str = "a photo of {tokens}"
    """Scene prompt; ``{tokens}`` becomes the learned tokens separated by spaces."""
    rectangles: tuple[int, int] = (1, 3)
    """Minimum and maximum number of masked rectangles per crop."""
    rectangle_size: tuple[float, float] = (0.15, 0.5)
    """Minimum and maximum rectangle side, as a fraction of the model resolution."""
    object_shaped_holes: float = 0.5
    """Probability that a crop also gets a hole shaped like a (random view's) dilated object
    mask, at a random place and scale ±20%: the shape the model fills at inference."""
    crop_scale: tuple[float, float] = (0.5, 1.0)
    """Minimum and maximum crop side, as a fraction of the shorter image side."""
    mask_object: bool = False
    """Also mask the object in the training conditioning (it is unknown there either way; when
    false the model sees it in the context, as in the plain rectangle task)."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up; afterwards a cosine decay to 10% at the last step."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    checkpoint_every: int = 100
    """Write a resumable checkpoint every this many steps (and at the end)."""
    seed: int = 0
    """Seed of crops, rectangles, noise and timesteps (each step's from (seed, step))."""

    def __post_init__(self) -> None:
        require(self.steps >= 1, "steps must be >= 1")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(
            self.learning_rate > 0 and self.token_learning_rate > 0, "learning rates must be > 0"
        )
        require(
            self.lora_rank >= 1 and self.lora_alpha > 0, "lora_rank must be >= 1, lora_alpha > 0"
        )
        require(bool(self.target_modules), "target_modules must name at least one module")
        require(0 <= self.num_tokens <= 32, "num_tokens must be between 0 and 32")
        require(
            "{tokens}" in self.prompt_template or self.num_tokens == 0,
            "prompt_template must contain {tokens} when num_tokens > 0",
        )
        _ = self.holes  # building the HoleSettings checks the hole fields
        require(
            self.warmup_steps >= 0 and self.max_grad_norm > 0,
            "warmup_steps >= 0, max_grad_norm > 0",
        )
        require(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")

    @property
    def tokens(self) -> list[str]:
        return [f"<scene-{i}>" for i in range(self.num_tokens)]

    @property
    def prompt(self) -> str:
        return self.prompt_template.replace("{tokens}", " ".join(self.tokens)).strip()

    @property
    def holes(self) -> HoleSettings:
        return HoleSettings(
            tuple(self.rectangles),
            tuple(self.rectangle_size),
            self.object_shaped_holes,
            tuple(self.crop_scale),
        )


@dataclass
class Batch:
    """One step's crops at model resolution (numpy, NHWC / NHW)."""

    images: np.ndarray  # (B, R, R, 3) float32 in [0, 1]
    objects: np.ndarray  # (B, R, R) bool, dilated object mask
    holes: np.ndarray  # (B, R, R) bool, the masked rectangles (and object-shaped holes)
    seed: int  # seed of this step's noise and timesteps


def sample_batch(
    views: list[TrainingView],
    settings: CustomizeSettings,
    resolution: int,
    step: int,
    shapes: list[np.ndarray] | None = None,
) -> Batch:
    """The crops of ``step``: a pure function of (views, settings, resolution, step).

    ``shapes`` are the object-shaped holes to draw from (default: the views' dilated masks).
    """
    from .windows import image_to_model, mask_to_model

    shapes = object_shapes([view.mask for view in views]) if shapes is None else shapes
    rng = np.random.default_rng([settings.seed, step])
    holes_settings = settings.holes
    images, objects, holes = [], [], []
    for _ in range(settings.batch_size):
        view = views[int(rng.integers(len(views)))]
        height, width = view.image.shape[:2]
        window = random_window(rng, height, width, settings.crop_scale, resolution)
        images.append(image_to_model(view.image, window, resolution))
        objects.append(mask_to_model(view.mask, window, resolution))
        holes.append(draw_holes(rng, resolution, holes_settings, shapes, window.size))
    return Batch(np.stack(images), np.stack(objects), np.stack(holes), int(rng.integers(2**62)))
