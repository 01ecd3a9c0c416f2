"""Instance segmentation: a detector proposes boxes, style mixing segments the object inside each box.

The detector (:mod:`stylemix.detect`) runs once, on the base image. Style mixing keeps the layout, so the same
boxes hold for every variant. For each box:

1. **crop** the variant stack ``[N, C, h, w]`` (analysis resolution) around the box, widened by ``crop_margin`` of
   the box's width/height on each side (clipped to the image);
2. **cluster** the crop's pixels with the same :func:`~stylemix.segment.cluster_stack` as the whole image
   (k = ``clusters``, default 2);
3. **pick the object** with :func:`~stylemix.foreground.cluster_scores` and a *box prior* as centrality map
   (:func:`box_prior`): 0 outside the box (on the margin ring), ``(1 + centre bump) / 2`` inside it, the bump
   being the ``centre`` rule's Gaussian fitted to the box. So a cluster scores high when it lies inside the box,
   and higher the more central it is; the score of the chosen cluster(s) is the instance's foreground margin;
4. **paste back** at full resolution: the crop's binary labels are upsampled and cleaned by
   :func:`~stylemix.segment.finish_labels`, guided by the image crop.

Implausible instances are dropped, with the reason recorded: a crop under ``min_crop`` analysis pixels, no
foreground evidence (margin 0), an empty mask, or a mask filling more than ``max_box_fill`` of its box (the
clustering did not separate object from background).

**Overlaps.** A pixel claimed by several instance masks goes to the instance whose box prior is highest at that
pixel (the box the pixel is most central to, so an object spilling into a neighbour's box loses there); ties,
such as a pixel on the margin ring of every claimant, go to the higher foreground margin, then the higher detector
score, then the smaller box. An instance left with no pixel is dropped ("covered by other instances").

Kept instances are numbered 1..n in decreasing detector score; 0 is background.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Iterable

import numpy as np

from stylemix.backend import array_module, to_numpy
from stylemix.detect import (Detections, Detector, check_thresholds, class_ids, detect, detector_name,
                             load_detector)
from stylemix.errors import StylemixError
from stylemix.foreground import centrality_map


@dataclasses.dataclass(frozen=True)
class InstanceConfig:
    """Settings of the per-box step (the detector's own settings are arguments of :func:`prepare_instances`).

    Attributes:
        clusters: k for k-means inside each crop (2: object / rest).
        crop_margin: context added on each side of a box, as a fraction of its width (height): the ring that
            tells the clustering what "not the object" looks like.
        max_box_fill: drop an instance whose mask covers more than this fraction of its box.
        min_crop: drop a box whose crop is narrower than this many analysis pixels (raise the analysis
            resolution for small objects).
    """

    clusters: int = 2
    crop_margin: float = 0.15
    max_box_fill: float = 0.95
    min_crop: int = 4

    def check(self) -> None:
        if self.clusters < 2:
            raise StylemixError(f"instance clusters must be at least 2, got {self.clusters}")
        if not 0 <= self.crop_margin <= 2:
            raise StylemixError(f"crop margin is a fraction of the box side in [0, 2], got {self.crop_margin}")
        if not 0 < self.max_box_fill <= 1:
            raise StylemixError(f"max box fill must be in (0, 1], got {self.max_box_fill}")
        if self.min_crop < 2:
            raise StylemixError(f"min crop must be at least 2 analysis pixels, got {self.min_crop}")


@dataclasses.dataclass
class InstanceRecord:
    """One detection and what became of it.

    Attributes:
        id: its value in the instance map (1..n), 0 when dropped.
        class_id, class_name, score: from the detector.
        box: ``[x0, y0, x1, y1]`` in image pixels.
        crop: ``[x0, y0, x1, y1]`` (integers, end exclusive) of the analysed window in image pixels.
        area: pixels in the instance map (after overlaps are resolved).
        box_fill: fraction of the box covered by the instance's own mask (before overlaps).
        foreground_margin: score of the object cluster(s) under the box prior, in [0, 1].
        kept: whether it is in the instance map; ``reason`` says why not.
    """

    id: int
    class_id: int
    class_name: str
    score: float
    box: list[float]
    crop: list[int]
    area: int = 0
    box_fill: float = 0.0
    foreground_margin: float = 0.0
    kept: bool = False
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Instances:
    """The instance result of one image.

    Attributes:
        labels: ``int32 [H, W]``, 0 = background, 1..n = kept instances.
        semantic: ``int32 [H, W]``, 0 = background, else class id + 1 of the instance there.
        records: one :class:`InstanceRecord` per detection (kept and dropped), in decreasing score.
        detections: what the detector returned after the class and confidence filters.
    """

    labels: np.ndarray
    semantic: np.ndarray
    records: list[InstanceRecord]
    detections: Detections


def box_prior(shape: tuple[int, int], box: tuple[int, int, int, int], xp: Any = np) -> Any:
    """Centrality map of a box inside a crop: ``float32 [h, w]``, 0 outside ``box``, ``(1 + bump) / 2`` inside.

    Args:
        shape: ``(h, w)`` of the crop.
        box: ``(x0, y0, x1, y1)`` integer pixel bounds in the crop (end exclusive), clipped to it.
        xp: the array module of the result.

    The bump is :func:`~stylemix.foreground.centrality_map`'s ``centre`` rule over the box, so every pixel of the
    box weighs at least 1/2 and the margin ring 0.
    """
    h, w = shape
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    prior = xp.zeros((h, w), dtype=xp.float32)
    if x1 > x0 and y1 > y0:
        prior[y0:y1, x0:x1] = (1 + centrality_map((y1 - y0, x1 - x0), "centre", xp)) / 2
    return prior


def crop_window(box: np.ndarray, image_size: tuple[int, int], analysis_size: tuple[int, int], margin: float
                ) -> tuple[int, int, int, int]:
    """The analysis-resolution window ``(x0, y0, x1, y1)`` (end exclusive) around ``box`` widened by ``margin``.

    ``box`` is ``x0, y0, x1, y1`` in image pixels (``image_size = (H, W)``); the window is in pixels of the
    ``analysis_size = (h, w)`` grid, rounded outwards and clipped.
    """
    (H, W), (h, w) = image_size, analysis_size
    bx0, by0, bx1, by1 = (float(v) for v in box)
    mx, my = margin * (bx1 - bx0), margin * (by1 - by0)
    x0 = min(max(0, math.floor((bx0 - mx) * w / W)), w)
    y0 = min(max(0, math.floor((by0 - my) * h / H)), h)
    x1 = min(max(0, math.ceil((bx1 + mx) * w / W)), w)
    y1 = min(max(0, math.ceil((by1 + my) * h / H)), h)
    return x0, y0, x1, y1


def segment_instances(image: Any, stack: Any, detections: Detections, cfg: Any, random_state: int,
                      config: InstanceConfig | None = None) -> Instances:
    """Segment each detection's object inside its box.

    Args:
        image: ``uint8 [H, W, 3]`` base image (NumPy or CuPy; the guide for upsampling).
        stack: ``float [N, C, h, w]`` variant stack at the analysis resolution (same array type).
        detections: boxes in ``image`` pixels (:func:`stylemix.detect.detect`).
        cfg: the resolved :class:`~stylemix.segment.SegmentConfig` (normalisation, k-means, refinement).
        random_state: k-means seed, the same for every crop.
        config: :class:`InstanceConfig`.

    Returns:
        :class:`Instances` (NumPy arrays).
    """
    from stylemix.segment import cluster_stack, decide_foreground, finish_labels, order_binary
    config = config or InstanceConfig()
    config.check()
    detections = detections.select(np.argsort(-detections.scores, kind="stable"))  # ids follow the score
    xp = array_module(stack)
    guide = xp.asarray(image)
    H, W = int(image.shape[0]), int(image.shape[1])
    h, w = int(stack.shape[2]), int(stack.shape[3])
    crop_cfg = dataclasses.replace(cfg, clusters=config.clusters)
    records: list[InstanceRecord] = []
    claims: list[tuple[InstanceRecord, np.ndarray, np.ndarray]] = []  # record, mask and prior over its crop
    for box, cls, score in zip(detections.boxes, detections.classes, detections.scores):
        ax0, ay0, ax1, ay1 = crop_window(box, (H, W), (h, w), config.crop_margin)
        # Analysis pixels map to whole blocks of image pixels (generators render powers of two).
        fx, fy = W // w, H // h
        X0, Y0, X1, Y1 = ax0 * fx, ay0 * fy, ax1 * fx, ay1 * fy
        rec = InstanceRecord(0, int(cls), detections.name(cls), round(float(score), 6),
                             [round(float(v), 2) for v in box], [X0, Y0, X1, Y1])
        records.append(rec)
        if min(ax1 - ax0, ay1 - ay0) < config.min_crop:
            rec.reason = (f"box too small at the analysis resolution ({ax1 - ax0}x{ay1 - ay0} px < "
                          f"{config.min_crop}); raise analysis_resolution")
            continue
        rel = np.asarray(box, dtype=np.float64) - [X0, Y0, X0, Y0]  # the box in crop pixels (image scale)
        labels = cluster_stack(stack[:, :, ay0:ay1, ax0:ax1], crop_cfg, random_state)
        small_box = tuple(int(round(v)) for v in (rel[0] / fx, rel[1] / fy, rel[2] / fx, rel[3] / fy))
        _, is_fg, margin = decide_foreground(labels, config.clusters, box_prior(labels.shape, small_box, xp))
        rec.foreground_margin = round(margin, 6)
        if margin <= 0:
            rec.reason = "no foreground evidence in the box (margin 0)"
            continue
        full = finish_labels(order_binary(labels, is_fg), (Y1 - Y0, X1 - X0), 2, guide[Y0:Y1, X0:X1], cfg)
        mask = to_numpy(full).astype(bool)
        bx0, by0, bx1, by1 = (int(round(v)) for v in rel)
        bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, X1 - X0), min(by1, Y1 - Y0)
        box_area = max(1, (bx1 - bx0) * (by1 - by0))
        rec.box_fill = round(float(mask[by0:by1, bx0:bx1].sum()) / box_area, 6)
        if not mask.any():
            rec.reason = "empty mask"
        elif rec.box_fill > config.max_box_fill:
            rec.reason = (f"mask fills {rec.box_fill:.0%} of its box (> {config.max_box_fill:.0%}): object and "
                          f"background not separated")
        else:
            claims.append((rec, mask, box_prior(mask.shape, (bx0, by0, bx1, by1))))
    owner = resolve_overlaps((H, W), [(rec.crop, mask, prior) for rec, mask, prior in claims],
                             [_priority(rec) for rec, _, _ in claims])
    areas = np.bincount(owner.ravel(), minlength=len(claims) + 1)
    ids = np.zeros(len(claims) + 1, np.int32)
    semantic_of = np.zeros(len(claims) + 1, np.int32)
    n = 0
    for i, (rec, _, _) in enumerate(claims, start=1):  # claims are in decreasing score, so ids are too
        if areas[i] == 0:
            rec.reason = "covered by other instances"
            continue
        n += 1
        rec.id, rec.kept, rec.area = n, True, int(areas[i])
        ids[i], semantic_of[i] = n, rec.class_id + 1
    return Instances(ids[owner], semantic_of[owner], records, detections)


def resolve_overlaps(size: tuple[int, int], claims: list[tuple[Iterable[int], np.ndarray, np.ndarray]],
                     priorities: list[tuple[float, ...]]) -> np.ndarray:
    """Give each pixel to one of the instance masks that claim it (the rule is in the module docstring).

    Args:
        size: ``(H, W)`` of the image.
        claims: per instance, ``(crop, mask, prior)``: ``crop = (x0, y0, x1, y1)`` in the image, ``mask bool
            [y1-y0, x1-x0]`` and ``prior float [y1-y0, x1-x0]`` (its :func:`box_prior`) over that crop.
        priorities: per instance, the tie-break key, larger wins (e.g. ``(margin, score, -box area)``).

    Returns:
        ``int32 [H, W]``: 0 = unclaimed, ``i`` = the i-th claim (1-based).
    """
    owner = np.zeros(size, np.int32)
    best = np.full(size, -np.inf, np.float32)
    # Visiting claims by decreasing tie-break key with a strict ">" lets an earlier claim keep a tied pixel.
    for i in sorted(range(len(claims)), key=lambda j: priorities[j], reverse=True):
        (x0, y0, x1, y1), mask, prior = claims[i]
        region_best, region_owner = best[y0:y1, x0:x1], owner[y0:y1, x0:x1]
        win = mask & (prior > region_best)
        region_best[win] = prior[win]
        region_owner[win] = i + 1
    return owner


def _priority(rec: InstanceRecord) -> tuple[float, float, float]:
    x0, y0, x1, y1 = rec.box
    return rec.foreground_margin, rec.score, -(x1 - x0) * (y1 - y0)


def overlay_instances(image: np.ndarray, labels: np.ndarray, records: list[InstanceRecord]) -> np.ndarray:
    """``uint8 [H, W, 3]``: instance ``labels int [H, W]`` tinted and outlined over ``image uint8 [H, W, 3]``, the
    kept ``records``' boxes drawn in the same colours with id, class and score."""
    from stylemix.visualize import draw_boxes, overlay
    kept = [r for r in records if r.kept]
    out = overlay(image, labels)
    return draw_boxes(out, np.array([r.box for r in kept], np.float32).reshape(-1, 4),
                      [f"{r.id} {r.class_name} {r.score:.2f}" for r in kept], [r.id for r in kept])


@dataclasses.dataclass
class InstanceStep:
    """A loaded detector with its filters and settings, applied to each :class:`~stylemix.segment.Segmentation`
    by :func:`stylemix.segment` (so that :func:`~stylemix.segment.segment_many` loads the detector once)."""

    detector: Detector
    classes: str | list[str | int] | None = None
    conf: float = 0.25
    iou: float = 0.7
    config: InstanceConfig = dataclasses.field(default_factory=InstanceConfig)

    def __call__(self, seg: Any, stack: Any, cfg: Any, random_state: int) -> None:
        """Fill ``seg.instances``, ``seg.instance_records``, ``seg.semantic`` and ``seg.meta["instances"]``.

        ``stack`` is the ``[N, C, h, w]`` variant stack the whole-image clustering used.
        """
        t0 = time.perf_counter()
        found = detect(self.detector, seg.image, self.classes, self.conf)
        xp = array_module(stack)
        inst = segment_instances(xp.asarray(seg.image), stack, found, cfg, random_state, self.config)
        seg.instances, seg.semantic, seg.instance_records = inst.labels, inst.semantic, inst.records
        kept = sum(r.kept for r in inst.records)
        seg.meta["instances"] = {
            "detector": detector_name(self.detector),
            "classes": self.classes if self.classes is None or isinstance(self.classes, str)
            else ",".join(map(str, self.classes)),
            "conf": self.conf, "iou": self.iou, "settings": dataclasses.asdict(self.config),
            "detections": len(found), "kept": kept,
            "message": ("no detections" if not len(found) else
                        "every detection was dropped (see reasons)" if not kept else ""),
        }
        seg.meta["timing_s"]["instances"] = time.perf_counter() - t0


def prepare_instances(detector: str | Any | None, classes: str | Iterable[str | int] | None = None,
                      conf: float = 0.25, iou: float = 0.7, config: InstanceConfig | None = None
                      ) -> InstanceStep | None:
    """Load ``detector`` (a weights path or a callable) once and check the settings; ``None`` when no detector.

    A class name unknown to a detector with a ``names`` attribute fails here, before any image is made.
    """
    if detector is None:
        return None
    config = config or InstanceConfig()
    config.check()
    check_thresholds(conf, iou)
    det = load_detector(detector, conf=conf, iou=iou)
    if getattr(det, "names", None):
        class_ids(classes, det.names)
    if classes is not None and not isinstance(classes, str):
        classes = list(classes)
    return InstanceStep(det, classes, conf, iou, config)


def write_instances(stem: str | os.PathLike, seg: Any) -> None:
    """Write the instance files of ``seg`` (a :class:`~stylemix.segment.Segmentation` with instances) beside
    ``stem``: ``_instances.png``, ``_semantic.png`` (uint8, uint16 past 255), ``_instances.json``,
    ``_instances_overlay.png``."""
    from stylemix import io
    stem = os.fspath(stem)
    for suffix, ids in (("_instances", seg.instances), ("_semantic", seg.semantic)):
        io.write_png(f"{stem}{suffix}.png", ids.astype(np.uint8 if ids.max(initial=0) <= 255 else np.uint16))
    io.write_json(f"{stem}_instances.json", {"seed": seg.seed, **seg.meta["instances"],
                                             "instances": [r.as_dict() for r in seg.instance_records]})
    io.write_png(f"{stem}_instances_overlay.png", overlay_instances(seg.image, seg.instances, seg.instance_records))
