import numpy as np
import pytest

from stylemix.backend import array_module, to_numpy
from stylemix.errors import StylemixError
from stylemix.vectors import pixel_vectors


def test_layout_is_pixels_by_variant_channels():
    stack = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    x = pixel_vectors(stack, "none")
    assert x.shape == (20, 6)
    np.testing.assert_array_equal(x[5 * 1 + 2], stack[:, :, 1, 2].reshape(-1))  # row y*w + x, vector (n, c)


def test_standardize_removes_pixel_colour_and_scale():
    rng = np.random.default_rng(0)
    change = rng.normal(size=(8, 3, 1, 1)).astype(np.float32)
    # Two pixels that change together, with different own colour and contrast, become the same vector.
    stack = np.concatenate([change + 5.0, 0.2 * change - 1.0], axis=3)
    x = pixel_vectors(stack, "standardize")
    np.testing.assert_allclose(x[0], x[1], atol=1e-4)
    np.testing.assert_allclose((x ** 2).mean(1), 1.0, atol=1e-4)
    centred = pixel_vectors(stack, "center")
    assert not np.allclose(centred[0], centred[1])  # centring alone keeps the contrast difference


def test_bad_input():
    with pytest.raises(StylemixError):
        pixel_vectors(np.zeros((2, 3, 4)), "none")
    with pytest.raises(StylemixError):
        pixel_vectors(np.zeros((2, 3, 4, 4)), "whiten")


@pytest.mark.parametrize("normalization", ["standardize", "center", "none"])
def test_every_device_gives_the_same_vectors(device, normalization):
    stack = np.random.default_rng(1).normal(size=(6, 3, 8, 10)).astype(np.float32)
    got = pixel_vectors(device.xp.asarray(stack), normalization)
    assert array_module(got) is device.xp and got.dtype == np.float32
    np.testing.assert_allclose(to_numpy(got), pixel_vectors(stack, normalization), rtol=1e-5, atol=1e-5)
