"""The ``train`` and ``render`` stages: a Zip-NeRF/nerfacc-style NeRF trained with masked
adversarial training and iterative dataset updates (MALD-NeRF).

Layout (nerfstudio-like, one role per module):

- :mod:`.encodings` multiresolution hash grid and spherical harmonics (PyTorch)
- :mod:`.fields` radiance field (``get_density``/``get_outputs``) and proposal density fields
- :mod:`.parameterization` scene normalisation, Mip-NeRF 360 contraction or NDC
- :mod:`.samplers` inverse-CDF resampling (PyTorch, or nerfacc's CUDA kernel) and proposal sampling
- :mod:`.renderers` volume rendering (nerfacc's batched functions)
- :mod:`.losses` photometric, interlevel, distortion, decay; inpainted-region L1/LPIPS
- :mod:`.adversarial` patch discriminator, GAN losses, R1, feature matching
- :mod:`.rays`, :mod:`.data` camera rays, training views, ray and patch sampling
- :mod:`.model` assembly; :mod:`.idu` dataset update; :mod:`.checkpoint` resume state
- :mod:`.trainer` the ``train`` stage (:func:`.trainer.run`), around it :mod:`.masked_step`
  (L^m and the discriminator step), :mod:`.idu_round`, :mod:`.runtime` (devices, precision,
  guards), :mod:`.train_log` and :mod:`.train_output`; :mod:`.render` the ``render`` stage
  (:func:`.render.run`). Their module docstrings describe the output folders.

Settings are in :mod:`.settings` (imported here without loading torch).
"""

from .settings import (
    AdversarialSettings,
    FieldSettings,
    IduSettings,
    LossWeights,
    NerfSettings,
    OptimizerSettings,
    ProposalSettings,
    RenderSettings,
)

__all__ = [
    "AdversarialSettings",
    "FieldSettings",
    "IduSettings",
    "LossWeights",
    "NerfSettings",
    "OptimizerSettings",
    "ProposalSettings",
    "RenderSettings",
]
