import numpy as np
import pytest

from stylemix.backend import array_module, to_numpy
from stylemix.postprocess import clean_labels, guided_filter, resample_matrix, upsample_labels, upsample_mask


def test_clean_removes_specks_and_fills_small_holes():
    labels = np.zeros((40, 40), np.int32)
    labels[10:30, 10:30] = 1
    labels[20, 20] = 0  # hole
    labels[2, 2] = 1  # speck
    out = clean_labels(labels, min_area=4)
    assert out[20, 20] == 1 and out[2, 2] == 0
    assert (out != labels).sum() == 2
    np.testing.assert_array_equal(clean_labels(labels, 0), labels)


def test_nearest_upsampling_preserves_area():
    labels = np.zeros((16, 16), np.int32)
    labels[4:12, 4:12] = 1
    up = upsample_labels(labels, (64, 64), 2)
    assert up.shape == (64, 64) and up.dtype == np.int32
    assert abs(up.sum() - 16 * labels.sum()) <= 64


def test_guided_upsampling_snaps_to_image_edges():
    # True object: a square whose edges fall between analysis pixels; the coarse labels are off by one.
    image = np.zeros((64, 64, 3), np.uint8)
    image[18:46, 18:46] = 255
    coarse = np.zeros((16, 16), np.int32)
    coarse[4:12, 4:12] = 1  # = pixels 16..47 at full size, 2 px too large on every side
    truth = image[:, :, 0] > 0
    plain = upsample_labels(coarse, (64, 64), 2) == 1
    guided = upsample_labels(coarse, (64, 64), 2, guide=image) == 1
    assert (guided != truth).sum() < (plain != truth).sum() / 4


def test_guided_filter_keeps_constant_and_follows_edges():
    guide = np.zeros((32, 32), np.float32)
    guide[:, 16:] = 1
    const = np.full((32, 32), 0.7, np.float32)
    np.testing.assert_allclose(guided_filter(guide, const, 3, 1e-3), 0.7, atol=1e-5)
    out = guided_filter(guide, guide.copy(), 3, 1e-4)
    assert np.abs(out - guide).max() < 0.05


def noisy_box(size: int, rows: slice, cols: slice, value: int, sigma: float, seed: int) -> np.ndarray:
    """``uint8 [size, size, 3]``: a flat box on black, with Gaussian pixel noise."""
    image = np.zeros((size, size, 3), np.uint8)
    image[rows, cols] = value
    return np.clip(image + np.random.default_rng(seed).normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def test_fast_guided_filter_matches_full_size_filter():
    image = noisy_box(256, slice(70, 190), slice(60, 200), 200, 8, seed=0)
    coarse = np.zeros((16, 16), np.int32)
    coarse[4:12, 4:13] = 1
    full = upsample_labels(coarse, (256, 256), 2, guide=image, filter_resolution=None)
    fast = upsample_labels(coarse, (256, 256), 2, guide=image, filter_resolution=64)
    assert (full != fast).mean() < 0.01
    parts = coarse + (np.arange(16)[None, :] >= 8) * 2  # k = 4: the argmax path
    assert (upsample_labels(parts, (256, 256), 4, image, filter_resolution=None)
            != upsample_labels(parts, (256, 256), 4, image, filter_resolution=64)).mean() < 0.02


def test_clean_fills_like_one_distance_transform():
    import scipy.ndimage
    rng = np.random.default_rng(1)
    labels = (scipy.ndimage.uniform_filter(rng.random((200, 200)), 9) > 0.5).astype(np.int32)
    labels[rng.random((200, 200)) < 0.002] = 2  # specks of a third label
    drop = np.zeros(labels.shape, bool)
    for value in np.unique(labels):
        comp, _ = scipy.ndimage.label(labels == value)
        sizes = np.bincount(comp.ravel())
        small = sizes < 30
        small[0] = False
        drop |= small[comp]
    idx = scipy.ndimage.distance_transform_edt(drop, return_distances=False, return_indices=True)
    np.testing.assert_array_equal(clean_labels(labels, 30), labels[idx[0], idx[1]])


@pytest.mark.parametrize("size_in, size_out, area", [((16, 16), (64, 64), False), ((100, 37), (256, 130), False),
                                                     ((7, 13), (13, 7), False), ((1024, 1024), (256, 256), True),
                                                     ((768, 500), (256, 173), True), ((64, 64), (64, 32), True)])
def test_resample_matrix_is_opencvs_resampling(size_in, size_out, area):
    """The CuPy path resizes with these matrices, the NumPy path with OpenCV: the same weights, integer factors or
    not (a bilinear zoom on one and INTER_AREA on the other would put boundaries elsewhere)."""
    import cv2
    a = np.random.default_rng(0).random(size_in).astype(np.float32)
    want = cv2.resize(a, size_out[::-1], interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
    got = resample_matrix(size_in[0], size_out[0], area) @ a @ resample_matrix(size_in[1], size_out[1], area).T
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_every_device_upsamples_and_cleans_alike(device):
    image = noisy_box(96, slice(22, 70), slice(30, 80), 220, 6, seed=3)
    coarse = np.zeros((24, 24), np.int32)
    coarse[5:18, 7:20] = 1
    coarse[2, 2] = 1  # a speck for the cleaning
    prob = coarse.astype(np.float32) * 0.8 + 0.1
    xp = device.xp
    for want, got in [(upsample_labels(coarse, (96, 96), 2, image),
                       upsample_labels(xp.asarray(coarse), (96, 96), 2, xp.asarray(image))),
                      (upsample_mask(prob, (96, 96), image, filter_resolution=48),
                       upsample_mask(xp.asarray(prob), (96, 96), xp.asarray(image), filter_resolution=48)),
                      (upsample_labels(coarse + 2 * (np.arange(24) >= 12), (96, 96), 4, image),
                       upsample_labels(xp.asarray(coarse + 2 * (np.arange(24) >= 12)), (96, 96), 4,
                                       xp.asarray(image)))]:
        assert array_module(got) is xp and got.dtype == np.int32
        assert (to_numpy(got) != want).mean() < 0.002  # float rounding may flip a pixel on a 0.5 tie
    dirty = upsample_labels(coarse, (96, 96), 2)
    np.testing.assert_array_equal(to_numpy(clean_labels(xp.asarray(dirty), 40)), clean_labels(dirty, 40))


@pytest.mark.parametrize("offset, labels_count", [(0, 2), (0, 5), (-3, 4), (0, 300)])
def test_host_small_components_are_ndimages(offset, labels_count):
    """OpenCV's labelling with the areas by bincount (the CPU path) finds exactly the components
    ``ndimage.label`` finds (the path CuPy takes), for binary, multi-label, negative and wide-range label maps."""
    from stylemix.postprocess import _small_components, _small_components_host
    rng = np.random.default_rng(labels_count)
    coarse = rng.integers(0, labels_count, size=(12, 16)) + offset
    labels = np.kron(coarse, np.ones((5, 5), int)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.03] = offset  # specks
    for min_area in (1, 3, 26, 400):
        np.testing.assert_array_equal(_small_components_host(labels, min_area), _small_components(labels, min_area))


@pytest.mark.parametrize("density", [0.0005, 0.05, 0.4])
def test_sparse_blobs_are_ndimages_components(density):
    """The blobs _fill_blobs finds from the dropped pixels alone are the 4-connected components of the whole mask."""
    import scipy.ndimage
    from stylemix.postprocess import _sparse_blobs
    drop = np.random.default_rng(3).random((61, 47)) < density
    drop[0, :3] = drop[-1, -3:] = True  # blobs on the borders, where a neighbour step would wrap
    pixels, blob, n = _sparse_blobs(drop)
    comp, m = scipy.ndimage.label(drop)
    assert n == m
    np.testing.assert_array_equal(pixels, np.flatnonzero(drop))
    ids = comp.ravel()[pixels]
    # the same partition: each blob is one component and each component one blob
    assert len(set(zip(blob.tolist(), ids.tolist()))) == n
