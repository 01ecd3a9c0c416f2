"""Compare CPU k-means libraries on per-pixel variant vectors (the clustering step of stylemix).

    python benchmarks/kmeans.py                     # the sizes the defaults run: 1,024 x 384 (32 px), k = 2..5
    python benchmarks/kmeans.py --points 1024,4096 --ks 2,3,4,5 --out benchmarks/results/kmeans.json

The default pipeline clusters the 32 x 32 = 1,024 pixels of the analysis resolution, each a vector of N = 24
variants x 16 projected feature channels = 384 dimensions, once per k of the consensus (2, 3, 4, 5), best of 3
restarts; ``--analysis-res 64`` gives 4,096 points. Reports the median wall time of each library over repeats, side
by side in one run, and the inertia each reaches (lower is better) so speed is not bought with a worse optimum.
Libraries that are not installed (faiss) are skipped. ``stylemix.cluster.KMeans`` is the package's estimator
(scikit-learn on one thread, canonical cluster order).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

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


def run_stylemix(x, k):
    from stylemix.cluster import KMeans
    return KMeans(k, n_init=3, max_iter=100, random_state=0).fit(x).cluster_centers_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default="1024,4096", help="pixel counts (32 px: 1024, 64 px: 4096)")
    ap.add_argument("--dims", type=int, default=384, help="vector size: variants x feature_dim (24 x 16)")
    ap.add_argument("--ks", default="2,3,4,5")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    libraries = [("stylemix.cluster.KMeans", run_stylemix), ("scikit-learn", run_sklearn), ("scipy", run_scipy)]
    try:
        import faiss  # noqa: F401
        libraries += [("faiss (default subsampling)", run_faiss), ("faiss (all points)", run_faiss_full)]
    except ImportError:
        print("faiss not installed: skipped")
    for _, fn in libraries:  # warm-up: imports, thread pools, the thread-limit controller
        fn(_data(256, args.dims, 2), 2)
    rows = []
    for n in (int(v) for v in args.points.split(",")):
        for k in (int(v) for v in args.ks.split(",")):
            x = _data(n, args.dims, k)
            times: dict[str, list[float]] = {name: [] for name, _ in libraries}
            centres = {}
            for _ in range(args.repeats):  # interleaved: a shared machine's load hits every library alike
                for name, fn in libraries:
                    t0 = time.perf_counter()
                    centres[name] = fn(x, k)
                    times[name].append(time.perf_counter() - t0)
            for name, _ in libraries:
                rows.append({"n": n, "d": args.dims, "k": k, "library": name,
                             "median_s": statistics.median(times[name]),
                             "inertia_per_point": _inertia(x, np.asarray(centres[name], np.float32)) / n})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
