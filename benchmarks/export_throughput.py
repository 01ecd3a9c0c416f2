"""Throughput of ``stylemix export`` against segmentation alone, and with Ray workers.

    python benchmarks/export_throughput.py --seeds 0-47 --format png [--ray-workers 2]

Prints images/s for: ``segment_many`` with no files (the floor); ``segment_many`` + ``stylemix.outputs.write_seed``
(what ``stylemix segment`` does) with the encoding inline and on writer threads; ``export_dataset`` in one process
(adds PNG encoding, atomic writes, three fsyncs a seed and the final merge) with the encoding inline
(``writer_threads=0``) and on writer threads (the default); and ``export_dataset(ray=True)`` on a local Ray cluster
with the given number of CPU workers. The one-process rows run interleaved, ``--repeat`` rounds; medians.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import stylemix
from stylemix.export import export_dataset
from stylemix.io import parse_seeds
from stylemix.outputs import WRITER_THREADS, ordered_map, write_seed


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

    def write_all(out: Path, threads: int) -> None:  # what `stylemix segment` does per seed
        out.mkdir(parents=True)
        segs = stylemix.segment_many(G, seeds, variants=args.variants)
        for _ in ordered_map(lambda seg: write_seed(seg, out), segs, threads=threads):
            pass

    runs: dict[str, Callable[[Path], Any]] = {
        "segment_many (no files)": lambda _: list(stylemix.segment_many(G, seeds, variants=args.variants)),
        "segment + write_seed, inline": lambda out: write_all(out, 0),
        f"segment + write_seed, {WRITER_THREADS} writer threads": lambda out: write_all(out, WRITER_THREADS),
        "export, 1 process, inline encoding": lambda out: export_dataset(
            G, seeds, out, format=args.format, variants=args.variants, progress=False, writer_threads=0),
        f"export, 1 process, {WRITER_THREADS} writer threads": lambda out: export_dataset(
            G, seeds, out, format=args.format, variants=args.variants, progress=False),
    }
    # Interleaved (every row once per round), so that a change in the machine's load hits every row alike.
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            tmp = Path(tempfile.mkdtemp())
            t0 = time.perf_counter()
            fn(tmp / "DS")
            rates[name].append(len(seeds) / (time.perf_counter() - t0))
            shutil.rmtree(tmp)
    rows = {name: statistics.median(r) for name, r in rates.items()}

    def timed(fn) -> float:
        measured = []
        for _ in range(args.repeat):
            tmp = Path(tempfile.mkdtemp())
            t0 = time.perf_counter()
            fn(tmp / "DS")
            measured.append(len(seeds) / (time.perf_counter() - t0))
            shutil.rmtree(tmp)
        return statistics.median(measured)

    if args.ray_workers:
        import ray
        ray.init(num_cpus=args.ray_workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        rows[f"export, Ray {args.ray_workers} workers"] = timed(
            lambda out: export_dataset(args.network, seeds, out, format=args.format, variants=args.variants,
                                       ray=True, workers=args.ray_workers, batch_seeds=4, progress=False))
        ray.shutdown()
    for name, rate in rows.items():
        print(f"{name:44s} {rate:7.2f} img/s")


if __name__ == "__main__":
    main()
