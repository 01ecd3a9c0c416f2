"""Clustering of per-pixel variant vectors: a k-means estimator with sklearn/cuML names on either backend.

NumPy input is clustered by scikit-learn, CuPy input by cuML; the labels come back in the input's array type.
Without cuML, CuPy input is clustered by scikit-learn on a host copy (one warning per process,
:mod:`stylemix.backend`).
scikit-learn was chosen for the CPU after measuring it against faiss and scipy (``benchmarks/kmeans.py``,
docs/benchmarks.md): scipy's ``kmeans2`` is 25x slower, faiss is faster only by training on a subsample.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import warnings
from typing import Any

import numpy as np

from stylemix.backend import array_module, gpu_kmeans_available, host_kmeans_notice, to_numpy
from stylemix.errors import StylemixError

__all__ = ["KMeans", "blas_limit", "thread_limit"]


class KMeans:
    """k-means with k-means++ initialisation, the best of ``n_init`` runs.

    Args:
        n_clusters: number of clusters k (>= 2).
        n_init: independent initialisations; the lowest inertia wins.
        max_iter: Lloyd iterations per run.
        tol: relative centre-shift tolerance for convergence.
        random_state: seed for initialisation (an int, so results repeat exactly).

    On the CPU the fit runs on one thread, so the same input gives the same labels and centres at any thread
    count; float64 input is clustered in float64 (the part banks' fits).

    Attributes:
        labels_: ``int32 [n_samples]``, cluster ids ordered by cluster size (0 = largest), same array type as input.
        cluster_centers_: ``float32 [n_clusters, n_features]`` in that order.
        inertia_: sum of squared distances to the nearest centre.
    """

    def __init__(self, n_clusters: int = 2, *, n_init: int = 3, max_iter: int = 100, tol: float = 1e-4,
                 random_state: int = 0) -> None:
        if n_clusters < 2:
            raise StylemixError(f"clusters must be at least 2, got {n_clusters}")
        self.n_clusters, self.n_init, self.max_iter, self.tol = n_clusters, n_init, max_iter, tol
        self.random_state = random_state

    def fit(self, X: Any) -> "KMeans":
        """Cluster ``X [n_samples, n_features]`` (NumPy or CuPy)."""
        xp = array_module(X)
        if X.shape[0] < self.n_clusters:
            raise StylemixError(f"cannot make {self.n_clusters} clusters from {X.shape[0]} pixels")
        if xp is not np and gpu_kmeans_available():
            Impl = importlib.import_module("cuml.cluster").KMeans
            est = Impl(n_clusters=self.n_clusters, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                       random_state=self.random_state, output_type="cupy").fit(X)
        else:
            if xp is not np:  # CuPy without cuML: the GPU renders and post-processes, the CPU clusters
                host_kmeans_notice()
            est = self._fit_host(to_numpy(X))
        labels = xp.asarray(est.labels_).astype(xp.int32)
        centres = xp.asarray(est.cluster_centers_, dtype=xp.float32)
        # Canonical order (largest first, ties by lowest centre sum) so ids do not depend on the library's init.
        # On the input's device: no host round trip of the k sizes per fit.
        sizes = xp.bincount(labels, minlength=self.n_clusters)
        order = xp.lexsort(xp.stack([centres.sum(1).astype(xp.float64), -sizes.astype(xp.float64)]))
        rank = xp.empty_like(order)
        rank[order] = xp.arange(order.shape[0])
        self.labels_ = rank.astype(xp.int32)[labels]
        self.cluster_centers_ = centres[order]
        self.inertia_ = float(est.inertia_)  # a host float in both libraries already
        return self

    def _fit_host(self, X: np.ndarray) -> Any:
        """scikit-learn's fit of ``X [n_samples, n_features]``."""
        from sklearn.cluster import KMeans as Impl
        from sklearn.exceptions import ConvergenceWarning
        # One thread always: scikit-learn's threaded Lloyd step adds per-thread partial sums in arrival order, so
        # the centres (and, through them, the labels) would depend on the thread count and the scheduling.
        # At the analysis resolution one thread is also the faster choice beside torch's spinning pool.
        with warnings.catch_warnings(), thread_limit(1):
            # Flat images have fewer distinct vectors than k; the empty clusters are handled downstream.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return Impl(n_clusters=self.n_clusters, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                        random_state=self.random_state).fit(X)

    def fit_predict(self, X: Any) -> Any:
        return self.fit(X).labels_


def thread_limit(threads: int | None = 1) -> Any:
    """A context limiting the BLAS / OpenMP pools to ``threads`` (``None``: no limit) inside it.

    For the analysis-resolution steps (k-means, the anchors' cluster means, the per-pixel scores) and for fits: their
    arrays are small, waking BLAS threads next to torch's pool costs more than the work, and a threaded reduction
    adds its partial sums in arrival order, so one thread also gives the same bytes at any thread count. One
    ``threadpoolctl.ThreadpoolController`` per process: ``threadpool_limits`` rescans the loaded libraries on each
    call.
    """
    if threads is None:
        return contextlib.nullcontext()
    return _controller().limit(limits=threads)


def blas_limit(threads: int = 1) -> Any:
    """A context limiting NumPy's and SciPy's BLAS pools (not OpenMP, so not torch's) to ``threads`` inside it.

    Around a batch of the pipeline (:func:`stylemix.segment.segment_many`): every BLAS call there is small (the
    analysis resolution, the boundary's 64 px features), and OpenBLAS's idle workers spin for about 0.1 s after a
    multi-threaded call, taking the cores torch's pool renders the next image on (docs/benchmarks.md,
    Throughput, has the measured cost)."""
    return _controller().limit(limits=threads, user_api="blas")


@functools.lru_cache(maxsize=None)
def _controller() -> Any:
    import sklearn.cluster  # noqa: F401 (its OpenMP runtime must be loaded when the controller looks)
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()

