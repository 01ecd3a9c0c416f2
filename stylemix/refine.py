"""Boundary refinement: a coarse foreground probability -> an alpha matte that follows the image's edges.

The region decision is made at the analysis resolution (32 px by default), so its boundary is placed only to a
few full-resolution pixels. :func:`refine_boundary` moves it onto the image's edges, using nothing but the image
and the soft map (no training, no rule about what the object is):

* ``guided`` (today's upsampling, the reference): the probability upsampled bilinearly, guided-filtered with a
  window of two analysis pixels (He et al., 2010);
* ``cascade``: the same first pass with a window of three analysis pixels, then passes with narrowing windows,
  each on the thresholded result of the previous one: a hard edge within a window snaps to the strongest image
  edge there, and the narrower window re-snaps it to the edge nearest to it;
* ``matting``: closed-form matting (Levin et al., 2008, pymatting's ``estimate_alpha_cf``) at a reduced working
  size, the trimap's unknown region being a band of ``band_px`` pixels either side of the first pass's boundary,
  then one narrow guided pass at the working resolution.

Every pass runs at the working resolution (``working_resolution``, longer side); the last one's affine
coefficients are upsampled and applied to the full-resolution grey image (the fast guided filter, He & Sun, 2015),
so the matte keeps full-resolution edges at the cost of a few full-size operations.

All functions take and return NumPy arrays (the stage runs on the CPU; a CuPy caller moves its arrays here).
"""

from __future__ import annotations

import dataclasses
import numpy as np

from stylemix.errors import StylemixError

METHODS = ("guided", "cascade", "matting")


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine_boundary` (defaults are the measured ones, docs/benchmarks.md "Boundaries").

    Attributes:
        method: ``guided`` | ``cascade`` | ``matting`` (module docstring).
        working_resolution: longer side at which the passes run (never below the probability's own size).
        first_radius: first pass's window radius, in analysis pixels (``guided`` keeps 2, as before).
        radii: the narrowing passes of ``cascade`` (and the last pass of ``matting``), window radii in analysis
            pixels (at least one working pixel).
        band_px: ``matting``: half-width of the trimap's unknown band, in working pixels.
        matting_resolution: ``matting``: longer side at which the matte is solved (its cost grows with the band's
            pixel count).
        eps: guided-filter regularisation (how strong an edge must be to be kept), grey levels in [0, 1] squared.
    """

    method: str = "cascade"
    working_resolution: int = 256
    first_radius: float = 3.0
    radii: tuple[float, ...] = (1.0, 0.5)
    band_px: int = 16
    matting_resolution: int = 128
    eps: float = 1e-3

    def check(self) -> "RefineConfig":
        """``self`` if every value is valid, else one clear :class:`StylemixError`."""
        if self.method not in METHODS:
            raise StylemixError(f"unknown boundary method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.working_resolution < 8 or self.matting_resolution < 8:
            raise StylemixError("boundary working resolutions must be at least 8 px")
        if self.first_radius <= 0 or any(r <= 0 for r in self.radii) or self.band_px < 1 or self.eps <= 0:
            raise StylemixError("boundary radii, band and eps must be positive")
        return self


def refine_boundary(image: np.ndarray, probability: np.ndarray, config: RefineConfig | None = None) -> np.ndarray:
    """Alpha matte of the foreground.

    Args:
        image: ``uint8 [H, W, 3]`` the full-resolution image.
        probability: ``float32 [h, w]`` foreground probability in [0, 1] at the analysis resolution (or a bool
            mask), ``h <= H``.
        config: a :class:`RefineConfig` (default settings when ``None``).

    Returns:
        ``float32 [H, W]`` alpha in [0, 1]; the binary mask is ``alpha > 0.5``.
    """
    cfg = (config or RefineConfig()).check()
    image = np.asarray(image)
    prob = np.asarray(probability, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise StylemixError(f"image must be [H, W, 3], got {list(image.shape)}")
    if prob.ndim != 2:
        raise StylemixError(f"probability must be [h, w], got {list(prob.shape)}")
    H, W = image.shape[:2]
    h, w = prob.shape
    grey_full = _grey(image)
    size = _working_size((H, W), max(cfg.working_resolution, h, w))
    grey = _resize(grey_full, size, area=True)
    per_analysis_px = size[0] / h
    first = max(1, round(cfg.first_radius * per_analysis_px))  # analysis pixels -> working pixels
    # A probability already at the working size has no coarse boundary to move: one guided pass, as ``guided``.
    if cfg.method == "guided" or per_analysis_px <= 1:
        a, b = _coefficients(grey, _resize(prob, size), max(1, round(2 * per_analysis_px)), cfg.eps)
        return _apply(a, b, grey_full)
    p = guided(grey, _resize(prob, size), first, cfg.eps)
    if cfg.method == "matting":
        p = matte_band(image, p, cfg)
        radii = cfg.radii[-1:]
    else:
        radii = cfg.radii
    a, b = _coefficients(grey, p, first, cfg.eps) if not radii else (None, None)
    for i, r in enumerate(radii):
        hard = (p > 0.5).astype(np.float32)
        a, b = _coefficients(grey, hard, max(1, round(r * per_analysis_px)), cfg.eps)
        if i < len(radii) - 1:
            p = a * grey + b
    return _apply(a, b, grey_full)


def matte_band(image: np.ndarray, soft: np.ndarray, cfg: RefineConfig) -> np.ndarray:
    """Closed-form alpha matting of the band around ``soft``'s 1/2 level.

    Args:
        image: ``uint8 [H, W, 3]``.
        soft: ``float32 [h, w]`` a first foreground estimate at the working size.
        cfg: its ``band_px`` (working pixels) and ``matting_resolution``.

    Returns:
        ``float32 [h, w]`` alpha at ``soft``'s size (pixels outside the band keep 0 or 1).
    """
    try:
        import pymatting
    except ImportError as e:  # optional: only this method needs it
        raise StylemixError("boundary method 'matting' needs pymatting: pip install pymatting") from e
    import scipy.ndimage
    h, w = soft.shape
    size = _working_size((h, w), min(cfg.matting_resolution, max(h, w)))
    small = _resize(soft, size) > 0.5
    band = max(1, round(cfg.band_px * size[0] / h))
    inside = scipy.ndimage.distance_transform_edt(small)
    outside = scipy.ndimage.distance_transform_edt(~small)
    trimap = np.where(np.where(small, inside, outside) <= band, 0.5, small.astype(np.float64))
    if not ((trimap == 0.5).any() and (trimap == 0).any() and (trimap == 1).any()):  # nothing to solve, or no anchor
        return soft
    import cv2
    rgb = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA).astype(np.float64) / 255
    alpha = pymatting.estimate_alpha_cf(rgb, trimap)
    return np.clip(_resize(alpha.astype(np.float32), (h, w)), 0, 1)


def guided(grey: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Guided filter of ``src float32 [h, w]`` steered by ``grey float32 [h, w]`` in [0, 1]."""
    a, b = _coefficients(grey, src, radius, eps)
    return a * grey + b


def _coefficients(grey: np.ndarray, src: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    from stylemix.postprocess import guided_coefficients
    return guided_coefficients(grey, src.astype(np.float32), radius, eps)


def _apply(a: np.ndarray, b: np.ndarray, grey_full: np.ndarray) -> np.ndarray:
    """Fast guided filter: coefficients ``[h, w]`` upsampled and applied to ``grey_full [H, W]``, clipped."""
    size = grey_full.shape
    return np.clip(_resize(a, size) * grey_full + _resize(b, size), 0, 1).astype(np.float32)


def _grey(image: np.ndarray) -> np.ndarray:
    g = image.astype(np.float32)
    if image.dtype.kind in "ui":  # integer images span their dtype (uint8: 0-255); float ones are in [0, 1]
        g = g / float(np.iinfo(image.dtype).max)
    return g @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


def _working_size(size: tuple[int, int], longer: int) -> tuple[int, int]:
    H, W = size
    s = min(1.0, longer / max(H, W))
    return max(1, round(H * s)), max(1, round(W * s))


def _resize(a: np.ndarray, size: tuple[int, int], area: bool = False) -> np.ndarray:
    from stylemix.postprocess import _resize as resize
    return resize(np.ascontiguousarray(a, dtype=np.float32), size, area)


def binary(alpha: np.ndarray) -> np.ndarray:
    """``int32 [H, W]`` in {0, 1}: the matte's foreground (``alpha > 1/2``)."""
    return (np.asarray(alpha) > 0.5).astype(np.int32)


def alpha_uint8(alpha: np.ndarray) -> np.ndarray:
    """``uint8 [H, W]``: the matte as an 8-bit image (``round(255 * alpha)``)."""
    return np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8)
