"""Where the time of an export goes: cProfile of ``export_dataset`` and of ``segment_many`` at the default settings.

    python benchmarks/profile_export.py                       # default generator, seeds 300-307, png
    python benchmarks/profile_export.py --seeds 300-315 --batch-size 1 --out /tmp/profile_b1.json

Warms up on one seed, then profiles (1) ``segment_many`` over the seeds (no files) and (2) ``export_dataset`` of
the same seeds (PNG encoding, atomic writes, manifest). Prints, per run, the wall time per image, the share of the
pipeline's stages (``seg.meta["timing_s"]``) and the functions with the largest own time, grouped into what they are
(convolutions of the generator, k-means, guided filters, component cleaning, PNG encoding, ...); writes all of it as
JSON to ``--out``. Absolute times on a shared machine are noise: read the shares, and the load printed with them.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import stylemix
from stylemix.export import export_dataset
from stylemix.io import parse_seeds

REPO = Path(__file__).resolve().parents[1]

# Own-time buckets: (name, substrings of "file:function" that belong to it), first match wins.
BUCKETS = [
    ("generator convolutions", ("conv2d", "conv_transpose2d")),
    ("generator elementwise (modulation, noise, activation)", ("mul_", "add_", "leaky_relu", "linear",
                                                              "mobilestylegan.py")),
    ("k-means (scikit-learn)", ("sklearn", "_kmeans", "threadpoolctl")),
    ("anchor merge / scores", ("foreground.py",)),
    ("guided filter / boundary", ("boxFilter", "refine.py", "postprocess.py:_box", "guided", "resize")),
    ("component cleaning", ("connectedComponents", "distance_transform", "_fill", "clean_labels", "_small_comp")),
    ("PNG encoding / files", ("zlib", "crc32", "imencode", "png", "write", "fsync", "io.py", "export/")),
]


# Pipeline steps whose cumulative time is reported ("file:function" as cProfile names them).
STEPS = [("base image (from its deepest prefix, + its features)", "render.py", "base_image"),
         ("prefix states of the crossovers", "render.py", "synthesis_prefixes"),
         ("variant stack (32 px)", "render.py", "variant_stack"),
         ("mapping", "mobilestylegan.py", "mapping"),
         ("consensus k-means + anchors", "stages.py", "consensus_foreground"),
         ("part bank step (classes, foreground)", "parts.py", "__call__"),
         ("finish (boundary, cleaning)", "stages.py", "finish_foreground"),
         ("finite check", "segment.py", "_check_finite"),
         ("uint8 conversion", "render.py", "to_uint8")]


def steps(stats: pstats.Stats, images: int) -> dict[str, float]:
    """Cumulative seconds per image of each of :data:`STEPS` (0 when it did not run)."""
    out = {}
    for name, file, func in STEPS:
        out[name] = round(sum(ct for (f, _, fn), (_, _, _, ct, _) in stats.stats.items()
                              if Path(f).name == file and fn == func) / images, 4)
    return out


def bucket(key: str) -> str:
    for name, needles in BUCKETS:
        if any(n in key for n in needles):
            return name
    return "other"


def summarize(prof: cProfile.Profile, images: int, top: int) -> dict:
    stats = pstats.Stats(prof)
    rows, groups = [], {}
    for (file, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        key = f"{Path(file).name}:{func}" if file != "~" else func
        rows.append((tt, ct, nc, key))
        groups[bucket(key)] = groups.get(bucket(key), 0.0) + tt
    total = sum(r[0] for r in rows)
    rows.sort(reverse=True)
    return {
        "total_s_per_image": total / images,
        "groups_share": {k: round(v / total, 3) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "steps_cum_s_per_image": steps(stats, images),
        "top_own_time": [{"function": k, "own_s_per_image": round(tt / images, 4), "cum_s_per_image":
                          round(ct / images, 4), "calls_per_image": round(nc / images, 1)} for tt, ct, nc, k in
                         rows[:top]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default=None, help="generator (default: the embedded default)")
    ap.add_argument("--seeds", default="300-307")
    ap.add_argument("--format", default="png")
    ap.add_argument("--batch-size", type=int, default=None, help="SegmentConfig.batch_size (default: the library's)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "profile_export.json"))
    args = ap.parse_args()
    G = stylemix.load_generator(args.network)
    seeds = parse_seeds(args.seeds)
    options = {} if args.batch_size is None else {"batch_size": args.batch_size}
    # Warm-up: imports, allocator, thread pools.
    list(stylemix.segment_many(G, seeds[:1], config=stylemix.SegmentConfig(**options)))
    result = {"command": " ".join(["python", "benchmarks/profile_export.py"] + sys.argv[1:]),
              "seeds": args.seeds, "options": options, "torch_threads": torch.get_num_threads(),
              "load_average_before": os.getloadavg()}

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    segs = list(stylemix.segment_many(G, seeds, config=stylemix.SegmentConfig(**options)))
    prof.disable()
    wall = time.perf_counter() - t0
    stages = {k: sum(s.meta["timing_s"][k] for s in segs) / len(segs) for k in segs[0].meta["timing_s"]}
    result["segment_many"] = {"wall_s_per_image": wall / len(seeds), "stages_s_per_image": stages,
                              **summarize(prof, len(seeds), args.top)}

    tmp = Path(tempfile.mkdtemp())
    try:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        export_dataset(G, seeds, tmp / "DS", format=args.format, progress=False, **options)
        prof.disable()
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp)
    result["export_dataset"] = {"wall_s_per_image": wall / len(seeds), **summarize(prof, len(seeds), args.top)}
    result["load_average_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name in ("segment_many", "export_dataset"):
        r = result[name]
        print(f"\n== {name}: {r['wall_s_per_image']:.3f} s / image (profiled)")
        if "stages_s_per_image" in r:
            print("   stages:", {k: round(v, 3) for k, v in r["stages_s_per_image"].items()})
        for k, v in r["steps_cum_s_per_image"].items():
            print(f"   {v:8.4f} s  (cumulative)  {k}")
        for k, v in r["groups_share"].items():
            print(f"   {v:6.1%}  {k}")
        for row in r["top_own_time"][:15]:
            print(f"   {row['own_s_per_image']:8.4f} s  {row['calls_per_image']:7.1f} calls  {row['function']}")
    print("load average before / after:", result["load_average_before"], result["load_average_after"])


if __name__ == "__main__":
    main()
