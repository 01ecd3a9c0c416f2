"""segment() against generating one image, wall and CPU time per image, for comparing two trees (before / after).

    PYTHONPATH=/path/to/tree python benchmarks/segment_ab.py 2 > ab.json     # REPEATS; prints one JSON line

Rows (interleaved within each repeat, medians over the repeats, seeds 200-205): ``generate one image`` (mapping +
1024 px synthesis + uint8, one seed per call), ``segment (defaults)`` (``stylemix.segment(G, seed)``; on the
default generator its part bank decides the foreground) and ``segment, parts none`` (the per-image consensus).
Run it alternately on the two trees (A, B, A, B): the CPU-time ratios (``time.process_time``, every thread) move
much less with a shared machine's load than the wall-time ones.
"""
import json
import os
import statistics
import sys
import time

import torch

import stylemix
from stylemix.mixing import seed_to_z
from stylemix.render import to_uint8
SEEDS = list(range(200, 206))


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    G = stylemix.load_generator(None)

    def generate() -> None:
        for s in SEEDS:
            with torch.inference_mode():
                to_uint8(G.synthesis(G.mapping(torch.from_numpy(seed_to_z(s, G.z_dim))))).numpy()

    def segment(**options) -> None:
        for s in SEEDS:
            stylemix.segment(G, s, config=stylemix.SegmentConfig(**options))

    rows = {"generate one image": generate, "segment (defaults)": segment,
            "segment, parts none": lambda: segment(parts="none")}
    segment()
    generate()  # warm-up
    wall: dict[str, list[float]] = {k: [] for k in rows}
    cpu: dict[str, list[float]] = {k: [] for k in rows}
    load_before = os.getloadavg()
    for _ in range(repeats):
        for name, fn in rows.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - t0) / len(SEEDS))
            cpu[name].append((time.process_time() - c0) / len(SEEDS))
    mw = {k: statistics.median(v) for k, v in wall.items()}
    mc = {k: statistics.median(v) for k, v in cpu.items()}
    ref = "generate one image"
    print(json.dumps({"tree": stylemix.__file__, "load_before": load_before, "load_after": os.getloadavg(),
                      "torch_threads": torch.get_num_threads(), "seeds": SEEDS, "repeats": repeats,
                      "rows": {k: {"wall_s": mw[k], "cpu_s": mc[k], "wall_ratio": mw[k] / mw[ref],
                                   "cpu_ratio": mc[k] / mc[ref]} for k in rows}}))


if __name__ == "__main__":
    main()
