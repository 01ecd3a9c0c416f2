import numpy as np
import pytest

from stylemix.metrics import mask_scores, summarize, trimap_band


def test_known_values():
    gt = np.zeros((10, 10), bool)
    gt[:, :5] = True  # 50 fg
    pred = np.zeros((10, 10), bool)
    pred[:, :4] = True  # 40 fg, all inside gt
    s = mask_scores(pred, gt, band=1)
    assert s["fg_iou"] == pytest.approx(40 / 50)
    assert s["bg_iou"] == pytest.approx(50 / 60)
    assert s["miou"] == pytest.approx((0.8 + 50 / 60) / 2)
    # Band of 1 px: columns 4 (fg, distance 1) and 5 (bg, distance 1). Pred misses column 4 entirely.
    assert s["trimap_iou"] == pytest.approx((0 / 10 + 10 / 20) / 2)


def test_perfect_and_empty():
    gt = np.zeros((8, 8), bool)
    gt[2:6, 2:6] = True
    assert mask_scores(gt, gt) == {"fg_iou": 1, "bg_iou": 1, "miou": 1, "trimap_iou": 1}
    empty = np.zeros((8, 8), bool)
    assert mask_scores(empty, empty)["miou"] == 1  # empty union counts as agreement
    assert mask_scores(empty, gt)["fg_iou"] == 0


def test_band_width():
    gt = np.zeros((20, 20), bool)
    gt[:, :10] = True
    np.testing.assert_array_equal(trimap_band(gt, 3).any(0), [False] * 7 + [True] * 6 + [False] * 7)


def test_prediction_is_resized_to_ground_truth():
    gt = np.zeros((8, 8), bool)
    gt[:4] = True
    pred = np.repeat(np.repeat(gt, 4, 0), 4, 1)
    assert mask_scores(pred, gt)["miou"] == 1


def test_summary_is_mean_over_images():
    per = {0: {"fg_iou": 1, "bg_iou": 1, "miou": 1, "trimap_iou": 1},
           1: {"fg_iou": 0, "bg_iou": 0.5, "miou": 0.25, "trimap_iou": 0}}
    s = summarize(per)
    assert s["miou"] == pytest.approx(0.625) and s["images"] == 2
