"""Closed-form alpha matting (Levin, Lischinski & Weiss, 2008) of an image's unknown pixels, and the sparse solve
it needs; the boundary stage (:func:`stylemix.refine.matte_band`) runs it in a band around the region decision's
boundary."""

from __future__ import annotations

import numpy as np

from stylemix.errors import StylemixError

__all__ = ["closed_form_alpha", "solve_spd"]


def closed_form_alpha(image: np.ndarray, known: np.ndarray, values: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Closed-form matting (Levin, Lischinski & Weiss, 2008) of the pixels not ``known``, solved on them alone.

    Alpha minimises ``alpha^T L alpha`` under ``alpha = values`` on the known pixels, ``L`` the matting Laplacian
    of 3 x 3 windows (in each window alpha is nearly an affine function of the colour). Only the windows touching
    an unknown pixel enter, and only the unknown pixels' rows: the system ``L_uu alpha_u = -L_uk values_k`` is
    the size of the band, not the image, and is solved directly (:func:`solve_spd`), so no iteration count or
    tolerance decides the result.

    Args:
        image: ``float [h, w, 3]`` colours in [0, 1].
        known: ``bool [h, w]`` the pixels whose alpha is given (each unknown region must touch some).
        values: ``float [h, w]`` alpha of the known pixels (others ignored).
        eps: the windows' colour-covariance regulariser (larger: smoother alpha).

    Returns:
        ``float64 [h, w]`` in [0, 1], equal to ``values`` on the known pixels.
    """
    import scipy.ndimage
    import scipy.sparse
    image = np.asarray(image, dtype=np.float64)
    known = np.asarray(known, dtype=bool)
    h, w = known.shape
    if image.shape != (h, w, 3) or np.shape(values) != (h, w):
        raise StylemixError(f"matting needs image [h, w, 3], known and values [h, w]; got {list(image.shape)}, "
                            f"{list(known.shape)}, {list(np.shape(values))}")
    out = np.asarray(values, dtype=np.float64).ravel().copy()
    unknown = np.flatnonzero(~known.ravel())
    if unknown.size == 0 or min(h, w) < 3:
        return out.reshape(h, w)
    # Windows (3 x 3, inside the image) that hold an unknown pixel: the only ones that reach an unknown row.
    centres = scipy.ndimage.binary_dilation(~known, np.ones((3, 3), bool))
    centres[[0, -1], :] = False
    centres[:, [0, -1]] = False
    cy, cx = np.nonzero(centres)
    dy, dx = np.mgrid[-1:2, -1:2]
    win = (cy[:, None] + dy.ravel()) * w + (cx[:, None] + dx.ravel())  # [K, 9] pixel indices
    X = image.reshape(-1, 3)[win]
    X = X - X.mean(axis=1, keepdims=True)
    cov = np.matmul(X.transpose(0, 2, 1), X) / 9 + (eps / 9) * np.eye(3)
    G = np.matmul(np.matmul(X, np.linalg.inv(cov)), X.transpose(0, 2, 1))  # [K, 9, 9]
    vals = np.eye(9) - (1 + G) / 9
    # Each entry couples two pixels of a window, at most 2 apart: accumulate it into its row's 5 x 5 stencil
    # (the offset is set by the two window positions alone), only for the unknown pixels' rows.
    n = unknown.size
    index = np.full(h * w, -1)
    index[unknown] = np.arange(n)
    dy, dx = dy.ravel(), dx.ravel()
    offset = (dy[None, :] - dy[:, None] + 2) * 5 + (dx[None, :] - dx[:, None] + 2)  # [9, 9] in [0, 25)
    row = index[win]  # [K, 9]
    slot = row[:, :, None] * 25 + offset
    free = np.broadcast_to(row[:, :, None] >= 0, vals.shape)
    stencil = np.bincount(slot[free], weights=vals[free], minlength=n * 25).reshape(n, 25)
    stencil[:, 12] += 1e-9  # a ridge: an unknown region cut off from every known pixel stays solvable, at 0
    sy, sx = np.divmod(np.arange(25), 5)
    neighbour = np.clip(unknown[:, None] + (sy - 2) * w + (sx - 2), 0, h * w - 1)  # [n, 25]; unused where 0
    column = index[neighbour]
    used = stencil != 0
    inner = used & (column >= 0)
    b = -(np.where(used & (column < 0), stencil, 0) * out[neighbour]).sum(axis=1)
    # Rows list their columns by increasing offset, i.e. increasing pixel (and unknown) index: already sorted.
    A = scipy.sparse.csr_matrix((stencil[inner], column[inner], np.concatenate([[0], np.cumsum(inner.sum(1))])),
                                shape=(n, n))
    out[unknown] = solve_spd(A, b)
    return np.clip(out, 0, 1).reshape(h, w)


def solve_spd(A: "scipy.sparse.csr_matrix", b: np.ndarray, max_work: float = 3e8) -> np.ndarray:
    """``A^-1 b`` for a sparse symmetric positive definite ``A [n, n]``: banded Cholesky after a reverse
    Cuthill-McKee ordering (a band of pixels along a curve orders into a narrow band matrix: a few times faster than
    a general sparse LU), the sparse LU when the band would be too wide (``n * bandwidth^2 > max_work``)."""
    import scipy.linalg
    import scipy.sparse.linalg
    from scipy.sparse.csgraph import reverse_cuthill_mckee
    perm = reverse_cuthill_mckee(A, symmetric_mode=True)
    P = A[perm][:, perm].tocoo()
    upper = P.row <= P.col
    width = int((P.col[upper] - P.row[upper]).max(initial=0))
    if len(b) * (width + 1) ** 2 <= max_work:
        bands = np.zeros((width + 1, len(b)))
        bands[width + P.row[upper] - P.col[upper], P.col[upper]] = P.data[upper]
        x = np.empty_like(b)
        try:
            x[perm] = scipy.linalg.solveh_banded(bands, b[perm], check_finite=False)
            return x
        except np.linalg.LinAlgError:  # not numerically positive definite (a nearly free region): the general solve
            pass
    return scipy.sparse.linalg.spsolve(A.tocsc(), b, permc_spec="MMD_AT_PLUS_A")
