"""Throughput of ``stylemix export`` against segmentation alone, and with Ray workers.

    python benchmarks/export_throughput.py --seeds 0-47 --format png [--ray-workers 2]

Prints images/s for: ``segment_many`` with no files (the floor), ``export_dataset`` in one process (adds PNG
encoding, atomic writes, three fsyncs a seed and the final merge), and ``export_dataset(ray=True)`` on a local Ray
cluster with the given number of CPU workers. Each is run ``--repeat`` times; the median is reported.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import stylemix
from stylemix.export import export_dataset
from stylemix.io import parse_seeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="shapes")
    ap.add_argument("--seeds", default="0-47")
    ap.add_argument("--format", default="png")
    ap.add_argument("--variants", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ray-workers", type=int, default=0, help="0: skip the Ray measurement")
    args = ap.parse_args()
    G = stylemix.load_generator(args.network)
    seeds = parse_seeds(args.seeds)
    list(stylemix.segment_many(G, seeds[:2], variants=args.variants))  # warm-up

    def timed(fn) -> float:
        runs = []
        for _ in range(args.repeat):
            tmp = Path(tempfile.mkdtemp())
            t0 = time.perf_counter()
            fn(tmp / "DS")
            runs.append(len(seeds) / (time.perf_counter() - t0))
            shutil.rmtree(tmp)
        return statistics.median(runs)

    rows = {
        "segment_many (no files)": timed(lambda _: list(stylemix.segment_many(G, seeds, variants=args.variants))),
        "export, 1 process": timed(lambda out: export_dataset(G, seeds, out, format=args.format,
                                                              variants=args.variants, progress=False)),
    }
    if args.ray_workers:
        import ray
        ray.init(num_cpus=args.ray_workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        rows[f"export, Ray {args.ray_workers} workers"] = timed(
            lambda out: export_dataset(args.network, seeds, out, format=args.format, variants=args.variants,
                                       ray=True, workers=args.ray_workers, batch_seeds=4, progress=False))
        ray.shutdown()
    for name, rate in rows.items():
        print(f"{name:28s} {rate:7.2f} img/s")


if __name__ == "__main__":
    main()
