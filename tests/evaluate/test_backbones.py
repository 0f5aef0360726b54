"""Finding and loading the LPIPS and Inception weight files: missing, corrupt, and present.

The "present" cases write files with RANDOM weights in the real formats: they test the loading
plumbing (key mapping, formats, wrappers), not the metrics' values.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from maldnerf.digests import file_sha256
from maldnerf.errors import UserError
from maldnerf.evaluate import backbones as bb

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


ALEXNET_FEATURES = {
    0: (64, 3, 11, 11),
    3: (192, 64, 5, 5),
    6: (384, 192, 3, 3),
    8: (256, 384, 3, 3),
}
ALEXNET_FEATURES[10] = (256, 256, 3, 3)


def _random_alexnet_features(path: Path) -> dict[str, torch.Tensor]:
    """torchvision AlexNet ``features.*`` tensors, random (plumbing only), saved to ``path``."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, shape in ALEXNET_FEATURES.items():
        state[f"features.{index}.weight"] = torch.randn(shape, generator=generator) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(shape[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


class _TinyInceptionScript(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 7, stride=8), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
        )

    def forward(self, x):
        return self.layers(x)


def _tiny_inception_file(path: Path) -> Path:
    """A TorchScript file shaped like clean-fid's (a ``layers`` submodule), random weights."""
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(_TinyInceptionScript()), str(path))
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_default_locations_follow_torch_home(tmp_path):
    assert (
        bb.default_alexnet_path()
        == tmp_path / "torch_home" / "hub" / "checkpoints" / bb.ALEXNET_FILE
    )
    assert (
        bb.inception_candidates()[0] == tmp_path / "torch_home/hub/checkpoints" / bb.INCEPTION_FILE
    )
    assert bb.default_lpips_weights_path().is_file()  # shipped inside the lpips package


def test_missing_weights_leave_the_metrics_missing_with_the_reason(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    got = bb.load_backbones(
        need_lpips=True,
        need_inception=True,
        device="cpu",
        inception_weights=str(tmp_path / "nowhere" / bb.INCEPTION_FILE),
    )
    assert got.lpips is None and got.inception is None
    assert str(bb.default_alexnet_path()) in got.missing["lpips"]
    assert "evaluate.alexnet_weights" in got.missing["lpips"]
    assert (
        "nowhere" in got.missing["inception"]
        and "evaluate.inception_weights" in got.missing["inception"]
    )


def test_require_weights_makes_a_missing_file_an_error():
    with pytest.raises(UserError, match="alexnet-owt-7be5be79.pth"):
        bb.load_backbones(need_lpips=True, need_inception=False, require_weights=True)


def test_a_truncated_alexnet_file_is_a_one_line_error(tmp_path):
    hub_named = bb.default_alexnet_path()
    _truncate(Path(_random_alexnet_features(hub_named) and hub_named))
    with pytest.raises(UserError) as caught:
        bb.load_backbones(need_lpips=True, need_inception=False, device="cpu")
    message = str(caught.value)
    assert str(hub_named) in message and "download it again" in message and "\n" not in message

    other = _truncate(
        Path(_random_alexnet_features(tmp_path / "alexnet.pth") and tmp_path / "alexnet.pth")
    )
    with pytest.raises(
        UserError, match=r"alexnet\.pth: cannot load AlexNet weights .*truncated or corrupt"
    ):
        bb.load_backbones(
            need_lpips=True, need_inception=False, device="cpu", alexnet_weights=str(other)
        )


def test_a_file_that_is_not_alexnet_is_an_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="not torchvision AlexNet weights"):
        bb.load_backbones(
            need_lpips=True, need_inception=False, device="cpu", alexnet_weights=str(path)
        )


def test_lpips_loads_alexnet_weights_from_the_file_plumbing(tmp_path):
    """PLUMBING: random AlexNet weights in torchvision's format go into lpips's slices."""
    path = tmp_path / "alexnet_random.pth"
    state = _random_alexnet_features(path)
    got = bb.load_backbones(
        need_lpips=True, need_inception=False, device="cpu", alexnet_weights=str(path)
    )
    assert got.lpips is not None and got.missing == {}
    assert got.provenance["lpips"]["alexnet"]["path"] == str(path)
    assert len(got.provenance["lpips"]["alexnet"]["sha256"]) == 16
    x = torch.rand(2, 3, 48, 64)
    y = torch.rand(2, 3, 48, 64)
    same, different = got.lpips(x, x), got.lpips(x, y)
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2), atol=1e-6)
    assert (different > 0).all()
    # The weights really came from the file: perturbing the file changes the distance.
    state["features.3.weight"] = torch.randn_like(state["features.3.weight"]) * 0.05
    torch.save(state, path)
    again = bb.load_backbones(
        need_lpips=True, need_inception=False, device="cpu", alexnet_weights=str(path)
    )
    assert not torch.allclose(again.lpips(x, y), different)


def test_inception_from_a_local_torchscript_file_plumbing(tmp_path, monkeypatch):
    """PLUMBING: a tiny random TorchScript net in clean-fid's layout, loaded without download."""
    import cleanfid.downloads_helper as downloads

    monkeypatch.setattr(
        downloads, "check_download_inception", lambda *a, **k: pytest.fail("download")
    )
    path = _tiny_inception_file(tmp_path / "tiny.pt")
    got = bb.load_backbones(
        need_lpips=False, need_inception=True, device="cpu", inception_weights=str(path)
    )
    features = got.inception(torch.full((3, 3, 299, 299), 128.0))
    assert features.shape == (3, 4)
    assert got.provenance["inception"] == {"path": str(path), "sha256": file_sha256(path)[:16]}


def test_a_truncated_inception_file_is_a_one_line_error(tmp_path):
    path = _truncate(_tiny_inception_file(tmp_path / bb.INCEPTION_FILE))
    with pytest.raises(UserError) as caught:
        bb.load_backbones(
            need_lpips=False, need_inception=True, device="cpu", inception_weights=str(path)
        )
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot load Inception weights")
    assert "nvlabs-fi-cdn" in message and "\n" not in message


def test_a_torchscript_file_without_layers_is_an_error(tmp_path):
    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(UserError, match="plain.pt: cannot load Inception weights"):
        bb.load_backbones(
            need_lpips=False, need_inception=True, device="cpu", inception_weights=str(path)
        )


def test_lpips_from_our_loader_equals_lpips_own_construction(tmp_path, monkeypatch):
    """Same weights, same numbers as ``lpips.LPIPS(net='alex')`` (weights random: plumbing)."""
    import lpips
    import torchvision

    path = tmp_path / "alexnet_random.pth"
    state = _random_alexnet_features(path)
    build = torchvision.models.alexnet

    def alexnet_from_file(*args, **kwargs):  # what torchvision would load from its cache
        model = build(weights=None)
        model.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})
        return model

    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", alexnet_from_file)
    reference = lpips.LPIPS(net="alex", verbose=False).eval()  # package's linear weights
    ours = bb.load_backbones(
        need_lpips=True, need_inception=False, device="cpu", alexnet_weights=str(path)
    ).lpips
    x, y = torch.rand(2, 3, 40, 56), torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        expected = reference(x, y, normalize=True).reshape(-1)
    assert torch.allclose(ours(x, y), expected, atol=1e-6)


def test_inception_input_pipeline_equals_clean_fid(tmp_path):
    """Our resize + scaling gives clean-fid's features for the same network (tiny: plumbing)."""
    import numpy as np
    from cleanfid.fid import get_files_features
    from PIL import Image

    from maldnerf.evaluate.stage import inception_features
    from maldnerf.images import read_image

    path = _tiny_inception_file(tmp_path / "tiny.pt")
    features = bb.load_inception(path)[0]
    base = torch.jit.load(str(path)).eval()

    def clean_fid_model(x):  # clean-fid's InceptionV3W.forward, resize_inside=False
        return base.layers.forward((x - 128) / 128).view(x.shape[0], -1)

    rng = np.random.default_rng(0)
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(files[-1])
    expected = get_files_features(
        [str(f) for f in files],
        model=clean_fid_model,
        num_workers=0,
        batch_size=2,
        device=torch.device("cpu"),
        mode="clean",
        verbose=False,
    )
    ours = inception_features(features, [read_image(f) for f in files], batch_size=2)
    assert np.allclose(ours, expected, atol=1e-5)
