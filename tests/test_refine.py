"""Boundary refinement: on an image with a known sharp edge the refined mask must beat plain upsampling."""

import numpy as np
import pytest

from stylemix.errors import StylemixError
from stylemix.metrics import boundary_fscore, mask_scores
from stylemix.matting import closed_form_alpha, solve_spd
from stylemix.refine import (RefineConfig, alpha_uint8, binary, classify_band, foreground_matte,
                             refine_boundary)


def disc_case(size=256, r=32, radius=0.31, noise=0.04, seed=0):
    """An image with a sharp-edged disc (textured, so edges are not trivially flat) and the analysis-resolution
    probability a region decision would give: the disc's area fraction per analysis cell, blurred."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size
    truth = (yy - 0.47) ** 2 + (xx - 0.53) ** 2 < radius ** 2
    img = np.where(truth[..., None], [200, 80, 60], [40, 90, 170]).astype(np.float32)
    img += rng.normal(0, 255 * noise, img.shape)
    image = np.clip(img, 0, 255).astype(np.uint8)
    # The coarse decision is a soft map of a disc 4 px too wide: placed only to about an analysis pixel.
    wide = (yy - 0.47) ** 2 + (xx - 0.53) ** 2 < (radius + 4 / size) ** 2
    cells = wide.reshape(r, size // r, r, size // r).mean(axis=(1, 3)).astype(np.float32)
    import cv2
    prob = cv2.GaussianBlur(cells, (0, 0), 0.8)
    return image, prob, truth


def plain_upsampling(prob, size):
    import cv2
    return cv2.resize(prob, (size, size), interpolation=cv2.INTER_LINEAR) > 0.5


def disc_features(truth, size=64, channels=6, seed=1):
    """Feature maps ``[C, size, size]`` that tell the disc from the rest (one channel, plus noise channels), as a
    generator's features tell regions apart whatever their colour."""
    import cv2
    rng = np.random.default_rng(seed)
    inside = cv2.resize(truth.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    feats = rng.normal(0, 0.3, (channels, size, size)).astype(np.float32)
    feats[0] += 2 * inside
    return feats


@pytest.mark.parametrize("method", ["cascade", "matting", "grabcut", "features", "features-matting"])
def test_refined_beats_plain_upsampling_at_the_boundary(method):
    image, prob, truth = disc_case()
    plain = plain_upsampling(prob, 256)
    alpha = refine_boundary(image, prob, RefineConfig(method=method), disc_features(truth))
    refined = binary(alpha).astype(bool)
    assert mask_scores(refined, truth, band=1)["trimap_iou"] > mask_scores(plain, truth, band=1)["trimap_iou"] + 0.05
    assert boundary_fscore(refined, truth, tolerance=1) > boundary_fscore(plain, truth, tolerance=1)
    assert mask_scores(refined, truth)["miou"] > 0.97


@pytest.mark.parametrize("method", ["guided", "cascade", "grabcut", "features"])
def test_alpha_range_shape_and_determinism(method):
    image, prob, truth = disc_case(size=128, r=16, noise=0.2, seed=3)
    feats = disc_features(truth, size=32)
    a = refine_boundary(image, prob, RefineConfig(method=method), feats)
    assert a.shape == (128, 128) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert 0 < (a > 0.5).mean() < 1
    np.testing.assert_array_equal(a, refine_boundary(image, prob, RefineConfig(method=method), feats))
    alpha, mask = foreground_matte(image, prob, RefineConfig(method=method), feats)
    np.testing.assert_array_equal(alpha, a)
    assert mask.dtype == np.int32 and np.array_equal(mask, a > 0.5)
    u8 = alpha_uint8(a)
    assert u8.dtype == np.uint8 and u8.max() <= 255


def test_probability_at_full_size_is_left_to_one_pass():
    image, prob, truth = disc_case(size=64, r=64, noise=0.0)
    a = refine_boundary(image, truth.astype(np.float32), RefineConfig(method="cascade"))
    np.testing.assert_array_equal(a, refine_boundary(image, truth.astype(np.float32), RefineConfig(method="guided")))


def test_features_fix_a_boundary_the_colours_do_not_show():
    """Same colour on both sides: only the features know where the disc ends, and the band is relabelled by them;
    without features the method is the cascade's."""
    image, prob, truth = disc_case(noise=0.0)
    image[:] = 120
    cascade = refine_boundary(image, prob, RefineConfig(method="cascade"))
    np.testing.assert_array_equal(refine_boundary(image, prob, RefineConfig(method="features")), cascade)
    featured = binary(refine_boundary(image, prob, RefineConfig(method="features"), disc_features(truth))).astype(bool)
    before = mask_scores(cascade > 0.5, truth, band=3)["trimap_iou"]
    assert mask_scores(featured, truth, band=3)["trimap_iou"] > before + 0.05


def test_band_classification_keeps_a_side_too_small_to_model():
    soft = np.zeros((64, 64), np.float32)
    soft[30:33, 30:33] = 1  # nine foreground pixels, all in the band: no Gaussian to fit
    out = classify_band(np.random.default_rng(0).normal(size=(4, 32, 32)), soft, 16.0)
    np.testing.assert_array_equal(out, soft)
    with pytest.raises(StylemixError, match=r"\[C, h, w\]"):
        classify_band(np.zeros((32, 32)), soft, 16.0)


def test_bad_settings_are_one_clear_error():
    image, prob, _ = disc_case(size=64, r=8)
    with pytest.raises(StylemixError, match="unknown boundary method"):
        refine_boundary(image, prob, RefineConfig(method="magic"))
    with pytest.raises(StylemixError, match=r"\[H, W, 3\]"):
        refine_boundary(image[..., 0], prob)
    with pytest.raises(StylemixError, match="positive"):
        refine_boundary(image, prob, RefineConfig(matting_band=0))


def test_closed_form_matting_recovers_a_known_alpha():
    """A soft edge composited from two flat colours, alpha a ramp across it: the colour-line model holds exactly,
    so the band's alpha is recovered from the known pixels on either side."""
    size = 48
    x = (np.arange(size) + 0.5) / size
    truth = np.clip((x - 0.35) / 0.3, 0, 1)[None].repeat(size, 0)  # ramp over the middle 30 %
    fg, bg = np.array([0.9, 0.3, 0.2]), np.array([0.1, 0.4, 0.8])
    image = truth[..., None] * fg + (1 - truth[..., None]) * bg
    known = (truth == 0) | (truth == 1)
    known[:, (x > 0.3) & (x < 0.7)] = False  # the unknown band reaches into the flat parts too
    values = np.where(known, truth, 0.5)
    alpha = closed_form_alpha(image, known, values)
    assert alpha.shape == (size, size) and alpha.dtype == np.float64
    np.testing.assert_array_equal(alpha[known], truth[known])
    assert np.abs(alpha - truth).max() < 1e-3
    with pytest.raises(StylemixError, match="matting needs"):
        closed_form_alpha(image[..., 0], known, values)


def test_closed_form_matting_without_unknown_pixels_returns_the_values():
    image = np.random.default_rng(0).random((8, 8, 3))
    values = (np.arange(64).reshape(8, 8) % 2).astype(np.float64)
    np.testing.assert_array_equal(closed_form_alpha(image, np.ones((8, 8), bool), values), values)


def test_banded_and_general_sparse_solves_agree():
    """The band matrix solve (after reverse Cuthill-McKee) and the sparse-LU fallback give the same answer."""
    import scipy.sparse
    rng = np.random.default_rng(0)
    n = 60
    M = scipy.sparse.random(n, n, density=0.05, random_state=1)
    A = (M @ M.T + scipy.sparse.identity(n)).tocsr()
    b = rng.normal(size=n)
    x = solve_spd(A, b)
    np.testing.assert_allclose(A @ x, b, atol=1e-9)
    np.testing.assert_allclose(solve_spd(A, b, max_work=0), x, atol=1e-9)


@pytest.mark.parametrize("n, c, d", [(600, 128, 8), (60, 256, 8), (300, 40, 16)])
def test_principal_axes_are_the_svds(n, c, d):
    """Both branches (covariance when rows outnumber channels, Gram otherwise) and both solvers (Lanczos for a few
    axes of a large matrix, the dense subset otherwise) give the SVD's leading right singular vectors, sign aside."""
    from stylemix.refine import principal_axes
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, c)) @ np.diag(np.linspace(3, 0.1, c)) @ np.linalg.qr(rng.standard_normal((c, c)))[0]
    X = (X - X.mean(axis=0)).astype(np.float32)
    axes = principal_axes(X, d)
    want = np.linalg.svd(X.astype(np.float64), full_matrices=False)[2][:d]
    assert axes.shape == (d, c) and axes.dtype == np.float32
    np.testing.assert_allclose(np.abs(np.sum(axes * want, axis=1)), 1, atol=1e-4)
