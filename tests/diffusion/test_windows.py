import numpy as np
import pytest
from diffusion_helpers import window_resampled

from maldnerf.diffusion.windows import (
    GREY,
    Window,
    cut,
    fit_inside,
    image_to_model,
    mask_to_model,
    mask_window,
    paste,
)


def box_mask(height, width, top, bottom, left, right):
    mask = np.zeros((height, width), bool)
    mask[top:bottom, left:right] = True
    return mask


def contains(window: Window, mask: np.ndarray) -> bool:
    ys, xs = np.nonzero(mask)
    return (
        window.x0 <= xs.min()
        and xs.max() < window.x0 + window.size
        and window.y0 <= ys.min()
        and ys.max() < window.y0 + window.size
    )


def test_window_is_model_sized_for_a_small_mask_and_stays_in_the_image():
    mask = box_mask(120, 160, 2, 12, 150, 158)  # near the top-right corner
    window = mask_window(mask, 64, margin=0.35)
    assert window.size == 64
    assert contains(window, mask)
    assert 0 <= window.x0 <= 160 - 64 and 0 <= window.y0 <= 120 - 64


def test_window_grows_with_the_mask_and_margin():
    mask = box_mask(120, 160, 40, 90, 50, 100)
    window = mask_window(mask, 64, margin=0.25)
    assert window.size == 75  # 50 * (1 + 2 * 0.25)
    assert contains(window, mask)


def test_window_overhangs_a_wide_image_when_the_mask_is_tall():
    mask = box_mask(80, 300, 0, 80, 100, 150)
    window = mask_window(mask, 64, margin=0.5)
    assert window.size == 160  # the 80 px extent doubled; larger than the image height
    assert window.y0 < 0 and contains(window, mask)
    crop = cut(np.arange(80 * 300, dtype=np.float32).reshape(80, 300), window)
    assert crop.shape == (160, 160)


def test_overhang_is_a_masked_grey_border_not_a_mirror():
    """A 1008×567 view with a 600 px wide mask: the window (1008 px) overhangs above and
    below; the model input holds resampled real pixels or the masked grey border, nothing
    mirrored."""
    rng = np.random.default_rng(0)
    image = rng.random((567, 1008, 3), dtype=np.float32)  # any mirrored pixel would differ
    mask = box_mask(567, 1008, 150, 420, 200, 800)
    window = mask_window(mask, 64, margin=0.35)
    assert window.size == 1008 and window.y0 < 0 < window.y0 + window.size - 567
    assert contains(window, mask)
    pixels = image_to_model(image, window, 64)
    model_mask = mask_to_model(mask, window, 64)
    real = window_resampled(image, window, 64, np.nan)
    outside = np.isnan(real).any(axis=2)
    assert outside[0].all() and outside[-1].all() and not outside.all()
    assert model_mask[outside].all()  # the border is inpainted like the hole
    known = ~model_mask
    assert np.allclose(pixels[known], real[known], atol=1e-6)
    fully_outside = window_resampled(np.zeros((567, 1008)), window, 64, 1.0) >= 1.0
    assert fully_outside.any() and np.all(pixels[fully_outside] == GREY)
    # pasting writes the mask only, never the border
    out = paste(image, mask, window, rng.random((64, 64, 3), dtype=np.float32))
    assert np.array_equal(out[~mask], image[~mask])


def test_windows_inside_the_image_are_plain_crops():
    """Unchanged where the window fits: the crop resized, no border."""
    import cv2

    rng = np.random.default_rng(2)
    image = rng.random((120, 160, 3), dtype=np.float32)
    mask = box_mask(120, 160, 40, 90, 50, 100)
    window = mask_window(mask, 64, margin=0.25)
    rows = slice(window.y0, window.y0 + window.size)
    cols = slice(window.x0, window.x0 + window.size)

    def area(array):
        return cv2.resize(array, (64, 64), interpolation=cv2.INTER_AREA)

    assert np.array_equal(image_to_model(image, window, 64), area(image[rows, cols]))
    expected_mask = area(mask[rows, cols].astype(np.float32)) > 1e-6
    assert np.array_equal(mask_to_model(mask, window, 64), expected_mask)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (Window(-20, 10, 160), Window(0, 0, 120)),  # taller than the image: shrunk, centred
        (Window(100, -30, 100), Window(60, 0, 100)),  # fits once shifted
        (Window(10, 10, 64), Window(10, 10, 64)),  # already inside: unchanged
    ],
)
def test_fit_inside_keeps_a_window_within_the_image(window, expected):
    fitted = fit_inside(window, 120, 160)
    assert fitted == expected
    assert not np.isnan(cut(np.zeros((120, 160)), fitted, np.nan)).any()


def test_empty_mask_has_no_window():
    with pytest.raises(ValueError):
        mask_window(np.zeros((64, 64), bool), 64, 0.3)


def test_mask_to_model_keeps_every_object_pixel():
    mask = np.zeros((130, 130), bool)
    mask[65, 65] = True
    small = mask_to_model(mask, Window(0, 0, 130), 64)
    assert small.sum() >= 1


@pytest.mark.parametrize("shape", [(72, 96), (200, 64), (64, 64)])
def test_paste_changes_only_mask_pixels(shape):
    rng = np.random.default_rng(0)
    image = rng.random((*shape, 3), dtype=np.float32)
    mask = np.zeros(shape, bool)
    mask[10:40, 20:50] = True
    window = mask_window(mask, 64, 0.35)
    out = paste(image, mask, window, np.zeros((64, 64, 3), np.float32))
    assert np.array_equal(out[~mask], image[~mask])
    assert np.all(out[mask] == 0.0)
