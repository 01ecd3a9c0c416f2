import numpy as np
import pytest

from stylemix.metrics import boundary_fscore, boundary_pixels, mask_scores, summarize, trimap_band, trimap_ious


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


def test_trimap_ious_widen_with_band():
    gt = np.zeros((20, 20), bool)
    gt[:, :10] = True
    pred = np.zeros((20, 20), bool)
    pred[:, :8] = True  # two columns short
    t = trimap_ious(pred, gt)
    assert set(t) == {"trimap_iou_1", "trimap_iou_3", "trimap_iou_5"}
    # The band of 1 px holds columns 9 and 10: the pred misses column 9, so fg IoU 0 and bg IoU 1/2 there.
    assert t["trimap_iou_1"] == pytest.approx(0.25)
    assert t["trimap_iou_1"] < t["trimap_iou_3"] < t["trimap_iou_5"] < 1
    assert t["trimap_iou_3"] == pytest.approx(mask_scores(pred, gt, band=3)["trimap_iou"])


def test_boundary_fscore_tolerance():
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    assert boundary_fscore(gt, gt, tolerance=0) == 1
    shifted = np.roll(gt, 2, axis=1)  # left and right edges 2 px off, top and bottom partly matching
    assert boundary_fscore(shifted, gt, tolerance=2) == 1
    f1 = boundary_fscore(shifted, gt, tolerance=1)
    assert 0 < f1 < 1
    assert boundary_fscore(np.zeros_like(gt), gt) == 0
    assert boundary_fscore(np.zeros_like(gt), np.zeros_like(gt)) == 1
    # Pixels on the image border are not boundary: a full mask has none.
    assert not boundary_pixels(np.ones((5, 5), bool)).any()
    assert boundary_pixels(gt).sum() == 36
