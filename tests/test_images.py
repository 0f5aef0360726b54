import logging

import numpy as np
import pytest
from PIL import Image

from maldnerf.errors import UserError
from maldnerf.images import read_image, read_mask, write_image, write_mask


def test_round_trip_is_exact_for_8_bit(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", pixels.astype(np.float32) / 255.0)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), pixels)
    assert np.array_equal((read_image(tmp_path / "a.png") * 255).round().astype(np.uint8), pixels)


def test_grayscale_rgba_and_16_bit_are_converted_with_warnings(tmp_path, caplog):
    Image.fromarray(np.full((4, 4), 128, np.uint8)).save(tmp_path / "gray.png")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "deep.png")
    with caplog.at_level(logging.WARNING):
        gray = read_image(tmp_path / "gray.png")
        colour = read_image(tmp_path / "rgba.png")
        deep = read_image(tmp_path / "deep.png")
    assert gray.shape == (4, 4, 3) and np.allclose(gray, 128 / 255)
    assert np.allclose(colour[..., 0], 200 / 255) and np.allclose(colour[..., 1:], 0)
    assert deep.shape == (4, 4, 3) and np.allclose(deep, 1.0)
    text = caplog.text
    assert "grayscale" in text and "alpha" in text and "8 bits" in text


def test_exif_rotation_is_applied(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :4] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    image = read_image(tmp_path / "rot.jpg")
    assert image.shape == (8, 4, 3)
    assert image[:4].mean() > 0.9 and image[4:].mean() < 0.1  # top half white after rotation


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UserError, match="bad.png: cannot read image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(UserError, match="nothere.png: file not found"):
        read_image(tmp_path / "nothere.png")


@pytest.mark.parametrize("form", ["0-255", "0-1", "labels", "alpha", "jpeg", "rgb"])
def test_mask_forms(tmp_path, form):
    truth = np.zeros((32, 32), bool)
    truth[8:20, 10:24] = True
    if form == "0-255":
        Image.fromarray(np.where(truth, 255, 0).astype(np.uint8)).save(tmp_path / "m.png")
    elif form == "0-1":
        Image.fromarray(truth.astype(np.uint8)).save(tmp_path / "m.png")
    elif form == "labels":
        Image.fromarray(np.where(truth, 3, 0).astype(np.uint8)).save(tmp_path / "m.png")
    elif form == "alpha":
        rgba = np.zeros((32, 32, 4), np.uint8)
        rgba[..., 3] = np.where(truth, 255, 0)
        Image.fromarray(rgba).save(tmp_path / "m.png")
    elif form == "jpeg":
        Image.fromarray(np.where(truth, 255, 0).astype(np.uint8)).save(
            tmp_path / "m.jpg", quality=60
        )
    else:
        Image.fromarray(np.stack([np.where(truth, 255, 0).astype(np.uint8)] * 3, -1)).save(
            tmp_path / "m.png"
        )
    path = next(tmp_path.iterdir())
    mask = read_mask(path)
    assert mask.dtype == bool
    assert (mask != truth).mean() < 0.01


def test_soft_mask_is_rejected(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (16, 1))
    Image.fromarray(ramp).save(tmp_path / "soft.png")
    with pytest.raises(UserError, match="soft.png: mask is not binary"):
        read_mask(tmp_path / "soft.png")


def test_write_mask_is_0_255(tmp_path):
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    write_mask(tmp_path / "m.png", mask)
    values = np.asarray(Image.open(tmp_path / "m.png"))
    assert values.dtype == np.uint8 and set(np.unique(values)) == {0, 255}
