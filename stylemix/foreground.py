"""Which cluster is the foreground: spatial priors over the label map, with a confidence margin.

Each rule is a *centrality map* ``m(p)`` in [0, 1] (high where objects of interest usually are). A cluster's score
is ``mean of m over its pixels - mean of m over the other pixels``, in [-1, 1]:

* ``centre``: a Gaussian bump at the image centre (sigma = 0.25 of the side): generated objects are framed;
* ``border``: 0 on the image border rising linearly to 1 at 1/8 of the side inside it: backgrounds touch the frame;
* ``combined``: the mean of the two maps.

For k = 2 the foreground is the cluster with the higher score and the **margin** is that score (the two are
opposite), so 0 means "no evidence either way" and values near 1 a compact central object on a clean background.
For k > 2 every cluster with a positive score is foreground (over-segment, then merge), and the margin is the
smallest absolute score, the least certain of those decisions.

:func:`anchor_foreground` is the better merge of an over-segmentation into foreground and background, used by the
consensus of :func:`stylemix.stages.consensus_foreground`: the most central cluster anchors the foreground, the
cluster filling most of the *frame* (top and side bands, :func:`frame_map`) anchors the background, and every other
cluster joins the foreground when its mean clustering vector is nearer the foreground anchor's by a margin that grows
with its own share of the frame. Position alone cannot place hair, neck or clothing (they reach the frame and the
centre alike); how they change across the variants can, and the frame settles the clusters that change like neither.
"""

from __future__ import annotations

from typing import Any

from stylemix.backend import array_module
from stylemix.errors import StylemixError

__all__ = ["RULES", "anchor_foreground", "centrality_map", "cluster_scores", "foreground_clusters", "frame_map"]

RULES = ("centre", "border", "combined")


def centrality_map(shape: tuple[int, int], rule: str = "centre", xp: Any = None) -> Any:
    """``float32 [h, w]`` centrality map of ``rule`` (see the module docstring)."""
    import numpy
    xp = numpy if xp is None else xp
    if rule not in RULES:
        raise StylemixError(f"unknown foreground rule {rule!r}: use one of {', '.join(RULES)}")
    h, w = shape
    y = (xp.arange(h, dtype=xp.float32) + 0.5) / h - 0.5
    x = (xp.arange(w, dtype=xp.float32) + 0.5) / w - 0.5
    centre = xp.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * 0.25 ** 2))
    # Distance to the nearest image edge, in units of 1/8 of the side, capped at 1.
    dy = xp.minimum(xp.arange(h), xp.arange(h)[::-1]).astype(xp.float32) / (h / 8)
    dx = xp.minimum(xp.arange(w), xp.arange(w)[::-1]).astype(xp.float32) / (w / 8)
    border = xp.clip(xp.minimum(dy[:, None], dx[None, :]), 0, 1).astype(xp.float32)
    if rule == "centre":
        return centre.astype(xp.float32)
    if rule == "border":
        return border
    return ((centre + border) / 2).astype(xp.float32)


def cluster_scores(labels: Any, n_clusters: int, rule: str | Any = "centre") -> Any:
    """Foreground score of each cluster of ``labels int [h, w]``: ``float32 [n_clusters]`` in [-1, 1].

    ``rule`` names a centrality map or is one, ``float [h, w]`` in [0, 1] (e.g. a detector box for a crop).
    """
    xp = array_module(labels)
    m = centrality_map(labels.shape, rule, xp) if isinstance(rule, str) else xp.asarray(rule, dtype=xp.float32)
    m = m.ravel()
    flat = labels.ravel()
    count = xp.bincount(flat, minlength=n_clusters).astype(xp.float64)
    mass = xp.bincount(flat, weights=m, minlength=n_clusters)
    total_count, total_mass = float(flat.size), m.sum()  # a device scalar on CuPy: no host sync
    inside = mass / xp.maximum(count, 1)
    outside = (total_mass - mass) / xp.maximum(total_count - count, 1)
    # An empty cluster (or one covering everything) carries no evidence.
    score = xp.where((count > 0) & (count < total_count), inside - outside, 0.0)
    return score.astype(xp.float32)


def foreground_clusters(scores: Any) -> tuple[Any, float]:
    """Foreground decision from ``scores [k]``: ``(bool [k] is-foreground, margin)``.

    k = 2: the higher-scoring cluster, margin = its score. k > 2: every positive cluster (at least the best one),
    margin = the smallest absolute score.
    """
    xp = array_module(scores)
    k = int(scores.shape[0])
    if k == 2:
        fg = xp.zeros(2, dtype=bool)
        best = int(xp.argmax(scores))
        fg[best] = True
        return fg, float(max(float(scores[best]), 0.0))
    fg = scores > 0
    if not bool(fg.any()):
        fg[int(xp.argmax(scores))] = True
    return fg, float(xp.abs(scores).min())


def frame_map(shape: tuple[int, int], xp: Any = None) -> Any:
    """``bool [h, w]``: the top, left and right bands of the image, ``max(1, side // 20)`` pixels deep.

    The bottom band is left out: subjects are cut by it (a bust, a body, the ground) far more often than by the
    other edges, so it is no evidence of background.
    """
    import numpy
    xp = numpy if xp is None else xp
    h, w = shape
    by, bx = max(1, h // 20), max(1, w // 20)
    frame = xp.zeros((h, w), dtype=bool)
    frame[:by] = True
    frame[:, :bx] = True
    frame[:, w - bx:] = True
    return frame


def anchor_foreground(vectors: Any, labels: Any, n_clusters: int, rule: str | Any = "centre",
                      frame: Any | None = None, frame_penalty: float = 0.0) -> Any:
    """Foreground/background merge of an over-segmentation by two anchors: ``bool [n_clusters]`` is-foreground.

    Args:
        vectors: ``float [h * w, D]`` the per-pixel vectors that were clustered (row-major pixels).
        labels: ``int [h, w]`` cluster ids in ``[0, n_clusters)``.
        rule: the centrality map naming the foreground anchor (as in :func:`cluster_scores`).
        frame: ``bool [h, w]`` where the background surely is (default :func:`frame_map`; a crop passes the ring
            around its detector box).
        frame_penalty: ``alpha`` below; 0 is the plain nearer-anchor rule.

    The foreground anchor is the cluster with the best ``rule`` score, the background anchor the other cluster with
    the largest share ``f`` of its pixels in the frame. With ``d_fg``, ``d_bg`` the distances of a cluster's mean
    vector to the anchors' and ``t = (d_bg - d_fg) / (d_bg + d_fg)`` in [-1, 1] (1 at the foreground anchor), the
    cluster is foreground when ``t > alpha * f``: a cluster that changes like neither anchor (``t`` near 0) goes
    with the background as soon as it reaches the frame. With k = 2 this is the ``rule``'s own decision.
    """
    xp = array_module(labels)
    flat = labels.ravel()
    count = xp.bincount(flat, minlength=n_clusters).astype(xp.float32)
    # Anchors stay device scalars (0-d arrays index like ints): no host sync per clustering on CuPy.
    fg_anchor = xp.argmax(cluster_scores(labels, n_clusters, rule))
    frame = frame_map(labels.shape, xp) if frame is None or not bool(frame.any()) else frame
    in_frame = xp.bincount(flat, weights=frame.ravel().astype(xp.float32),
                           minlength=n_clusters) / xp.maximum(count, 1)
    share = in_frame.copy()
    in_frame[fg_anchor] = -1.0
    bg_anchor = xp.argmax(in_frame)
    # Cluster means as one matrix product (same code on NumPy and CuPy).
    onehot = (flat[:, None] == xp.arange(n_clusters, dtype=flat.dtype)[None, :]).astype(xp.float32)
    means = (onehot.T @ vectors.astype(xp.float32)) / xp.maximum(count, 1)[:, None]
    to_fg = xp.linalg.norm(means - means[fg_anchor], axis=1)
    to_bg = xp.linalg.norm(means - means[bg_anchor], axis=1)
    t = (to_bg - to_fg) / xp.maximum(to_bg + to_fg, 1e-12)
    is_fg = (t > frame_penalty * share) & (count > 0)
    is_fg[fg_anchor] = True
    return is_fg
