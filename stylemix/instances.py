"""Instance segmentation: a detector proposes boxes, style mixing segments the object inside each box.

The detector (:mod:`stylemix.detect`) runs once, on the base image. Style mixing keeps the layout, so the same
boxes hold for every variant. For each box:

1. **crop** the variant stack ``[N, C, h, w]`` (analysis resolution) around the box, widened by a margin of
   the box's width/height on each side (clipped to the image): the first of ``crop_margins`` (0.15), and the
   next ones (0.5, then 2) only when the tighter crop gives an implausible instance (see below; it happens when
   the box holds too little background for k-means to find object versus background) or a mask that the crop
   cuts (it covers more than ``max_edge_cover`` of a crop side inside the image: the object goes on beyond).
   When no margin gives an uncut plausible mask, the widest plausible one is kept;
2. **cluster** the crop's pixels with the same :func:`~stylemix.stages.cluster_stack` as the whole image
   (k = ``clusters``, default 2);
3. **pick the object** with :func:`~stylemix.foreground.cluster_scores` and a *box prior* as centrality map
   (:func:`box_prior`): 0 outside the box (on the margin ring), ``(1 + centre bump) / 2`` inside it, the bump
   being the ``centre`` rule's Gaussian fitted to the box. So a cluster scores high when it lies inside the box,
   and higher the more central it is; the score of the chosen cluster(s) is the instance's foreground margin.
   Pieces of a cluster lying wholly outside the box are set apart first (:func:`detach_outside`);
4. **paste back** at full resolution: the crop's binary labels are upsampled and cleaned by
   :func:`~stylemix.stages.finish_probability`, guided by the image crop.

Implausible instances are dropped, with the reason recorded: a box under ``min_crop`` analysis pixels, weak
foreground evidence (margin under ``min_margin``), an empty mask, or a mask filling more than ``max_box_fill`` of
its box (the clustering did not separate object from background).

**Duplicates.** A detector may find one object twice (a whole person, and a box around the face nested in it).
Two detections of one class whose boxes and masks both share more than ``merge_overlap`` of the smaller one are
merged into the instance with the higher detector score, the other detection recorded as merged.

**Overlaps.** A pixel claimed by several instance masks goes to the instance whose box prior is highest at that
pixel (the box the pixel is most central to, so an object spilling into a neighbour's box loses there); ties,
such as a pixel on the margin ring of every claimant, go to the higher foreground margin, then the higher detector
score, then the smaller box. An instance left with no pixel is dropped ("covered by other instances").

Kept instances are numbered 1..n in decreasing detector score; 0 is background.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, NamedTuple

import numpy as np

from stylemix.backend import array_module, ndimage_module, to_numpy
from stylemix.config import InstanceConfig, SegmentConfig
from stylemix.detect import Detections, Detector, class_ids, detect, detector_name, load_detector
from stylemix.foreground import anchor_foreground, centrality_map, cluster_scores, foreground_clusters
from stylemix.stages import cluster_stack, consensus_foreground, finish_probability, order_binary

__all__ = ["Claim", "InstanceRecord", "InstanceStep", "Instances", "box_overlap", "box_prior", "boxes_intersect",
           "crop_consensus", "crop_window", "detach_outside", "edge_cover", "mask_overlap", "merge_duplicates",
           "overlay_instances", "prepare_instances", "resolve_overlaps", "segment_instances"]


@dataclasses.dataclass
class InstanceRecord:
    """One detection and what became of it.

    Attributes:
        id: its value in the instance map (1..n), 0 when dropped.
        class_id, class_name, score: from the detector.
        box: ``[x0, y0, x1, y1]`` in image pixels.
        crop: ``[x0, y0, x1, y1]`` (integers, end exclusive) of the analysed window in image pixels.
        crop_margin: the margin of that window (the last one tried, see ``InstanceConfig.crop_margins``).
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
    crop_margin: float = 0.0
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
    """

    labels: np.ndarray
    semantic: np.ndarray
    records: list[InstanceRecord]


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


def detach_outside(labels: Any, inside: Any, n_clusters: int) -> Any:
    """Relabel to ``n_clusters`` every connected piece of a cluster that lies wholly outside the box.

    Args:
        labels: ``int [h, w]`` cluster ids in ``[0, n_clusters)`` of a crop.
        inside: ``bool [h, w]``, the box.

    Returns:
        ``int32 [h, w]`` ids in ``[0, n_clusters]``. A neighbouring object in the margin ring often changes like
        the object and joins its cluster; as a piece of its own it no longer counts for (or against) that cluster.
    """
    xp, nd = array_module(labels), ndimage_module(labels)
    out = labels.astype(xp.int32)
    for c in range(n_clusters):
        pieces, n = nd.label(labels == c)
        if n == 0:
            continue
        touches = xp.zeros(n + 1, bool)
        touches[pieces[inside]] = True
        touches[0] = True  # not part of cluster c
        out[~touches[pieces]] = n_clusters
    return out


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


def segment_instances(image: Any, stack: Any, detections: Detections, cfg: SegmentConfig, random_state: int,
                      config: InstanceConfig | None = None, features: np.ndarray | None = None) -> Instances:
    """Segment each detection's object inside its box.

    Args:
        image: ``uint8 [H, W, 3]`` base image (NumPy or CuPy; the guide for upsampling).
        stack: ``float [N, C, h, w]`` variant stack at the analysis resolution (same array type).
        detections: boxes in ``image`` pixels (:func:`stylemix.detect.detect`).
        cfg: the resolved :class:`~stylemix.config.SegmentConfig` (normalisation, k-means, refinement).
        random_state: k-means seed, the same for every crop.
        config: :class:`InstanceConfig`.
        features: ``float32 [C, r, r]`` the base image's feature maps for the boundary stage
            (:func:`stylemix.segment.boundary_features`), cropped with each box so that instance masks get the
            whole image's boundary method; ``None``: the method's image-only fallback (:mod:`stylemix.refine`).

    Returns:
        :class:`Instances` (NumPy arrays).
    """
    config = config or InstanceConfig()
    config.check()
    detections = detections.select(np.argsort(-detections.scores, kind="stable"))  # ids follow the score
    return _segment_instances(image, stack, detections, cfg, random_state, config, features)


def _segment_instances(image: Any, stack: Any, detections: Detections, cfg: SegmentConfig, random_state: int,
                       config: InstanceConfig, features: np.ndarray | None = None) -> Instances:
    """:func:`segment_instances` with ``config`` already checked (:class:`InstanceStep` checks it once) and
    ``detections`` in decreasing score (:func:`stylemix.detect.detect` returns them so)."""
    guide = array_module(stack).asarray(image)
    H, W = int(image.shape[0]), int(image.shape[1])
    h, w = int(stack.shape[2]), int(stack.shape[3])
    crop_cfg = dataclasses.replace(cfg, clusters=config.clusters)
    records: list[InstanceRecord] = []
    claims: list[tuple[InstanceRecord, Claim]] = []
    for i, (box, cls, score) in enumerate(zip(detections.boxes, detections.classes, detections.scores)):
        rec = InstanceRecord(0, int(cls), detections.name(cls), round(float(score), 6),
                             [round(float(v), 2) for v in box], [])
        records.append(rec)
        bw, bh = (box[2] - box[0]) * w / W, (box[3] - box[1]) * h / H
        if min(bw, bh) < config.min_crop:
            rec.reason = (f"box too small at the analysis resolution ({bw:.1f}x{bh:.1f} px < {config.min_crop}); "
                          f"raise analysis_resolution")
            continue
        alone = not any(boxes_intersect(box, other) for j, other in enumerate(detections.boxes) if j != i)
        cut = None  # the widest plausible result so far whose mask the crop cuts
        for crop_margin in config.crop_margins:  # widen the context while the result asks for it
            claim, margin, fill, reason = _segment_box(stack, guide, box, crop_margin, crop_cfg, config, random_state,
                                                       alone, features)
            found = (claim, crop_margin, margin, fill, reason)
            if not reason:
                if edge_cover(claim, (H, W)) <= config.max_edge_cover:
                    break
                cut = found
        else:
            found = cut or found  # no margin gave an uncut mask: the widest plausible one, if any
        claim, rec.crop_margin, margin, fill, rec.reason = found
        rec.crop, rec.foreground_margin, rec.box_fill = list(claim.window), round(margin, 6), round(fill, 6)
        if not rec.reason:
            claims.append((rec, claim))
    claims, merged_into = merge_duplicates(claims, config.merge_overlap)
    owner = resolve_overlaps((H, W), [claim for _, claim in claims], [_priority(rec) for rec, _ in claims])
    areas = np.bincount(owner.ravel(), minlength=len(claims) + 1)
    ids = np.zeros(len(claims) + 1, np.int32)
    semantic_of = np.zeros(len(claims) + 1, np.int32)
    n = 0
    for i, (rec, _) in enumerate(claims, start=1):  # claims are in decreasing score, so ids are too
        if areas[i] == 0:
            rec.reason = "covered by other instances"
            continue
        n += 1
        rec.id, rec.kept, rec.area = n, True, int(areas[i])
        ids[i], semantic_of[i] = n, rec.class_id + 1
    for rec, host in merged_into:
        rec.reason = (f"same object as instance {host.id}: merged into it" if host.kept else
                      f"same object as the {host.class_name} scored {host.score:.2f}: merged into it")
    return Instances(ids[owner], semantic_of[owner], records)


class Claim(NamedTuple):
    """An instance mask over a window of the image.

    Attributes:
        window: ``(x0, y0, x1, y1)`` in image pixels, end exclusive.
        mask: ``bool [y1-y0, x1-x0]``.
        prior: ``float32 [y1-y0, x1-x0]``, the instance's :func:`box_prior` (its claim strength per pixel).
    """

    window: tuple[int, int, int, int]
    mask: np.ndarray
    prior: np.ndarray


def mask_overlap(a: Claim, b: Claim) -> float:
    """``|a & b| / min(|a|, |b|)`` of two claims' masks: 1 when one mask lies inside the other."""
    x0, y0 = max(a.window[0], b.window[0]), max(a.window[1], b.window[1])
    x1, y1 = min(a.window[2], b.window[2]), min(a.window[3], b.window[3])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    ma = a.mask[y0 - a.window[1]:y1 - a.window[1], x0 - a.window[0]:x1 - a.window[0]]
    mb = b.mask[y0 - b.window[1]:y1 - b.window[1], x0 - b.window[0]:x1 - b.window[0]]
    return float((ma & mb).sum()) / max(1, min(int(a.mask.sum()), int(b.mask.sum())))


def box_overlap(a: Iterable[float], b: Iterable[float]) -> float:
    """``|a & b| / min(|a|, |b|)`` of two ``x0, y0, x1, y1`` boxes: 1 when one box lies inside the other."""
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / max(1e-9, min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0)))


def merge_duplicates(claims: list[tuple[InstanceRecord, Claim]], threshold: float
                     ) -> tuple[list[tuple[InstanceRecord, Claim]], list[tuple[InstanceRecord, InstanceRecord]]]:
    """Merge claims of one class whose boxes and masks both overlap by more than ``threshold``.

    Overlap is :func:`box_overlap` / :func:`mask_overlap`, the shared part of the smaller one. Such a pair is one
    object found twice (e.g. a whole person and, nested in it, a box around the face): the union goes to the
    earlier claim (the higher score, as claims come in decreasing score). The box test keeps apart neighbours
    whose masks overlap only because one crop's clustering took in the other object.

    Returns:
        ``(claims left, [(merged record, the record it was merged into), ...])``.
    """
    kept: list[tuple[InstanceRecord, Claim]] = []
    merged: list[tuple[InstanceRecord, InstanceRecord]] = []
    for rec, claim in claims:
        for i, (host, host_claim) in enumerate(kept):
            if (host.class_id == rec.class_id and box_overlap(host.box, rec.box) > threshold
                    and mask_overlap(host_claim, claim) > threshold):
                kept[i] = (host, _union(host_claim, claim))
                merged.append((rec, host))
                break
        else:
            kept.append((rec, claim))
    return kept, merged


def _union(a: Claim, b: Claim) -> Claim:
    """One claim covering both windows: the union of the masks, the larger prior per pixel."""
    x0, y0 = min(a.window[0], b.window[0]), min(a.window[1], b.window[1])
    x1, y1 = max(a.window[2], b.window[2]), max(a.window[3], b.window[3])
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    prior = np.zeros((y1 - y0, x1 - x0), np.float32)
    for c in (a, b):
        region = np.s_[c.window[1] - y0:c.window[3] - y0, c.window[0] - x0:c.window[2] - x0]
        mask[region] |= c.mask
        prior[region] = np.maximum(prior[region], c.prior)
    return Claim((x0, y0, x1, y1), mask, prior)


def edge_cover(claim: Claim, size: tuple[int, int]) -> float:
    """The largest fraction of a crop side covered by the mask, over the sides inside the image (``size = (H, W)``).

    A mask that covers much of a side the crop drew itself is cut there: the object goes on beyond the crop.
    """
    x0, y0, x1, y1 = claim.window
    sides = [(x0 > 0, claim.mask[:, 0]), (y0 > 0, claim.mask[0]), (x1 < size[1], claim.mask[:, -1]),
             (y1 < size[0], claim.mask[-1])]
    return max((float(edge.mean()) for inside, edge in sides if inside), default=0.0)


def boxes_intersect(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two ``x0, y0, x1, y1`` boxes share any area."""
    return bool(min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]))


def crop_consensus(crop: Any, prior: Any, cfg: SegmentConfig, random_state: int) -> Any:
    """Object probability ``float32 [h, w]`` of a crop ``[N, C, h, w]`` of the variant stack.

    :func:`stylemix.stages.consensus_foreground` inside the crop: one k-means per k in ``cfg.consensus``; each
    clustering has its pieces outside the box detached (:func:`detach_outside`, always background) and is merged by
    :func:`~stylemix.foreground.anchor_foreground` with the box prior as centrality map and the ring outside the
    box as the background's frame; the probability is the fraction of votes for "object". Used for boxes that
    overlap no other detection: the anchors join whatever changes like the object, so a neighbouring object inside
    the box would be taken in too (crowded boxes keep the plain two-way split).
    """
    xp = array_module(crop)

    def vote(X: Any, labels: Any, k: int) -> Any:
        labels = detach_outside(labels, prior > 0, k)
        # No frame penalty: the ring around a box is not the image frame, the object itself often runs through it
        # (a body below a face box); with the whole-image penalty the main instance scored 0.804 instead of 0.827.
        is_fg = anchor_foreground(X, labels, k + 1, prior, frame=prior <= 0)
        # Besides the anchor, a cluster joins the object only if most of it lies in the box: what reaches far
        # out of the box is context that happens to change like the object.
        inside = xp.bincount(labels.ravel(), weights=(prior > 0).ravel().astype(xp.float32), minlength=k + 1)
        mostly_inside = inside >= 0.5 * xp.bincount(labels.ravel(), minlength=k + 1)
        mostly_inside[int(xp.argmax(cluster_scores(labels, k + 1, prior)))] = True
        is_fg &= mostly_inside
        is_fg[k] = False
        return is_fg[labels]

    return consensus_foreground(crop, cfg.consensus, random_state, vote, **cfg.kmeans_options())[0]


def _segment_box(stack: Any, guide: Any, box: np.ndarray, crop_margin: float, crop_cfg: Any,
                 config: InstanceConfig, random_state: int, alone: bool = False, features: np.ndarray | None = None
                 ) -> tuple[Claim, float, float, str]:
    """One box, one crop margin: ``(claim, foreground margin, box fill, reason it is implausible or "")``;
    ``features [C, r, r]`` (the whole image's, ``r`` a multiple of the analysis resolution) are cropped with it."""
    xp = array_module(stack)
    (H, W), (h, w) = guide.shape[:2], stack.shape[2:]
    fx, fy = W // w, H // h  # analysis pixels are whole blocks of image pixels (powers of two)
    ax0, ay0, ax1, ay1 = crop_window(box, (H, W), (h, w), crop_margin)
    X0, Y0, X1, Y1 = ax0 * fx, ay0 * fy, ax1 * fx, ay1 * fy
    rel = np.asarray(box, dtype=np.float64) - [X0, Y0, X0, Y0]  # the box in crop pixels (image scale)
    crop = stack[:, :, ay0:ay1, ax0:ax1]
    small_box = tuple(int(round(v)) for v in (rel[0] / fx, rel[1] / fy, rel[2] / fx, rel[3] / fy))
    prior = box_prior(crop.shape[2:], small_box, xp)
    if config.clusters == 2 and alone:  # the whole-image consensus, with the box as centre and its ring as frame
        binary = crop_consensus(crop, prior, crop_cfg, random_state)  # object probability
        margin = max(float(cluster_scores((binary > 0.5).astype(xp.int32), 2, prior)[1]), 0.0)
    else:
        labels = detach_outside(cluster_stack(crop, config.clusters, random_state, **crop_cfg.kmeans_options()),
                                prior > 0, config.clusters)
        is_fg, margin = foreground_clusters(cluster_scores(labels, config.clusters + 1, prior)[:config.clusters])
        binary = order_binary(labels, xp.concatenate([is_fg, xp.zeros(1, bool)]))
    bx0, by0, bx1, by1 = (int(round(v)) for v in rel)
    bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, X1 - X0), min(by1, Y1 - Y0)
    empty = Claim((X0, Y0, X1, Y1), np.zeros((Y1 - Y0, X1 - X0), bool), np.zeros((Y1 - Y0, X1 - X0), np.float32))
    if margin <= 0 or margin < config.min_margin:
        return empty, margin, 0.0, f"weak foreground evidence (margin {margin:.3f} < {config.min_margin})"
    # min_area is a fraction of the image, not of the crop: the crop's small components are judged at image scale
    min_pixels = int(round(crop_cfg.min_area * H * W))
    crop_features = None
    if features is not None and features.shape[-2] % h == 0 and features.shape[-1] % w == 0:
        sy, sx = features.shape[-2] // h, features.shape[-1] // w  # feature pixels per analysis pixel
        crop_features = features[:, ay0 * sy:ay1 * sy, ax0 * sx:ax1 * sx]
    mask = to_numpy(finish_probability(binary, (Y1 - Y0, X1 - X0), guide[Y0:Y1, X0:X1], min_pixels=min_pixels,
                                       refine=crop_cfg.refine, boundary=crop_cfg.boundary, features=crop_features)
                    ).astype(bool)
    fill = float(mask[by0:by1, bx0:bx1].sum()) / max(1, (bx1 - bx0) * (by1 - by0))
    reason = ""
    if not mask.any():
        reason = "empty mask"
    elif fill > config.max_box_fill:
        reason = f"mask fills {fill:.0%} of its box (> {config.max_box_fill:.0%}): object and background not separated"
    return Claim((X0, Y0, X1, Y1), mask, box_prior(mask.shape, (bx0, by0, bx1, by1))), margin, fill, reason


def resolve_overlaps(size: tuple[int, int], claims: list[Claim], priorities: list[tuple[float, ...]]
                     ) -> np.ndarray:
    """Give each pixel to one of the instance masks that claim it (the rule is in the module docstring).

    Args:
        size: ``(H, W)`` of the image.
        claims: per instance, its :class:`Claim` (window, mask and prior).
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
    """A loaded detector with the instance settings, applied to each :class:`~stylemix.segment.Segmentation`
    by :func:`stylemix.segment` (so that :func:`~stylemix.segment.segment_many` loads the detector once)."""

    detector: Detector
    config: InstanceConfig = dataclasses.field(default_factory=InstanceConfig)

    def __call__(self, image: np.ndarray, stack: Any, cfg: SegmentConfig, random_state: int, guide: Any = None,
                 features: np.ndarray | None = None) -> tuple[Instances, dict[str, Any]]:
        """The instances of ``image`` (``uint8 [H, W, 3]``, the base image) and their ``meta["instances"]`` record.

        ``stack`` is the ``[N, C, h, w]`` variant stack the whole-image clustering used; ``guide`` the same image
        already in the stack's array type (on a GPU: no host-to-device copy of the image back), else ``image``;
        ``features`` the whole image's boundary feature maps (:func:`segment_instances`).
        """
        classes = self.config.classes
        found = detect(self.detector, image, classes, self.config.conf)  # detectors read host images
        guide = array_module(stack).asarray(image) if guide is None else guide
        inst = _segment_instances(guide, stack, found, cfg, random_state, self.config, features)
        kept = sum(r.kept for r in inst.records)
        meta = {
            "detector": detector_name(self.detector),
            "classes": classes if classes is None or isinstance(classes, str) else ",".join(map(str, classes)),
            "conf": self.config.conf, "iou": self.config.iou, "settings": self.config.box_settings(),
            "detections": len(found), "kept": kept,
            "message": ("no detections" if not len(found) else
                        "every detection was dropped (see reasons)" if not kept else ""),
        }
        return inst, meta


def prepare_instances(detector: str | Any | None, config: InstanceConfig | None = None) -> InstanceStep | None:
    """Load ``detector`` (a weights path or a callable) once with the thresholds of ``config`` and check the
    settings; ``None`` when no detector.

    A class name unknown to a detector with a ``names`` attribute fails here, before any image is made. An
    :class:`InstanceStep` (this function's result) is returned as it is: the export prepares it once and hands it
    to :func:`~stylemix.segment.segment_many`.
    """
    if detector is None:
        return None
    if isinstance(detector, InstanceStep):
        return detector
    config = config or InstanceConfig()
    config.check()
    det = load_detector(detector, conf=config.conf, iou=config.iou)
    if getattr(det, "names", None):
        class_ids(config.classes, det.names)
    if config.classes is not None and not isinstance(config.classes, (str, int, np.integer)):
        config = dataclasses.replace(config, classes=tuple(config.classes))
    return InstanceStep(det, config)
