"""A batch's images finished side by side (the default) against one at a time, in one process, interleaved.

    python benchmarks/finish_threads.py --seeds 200-231 --out benchmarks/results/finish_threads.json

Per chunk of ``--batch`` seeds, one after another: generating and saving them (``--batch`` per call, the
reference of benchmarks/export_throughput.py), then ``export_dataset(format="png")`` and ``segment_many`` with the
finish on one thread (``segment.finish_workers`` forced to 1) and side by side, the two orders alternating from
chunk to chunk. Beside each row's wall time per image, the ``segment_many`` rows report their *finish phase*: the
wall time less that of their ``render_batch`` calls (the base images and stacks, the same work both ways and the
noisiest part on a shared machine). Ratios to the reference are per chunk, then their median. The masks do not
depend on it (``tests/test_throughput.py``).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import stylemix
from stylemix.export import export_dataset
from stylemix.io import parse_seeds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_throughput import generate_and_save, report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="200-231")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    segment_module = importlib.import_module("stylemix.segment")
    side_by_side = segment_module.finish_workers
    G = stylemix.load_generator(None)
    list(stylemix.segment_many(G, range(2), config=stylemix.SegmentConfig(batch_size=2)))  # warm-up
    seeds = parse_seeds(args.seeds)
    chunks = [seeds[i:i + args.batch] for i in range(0, len(seeds), args.batch)]

    def timed(fn, files: bool) -> float:
        tmp = Path(tempfile.mkdtemp())
        try:
            t = time.perf_counter()
            fn(tmp / "out") if files else fn(None)
            return time.perf_counter() - t
        finally:
            shutil.rmtree(tmp)

    renders: list[float] = []
    render_batch = segment_module.render_batch

    def timed_render(*a, **k):
        t = time.perf_counter()
        try:
            return render_batch(*a, **k)
        finally:
            renders.append(time.perf_counter() - t)
    segment_module.render_batch = timed_render
    ways = [("one at a time", lambda *a, **k: 1), ("side by side", side_by_side)]
    rows: dict[str, list[float]] = {}
    for c, chunk in enumerate(chunks):
        n = len(chunk)
        rows.setdefault("generate + save", []).append(timed(lambda out: generate_and_save(G, chunk, out, n), True) / n)
        for label, workers in ways if c % 2 == 0 else ways[::-1]:
            segment_module.finish_workers = workers
            try:
                rows.setdefault(f"export, {label}", []).append(timed(lambda out: export_dataset(
                    G, chunk, out, format="png", progress=False, batch_size=n), True) / n)
                renders.clear()
                wall = timed(lambda _: list(stylemix.segment_many(G, chunk,
                                                                  config=stylemix.SegmentConfig(batch_size=n))), False)
                rows.setdefault(f"segment_many, {label}", []).append(wall / n)
                rows.setdefault(f"segment_many finish phase, {label}", []).append((wall - sum(renders)) / n)
            finally:
                segment_module.finish_workers = side_by_side
        print({k: round(v[-1], 3) for k, v in rows.items()}, flush=True)
    segment_module.render_batch = render_batch
    ref = rows["generate + save"]
    result = {"command": " ".join(["python", "benchmarks/finish_threads.py"] + sys.argv[1:]), "chunks": len(chunks),
              "batch": args.batch, "s_per_image_median": {k: statistics.median(v) for k, v in rows.items()},
              "ratio_to_generate_and_save_median_of_chunks": {
                  k: statistics.median(a / b for a, b in zip(v, ref)) for k, v in rows.items()}}
    report(result, args.out)


if __name__ == "__main__":
    main()
