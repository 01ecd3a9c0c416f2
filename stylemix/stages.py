"""The stages of the pipeline between the variant stack and the full-resolution labels, shared by the whole-image
path (:mod:`stylemix.segment`), the instance mode (:mod:`stylemix.instances`) and the benchmarks."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from stylemix import mixing, refine
from stylemix.backend import array_module, to_numpy
from stylemix.cluster import KMeans
from stylemix.config import SegmentConfig
from stylemix.foreground import anchor_foreground, cluster_scores, foreground_clusters
from stylemix.postprocess import clean_labels, upsample_labels, upsample_probability
from stylemix.vectors import pixel_vectors


def cluster_stack(stack: Any, cfg: SegmentConfig, random_state: int) -> Any:
    """k-means labels ``int32 [h, w]`` of the variant stack ``[N, C, h, w]`` (NumPy or CuPy)."""
    n, c, h, w = stack.shape
    X = pixel_vectors(stack, cfg.normalization)
    km = KMeans(cfg.clusters, n_init=cfg.n_init, max_iter=cfg.max_iter, random_state=random_state).fit(X)
    return km.labels_.reshape(h, w)


def consensus_foreground(stack: Any, cfg: SegmentConfig, random_state: int,
                         vote: Callable[[Any, Any, int], Any] | None = None) -> tuple[Any, float]:
    """Foreground probability ``float32 [h, w]`` of the variant stack ``[N, C, h, w]`` and the votes' agreement.

    One k-means per ``k`` in ``cfg.consensus`` on the same vectors; each clustering is merged into foreground and
    background by ``vote(vectors [h*w, D], labels [h, w], k) -> bool [h, w]`` (default: two anchors,
    :func:`~stylemix.foreground.anchor_foreground` with ``cfg.foreground_rule``; the instance mode passes its own),
    and the probability is the fraction of those decisions that call a pixel foreground. Single splits flip between
    "face against the rest" and "person against the background" from seed to seed; their majority is steadier
    (docs/benchmarks.md), and the soft map it leaves is what the guided upsampling snaps to the image's edges.
    Agreement: mean ``|2p - 1|``, 1 when unanimous.
    """
    if vote is None:
        def vote(X: Any, labels: Any, k: int) -> Any:
            return anchor_foreground(X, labels, k, cfg.foreground_rule, frame_penalty=cfg.frame_penalty)[labels]
    n, c, h, w = stack.shape
    X = pixel_vectors(stack, cfg.normalization)
    xp = array_module(X)
    votes = xp.zeros((h, w), dtype=xp.float32)
    for k in cfg.consensus:
        km = KMeans(int(k), n_init=cfg.n_init, max_iter=cfg.max_iter, random_state=random_state).fit(X)
        votes += vote(X, km.labels_.reshape(h, w), int(k)).astype(xp.float32)
    prob = votes / len(cfg.consensus)
    return prob, float(xp.abs(2 * prob - 1).mean())


def decide_foreground(labels: Any, n_clusters: int, rule: str | Any) -> tuple[Any, Any, float]:
    """Foreground decision on ``labels [h, w]``: ``(scores [k], is_fg [k] bool, margin)``.

    For k = 2 the labels are then relabelled so that 1 is the foreground (see :func:`order_binary`).
    """
    scores = cluster_scores(labels, n_clusters, rule)
    is_fg, margin = foreground_clusters(scores)
    return scores, is_fg, margin


def order_binary(labels: Any, is_fg: Any) -> Any:
    """For k = 2: labels with 1 = foreground, 0 = background."""
    return is_fg[labels].astype(labels.dtype)


def finish_labels(labels: Any, size: tuple[int, int], n_clusters: int, guide: Any | None, cfg: SegmentConfig,
                  min_pixels: int | None = None, features: Any | None = None) -> Any:
    """Analysis-resolution labels (or, for k = 2, a foreground probability ``float [h, w]``) -> cleaned
    ``int32 [H, W]`` labels at ``size``.

    Components under ``min_pixels`` are merged into their surroundings; ``None``: ``cfg.min_area`` of ``size``
    (a crop passes the count of the whole image, so that ``min_area`` stays a fraction of the image).
    ``features``: the generator's feature maps ``[C, hf, wf]`` of the image, for the boundary methods that read
    them (:data:`stylemix.refine.FEATURE_METHODS`; without them those fall back to their image-only method).
    """
    refined = cfg.refine == "guided" and guide is not None and cfg.boundary != "guided"
    if n_clusters == 2 and (labels.dtype.kind == "f" or refined):
        return finish_foreground(labels, size, guide, cfg, min_pixels, features)[0]
    full = upsample_labels(labels, size, n_clusters, guide if cfg.refine == "guided" else None)
    if min_pixels is None:
        min_pixels = int(round(cfg.min_area * size[0] * size[1]))
    return clean_labels(full, min_pixels)


def finish_foreground(prob: Any, size: tuple[int, int], guide: Any | None, cfg: SegmentConfig,
                      min_pixels: int | None = None, features: Any | None = None) -> tuple[Any, np.ndarray]:
    """The k = 2 case of :func:`finish_labels`, keeping the soft map: foreground probability ``float [h, w]`` ->
    ``(labels int32 [H, W] in {0, 1}, alpha float32 [H, W] in [0, 1])``.

    ``alpha`` is the boundary stage's matte (:func:`stylemix.refine.refine_boundary`, or the guided upsampling's
    soft map), made to agree with the labels: ``alpha > 1/2`` exactly where ``labels == 1`` (a pixel the cleaning
    flipped takes its label's value, 0 or 1). ``features``: as in :func:`finish_labels`.
    """
    guide = guide if cfg.refine == "guided" else None
    if guide is not None and cfg.boundary != "guided":
        alpha = refine.refine_boundary(to_numpy(guide), to_numpy(prob).astype(np.float32),
                                       refine.RefineConfig(method=cfg.boundary),
                                       None if features is None else to_numpy(features))
        full = array_module(prob).asarray(refine.binary(alpha))
    else:
        alpha = upsample_probability(prob, size, guide)
        full = (alpha > 0.5).astype(array_module(alpha).int32)
    if min_pixels is None:
        min_pixels = int(round(cfg.min_area * size[0] * size[1]))
    full = clean_labels(full, min_pixels)
    alpha = np.clip(to_numpy(alpha), 0, 1).astype(np.float32, copy=False)
    labels = to_numpy(full)
    flipped = labels != (alpha > 0.5)
    alpha[flipped] = labels[flipped]
    return full, alpha


def kmeans_seed(seed: mixing.StreamKey) -> int:
    """The k-means ``random_state`` of ``seed``: drawn from its own stream (:data:`stylemix.mixing.STREAM_KMEANS`)."""
    return int(mixing.stream(seed, mixing.STREAM_KMEANS).integers(2 ** 31))


def foreground_probability(stack: Any, cfg: SegmentConfig, random_state: int) -> tuple[Any, Any, float, float]:
    """The k = 2 pipeline: ``(probability float32 [h, w], scores [2], margin, agreement)`` of ``stack [N, C, h, w]``.

    The probability is :func:`consensus_foreground`'s; scores and margin keep their k = 2 meaning, the foreground
    rule's verdict on the final split (``prob > 0.5``), margin clipped at 0.
    """
    prob, agreement = consensus_foreground(stack, cfg, random_state)
    xp = array_module(prob)
    scores = cluster_scores((prob > 0.5).astype(xp.int32), 2, cfg.foreground_rule)
    return prob, scores, max(float(scores[1]), 0.0), agreement


def part_labels(stack: Any, cfg: SegmentConfig, random_state: int) -> tuple[Any, Any, Any, float]:
    """The k > 2 pipeline: ``(cluster ids int32 [h, w], scores [k], is_fg bool [k], margin)`` of
    ``stack [N, C, h, w]``: one k-means with ``cfg.clusters`` and the foreground rule per cluster."""
    labels = cluster_stack(stack, cfg, random_state)
    scores, is_fg, margin = decide_foreground(labels, cfg.clusters, cfg.foreground_rule)
    return labels, scores, is_fg, margin
