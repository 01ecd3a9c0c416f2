import numpy as np

from stylemix.postprocess import clean_labels, guided_filter, upsample_labels


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


def test_fast_guided_filter_matches_full_size_filter():
    rng = np.random.default_rng(0)
    image = np.zeros((256, 256, 3), np.uint8)
    image[70:190, 60:200] = 200
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
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
