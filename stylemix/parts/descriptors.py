"""The bank's pure array maths: per-pixel cues to descriptors, their PCA, prototypes merged into classes, and the
classes and foreground of an image's descriptors. Shapes are in each docstring; nothing here renders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stylemix.vectors import pixel_vectors

if TYPE_CHECKING:
    from stylemix.parts.bank import PartBank

__all__ = ["LOWER_BAND_CLASSES", "class_rates", "descriptor_classes", "descriptor_foreground", "descriptor_parts",
           "descriptors", "fit_pca", "foreground_map", "has_background", "image_descriptors", "merge_prototypes",
           "nearest", "positions", "predict_classes", "raw_cues", "with_background"]


def positions(h: int, w: int) -> np.ndarray:
    """``float32 [h*w, 2]``: pixel-centre (y, x) in [-1/2, 1/2], row-major."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(yy + 0.5) / h - 0.5, (xx + 0.5) / w - 0.5], -1).reshape(-1, 2).astype(np.float32)


def raw_cues(base_features: np.ndarray, signature_stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two learned cues of every pixel before their PCA.

    Args:
        base_features: ``float [C, h, w]`` the base image's generator features at the analysis resolution.
        signature_stack: ``float [N, D, h, w]`` the shared signature variants (projected features).

    Returns:
        ``(features [h*w, C]`` L2-normalised, ``signatures [h*w, N*D]`` standardised to unit norm).
    """
    C = base_features.shape[0]
    F = np.ascontiguousarray(np.asarray(base_features, np.float32).reshape(C, -1).T)
    F /= np.linalg.norm(F, axis=1, keepdims=True) + 1e-8
    S = np.asarray(pixel_vectors(np.asarray(signature_stack, np.float32), "standardize"))
    return F, S / np.sqrt(S.shape[1])


def fit_pca(X: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and the first ``n`` principal axes ``[n, D]`` of ``X [P, D]`` (signs fixed: the largest
    coordinate of each axis is positive, so the result does not depend on the SVD's choice).

    In float64, rounded to float32 at the end: LAPACK's rounding differs between CPUs and thread counts in the
    last float64 digits, which the rounding removes (call it inside :func:`stylemix.cluster.thread_limit` ``(1)``
    for the same bytes at any thread count)."""
    X = np.asarray(X, np.float64)
    mean = X.mean(0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    vt = vt[:min(n, vt.shape[0])]
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]
    return mean.astype(np.float32), vt.astype(np.float32)


def descriptors(F: np.ndarray, S: np.ndarray, pos: np.ndarray, bank: PartBank, dtype: Any = np.float32
                ) -> np.ndarray:
    """``[P, Pf + Ps + 2]`` descriptors of pixels with cues ``F [P, C]``, ``S [P, N*D]``, ``pos [P, 2]``, computed
    in ``dtype`` (float32 per image; a fit uses float64, see :func:`fit`)."""
    s = bank.settings
    F, S, pos = (np.asarray(a, dtype) for a in (F, S, pos))
    return np.concatenate([s.feature_weight * ((F - bank.feature_mean) @ bank.feature_basis.T.astype(dtype, copy=False)),
                           s.signature_weight * ((S - bank.signature_mean) @ bank.signature_basis.T.astype(dtype, copy=False)),
                           s.position_weight * pos], 1).astype(dtype)


def nearest(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index ``int32 [P]`` of the nearest of ``centres [M, D]`` for each row of ``X [P, D]``."""
    d = (X * X).sum(1)[:, None] - 2 * X @ centres.T + (centres * centres).sum(1)[None]
    return d.argmin(1).astype(np.int32)


# The lower band makes a class only when the foreground has at least this many: with fewer, the parts that look
# different (on faces hair, skin, cloth) are worth more than one that differs by place alone.
LOWER_BAND_CLASSES = 4


def merge_prototypes(centres: np.ndarray, foreground_rate: np.ndarray, weights: np.ndarray, n_parts: int,
                     mean_y: np.ndarray, lower_band: float = 0.5) -> np.ndarray:
    """Class ``int32 [M]`` of each prototype.

    Args:
        centres: ``[M, D]`` what the merge compares of each prototype (its descriptor, or a block of it).
        foreground_rate: ``[M]`` pooled consensus foreground rate: at most 1/2 makes a prototype background
            (class 0).
        weights: ``[M]`` the prototypes' pixel counts (a prototype without pixels is background).
        n_parts: K; the foreground prototypes become ``K - 1`` classes (``K`` when none is background).
        mean_y: ``[M]`` the mean height of each prototype's pixels (``y`` in [-1/2, 1/2]).
        lower_band: with four or more foreground classes, the prototypes of the core class (the highest
            weighted foreground rate) whose ``mean_y`` exceeds it form one of them and Ward linkage makes the
            rest (:class:`~stylemix.parts.bank.PartSettings`); ``0.5`` or more: Ward makes them all.

    Foreground classes are numbered from the top of the frame down (``mean_y`` weighted by ``weights``), so ids
    read the same whatever the linkage's numbering.
    """
    M = len(centres)
    fg = np.flatnonzero((foreground_rate > 0.5) & (weights > 0))
    bg = np.setdiff1d(np.arange(M), fg)
    n_fg = n_parts - 1 if len(bg) else n_parts
    n_fg = max(1, min(n_fg, len(fg)))
    raw = None
    if n_fg >= LOWER_BAND_CLASSES and lower_band < 0.5:
        raw = _ward(centres[fg], n_fg - 1)
        rates = [np.average(foreground_rate[fg][raw == c], weights=weights[fg][raw == c]) for c in range(n_fg - 1)]
        core = raw == int(np.argmax(rates))
        low = core & (mean_y[fg] > lower_band)
        if low.any() and not low[core].all():
            raw[low] = n_fg - 1
        else:  # no band in the core class (or all of it is one): Ward makes every class
            raw = None
    if raw is None:
        raw = _ward(centres[fg], n_fg)
    ys = [np.average(mean_y[fg][raw == c], weights=weights[fg][raw == c] + 1e-9) for c in range(n_fg)]
    rank = np.empty(n_fg, np.int32)
    rank[np.argsort(ys, kind="stable")] = np.arange(n_fg)
    cls = np.zeros(M, np.int32)
    cls[fg] = (1 if len(bg) else 0) + rank[raw]
    return cls


def _ward(X: np.ndarray, n: int) -> np.ndarray:
    """Ward linkage labels ``int64 [P]`` of the rows of ``X [P, D]`` cut at ``n`` clusters (float64)."""
    from sklearn.cluster import AgglomerativeClustering
    if len(X) < 2 or n < 2:
        return np.zeros(len(X), np.int64)
    return AgglomerativeClustering(n, linkage="ward").fit_predict(np.asarray(X, np.float64)).astype(np.int64)


def class_rates(prototype_class: np.ndarray, prototype_foreground: np.ndarray, n_parts: int) -> np.ndarray:
    """Mean foreground rate per class ``[K]`` (unweighted over its prototypes)."""
    total = np.bincount(prototype_class, weights=prototype_foreground, minlength=n_parts)
    return total / np.maximum(np.bincount(prototype_class, minlength=n_parts), 1)


def image_descriptors(base_features: np.ndarray, signature_stack: np.ndarray, bank: PartBank) -> np.ndarray:
    """``float32 [h*w, Pf + Ps + 2]`` descriptors of one image's pixels (inputs as :func:`raw_cues`)."""
    h, w = base_features.shape[-2:]
    F, S = raw_cues(base_features, signature_stack)
    return descriptors(F, S, positions(h, w), bank)


def descriptor_classes(X: np.ndarray, bank: PartBank, shape: tuple[int, int]) -> np.ndarray:
    """Class ids ``int32 [h, w]`` of an image's descriptors ``X [h*w, D]`` (:func:`image_descriptors`)."""
    return bank.prototype_class[nearest(X, bank.prototypes)].reshape(shape).astype(np.int32)


def has_background(bank: PartBank) -> bool:
    """Whether the bank's class 0 is the background: its prototypes' pooled consensus foreground rate is at most 1/2
    (the merge's rule, :func:`merge_prototypes`; a bank that found no background has only foreground classes)."""
    return bool(class_rates(bank.prototype_class, bank.prototype_foreground, bank.n_parts)[0] <= 0.5)


def descriptor_parts(X: np.ndarray, bank: PartBank, shape: tuple[int, int]) -> np.ndarray:
    """The foreground part ids ``int32 [h, w]`` of an image's descriptors ``X [h*w, D]``: each pixel's nearest
    prototype among those of the foreground classes (class 1 and up), where the bank has a background class
    (:func:`has_background`); else :func:`descriptor_classes`.

    The map has no background: :func:`with_background` takes it from the image's two-way mask, which the fine
    foreground prototypes decide on finer regions than the part prototypes and the boundary stage finishes at full
    resolution. A pixel inside the mask whose nearest prototype is a background one still takes the part it
    resembles most, so the part map and the mask agree."""
    keep = np.flatnonzero(bank.prototype_class != 0)
    if not has_background(bank) or not len(keep):
        return descriptor_classes(X, bank, shape)
    return bank.prototype_class[keep][nearest(X, bank.prototypes[keep])].reshape(shape).astype(np.int32)


def with_background(parts: Any, foreground: Any) -> Any:
    """The part map ``int [H, W]`` (:func:`descriptor_parts`, finished at full resolution) with class 0 exactly where
    the two-way mask ``bool [H, W]`` is background (numpy or cupy arrays, of one shape)."""
    return (parts * (foreground != 0)).astype(parts.dtype)


def descriptor_foreground(X: np.ndarray, bank: PartBank, shape: tuple[int, int]) -> np.ndarray | None:
    """The fine foreground ``float32 [h, w]`` of an image's descriptors ``X [h*w, D]``: each pixel's nearest fine
    prototype's pooled foreground rate; ``None`` for a bank without fine prototypes (version 1)."""
    if not len(bank.foreground_prototypes):
        return None
    return bank.foreground_rate[nearest(X, bank.foreground_prototypes)].reshape(shape).astype(np.float32)


def predict_classes(base_features: np.ndarray, signature_stack: np.ndarray, bank: PartBank) -> np.ndarray:
    """Class ids ``int32 [h, w]`` at the analysis resolution of one image (inputs as :func:`raw_cues`)."""
    return descriptor_classes(image_descriptors(base_features, signature_stack, bank), bank,
                              base_features.shape[-2:])


def foreground_map(classes: np.ndarray, bank: PartBank, consensus: np.ndarray | None = None,
                   fine: np.ndarray | None = None) -> np.ndarray:
    """Foreground probability ``float32 [h, w]`` of one image, as the bank's ``foreground`` setting says.

    Args:
        classes: the bank's class ids ``int [h, w]``.
        bank: the bank (its ``foreground`` setting and class table).
        consensus: the per-image consensus probability ``float [h, w]`` (``combined``, ``consensus``), or ``None``.
        fine: :func:`descriptor_foreground` ``float [h, w]`` (``fine``), or ``None``.

    ``fine``: the fine prototypes' pooled rates, except in a class whose flag the table turns away from its pooled
    verdict (rate above 1/2 or not): there the flag, so that setting ``cloth`` to ``no`` still removes clothing.
    ``bank``: the class flags (also ``fine`` without ``fine``, and ``combined`` / ``consensus`` without
    ``consensus``). ``combined``: the mean of the class flags and the consensus. ``consensus``: the consensus.
    """
    flags = np.asarray(bank.class_foreground, bool)
    bank_fg = flags.astype(np.float32)[classes]
    mode = bank.settings.foreground
    if mode == "fine" and fine is not None:
        edited = flags != (class_rates(bank.prototype_class, bank.prototype_foreground, bank.n_parts) > 0.5)
        return np.where(edited[classes], bank_fg, np.asarray(fine, np.float32)).astype(np.float32)
    if consensus is None or mode in ("bank", "fine"):
        return bank_fg
    if mode == "consensus":
        return np.asarray(consensus, np.float32)
    return 0.5 * (bank_fg + np.asarray(consensus, np.float32))
