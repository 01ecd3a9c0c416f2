"""The stages of the pipeline between the variant stack and the full-resolution labels, shared by the whole-image
path (:mod:`stylemix.segment`), the instance mode (:mod:`stylemix.instances`) and the benchmarks.

Each stage takes the settings it uses as typed arguments (the names of :class:`~stylemix.config.SegmentConfig`'s
fields), never the whole config. There are two pipelines, named: :func:`foreground_probability` (k = 2: the consensus
foreground probability, finished by :func:`finish_probability`) and :func:`part_labels` (k > 2: cluster ids and the
clusters judged foreground, finished by :func:`finish_labels`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from stylemix import mixing
from stylemix.backend import array_module, to_numpy
from stylemix.cluster import KMeans
from stylemix.foreground import anchor_foreground, cluster_scores, foreground_clusters
from stylemix.postprocess import clean_labels, upsample_labels, upsample_probability
from stylemix.refine import RefineConfig, binary, refine_boundary
from stylemix.vectors import pixel_vectors

__all__ = ["Vote", "anchor_vote", "cluster_stack", "consensus_foreground", "decide_foreground", "finish_foreground",
           "finish_labels", "finish_probability", "foreground_probability", "kmeans_seed", "min_pixels", "order_binary",
           "part_labels", "split_scores"]

Vote = Callable[[Any, Any, int], Any]
"""``vote(vectors [h*w, D], labels [h, w], k) -> bool [h, w]``: one clustering merged into foreground (True)."""


def kmeans_seed(seed: mixing.StreamKey) -> int:
    """The k-means ``random_state`` of ``seed``: drawn from its own stream (:data:`stylemix.mixing.STREAM_KMEANS`)."""
    return int(mixing.stream(seed, mixing.STREAM_KMEANS).integers(2 ** 31))


def cluster_stack(stack: Any, n_clusters: int, random_state: int, *, normalization: str = "standardize",
                  n_init: int = 3, max_iter: int = 100) -> Any:
    """k-means labels ``int32 [h, w]`` (0 = largest cluster) of the variant stack ``[N, C, h, w]`` (NumPy or CuPy),
    on its :func:`~stylemix.vectors.pixel_vectors` with ``normalization``."""
    n, c, h, w = stack.shape
    X = pixel_vectors(stack, normalization)
    km = KMeans(n_clusters, n_init=n_init, max_iter=max_iter, random_state=random_state).fit(X)
    return km.labels_.reshape(h, w)


def anchor_vote(foreground_rule: str | Any = "centre", frame_penalty: float = 0.0) -> Vote:
    """The whole image's :data:`Vote`: two anchors (:func:`~stylemix.foreground.anchor_foreground`) with the rule
    and the frame penalty."""
    def vote(X: Any, labels: Any, k: int) -> Any:
        return anchor_foreground(X, labels, k, foreground_rule, frame_penalty=frame_penalty)[labels]
    return vote


def consensus_foreground(stack: Any, consensus: Sequence[int], random_state: int, vote: Vote, *,
                         normalization: str = "standardize", n_init: int = 3, max_iter: int = 100
                         ) -> tuple[Any, float]:
    """Foreground probability ``float32 [h, w]`` of the variant stack ``[N, C, h, w]`` and the votes' agreement.

    One k-means per ``k`` in ``consensus`` on the same vectors; each clustering is merged into foreground and
    background by ``vote`` (the whole image: :func:`anchor_vote`; the instance mode passes its own), and the
    probability is the fraction of those decisions that call a pixel foreground. Single splits flip between "face
    against the rest" and "person against the background" from seed to seed; their majority is steadier
    (docs/benchmarks.md), and the soft map it leaves is what the guided upsampling snaps to the image's edges.
    Agreement: mean ``|2p - 1|``, 1 when unanimous.
    """
    n, c, h, w = stack.shape
    X = pixel_vectors(stack, normalization)
    xp = array_module(X)
    votes = xp.zeros((h, w), dtype=xp.float32)
    for k in consensus:
        km = KMeans(int(k), n_init=n_init, max_iter=max_iter, random_state=random_state).fit(X)
        votes += vote(X, km.labels_.reshape(h, w), int(k)).astype(xp.float32)
    prob = votes / len(consensus)
    return prob, float(xp.abs(2 * prob - 1).mean())


def decide_foreground(labels: Any, n_clusters: int, rule: str | Any) -> tuple[Any, Any, float]:
    """Foreground decision on ``labels int [h, w]``: ``(scores float32 [k], is_fg bool [k], margin)``.

    For k = 2, :func:`order_binary` then relabels so that 1 is the foreground.
    """
    scores = cluster_scores(labels, n_clusters, rule)
    is_fg, margin = foreground_clusters(scores)
    return scores, is_fg, margin


def order_binary(labels: Any, is_fg: Any) -> Any:
    """For k = 2: ``labels [h, w]`` with 1 = foreground, 0 = background (``is_fg bool [2]``)."""
    return is_fg[labels].astype(labels.dtype)


def foreground_probability(stack: Any, random_state: int, *, consensus: Sequence[int] = (2, 3, 4, 5),
                           foreground_rule: str = "centre", frame_penalty: float = 0.0,
                           normalization: str = "standardize", n_init: int = 3, max_iter: int = 100
                           ) -> tuple[Any, Any, float, float]:
    """The k = 2 pipeline: ``(probability float32 [h, w], scores float32 [2], margin, agreement)`` of
    ``stack [N, C, h, w]``.

    The probability is :func:`consensus_foreground`'s with :func:`anchor_vote`; scores and margin keep their k = 2
    meaning, the foreground rule's verdict on the final split (``prob > 0.5``), margin clipped at 0.
    """
    prob, agreement = consensus_foreground(stack, consensus, random_state, anchor_vote(foreground_rule, frame_penalty),
                                           normalization=normalization, n_init=n_init, max_iter=max_iter)
    scores, margin = split_scores(prob, foreground_rule)
    return prob, scores, margin, agreement


def split_scores(prob: Any, foreground_rule: str = "centre") -> tuple[Any, float]:
    """The foreground rule's verdict on the two-way split ``prob > 0.5`` of a foreground probability ``[h, w]``:
    ``(scores float32 [2] of background and foreground, margin = the foreground's score clipped at 0)``."""
    xp = array_module(prob)
    scores = cluster_scores((prob > 0.5).astype(xp.int32), 2, foreground_rule)
    return scores, max(float(scores[1]), 0.0)


def part_labels(stack: Any, n_clusters: int, random_state: int, *, foreground_rule: str = "centre",
                normalization: str = "standardize", n_init: int = 3, max_iter: int = 100
                ) -> tuple[Any, Any, Any, float]:
    """The k > 2 pipeline: ``(cluster ids int32 [h, w], scores float32 [k], is_fg bool [k], margin)`` of
    ``stack [N, C, h, w]``: one k-means with ``n_clusters`` and the foreground rule per cluster."""
    labels = cluster_stack(stack, n_clusters, random_state, normalization=normalization, n_init=n_init,
                           max_iter=max_iter)
    scores, is_fg, margin = decide_foreground(labels, n_clusters, foreground_rule)
    return labels, scores, is_fg, margin


def min_pixels(min_area: float, size: tuple[int, int]) -> int:
    """``min_area`` (a fraction of the image) of an image of ``size = (H, W)``, in pixels."""
    return int(round(min_area * size[0] * size[1]))


def finish_probability(prob: Any, size: tuple[int, int], guide: Any | None, *, min_pixels: int,
                       refine: str = "guided", boundary: str = "features-matting", features: Any | None = None) -> Any:
    """The k = 2 finish: a foreground probability ``float [h, w]`` in [0, 1] (or a 0/1 map) -> cleaned
    ``int32 [H, W]`` at ``size``, 1 = foreground (:func:`finish_foreground` without the matte)."""
    return finish_foreground(prob, size, guide, min_pixels=min_pixels, refine=refine, boundary=boundary,
                             features=features)[0]


def finish_foreground(prob: Any, size: tuple[int, int], guide: Any | None, *, min_pixels: int,
                      refine: str = "guided", boundary: str = "features-matting", features: Any | None = None
                      ) -> tuple[Any, np.ndarray]:
    """The k = 2 finish keeping the soft map: ``(labels int32 [H, W] in {0, 1}, alpha float32 [H, W] in [0, 1])``.

    Args:
        prob: foreground probability ``float [h, w]`` in [0, 1] (or a 0/1 map).
        guide: ``[H, W, 3]`` the image the boundary follows (uint8, or float in [0, 1]); ignored unless
            ``refine == "guided"``.
        min_pixels: components smaller than this are merged into their surroundings (:func:`min_pixels`; a crop
            passes the count of the whole image, so that ``min_area`` stays a fraction of the image).
        refine: ``guided`` or ``nearest`` (``SegmentConfig.refine``).
        boundary: under ``guided``, how the boundary is placed (:mod:`stylemix.refine`; ``guided`` is one guided
            pass).
        features: the generator's feature maps ``[C, hf, wf]`` of the image, for the boundary methods that read
            them (:data:`stylemix.refine.FEATURE_METHODS`; without them those fall back to their image-only one).

    ``alpha`` is the boundary stage's matte (or the guided upsampling's soft map), made to agree with the labels:
    ``alpha > 1/2`` exactly where ``labels == 1`` (a pixel the cleaning flipped takes its label's value, 0 or 1).
    """
    xp = array_module(prob)
    prob = prob.astype(xp.float32)
    guide = guide if refine == "guided" else None
    if guide is not None and boundary != "guided":
        alpha = refine_boundary(to_numpy(guide), to_numpy(prob), RefineConfig(method=boundary),
                                None if features is None else to_numpy(features))
        full = xp.asarray(binary(alpha))
    else:
        alpha = upsample_probability(prob, size, guide)
        full = (alpha > 0.5).astype(xp.int32)
    cleaned = clean_labels(full, min_pixels)
    alpha = to_numpy(alpha).astype(np.float32, copy=False)  # made above, so ours to overwrite
    np.clip(alpha, 0, 1, out=alpha)
    labels = to_numpy(cleaned)
    flipped = labels != to_numpy(full)  # full is alpha > 1/2
    alpha[flipped] = labels[flipped]
    return cleaned, alpha


def finish_labels(labels: Any, size: tuple[int, int], n_clusters: int, guide: Any | None, *, min_pixels: int,
                  refine: str = "guided") -> Any:
    """The k > 2 finish (parts, bank classes): cluster ids ``int [h, w]`` in ``[0, n_clusters)`` -> cleaned
    ``int32 [H, W]`` at ``size``: each cluster's indicator upsampled (guided by ``guide [H, W, 3]`` under
    ``refine="guided"``), the argmax, then components under ``min_pixels`` merged into their surroundings."""
    full = upsample_labels(labels, size, n_clusters, guide if refine == "guided" else None)
    return clean_labels(full, min_pixels)
