import numpy as np
import pytest

from maldnerf.diffusion.windows import Window, cut, mask_to_model, mask_window, paste


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
