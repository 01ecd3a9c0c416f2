"""Compare CPU k-means libraries on per-pixel variant vectors (the clustering step of stylemix).

    python benchmarks/kmeans.py            # 65,536 x 150 and 262,144 x 150, k = 2 and 8

Reports the median wall time of each library over repeats, side by side in one run, and the inertia each reaches
(lower is better) so speed is not bought with a worse optimum.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np


def _data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    # Clustered data like standardised variant vectors: a few centres plus noise.
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32)
    labels = rng.integers(0, k, size=n)
    return (centres[labels] + rng.normal(scale=1.0, size=(n, d))).astype(np.float32)


def _inertia(x: np.ndarray, centres: np.ndarray) -> float:
    d = ((x[:, None, :] - centres[None]) ** 2).sum(-1) if len(x) < 70000 else np.stack(
        [((x - c) ** 2).sum(-1) for c in centres], 1)
    return float(d.min(1).sum())


def run_sklearn(x, k):
    from sklearn.cluster import KMeans
    km = KMeans(n_clusters=k, n_init=3, max_iter=100, tol=1e-4, random_state=0).fit(x)
    return km.cluster_centers_


def run_faiss(x, k):
    import faiss
    km = faiss.Kmeans(x.shape[1], k, niter=100, nredo=3, seed=0, verbose=False)
    km.train(x)
    return km.centroids


def run_faiss_full(x, k):
    import faiss
    # faiss subsamples to 256 points per centroid by default; this trains on every point like the others.
    km = faiss.Kmeans(x.shape[1], k, niter=100, nredo=3, seed=0, verbose=False, max_points_per_centroid=len(x))
    km.train(x)
    return km.centroids


def run_scipy(x, k):
    from scipy.cluster.vq import kmeans2
    best = None
    for s in range(3):
        c, lab = kmeans2(x, k, iter=100, minit="++", seed=s)
        inertia = _inertia(x, c)
        if best is None or inertia < best[0]:
            best = (inertia, c)
    return best[1]


def main(repeats: int = 3) -> None:
    rows = []
    for n in (65536, 262144):
        for k in (2, 8):
            x = _data(n, 150, k)
            for name, fn in (("scikit-learn", run_sklearn), ("faiss (default subsampling)", run_faiss), ("faiss (all points)", run_faiss_full), ("scipy", run_scipy)):
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    c = fn(x, k)
                    times.append(time.perf_counter() - t0)
                rows.append({"n": n, "d": 150, "k": k, "library": name, "median_s": statistics.median(times),
                             "inertia_per_point": _inertia(x, np.asarray(c, np.float32)) / n})
                print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
