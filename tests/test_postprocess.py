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
