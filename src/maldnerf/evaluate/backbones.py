"""Pretrained networks behind LPIPS and FID/KID, found on disk and never downloaded.

**LPIPS** (``lpips`` package, AlexNet trunk, v0.1, as SPIn-NeRF's evaluation) needs two files:

- torchvision's ImageNet AlexNet weights ``alexnet-owt-7be5be79.pth``; by default where
  torchvision itself caches them, ``$TORCH_HOME/hub/checkpoints/`` (``TORCH_HOME`` defaults to
  ``$XDG_CACHE_HOME/torch``, i.e. ``~/.cache/torch``), or the path in ``evaluate.alexnet_weights``.
  The network is built with random weights and these are loaded with
  ``torch.load(weights_only=True)`` (only the ``features.*`` tensors are used). A file name of
  torch hub's form ``name-<sha256 prefix>.pth`` is checked against that prefix.
- the LPIPS linear-layer weights ``weights/v0.1/alex.pth`` shipped inside the ``lpips`` pip
  package, or the path in ``evaluate.lpips_weights``.

**FID/KID** use clean-fid's Inception (``inception-2015-12-05.pt``, the TorchScript translation of
TensorFlow's 2015 Inception-v3 published with StyleGAN2-ADA) in clean-fid's ``clean`` mode:
images resized to 299×299 with PIL bicubic on float values, features of the 2048-d pool layer.
The file is looked for at ``evaluate.inception_weights`` or, by default, at
``$TORCH_HOME/hub/checkpoints/inception-2015-12-05.pt`` and then at
``/tmp/inception-2015-12-05.pt`` (where clean-fid downloads it). clean-fid's own loader is not
called (it downloads when the file is missing); the file is opened with ``torch.jit.load``, the
only way this network is distributed. TorchScript's loader restores tensors and TorchScript code,
no pickled Python objects; the file's sha256 is recorded beside the metrics.

A missing file makes the metric *missing* (with the reason); a file that is present but cannot be
loaded (truncated download, wrong file) is a :class:`~maldnerf.errors.UserError` naming the file.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..devices import resolve_device
from ..digests import file_sha256
from ..errors import UserError

log = logging.getLogger(__name__)

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = (
    f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/{INCEPTION_FILE}"
)
INCEPTION_SIZE = 299

LpipsFn = Callable[[Any, Any], Any]
"""``(a, b) -> (N,)``: LPIPS distances of two ``(N, 3, H, W)`` float tensors in [0, 1]."""
FeatureFn = Callable[[Any], Any]
"""``(N, 3, 299, 299)`` float tensor in [0, 255] -> ``(N, D)`` features."""


@dataclass
class Backbones:
    """The networks the learned metrics need, or why each is unavailable.

    Tests build this directly with tiny random networks to exercise the metric code paths; such
    numbers test plumbing only and ``provenance`` says so.
    """

    lpips: LpipsFn | None = None
    """LPIPS distance function, or ``None`` when its weights are not available."""
    inception: FeatureFn | None = None
    """Inception feature extractor for FID/KID, or ``None``."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Weight files used, per backbone: ``{"path": ..., "sha256": <first 16 hex digits>}``."""
    missing: dict[str, str] = field(default_factory=dict)
    """Reason per unavailable backbone (``lpips``, ``inception``)."""
    device: str = "cpu"
    """Device the networks run on."""


def torch_hub_dir() -> Path:
    """torch hub's folder, resolved as ``torch.hub.get_dir()`` does, without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"
    )
    return Path(os.path.expanduser(torch_home)) / "hub"


def default_alexnet_path() -> Path:
    """Where torchvision caches the AlexNet ImageNet weights."""
    return torch_hub_dir() / "checkpoints" / ALEXNET_FILE


def default_lpips_weights_path() -> Path | None:
    """The AlexNet linear-layer weights inside the installed ``lpips`` package."""
    import importlib.util

    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"


def inception_candidates() -> list[Path]:
    """Default places for clean-fid's Inception file, in the order they are tried."""
    return [torch_hub_dir() / "checkpoints" / INCEPTION_FILE, Path("/tmp") / INCEPTION_FILE]


def alexnet_file(alexnet_weights: str | None) -> Path:
    """The AlexNet weight file evaluate reads: ``alexnet_weights`` if given, else torch hub's."""
    return _resolve(alexnet_weights) or default_alexnet_path()


def inception_files(inception_weights: str | None) -> list[Path]:
    """Where evaluate looks for the Inception file, in order: ``inception_weights`` if given,
    else :func:`inception_candidates`."""
    if inception_weights is not None:
        return [_resolve(inception_weights)]
    return inception_candidates()


def _resolve(path: str | None) -> Path | None:
    return None if path is None else Path(os.path.expanduser(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _corrupt(path: Path, what: str, exc: BaseException | str, url: str | None) -> UserError:
    reason = exc if isinstance(exc, str) else _first_line(exc)
    fix = f"delete it and download it again from {url}" if url else "delete it and replace it"
    return UserError(
        f"{path}: cannot load {what} ({reason}); the file is truncated or corrupt: {fix}"
    )


def _provenance(path: Path, what: str, url: str | None) -> dict[str, str]:
    """Hash the file; if its name carries a torch-hub hash prefix, check it."""
    digest = file_sha256(path)
    match = re.search(r"-([0-9a-f]{8,64})\.pth?$", path.name)
    if match and not digest.startswith(match.group(1)):
        raise _corrupt(
            path, what, f"sha256 {digest[:16]}… does not match {match.group(1)} in its name", url
        )
    return {"path": str(path), "sha256": digest[:16]}


def _torch_load(path: Path, what: str, url: str | None) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, not a torch file
        raise _corrupt(path, what, exc, url) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise _corrupt(path, what, "not a state dict", url)
    return state


def lpips_module(alexnet_path: Path, linear_path: Path) -> tuple[Any, dict[str, Any]]:
    """``lpips.LPIPS(net="alex")`` (eval mode, frozen, CPU) with the weights of the two files.

    For reuse as a training loss; gradients flow to its inputs. Returns the module and the
    provenance of the files. A file that cannot be loaded is a :class:`UserError`.
    """
    import lpips

    alexnet_info = _provenance(alexnet_path, "AlexNet weights", ALEXNET_URL)
    linear_info = _provenance(linear_path, "LPIPS linear weights", None)
    alexnet_state = _torch_load(alexnet_path, "AlexNet weights", ALEXNET_URL)
    linear_state = _torch_load(linear_path, "LPIPS linear weights", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notice for pretrained=
        model = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False)
    # lpips splits AlexNet's ``features`` into slices that keep the original layer indices.
    target = {}
    for name, _ in model.net.named_parameters():
        slice_name, index, kind = name.split(".")
        target[f"features.{index}.{kind}"] = f"{slice_name}.{index}.{kind}"
    try:
        model.net.load_state_dict({target[k]: alexnet_state[k] for k in target}, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise _corrupt(
            alexnet_path, "AlexNet weights", f"not torchvision AlexNet weights: {exc}", ALEXNET_URL
        ) from None
    lin_keys = [k for k, _ in model.named_parameters() if k.startswith("lin")]
    try:
        model.load_state_dict({k: linear_state[k] for k in lin_keys}, strict=False)
    except (KeyError, RuntimeError) as exc:
        raise _corrupt(
            linear_path, "LPIPS linear weights", f"not LPIPS AlexNet v0.1 weights: {exc}", None
        ) from None
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval(), {"alexnet": alexnet_info, "linear": linear_info}


def load_lpips(
    alexnet_path: Path, linear_path: Path, device: str = "cpu"
) -> tuple[LpipsFn, dict[str, Any]]:
    """LPIPS distance function (no gradients) with the weights in the two files."""
    import torch

    module, info = lpips_module(alexnet_path, linear_path)
    model = module.to(device)

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(a.to(device), b.to(device), normalize=True).reshape(-1).cpu()

    return distance, info


def load_inception(path: Path, device: str = "cpu") -> tuple[FeatureFn, dict[str, Any]]:
    """clean-fid's Inception feature extractor (``clean`` mode) from a local TorchScript file."""
    import torch

    info = _provenance(path, "Inception weights", INCEPTION_URL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, not gone
            base = torch.jit.load(str(path), map_location=device).eval()
        layers = base.layers
    except Exception as exc:
        raise _corrupt(path, "Inception weights", exc, INCEPTION_URL) from None

    def features(x: torch.Tensor) -> torch.Tensor:
        # clean-fid's InceptionV3W.forward with resize_inside=False.
        with torch.no_grad():
            x = (x.to(device) - 128.0) / 128.0
            return layers.forward(x).reshape(x.shape[0], -1).cpu()

    return features, info


def load_backbones(
    *,
    need_lpips: bool,
    need_inception: bool,
    device: str = "auto",
    alexnet_weights: str | None = None,
    lpips_weights: str | None = None,
    inception_weights: str | None = None,
    require_weights: bool = False,
) -> Backbones:
    """Load what is needed from local files; a missing file becomes a reason in ``missing``.

    With ``require_weights`` a missing file is a :class:`UserError` instead.
    """
    backbones = Backbones(device="cpu")
    if not (need_lpips or need_inception):
        return backbones
    missing: dict[str, tuple[str, str]] = {}
    if need_lpips:
        alexnet = alexnet_file(alexnet_weights)
        linear = _resolve(lpips_weights) or default_lpips_weights_path()
        if not alexnet.is_file():
            missing["lpips"] = (
                f"AlexNet weights not found at {alexnet}",
                f"put torchvision's {ALEXNET_FILE} there or set evaluate.alexnet_weights",
            )
        elif linear is None or not linear.is_file():
            missing["lpips"] = (
                f"LPIPS linear weights not found at {linear}",
                "reinstall the lpips package or set evaluate.lpips_weights",
            )
    if need_inception:
        candidates = inception_files(inception_weights)
        inception = next((p for p in candidates if p.is_file()), None)
        if inception is None:
            where = " or ".join(str(p) for p in candidates)
            missing["inception"] = (
                f"Inception weights not found at {where}",
                f"put clean-fid's {INCEPTION_FILE} there or set evaluate.inception_weights",
            )
    if require_weights and missing:
        reason, fix = next(iter(missing.values()))
        raise UserError(f"evaluate.require_weights: {reason}; {fix}")
    backbones.missing = {name: f"{reason} ({fix})" for name, (reason, fix) in missing.items()}
    if (need_lpips and "lpips" not in missing) or (need_inception and "inception" not in missing):
        backbones.device = str(resolve_device(device, "evaluate.device"))
    if need_lpips and "lpips" not in missing:
        backbones.lpips, backbones.provenance["lpips"] = load_lpips(
            alexnet, linear, backbones.device
        )
        log.info("LPIPS: AlexNet weights %s", alexnet)
    if need_inception and "inception" not in missing:
        backbones.inception, backbones.provenance["inception"] = load_inception(
            inception, backbones.device
        )
        log.info("FID/KID: Inception weights %s", inception)
    for name, reason in backbones.missing.items():
        log.warning("%s not computed: %s", name, reason)
    return backbones
