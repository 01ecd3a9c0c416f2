"""Boundary refinement: a coarse foreground probability -> an alpha matte that follows the image's edges.

The region decision is made at the analysis resolution (32 px by default), so its boundary is placed only to a
few full-resolution pixels. :func:`refine_boundary` moves it onto the image's edges, using nothing but the image
and the soft map (no training, no rule about what the object is):

* ``guided`` (today's upsampling, the reference): the probability upsampled bilinearly, guided-filtered with a
  window of two analysis pixels (He et al., 2010);
* ``cascade``: the same first pass with a window of three analysis pixels, then passes with narrowing windows,
  each on the thresholded result of the previous one: a hard edge within a window snaps to the strongest image
  edge there, and the narrower window re-snaps it to the edge nearest to it;
* ``matting``: closed-form matting (Levin et al., 2008; :func:`stylemix.matting.closed_form_alpha`, solved on the band's pixels
  alone) at ``matting_resolution``, the trimap's unknown region being a band of ``matting_band`` analysis pixels
  either side of the first pass's boundary, then one narrow guided pass at the working resolution;
* ``grabcut``: the cascade's boundary, then a graph cut in a band of ``grabcut_band`` analysis pixels either side of it
  (GrabCut, Rother et al., 2004, OpenCV's ``cv2.grabCut``) at ``grabcut_resolution``: colour models of the
  confident foreground and background (Gaussian mixtures) decide the band's pixels, with a contrast-sensitive
  smoothness term, so a boundary placed several pixels off (the 32 px decision's error) moves to the colour
  change that separates the two sides; then one narrow guided pass;
* ``features``: the cascade's boundary, then each pixel of a band of ``feature_band`` analysis pixels either side of it
  relabelled by the generator's own feature maps of the image: one Gaussian per
  side (quadratic discriminant) fitted to the confident pixels outside the band, in the features' leading
  principal components, and the image's colours. The region decision's error near the boundary (hair or a
  shoulder that varies like the background under style mixing) is a question of *what* a pixel is, which the
  features answer pixel by pixel, not cluster by cluster; then the cascade's narrowing passes. The features are
  the base image's at the analysis resolution (``feature_scale`` 1: the generator's cheapest layers, rendered
  once more for one image; an instance crop gets the whole image's maps cropped with its box). Without features
  (a generator that exposes none) it is ``cascade``;
* ``features-matting`` (the pipeline's default, :class:`stylemix.config.SegmentConfig`): ``features`` with feature
  maps at twice the analysis resolution (``feature_scale`` 2), then closed-form matting in a band (``matting_band``,
  default 1.5 analysis pixels) for the last pixels, then one narrow guided pass (without features it is
  ``matting``).

Every pass runs at the working resolution (``working_resolution``, longer side); the last one's affine
coefficients are upsampled and applied to the full-resolution grey image (the fast guided filter, He & Sun, 2015),
so the matte keeps full-resolution edges at the cost of a few full-size operations.

All functions take and return NumPy arrays (the stage runs on the CPU; a CuPy caller moves its arrays here).
"""

from __future__ import annotations

import dataclasses
import numpy as np

from stylemix.errors import StylemixError
from stylemix.matting import closed_form_alpha

__all__ = ["FEATURE_METHODS", "METHODS", "RefineConfig", "alpha_uint8", "binary", "classify_band", "cut_band", "foreground_matte", "guided", "matte_band", "method_run", "principal_axes", "refine_boundary"]

METHODS = ("guided", "cascade", "matting", "grabcut", "features", "features-matting")
FEATURE_METHODS = ("features", "features-matting")  # the methods that use the generator's feature maps


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine_boundary` (defaults are the measured ones, docs/benchmarks.md "Boundaries").

    Attributes:
        method: one of :data:`METHODS` (module docstring).
        working_resolution: longer side at which the passes run (never below the probability's own size).
        first_radius: first pass's window radius, in analysis pixels (``guided`` keeps 2, as before).
        radii: the narrowing passes of ``cascade`` (and the last pass of ``matting``), window radii in analysis
            pixels (at least one working pixel).
        matting_band: ``matting``: half-width of the trimap's unknown band, in analysis pixels (``None``: 2, and
            1.5 after the feature step of ``features-matting``; 16 and 12 working pixels at the defaults).
        matting_resolution: ``matting``: longer side at which the matte is solved (its cost grows with the band's
            pixel count).
        grabcut_band: ``grabcut``: half-width of the band the graph cut may relabel, in analysis pixels.
        grabcut_resolution: ``grabcut``: longer side at which the graph cut runs.
        grabcut_iterations: ``grabcut``: rounds of colour-model fitting and cutting.
        feature_band: ``features``: half-width of the band the features may relabel, in analysis pixels.
        feature_components: ``features``: principal components of the feature maps the two Gaussians are fitted
            in (fewer when the maps have fewer channels).
        feature_scale: ``features``: resolution of the feature maps the pipeline renders for the stage, in
            multiples of the analysis resolution (``None``: 1, and 2 for ``features-matting``).
        eps: guided-filter regularisation (how strong an edge must be to be kept), grey levels in [0, 1] squared.
    """

    method: str = "cascade"
    working_resolution: int = 256
    first_radius: float = 3.0
    radii: tuple[float, ...] = (1.0, 0.5)
    matting_band: float | None = None
    matting_resolution: int = 128
    grabcut_band: float = 2.0
    grabcut_resolution: int = 128
    grabcut_iterations: int = 3
    feature_band: float = 2.0
    feature_components: int = 16
    feature_scale: int | None = None
    eps: float = 1e-3

    def check(self) -> "RefineConfig":
        """``self`` if every value is valid, else one clear :class:`StylemixError`."""
        if self.method not in METHODS:
            raise StylemixError(f"unknown boundary method {self.method!r}: use one of {', '.join(METHODS)}")
        if min(self.working_resolution, self.matting_resolution, self.grabcut_resolution) < 8:
            raise StylemixError("boundary working resolutions must be at least 8 px")
        bands = (self.matting_band_width(), self.grabcut_band, self.feature_band, self.feature_components)
        if self.first_radius <= 0 or any(r <= 0 for r in self.radii) or min(bands) < 1 or self.eps <= 0:
            raise StylemixError("boundary radii, bands and eps must be positive")
        if self.feature_scale is not None and self.feature_scale < 1:
            raise StylemixError(f"feature scale must be at least 1, got {self.feature_scale}")
        if self.grabcut_iterations < 1:
            raise StylemixError(f"grabcut iterations must be at least 1, got {self.grabcut_iterations}")
        return self

    def matting_band_width(self) -> float:
        """The matting band in analysis pixels: ``matting_band``, or the method's default when it is ``None``."""
        if self.matting_band is not None:
            return self.matting_band
        return 1.5 if self.method == "features-matting" else 2.0

    def feature_resolution(self, analysis_resolution: int) -> int:
        """Side of the feature maps the ``features`` methods read: ``feature_scale`` (or the method's default)
        times ``analysis_resolution``."""
        scale = self.feature_scale
        if scale is None:
            scale = 2 if self.method == "features-matting" else 1
        return scale * analysis_resolution


def method_run(method: str, has_features: bool) -> str:
    """The boundary method that runs for ``method``: a :data:`FEATURE_METHODS` one without feature maps runs
    ``cascade`` (for ``features``) or ``matting`` (for ``features-matting``); the pipeline records it and says so."""
    if method in FEATURE_METHODS and not has_features:
        return "cascade" if method == "features" else "matting"
    return method


def refine_boundary(image: np.ndarray, probability: np.ndarray, config: RefineConfig | None = None,
                    features: np.ndarray | None = None) -> np.ndarray:
    """Alpha matte of the foreground.

    Args:
        image: ``uint8 [H, W, 3]`` the full-resolution image.
        probability: ``float32 [h, w]`` foreground probability in [0, 1] at the analysis resolution (or a bool
            mask), ``h <= H``.
        config: a :class:`RefineConfig` (default settings when ``None``).
        features: ``float [C, hf, wf]`` the generator's feature maps of the image (any ``C``, ``hf`` between ``h``
            and the working size; :meth:`RefineConfig.feature_resolution` is what was measured), used by
            :data:`FEATURE_METHODS`; ``None``: those methods fall back to ``cascade`` / ``matting``.

    Returns:
        ``float32 [H, W]`` alpha in [0, 1]; the binary mask is ``alpha > 0.5``.
    """
    cfg = (config or RefineConfig()).check()
    cfg = dataclasses.replace(cfg, method=method_run(cfg.method, features is not None))
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
        p = matte_band(image, p, cfg.matting_band_width() * per_analysis_px, cfg)
        radii = cfg.radii[-1:]
    elif cfg.method == "grabcut":
        for r in cfg.radii:  # the cascade's boundary, the graph cut's starting point
            p = guided(grey, (p > 0.5).astype(np.float32), max(1, round(r * per_analysis_px)), cfg.eps)
        p = cut_band(image, p, cfg.grabcut_band * per_analysis_px, cfg)
        radii = cfg.radii[-1:]
    elif cfg.method in FEATURE_METHODS:
        for r in cfg.radii:  # the cascade's boundary, the band's centre line
            p = guided(grey, (p > 0.5).astype(np.float32), max(1, round(r * per_analysis_px)), cfg.eps)
        p = classify_band(features, p, cfg.feature_band * per_analysis_px, cfg.feature_components, image)
        if cfg.method == "features-matting":
            p = matte_band(image, p, cfg.matting_band_width() * per_analysis_px, cfg)
            radii = cfg.radii[-1:]
        else:
            radii = cfg.radii
    else:
        radii = cfg.radii
    a, b = _coefficients(grey, p, first, cfg.eps) if not radii else (None, None)
    for i, r in enumerate(radii):
        hard = (p > 0.5).astype(np.float32)
        a, b = _coefficients(grey, hard, max(1, round(r * per_analysis_px)), cfg.eps)
        if i < len(radii) - 1:
            p = a * grey + b
    return _apply(a, b, grey_full)


def matte_band(image: np.ndarray, soft: np.ndarray, band_px: float, cfg: RefineConfig) -> np.ndarray:
    """Closed-form alpha matting (:func:`closed_form_alpha`) of the band around ``soft``'s 1/2 level.

    Args:
        image: ``uint8 [H, W, 3]``.
        soft: ``float32 [h, w]`` a first foreground estimate at the working size.
        band_px: the unknown band's half-width in pixels of ``soft``.
        cfg: its ``matting_resolution``.

    Returns:
        ``float32 [h, w]`` alpha at ``soft``'s size (pixels outside the band keep 0 or 1).
    """
    import cv2
    import scipy.ndimage
    h, w = soft.shape
    size = _working_size((h, w), min(cfg.matting_resolution, max(h, w)))
    small = _resize(soft, size) > 0.5
    band = max(1, round(band_px * size[0] / h))
    inside = scipy.ndimage.distance_transform_edt(small)
    outside = scipy.ndimage.distance_transform_edt(~small)
    known = np.where(small, inside, outside) > band
    if known.all() or not (known & small).any() or not (known & ~small).any():  # nothing to solve, or no anchor
        return soft
    rgb = cv2.resize(np.asarray(image), size[::-1], interpolation=cv2.INTER_AREA).astype(np.float64) / 255
    alpha = closed_form_alpha(rgb, known, small.astype(np.float64))
    return np.clip(_resize(alpha.astype(np.float32), (h, w)), 0, 1)


def cut_band(image: np.ndarray, soft: np.ndarray, band_px: float, cfg: RefineConfig) -> np.ndarray:
    """GrabCut of the band around ``soft``'s 1/2 level: the band's pixels relabelled by colour and contrast.

    Pixels farther than ``band_px`` (pixels of ``soft``) from the boundary are fixed to their side and
    train the two colour models; those inside start on their side as "probably" and may move.

    Args:
        image: ``uint8 [H, W, 3]``.
        soft: ``float32 [h, w]`` a foreground estimate at the working size.
        band_px: the band's half-width in pixels of ``soft``.
        cfg: its ``grabcut_resolution`` and ``grabcut_iterations``.

    Returns:
        ``float32 [h, w]``: the cut's foreground (0 / 1 at ``grabcut_resolution``) upsampled bilinearly to
        ``soft``'s size; ``soft`` unchanged when one side has too few pixels to fit a colour model.
    """
    import cv2
    import scipy.ndimage
    h, w = soft.shape
    size = _working_size((h, w), min(cfg.grabcut_resolution, max(h, w)))
    small = _resize(soft, size) > 0.5
    band = max(1, round(band_px * size[0] / h))
    dist = np.where(small, scipy.ndimage.distance_transform_edt(small), scipy.ndimage.distance_transform_edt(~small))
    near = dist <= band
    # Each side needs pixels for its 5-component mixture (OpenCV fails on fewer): else nothing to cut.
    if min(int(small.sum()), int((~small).sum())) < 50 or not near.any():
        return soft
    mask = np.where(near, np.where(small, cv2.GC_PR_FGD, cv2.GC_PR_BGD),
                    np.where(small, cv2.GC_FGD, cv2.GC_BGD)).astype(np.uint8)
    bgr = np.ascontiguousarray(cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)[..., ::-1])
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # The mixtures start from k-means on OpenCV's own random generator: seeded, so that a mask repeats exactly.
    cv2.setRNGSeed(0)
    cv2.grabCut(bgr, mask, None, models[0], models[1], cfg.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    cut = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
    return _resize(cut, (h, w))


def classify_band(features: np.ndarray, soft: np.ndarray, band_px: float, components: int = 16,
                  image: np.ndarray | None = None) -> np.ndarray:
    """Relabel the band around ``soft``'s 1/2 level by the generator's feature maps (and the image's colours).

    At the features' resolution, pixels within ``band_px`` (pixels of ``soft``) of the boundary are
    assigned to the side whose Gaussian (mean and covariance of the side's pixels outside the band, in the
    features' leading ``components`` principal components, standardised, beside the image's three
    colour channels standardised when ``image`` is given) gives them the higher likelihood; pixels outside the
    band keep their side.

    Args:
        features: ``float [C, hf, wf]``.
        soft: ``float32 [h, w]`` a foreground estimate at the working size (``hf <= h``).
        band_px: the band's half-width in pixels of ``soft``.
        components: principal components kept (fewer when the features have fewer channels).
        image: ``uint8 [H, W, 3]`` or ``None``.

    Returns:
        ``float32 [h, w]``: the relabelled mask (0 / 1 at the features' size) upsampled bilinearly; ``soft``
        unchanged when a side has too few confident pixels to fit its Gaussian.
    """
    import scipy.ndimage
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 3:
        raise StylemixError(f"features must be [C, h, w], got {list(feats.shape)}")
    c, hf, wf = feats.shape
    h, w = soft.shape
    small = _resize(soft, (hf, wf), area=hf < h) > 0.5
    band_px = band_px * hf / h
    dist = np.where(small, scipy.ndimage.distance_transform_edt(small), scipy.ndimage.distance_transform_edt(~small))
    near = dist <= band_px
    X = feats.reshape(c, -1).T
    mean = X.mean(axis=0)
    # Axes from every 7th pixel: the same to a few percent, at a seventh of the cost. The centring moves into the
    # projection (X A^T - mean A^T): no centred copy of the [h w, C] maps.
    axes = principal_axes(X[::7] - mean, min(components, c))
    Z = X @ axes.T - mean @ axes.T
    d = Z.shape[1]  # fewer than ``components`` when the maps have fewer channels (or pixels)
    if image is not None:  # colour separates what the features blur (a dark background against dark hair)
        import cv2
        rgb = cv2.resize(np.asarray(image), (wf, hf), interpolation=cv2.INTER_AREA).reshape(-1, 3)
        Z = np.concatenate([Z, rgb.astype(np.float32)], axis=1)
        d += 3
    Z = (Z - Z.mean(axis=0)) / (Z.std(axis=0) + 1e-6)
    train, side = ~near.ravel(), small.ravel()
    loglik = []
    for fg in (True, False):
        Zs = Z[train & (side == fg)]
        if len(Zs) < 4 * d:  # too few to fit a d-dimensional Gaussian: leave the boundary where it is
            return soft
        mean = Zs.mean(axis=0)
        # A ridge keeps the covariance invertible when a few components barely vary on one side.
        cov = np.cov(Zs.T).reshape(d, d) + 1e-2 * np.eye(d)
        diff = Z - mean
        loglik.append(-0.5 * np.einsum("ij,ij->i", diff @ np.linalg.inv(cov), diff) - 0.5 * np.linalg.slogdet(cov)[1])
    relabelled = np.where(near, (loglik[0] > loglik[1]).reshape(hf, wf), small).astype(np.float32)
    return _resize(relabelled, (h, w))


def principal_axes(X: np.ndarray, d: int) -> np.ndarray:
    """``float32 [d, C]``: the leading ``d`` right singular vectors of the centred rows ``X [n, C]`` (sign aside).

    From the top ``d`` eigenvectors of the smaller of the ``C x C`` covariance and the ``n x n`` Gram matrix, in
    float32 (float64 took twice as long for the same axes to the precision the features carry): the SVD's axes to
    about 1e-6. The few leading ones of a large matrix by Lanczos iteration (ARPACK, from a fixed start: the same
    axes on every run), 2x faster than the dense solver's subset (16 of 512: 4.5 ms against 10).
    """
    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    d = min(d, n, X.shape[1])
    if n > X.shape[1]:  # more rows than channels: the C x C covariance is the smaller problem
        w, V = _top_eigenvectors(X.T @ X, d)
        return V.T[::-1].astype(np.float32)
    w, U = _top_eigenvectors(X @ X.T, d)
    V = (U.T @ X) / np.sqrt(np.maximum(w, 1e-12))[:, None]
    return V[::-1].astype(np.float32)


def _top_eigenvectors(A: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``d`` largest eigenvalues of the symmetric ``A [m, m]``, ascending, and their eigenvectors
    ``[m, d]``: Lanczos (``scipy.sparse.linalg.eigsh``) when ``d`` is a small part of ``m``, else (or when it
    does not converge) the dense solver."""
    import scipy.linalg
    import scipy.sparse.linalg
    m = A.shape[0]
    if 4 * d < m:
        try:
            w, V = scipy.sparse.linalg.eigsh(A, k=d, which="LA", v0=np.ones(m, dtype=A.dtype))
            order = np.argsort(w)
            return w[order], V[:, order]
        except scipy.sparse.linalg.ArpackNoConvergence:
            pass
    return scipy.linalg.eigh(A, subset_by_index=[m - d, m - 1], overwrite_a=True, check_finite=False)


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
    alpha = _resize(a, size) * grey_full  # float32; the full-size steps below write into it
    alpha += _resize(b, size)
    return np.clip(alpha, 0, 1, out=alpha)


def _grey(image: np.ndarray) -> np.ndarray:
    """``float32 [H, W]`` in [0, 1]: the luma of ``image [H, W, 3]`` (integer images span their dtype, uint8:
    0-255; float ones are in [0, 1])."""
    import cv2
    scale = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
    weights = np.asarray([[0.299, 0.587, 0.114]], dtype=np.float32) / np.float32(scale)
    # OpenCV's per-pixel 1 x 3 transform: 8x faster than the float32 matmul over the channel axis at 1024 px
    return cv2.transform(np.ascontiguousarray(image, dtype=np.float32), weights)


def _working_size(size: tuple[int, int], longer: int) -> tuple[int, int]:
    H, W = size
    s = min(1.0, longer / max(H, W))
    return max(1, round(H * s)), max(1, round(W * s))


def _resize(a: np.ndarray, size: tuple[int, int], area: bool = False) -> np.ndarray:
    from stylemix.postprocess import resize_maps as resize
    return resize(np.ascontiguousarray(a, dtype=np.float32), size, area)


def foreground_matte(image: np.ndarray, probability: np.ndarray, config: RefineConfig | None = None,
                     features: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The refined foreground as a soft and a hard mask: ``(alpha float32 [H, W] in [0, 1], mask int32 [H, W])``.

    The same inputs as :func:`refine_boundary`; ``mask`` is ``alpha > 1/2`` (before the pipeline's small-component
    cleaning, which :func:`stylemix.stages.finish_labels` adds).
    """
    alpha = refine_boundary(image, probability, config, features)
    return alpha, binary(alpha)


def binary(alpha: np.ndarray) -> np.ndarray:
    """``int32 [H, W]`` in {0, 1}: the matte's foreground (``alpha > 1/2``)."""
    return (np.asarray(alpha) > 0.5).astype(np.int32)


def alpha_uint8(alpha: np.ndarray) -> np.ndarray:
    """``uint8 [H, W]``: the matte as an 8-bit image (``round(255 * alpha)``)."""
    return np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8)
