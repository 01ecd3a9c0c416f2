"""Mask quality: foreground IoU, background IoU, their mean (mIoU) and trimap (boundary) IoU.

Definitions (``pred`` and ``gt`` are ``bool [H, W]``, True = foreground):

* ``fg_iou = |pred & gt| / |pred | gt|``, ``bg_iou`` the same on the complements; an empty union counts as 1;
* ``miou = (fg_iou + bg_iou) / 2``;
* ``trimap_iou``: the same mIoU computed only over the *trimap band*, the pixels within ``band`` px (Euclidean,
  default 3) of the ground-truth boundary, on either side. A pixel is in the band when the distance to the nearest
  pixel of the other ground-truth class is at most ``band``. Measures boundary quality, which mIoU hides;
  :func:`trimap_ious` gives it at several band widths (1, 3, 5 px);
* ``boundary_f``: the boundary F-score (Martin et al., 2004; the DAVIS contour measure): boundary pixels are the
  mask's pixels with a 4-neighbour outside it; precision is the fraction of predicted boundary pixels within
  ``tolerance`` px (Euclidean) of a ground-truth boundary pixel, recall the converse, F their harmonic mean (1 when
  neither mask has a boundary, 0 when only one has).

Over a set, every figure is the **mean over images** (each image weighs the same, whatever its object size).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.ndimage

__all__ = ["METRICS", "boundary_fscore", "boundary_pixels", "mask_scores", "summarize", "trimap_band", "trimap_ious"]

METRICS = ("fg_iou", "bg_iou", "miou", "trimap_iou")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def trimap_band(gt: np.ndarray, band: int = 3) -> np.ndarray:
    """``bool [H, W]``: pixels within ``band`` px of the boundary of ``gt``."""
    gt = gt.astype(bool)
    if gt.all() or not gt.any():
        return np.zeros_like(gt)
    inside = scipy.ndimage.distance_transform_edt(gt)  # distance to the nearest background pixel
    outside = scipy.ndimage.distance_transform_edt(~gt)
    return np.where(gt, inside, outside) <= band


def mask_scores(pred: np.ndarray, gt: np.ndarray, band: int = 3) -> dict[str, float]:
    """All metrics for one image; ``pred`` is resized to ``gt``'s size by nearest neighbour if they differ."""
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        import cv2
        pred = cv2.resize(pred.astype(np.uint8), gt.shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    fg, bg = _iou(pred, gt), _iou(~pred, ~gt)
    inband = trimap_band(gt, band)
    if inband.any():
        trimap = (_iou(pred[inband], gt[inband]) + _iou(~pred[inband], ~gt[inband])) / 2
    else:
        trimap = (fg + bg) / 2
    return {"fg_iou": fg, "bg_iou": bg, "miou": (fg + bg) / 2, "trimap_iou": trimap}


def summarize(per_image: dict[Any, dict[str, float]]) -> dict[str, float]:
    """Mean over images of each metric, plus the image count."""
    out: dict[str, float] = {m: float(np.mean([s[m] for s in per_image.values()])) if per_image else float("nan")
                             for m in METRICS}
    out["images"] = len(per_image)
    return out


def trimap_ious(pred: np.ndarray, gt: np.ndarray, bands: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    """Trimap IoU of ``pred`` against ``gt`` (``bool [H, W]``, same size) at each band width: ``{"trimap_iou_B": v}``."""
    return {f"trimap_iou_{b}": mask_scores(pred, gt, band=b)["trimap_iou"] for b in bands}


def boundary_pixels(mask: np.ndarray) -> np.ndarray:
    """``bool [H, W]``: pixels of ``mask`` with a 4-neighbour outside it (the image border does not count)."""
    m = np.asarray(mask).astype(bool)
    p = np.pad(m, 1, mode="edge")
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def boundary_fscore(pred: np.ndarray, gt: np.ndarray, tolerance: float = 2.0) -> float:
    """Boundary F-score of ``pred`` against ``gt`` (``bool [H, W]``, same size) with a match ``tolerance`` in px."""
    bp, bg = boundary_pixels(pred), boundary_pixels(gt)
    if not bp.any() and not bg.any():
        return 1.0
    if not bp.any() or not bg.any():
        return 0.0
    near_gt = scipy.ndimage.distance_transform_edt(~bg) <= tolerance
    near_pred = scipy.ndimage.distance_transform_edt(~bp) <= tolerance
    precision = float(near_gt[bp].mean())
    recall = float(near_pred[bg].mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
