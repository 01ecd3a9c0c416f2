"""From the label map at analysis resolution to a clean label map at image resolution.

* :func:`upsample_labels` brings per-cluster soft maps to full size and, given the full-resolution image, snaps
  their edges to the image's edges with a guided filter (He et al., 2010) before taking the argmax; the filter runs
  at a reduced working resolution and only its affine coefficients are brought to full size (the fast guided
  filter, He & Sun, 2015), so it costs a few full-size operations whatever the radius;
* :func:`clean_labels` removes components smaller than an area threshold (specks and small holes alike), giving
  their pixels the label of the nearest kept pixel.

Everything is written once over ``xp``/``ndimage`` (NumPy + SciPy or CuPy + cupyx).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stylemix.backend import array_module, ndimage_module

__all__ = ["clean_labels", "guided_coefficients", "guided_filter", "resample_matrix", "resize_maps", "upsample_labels",
           "upsample_mask", "upsample_probability"]


def _box(a: Any, radius: int) -> Any:
    """Mean over ``(2 radius + 1)^2`` windows of each ``[..., H, W]`` plane, reflected at the border."""
    size = 2 * radius + 1
    if array_module(a) is np:  # OpenCV's box filter is several times faster than ndimage's on CPU; same border rule
        import cv2
        planes = [cv2.boxFilter(p, -1, (size, size), borderType=cv2.BORDER_REFLECT)
                  for p in a.reshape(-1, *a.shape[-2:])]
        return _unflatten(planes, a.shape)
    return ndimage_module(a).uniform_filter(a, size=(1,) * (a.ndim - 2) + (size, size), mode="reflect")


def _unflatten(planes: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """OpenCV's per-plane results as one array of ``shape``; a single plane without the stacking copy (the boundary
    stage's maps, up to full size)."""
    return planes[0].reshape(shape) if len(planes) == 1 else np.stack(planes).reshape(shape)


def resize_maps(a: Any, size: tuple[int, int], area: bool = False) -> Any:
    """``a [..., h, w]`` float32 -> ``[..., H, W]``: bilinear, pixel-centre aligned with the edge pixels repeated
    (``area``: the mean over each output pixel's footprint, to shrink). OpenCV's ``INTER_LINEAR`` / ``INTER_AREA``
    on NumPy; the same weights as two matrix products on CuPy (:func:`resample_matrix`)."""
    H, W = size
    if tuple(a.shape[-2:]) == (H, W):
        return a
    xp = array_module(a)
    if xp is np:  # OpenCV: several times faster than the products below on a CPU
        import cv2
        mode = cv2.INTER_AREA if area else cv2.INTER_LINEAR
        planes = [cv2.resize(p, (W, H), interpolation=mode) for p in a.reshape(-1, *a.shape[-2:])]
        return _unflatten(planes, (*a.shape[:-2], H, W))
    h, w = a.shape[-2:]
    rows = xp.asarray(resample_matrix(h, H, area))
    cols = xp.asarray(resample_matrix(w, W, area))
    return xp.matmul(xp.matmul(rows, a.astype(xp.float32)), cols.T)


def resample_matrix(n_in: int, n_out: int, area: bool = False) -> np.ndarray:
    """``float32 [n_out, n_in]``: the weights of one axis of OpenCV's resampling, so ``M @ x`` resizes ``x [n_in]``.

    Bilinear (``INTER_LINEAR``): output pixel ``i`` samples ``(i + 0.5) n_in / n_out - 0.5``, clamped to the edge
    pixels. ``area`` (``INTER_AREA``, for ``n_out <= n_in``): output pixel ``i`` averages the input over
    ``[i, i + 1) n_in / n_out``, each input pixel weighted by its overlap (block means for integer factors).
    """
    M = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    if area and n_out <= n_in:
        edges = np.arange(n_out + 1) * scale
        for i in range(n_out):
            j0, j1 = int(np.floor(edges[i])), min(int(np.ceil(edges[i + 1])), n_in)
            for j in range(j0, j1):
                M[i, j] = min(j + 1, edges[i + 1]) - max(j, edges[i])
        return (M / M.sum(1, keepdims=True)).astype(np.float32)
    x = (np.arange(n_out) + 0.5) * scale - 0.5
    x0 = np.floor(x).astype(int)
    frac = x - x0
    frac[x0 < 0], x0[x0 < 0] = 0.0, 0
    frac[x0 >= n_in - 1], x0[x0 >= n_in - 1] = 0.0, n_in - 1
    M[np.arange(n_out), x0] += 1 - frac
    M[np.arange(n_out), np.minimum(x0 + 1, n_in - 1)] += frac
    return M.astype(np.float32)


def guided_filter(guide: Any, src: Any, radius: int, eps: float) -> Any:
    """Edge-preserving smoothing of ``src [..., H, W]`` steered by a grey ``guide [H, W]`` in [0, 1].

    The output is locally an affine function of the guide (window ``2*radius+1``), so it follows the guide's edges;
    ``eps`` sets how strong an edge must be to be kept.
    """
    a, b = guided_coefficients(guide, src, radius, eps)
    return a * guide + b


def guided_coefficients(guide: Any, src: Any, radius: int, eps: float) -> tuple[Any, Any]:
    """The window-averaged affine coefficients ``(a, b)`` of the guided filter: output = ``a * guide + b``.

    Both are smooth (box-filtered), which is why they can be computed on reduced images and upsampled bilinearly
    (the fast guided filter). Shapes follow ``src [..., H, W]``.
    """
    mean_i = _box(guide, radius)
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    mean_p = _box(src, radius)
    cov_ip = _box(guide * src, radius) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius), _box(b, radius)


def upsample_labels(labels: Any, size: tuple[int, int], n_clusters: int, guide: Any | None = None,
                    radius: int | None = None, eps: float = 1e-3, filter_resolution: int | None = 256) -> Any:
    """Upsample ``labels int [h, w]`` to ``size = (H, W)``.

    Args:
        labels: cluster ids in ``[0, n_clusters)``.
        guide: optional ``[H, W, 3]`` image (uint8 or float in [0, 1]) whose edges the boundaries should follow.
        radius: guided-filter window radius in output pixels; default: two analysis pixels, ``2 * H // h`` (wide
            enough to reach across the blocky edge of the analysis map; one pixel measured worse on real faces).
        filter_resolution: the guided filter's working size (longer side, never below ``h``): the soft maps and
            the area-reduced guide are filtered there and the coefficients upsampled (He & Sun, 2015). ``None``
            filters at full size. On the default generator, 256 px for 1024 px images scored as well as full size
            (docs/benchmarks.md) at a sixth of the cost.

    Returns:
        ``int32 [H, W]``.
    """
    xp = array_module(labels)
    if labels.shape == tuple(size) and guide is None:
        return labels.astype(xp.int32)
    if n_clusters == 2:
        return upsample_mask(labels == 1, size, guide, radius, eps, filter_resolution)
    onehot = (labels[None] == xp.arange(n_clusters, dtype=labels.dtype)[:, None, None]).astype(xp.float32)
    soft = _upsample_maps(onehot, size, guide, radius, eps, filter_resolution)
    return xp.argmax(soft, axis=0).astype(xp.int32)


def upsample_mask(prob: Any, size: tuple[int, int], guide: Any | None = None, radius: int | None = None,
                  eps: float = 1e-3, filter_resolution: int | None = 256) -> Any:
    """Upsample a foreground probability ``float [h, w]`` in [0, 1] (or a bool mask) to ``int32 [H, W]`` in {0, 1}.

    The same resampling and guided filtering as :func:`upsample_labels` (which calls it for k = 2: there the two
    soft maps sum to 1 and every step is linear in them, so the argmax is "foreground map > 1/2"), then > 1/2.
    """
    xp = array_module(prob)
    return (upsample_probability(prob, size, guide, radius, eps, filter_resolution) > 0.5).astype(xp.int32)


def upsample_probability(prob: Any, size: tuple[int, int], guide: Any | None = None, radius: int | None = None,
                         eps: float = 1e-3, filter_resolution: int | None = 256) -> Any:
    """The soft map :func:`upsample_mask` thresholds: ``float32 [H, W]``, bilinear then guided (the guided filter
    may overshoot [0, 1] slightly near strong edges; clip it to use it as a matte)."""
    xp = array_module(prob)
    return _upsample_maps(prob[None].astype(xp.float32), size, guide, radius, eps, filter_resolution)[0]


def _upsample_maps(maps: Any, size: tuple[int, int], guide: Any | None, radius: int | None, eps: float,
                   filter_resolution: int | None) -> Any:
    """``float32 [C, h, w]`` soft maps -> ``[C, H, W]``, bilinear, then guided by ``guide`` when given."""
    xp = array_module(maps)
    h, w = maps.shape[1:]
    H, W = size
    if guide is None:
        return resize_maps(maps, (H, W))
    g = guide.astype(xp.float32)
    if guide.dtype.kind in "ui":  # integer images span their dtype (uint8: 0-255); float ones are in [0, 1]
        g = g / float(np.iinfo(guide.dtype).max)
    grey = g @ xp.asarray([0.299, 0.587, 0.114], dtype=xp.float32)
    radius = max(1, 2 * H // h) if radius is None else radius
    scale = 1.0 if filter_resolution is None else min(1.0, max(filter_resolution, h, w) / max(H, W))
    lo = (max(1, round(H * scale)), max(1, round(W * scale)))
    a, b = guided_coefficients(resize_maps(grey, lo, area=True), resize_maps(maps, lo), max(1, round(radius * scale)), eps)
    return resize_maps(a, (H, W)) * grey + resize_maps(b, (H, W))


def clean_labels(labels: Any, min_area: int) -> Any:
    """Give every connected component smaller than ``min_area`` pixels the label of its nearest kept pixel.

    Args:
        labels: ``int [H, W]``.
        min_area: in pixels; 0 returns the labels unchanged.

    Returns:
        ``int32 [H, W]``.
    """
    xp = array_module(labels)
    nd = ndimage_module(labels)
    if min_area <= 0:
        return labels.astype(xp.int32)
    drop = _small_components_host(labels, min_area) if xp is np else _small_components(labels, min_area)
    if not bool(drop.any()) or bool(drop.all()):
        return labels.astype(xp.int32)
    out = labels.astype(xp.int32)  # a copy: the fill below writes into it
    if xp is np and _fill_blobs(out, drop):
        return out
    idx = nd.distance_transform_edt(drop, return_distances=False, return_indices=True)
    return labels[idx[0], idx[1]].astype(xp.int32)


def _small_components(labels: Any, min_area: int) -> Any:
    """``bool [H, W]``: pixels of 4-connected same-label components smaller than ``min_area`` (any array module)."""
    xp = array_module(labels)
    nd = ndimage_module(labels)
    drop = xp.zeros(labels.shape, dtype=bool)
    for value in xp.unique(labels).tolist():
        comp, n = nd.label(labels == value)
        if n == 0:
            continue
        sizes = xp.bincount(comp.ravel())
        small = sizes < min_area
        small[0] = False
        drop |= small[comp]
    return drop


def _small_components_host(labels: np.ndarray, min_area: int) -> np.ndarray:
    """:func:`_small_components` with OpenCV (same 4-connectivity, several times faster than ``ndimage.label``).

    The areas are a bincount of the component ids: OpenCV's labelling with statistics costs 9x its labelling alone
    on a 1024 px mask (7 ms against 0.8), and a label with one component needs neither (its area is its count)."""
    import cv2
    drop = np.zeros(labels.shape, dtype=bool)
    lo, hi = int(labels.min()), int(labels.max())
    for value in range(lo, hi + 1) if hi - lo < 256 else np.unique(labels).tolist():
        mask = (labels == value).view(np.uint8)
        count = cv2.countNonZero(mask)
        if count == 0:
            continue
        n, comp = cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_32S)
        if n == 2 and count >= min_area:
            continue  # one component, large enough
        small = np.bincount(comp.ravel(), minlength=n) < min_area
        small[0] = False  # 0 is everything else
        if small.any():
            drop |= np.take(small, comp)  # a lookup table: 2-4x faster than small[comp]
    return drop


def _fill_blobs(out: np.ndarray, drop: np.ndarray, max_blobs: int = 4096) -> bool:
    """Give the pixels of each blob of ``drop`` (a 4-connected group of small components: a speck in a small hole
    is one blob) the label of their nearest kept pixel, in place; ``False`` (``out`` untouched) if there are too
    many blobs or one needs the whole image searched.

    Most blobs are ringed by kept pixels of a single label (in a mask, always when alone): the nearest kept pixel
    of any of their pixels lies on that ring (a step from a farther kept pixel towards it ends on the ring, nearer),
    so they take that label with no search. The others search a window around themselves (:func:`_fill_locally`).
    """
    H, W = drop.shape
    pixels, blob, n = _sparse_blobs(drop)
    if n > max_blobs:
        return False
    flat = out.reshape(-1)  # read only: written below through np.put, which also takes a strided out
    # The ring: each blob pixel's 4-neighbours outside drop (a neighbour in drop is in the same blob).
    r, c = np.divmod(pixels, W)
    owners, values = [], []
    for step, inside in ((-W, r > 0), (W, r < H - 1), (-1, c > 0), (1, c < W - 1)):
        q = pixels[inside] + step
        kept = ~drop.reshape(-1)[q]
        owners.append(blob[inside][kept])
        values.append(flat[q[kept]])
    owners, values = np.concatenate(owners), np.concatenate(values)
    lo = np.full(n, np.iinfo(np.int64).max)
    hi = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(lo, owners, values)
    np.maximum.at(hi, owners, values)
    uniform = lo == hi  # False for a ring-less blob (lo > hi): searched, as every mixed one
    mixed = []
    if not uniform.all():
        order = np.argsort(blob, kind="stable")
        bounds = np.searchsorted(blob[order], np.arange(n + 1))
        for i in np.flatnonzero(~uniform):
            rows, cols = r[order[bounds[i]:bounds[i + 1]]], c[order[bounds[i]:bounds[i + 1]]]
            y, x = int(rows.min()), int(cols.min())
            mask = np.zeros((int(rows.max()) - y + 1, int(cols.max()) - x + 1), bool)
            mask[rows - y, cols - x] = True
            mixed.append((mask, (slice(y, y + mask.shape[0]), slice(x, x + mask.shape[1]))))
    if not _fill_locally(out, drop, mixed):
        return False
    sel = uniform[blob]  # after every search: the searches read kept pixels only anyway
    np.put(out, pixels[sel], lo[blob[sel]])
    return True


def _sparse_blobs(drop: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The 4-connected blobs of ``drop bool [H, W]`` from its pixels alone: ``(pixels, blob, n)``, the flat indices
    of its pixels (ascending), the blob of each (``[0, n)``) and how many. They are a few thousand pixels of a
    1024 px mask, so a graph of them costs a tenth of labelling the whole image with statistics
    (docs/benchmarks.md, Throughput)."""
    import scipy.sparse
    from scipy.sparse.csgraph import connected_components
    H, W = drop.shape
    pixels = np.flatnonzero(drop)
    m = len(pixels)
    starts, ends = [], []
    for step, inside in ((1, pixels % W < W - 1), (W, pixels < (H - 1) * W)):  # right and down neighbours
        q = pixels[inside] + step
        j = np.minimum(np.searchsorted(pixels, q), m - 1)
        hit = pixels[j] == q
        starts.append(np.flatnonzero(inside)[hit])
        ends.append(j[hit])
    starts, ends = np.concatenate(starts), np.concatenate(ends)
    graph = scipy.sparse.coo_matrix((np.ones(len(starts), np.int8), (starts, ends)), shape=(m, m))
    n, blob = connected_components(graph, directed=False)
    return pixels, blob, int(n)


def _fill_locally(out: np.ndarray, drop: np.ndarray, boxes: list[tuple[np.ndarray, tuple[slice, slice]]],
                  max_boxes: int = 1024) -> bool:
    """Give each blob in ``boxes`` (its mask within its box) the label of its nearest kept pixel, searching a window
    around it.

    Exact: a pixel outside a window that extends ``m`` beyond the blob's box is more than ``m`` away from the blob,
    so a kept pixel found within ``m`` is the nearest overall (blobs are small: a window of a few pixels each, against
    a distance transform of the whole image). Returns ``False``, leaving ``out`` untouched, when some blob has none
    within its window or there are too many blobs; the caller then falls back to one distance transform of the whole
    image.
    """
    import scipy.ndimage
    if len(boxes) > max_boxes:
        return False
    H, W = drop.shape
    fills = []
    for mask, (rows, cols) in boxes:
        m = max(mask.shape) // 2 + 2
        r0, r1, c0, c1 = max(rows.start - m, 0), min(rows.stop + m, H), max(cols.start - m, 0), min(cols.stop + m, W)
        dist, idx = scipy.ndimage.distance_transform_edt(drop[r0:r1, c0:c1], return_indices=True)
        inner = (slice(rows.start - r0, rows.stop - r0), slice(cols.start - c0, cols.stop - c0))
        if dist[inner][mask].max() > m:
            return False
        src = out[r0:r1, c0:c1][idx[0][inner], idx[1][inner]]
        fills.append((mask, (rows, cols), src[mask]))
    for mask, where, values in fills:  # written after every search, so no search reads a filled pixel
        out[where][mask] = values
    return True
