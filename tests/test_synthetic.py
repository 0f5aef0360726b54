import numpy as np

from maldnerf.prepare.synthetic import (
    SyntheticScene,
    SyntheticSettings,
    generate,
    intrinsics_matrix,
    look_at,
)


def small() -> SyntheticSettings:
    return SyntheticSettings(width=64, height=48, n_train=4, n_test=2, supersampling=1)


def test_same_seed_same_images_other_seed_other_textures():
    a_train, a_test, _, _ = generate(small())
    b_train, _, _, _ = generate(small())
    c_train, _, _, _ = generate(SyntheticSettings(**{**small().__dict__, "seed": 1}))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(a_train, b_train))
    assert not np.allclose(a_train[0].image, c_train[0].image)
    assert len(a_train) == 4 and len(a_test) == 2


def test_training_views_show_the_object_and_test_views_do_not():
    train, test, _, _ = generate(small())
    for view in train:
        assert 0.01 < view.mask.mean() < 0.5
        # Inside the mask the object is drawn, so the image differs from the true background.
        assert np.abs(view.image - view.background)[view.mask].mean() > 0.05
        assert np.abs(view.image - view.background)[~view.mask].max() < 0.5
    for view in test:
        assert view.mask.any() and view.background is None


def test_background_equals_render_without_object():
    scene = SyntheticScene(0)
    c2w = look_at(np.array([0.0, 0.2, 1.0]), np.array([0.0, -0.4, -2.6]))
    k = intrinsics_matrix(64, 48, 60.0)
    with_obj, mask, _ = scene.render(c2w, k, 64, 48, include_object=True, supersampling=1)
    without, mask2, (near, far) = scene.render(
        c2w, k, 64, 48, include_object=False, supersampling=1
    )
    np.testing.assert_array_equal(mask, mask2)
    np.testing.assert_array_equal(with_obj[~mask], without[~mask])
    assert 0 < near < far


def test_textures_are_detailed():
    train, _, _, _ = generate(SyntheticSettings(n_train=3, n_test=1, supersampling=1))
    image = train[0].image.mean(axis=2)
    gradient = np.hypot(*np.gradient(image))
    # Rich texture: plenty of local contrast for SIFT, not a flat render.
    assert np.mean(gradient > 0.02) > 0.3
