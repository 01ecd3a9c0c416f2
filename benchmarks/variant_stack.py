"""The default generator's variant stack and one image's segment against its generation, on this CPU.

    python benchmarks/variant_stack.py                    # -> JSON on stdout
    python benchmarks/variant_stack.py --tune-allocator   # glibc's allocator tuned first (the stylemix command's)

Two measurements (docs/benchmarks.md, Throughput):

* ``stack``: milliseconds per image of the 24-variant stack of 8 images (seeds 0-7, crossovers 4-7, 32 px, 16
  channels), each crossover group finished ``rows`` variants per call over the batch (6 = one image's group, what
  a CPU runs; 48 = the batch's group gathered, what a GPU runs), in float32 and in bfloat16
  (``render.reduced_precision``), best of ``--repeat``;
* ``pairs``: for seeds 300-331, generating one image (mapping, 1024 px synthesis, uint8; no file) then
  ``stylemix.segment`` of the same seed, timed back to back; medians of the per-seed times and ratio. Pairs
  interleave the two, so a load change hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

import stylemix
from stylemix import render
from stylemix.backend import tune_host_allocator
from stylemix.config import SegmentConfig
from stylemix.mixing import seed_to_z


def stack_ms(G, cfg: SegmentConfig, lat: list, states: list, rows: int, repeat: int) -> float:
    """Best-of-``repeat`` milliseconds per image of the batch's stack, ``rows`` variants per call."""
    def once() -> None:
        for c in sorted({int(c) for c in cfg.crossover}):
            hidden = torch.cat([st[c].hidden for st in states])
            ws = torch.cat([wm[cr == c] for _, wm, cr in lat])
            per = int((lat[0][2] == c).sum())
            owner = np.repeat(np.arange(len(states)), per)
            for i in range(0, len(ws), rows):
                state = type(states[0][c])(c, hidden[owner[i:i + rows]])
                G.features_suffix(state, ws[i:i + rows], cfg.analysis_resolution, cfg.feature_dim)
    once()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return best / len(states) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=32, help="seeds of the segment / generation pairs")
    ap.add_argument("--tune-allocator", action="store_true")
    args = ap.parse_args()
    tuned = args.tune_allocator and tune_host_allocator()
    G = stylemix.load_generator(None)
    out = {"command": "python benchmarks/variant_stack.py" + (" --tune-allocator" if args.tune_allocator else ""),
           "allocator_tuned": bool(tuned), "torch_threads": torch.get_num_threads(),
           "load_average_before": os.getloadavg(), "stack_ms_per_image": {}}
    with torch.inference_mode():
        for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            cfg = SegmentConfig(precision=precision).resolve(G)
            lat = [render.style_latents(G, s, cfg) for s in range(8)]
            states = [G.synthesis_prefixes(w, [int(c) for c in cfg.crossover]) for w, _, _ in lat]
            net = G if dtype == torch.float32 else render.reduced_precision(G, dtype)
            lat = [(a.to(dtype), b.to(dtype), c) for a, b, c in lat]
            states = [render.cast_floats(st, dtype) for st in states]
            out["stack_ms_per_image"][precision] = {
                rows: round(stack_ms(net, cfg, lat, states, rows, args.repeat), 1) for rows in (1, 3, 6, 12, 48)}

    def generate(seed: int) -> None:
        with torch.inference_mode():
            render.to_uint8(G.synthesis(G.mapping(torch.from_numpy(seed_to_z(seed, G.z_dim)))))

    for s in range(2):  # warm-up
        generate(s)
        stylemix.segment(G, s)
    gen, seg = [], []
    for s in range(300, 300 + args.pairs):
        t0 = time.perf_counter()
        generate(s)
        t1 = time.perf_counter()
        stylemix.segment(G, s)
        gen.append(t1 - t0)
        seg.append(time.perf_counter() - t1)
    out["pairs"] = {"seeds": f"300-{299 + args.pairs}", "generate_ms": round(statistics.median(gen) * 1e3, 1),
                    "segment_ms": round(statistics.median(seg) * 1e3, 1),
                    "median_ratio": round(statistics.median(b / a for a, b in zip(gen, seg)), 3)}
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
