"""The stages between the variant stack and the full-resolution labels (stylemix.stages), on stacks whose answer is
known: regions that change together across variants."""

from __future__ import annotations

import numpy as np
import pytest

import stylemix
from stylemix import stages
from stylemix.config import SegmentConfig

from conftest import base_styles, iou


def region_stack(regions: np.ndarray, variants: int = 8, channels: int = 3, seed: int = 0) -> np.ndarray:
    """``float32 [N, C, h, w]``: one random colour per region and variant, a little pixel noise."""
    rng = np.random.default_rng(seed)
    colours = rng.normal(size=(variants, channels, regions.max() + 1))
    return (colours[..., regions] + 0.01 * rng.normal(size=(variants, channels, *regions.shape))).astype(np.float32)


def disc(h: int = 32, r: int = 9) -> np.ndarray:
    yy, xx = np.mgrid[:h, :h]
    return ((yy - h / 2 + 0.5) ** 2 + (xx - h / 2 + 0.5) ** 2 <= r ** 2).astype(np.int64)


CFG = SegmentConfig(consensus=(2, 3), n_init=2)


def test_kmeans_seed_is_drawn_from_its_own_stream():
    assert stages.kmeans_seed(5) == stages.kmeans_seed(5) != stages.kmeans_seed(6)
    assert 0 <= stages.kmeans_seed(0) < 2 ** 31
    assert stages.kmeans_seed((1, 2, 3)) != stages.kmeans_seed(1)  # a latents row's key is not a seed


def test_foreground_probability_of_a_central_region():
    regions = disc()
    prob, scores, margin, agreement = stages.foreground_probability(region_stack(regions), 0, consensus=CFG.consensus,
                                                                    **CFG.kmeans_options())
    assert prob.shape == regions.shape and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
    np.testing.assert_array_equal(prob > 0.5, regions == 1)
    assert scores.shape == (2,) and margin == pytest.approx(max(float(scores[1]), 0.0)) and margin > 0.2
    assert agreement == pytest.approx(float(np.abs(2 * prob - 1).mean()))


def test_part_labels_find_every_region_and_the_central_ones():
    regions = disc(r=12)
    regions[disc(r=5) == 1] = 2
    labels, scores, is_fg, margin = stages.part_labels(region_stack(regions), 3, 0)
    assert labels.shape == regions.shape and labels.dtype == np.int32 and scores.shape == is_fg.shape == (3,)
    for r in range(3):  # each region is one cluster (ids are ordered by size, not by region)
        assert len(np.unique(labels[regions == r])) == 1
    assert is_fg[labels[regions == 2][0]] and not is_fg[labels[0, 0]] and margin >= 0


def test_order_binary_makes_one_the_foreground():
    labels = np.array([[0, 1], [1, 1]], np.int32)
    out = stages.order_binary(labels, np.array([True, False]))
    assert out.tolist() == [[1, 0], [0, 0]] and out.dtype == np.int32


@pytest.mark.parametrize("refine", ["guided", "nearest"])
def test_finish_probability_upsamples_and_cleans(refine):
    image = np.zeros((128, 128, 3), np.uint8)
    image[34:94, 30:98] = 230  # the object's true edges, between analysis pixels
    prob = np.zeros((32, 32), np.float32)
    prob[8:24, 7:25] = 1.0
    prob[1, 1] = 1.0  # one speck, under min_area
    area = stages.min_pixels(SegmentConfig().min_area, (128, 128))
    full = stages.finish_probability(prob, (128, 128), image, min_pixels=area, refine=refine, boundary="guided")
    truth = image[..., 0] > 0
    assert full.shape == (128, 128) and full.dtype == np.int32 and not full[:8, :8].any()  # speck cleaned
    assert iou(full == 1, truth) > (0.99 if refine == "guided" else 0.85)  # nearest: the blocky analysis edges
    if refine == "nearest":  # min_pixels overrides the area rule (the instance mode passes the image's count)
        assert stages.finish_probability(prob, (128, 128), image, min_pixels=0, refine=refine)[:8, :8].any()


def test_refine_nearest_end_to_end(shapes):
    """``refine="nearest"`` ignores the image: the mask is the plain upsampling of the analysis decision, and the
    guided default follows the object's edges better."""
    truth = shapes.truth(base_styles(shapes, 3))["foreground"][0]
    near = stylemix.segment(shapes, 3,
                            config=stylemix.SegmentConfig(variants=8, analysis_resolution=16, refine="nearest"))
    guided = stylemix.segment(shapes, 3, config=stylemix.SegmentConfig(variants=8, analysis_resolution=16))
    assert near.meta["settings"]["refine"] == "nearest"
    assert iou(near.foreground, truth) >= 0.85 and iou(guided.foreground, truth) > iou(near.foreground, truth)
    image = np.zeros_like(near.image)  # no edges at all: a nearest result cannot depend on the image
    cfg = SegmentConfig(refine="nearest", variants=8, analysis_resolution=16).resolve(shapes)
    prob = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    area = stages.min_pixels(cfg.min_area, (64, 64))
    np.testing.assert_array_equal(stages.finish_probability(prob, (64, 64), image, min_pixels=area, refine="nearest"),
                                  stages.finish_probability(prob, (64, 64), near.image, min_pixels=area,
                                                            refine="nearest"))


def test_cluster_stack_labels_in_size_order():
    regions = disc(r=6)
    labels = stages.cluster_stack(region_stack(regions), 2, 0)
    np.testing.assert_array_equal(labels, (regions == 1).astype(np.int32))  # 0 = the larger cluster
