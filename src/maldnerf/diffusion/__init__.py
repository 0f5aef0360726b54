"""The latent-diffusion half of MALD-NeRF: scene customisation, inpainting, partial-DDIM updates.

Modules:

- :mod:`.models` — :class:`~.models.DiffusionSettings` and :func:`~.models.load_pipeline`: a
  Stable-Diffusion inpainting pipeline from a Hugging Face id, a local diffusers folder or
  ``tiny`` (the same architecture at small widths with random weights, built offline), plus a
  scene customisation (LoRA + learned tokens) on top.
- :mod:`.customize` — the ``customize`` stage: per-scene LoRA and text tokens trained with a
  self-supervised inpainting loss (``results/{scene}/diffusion/{customization}/``).
- :mod:`.inpaint` — :class:`~.inpaint.Inpainter` (full inpainting and partial-DDIM re-inpainting
  of a batch of views) and the ``inpaint`` stage (``results/{scene}/inpaint/{customization}/``).
- :mod:`.schedule` — the IDU noise-level schedule and the DDIM timestep mapping.
- :mod:`.windows` — the square model-sized window cut around each mask, and the composite back.

Importing this package imports neither torch nor diffusers; its modules do.
"""
