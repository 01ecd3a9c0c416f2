"""Per-pixel descriptors: the stacked variants ``[N, C, h, w]`` -> vectors ``[h*w, N*C]`` that k-means clusters.

The point of the method is that pixels of one semantic region change *together* across variants, whatever their
own colour. Raw vectors mix that with each pixel's absolute colour, so the default normalisation, ``standardize``,
removes both the per-pixel mean (over variants, per channel) and the per-pixel scale: the Euclidean distance
between two standardised vectors is then a monotone function of the correlation of their changes.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from stylemix.backend import array_module
from stylemix.errors import StylemixError

__all__ = ["NORMALIZATIONS", "PROJECTION_SEED", "pixel_vectors", "project_channels", "projection_matrix"]

NORMALIZATIONS = ("standardize", "center", "none")
PROJECTION_SEED = 0


def project_channels(features: torch.Tensor, dim: int) -> torch.Tensor:
    """A fixed Gaussian random projection of ``features [B, C, h, w]`` to ``[B, min(dim, C), h, w]``.

    Feature maps have hundreds of channels per variant; k-means on ``N * C`` of them is slow and dominated by
    noise dimensions. A random projection keeps pairwise distances (Johnson-Lindenstrauss) at a fraction of the
    cost. The matrix depends only on ``(C, dim)`` (seed :data:`PROJECTION_SEED`), so results repeat exactly.
    """
    C = features.shape[1]
    if dim >= C:
        return features
    return torch.einsum("kc,bchw->bkhw", torch.from_numpy(projection_matrix(C, dim)).to(features), features)


def projection_matrix(channels: int, dim: int) -> np.ndarray:
    """The fixed projection :func:`project_channels` applies: ``float32 [dim, channels]``, entries N(0, 1/channels)."""
    return _projection_matrix(channels, dim).copy()  # the caller's own: the cached one stays as drawn


@functools.lru_cache(maxsize=16)
def _projection_matrix(channels: int, dim: int) -> np.ndarray:
    # Drawn once per shape: ~1 ms a draw, and every image's stack and feature maps are projected.
    matrix = np.random.RandomState(PROJECTION_SEED).randn(dim, channels).astype(np.float32) / np.sqrt(channels)
    return matrix.astype(np.float32)  # NumPy 2 promotes the float64 scalar


def pixel_vectors(stack: Any, normalization: str = "standardize", eps: float = 1e-6) -> Any:
    """Per-pixel vectors of the variant stack.

    Args:
        stack: ``float [N, C, h, w]`` (NumPy or CuPy), N variants with C channels each.
        normalization: ``"standardize"`` (per pixel: subtract the mean over variants of each channel, then divide
            by the RMS of the whole N*C vector), ``"center"`` (the subtraction only) or ``"none"``.

    Returns:
        ``float32 [h*w, N*C]``, row-major over pixels (row ``y*w + x``).
    """
    xp = array_module(stack)
    if stack.ndim != 4:
        raise StylemixError(f"expected a variant stack [N, C, H, W], got shape {tuple(stack.shape)}")
    if normalization not in NORMALIZATIONS:
        raise StylemixError(f"unknown normalization {normalization!r}: use one of {', '.join(NORMALIZATIONS)}")
    n, c, h, w = stack.shape
    x = xp.ascontiguousarray(stack.astype(xp.float32).reshape(n * c, h * w).T)  # [h*w, N*C]
    if normalization == "none":
        return x
    x = x.reshape(h * w, n, c)
    x = x - x.mean(axis=1, keepdims=True)
    x = x.reshape(h * w, n * c)
    if normalization == "standardize":
        x = x / (xp.sqrt((x * x).mean(axis=1, keepdims=True)) + eps)
    return xp.ascontiguousarray(x)
