"""Where one ``segment`` call's time goes against generating the same image, and what the 1.25x goal leaves.

    python benchmarks/segment_stages.py --seeds 300-315 --out benchmarks/results/segment_stages.json
    python benchmarks/segment_stages.py --parts none ...      # the per-image consensus (a generator without a bank)
    python benchmarks/segment_stages.py --busy 1 ...          # with a competing process ('while True: pass')
    python benchmarks/segment_stages.py --device cuda ...     # on a GPU (bin/gpu-check's machine)

Per seed, one after the other: generating the image alone (mapping, synthesis, NVIDIA's uint8 conversion, on the
host: what ``benchmarks/export_throughput.py`` calls "generate one image, no file"), then ``stylemix.segment`` of
the same seed at the defaults. Inside ``segment`` the pipeline's stages are timed by wrapping the functions it
calls (wall clock, no profiler, so the stages keep their real cost): the latents, the prefix states, the base image
with its feature maps, the variant stack, the consensus k-means, the part bank's step and the finish (boundary,
cleaning); on a GPU each stage waits for its kernels at both ends. Medians over the seeds; "other" is the call's
median less the stages' medians.

The budget line answers "how much may stylemix's own work cost": ``goal x generation - (prefixes + base image)``,
the base image being the generation that ``segment`` cannot skip, set against what that work costs now.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import stylemix
from stylemix.errors import StylemixError
from stylemix.io import parse_seeds
from stylemix.mixing import seed_to_z
from stylemix.render import generator_device, to_uint8

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_throughput import report  # noqa: E402

# (stage, module, attribute): the functions segment() reaches through these module attributes.
STAGES = [("latents (mapping of the base and variant z)", "stylemix.render", "style_latents"),
          ("prefix states of the crossovers", "stylemix.render", "synthesis_prefixes"),
          ("base image and its feature maps", "stylemix.render", "base_image"),
          ("variant stack", "stylemix.render", "variant_stack"),
          ("consensus k-means and votes", "stylemix.sources", "foreground_probability"),
          ("part bank step", "stylemix.parts", "PartStep.__call__"),
          ("finish (boundary, cleaning)", "stylemix.segment", "finish_foreground")]
BASE = ("prefix states of the crossovers", "base image and its feature maps")


def timed(fn: Callable, times: list[float], sync: Callable[[], None]) -> Callable:
    """``fn`` appending its wall time to ``times``, the outermost call only (``variant_stack`` calls itself);
    ``sync`` waits for a GPU's queued kernels at both ends, so that each stage is charged its own."""
    depth = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        sync()
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            depth[0] -= 1
            if not depth[0]:
                sync()
                times.append(time.perf_counter() - t0)
    return wrapper


def instrument(sync: Callable[[], None]) -> dict[str, list[float]]:
    """Wrap :data:`STAGES` in place; returns ``{stage: [seconds per call]}``, filled as segment() runs."""
    times: dict[str, list[float]] = {}
    for name, module, attr in STAGES:
        owner: Any = importlib.import_module(module)
        *path, leaf = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        times[name] = []
        setattr(owner, leaf, timed(getattr(owner, leaf), times[name], sync))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default=None, help="generator (default: the embedded default)")
    ap.add_argument("--device", default="cpu", help="where the generator runs: cpu, cuda, cuda:N")
    ap.add_argument("--seeds", default="300-315")
    ap.add_argument("--parts", default="auto", choices=["auto", "none"], help="segment()'s parts")
    ap.add_argument("--goal", type=float, default=1.25, help="the ratio segment / generation aimed at")
    ap.add_argument("--busy", type=int, default=0, help="competing processes spinning meanwhile")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    try:
        G = stylemix.load_generator(args.network, device=args.device)
        seeds = parse_seeds(args.seeds)
    except StylemixError as exc:  # a bad network, device or seed range: one line, no traceback
        sys.exit(f"segment_stages: {exc}")
    device = generator_device(G)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def generate(seed: int) -> np.ndarray:
        with torch.inference_mode():
            z = torch.from_numpy(seed_to_z(seed, G.z_dim)).to(device)
            return to_uint8(G.synthesis(G.mapping(z))).cpu().numpy()

    generate(seeds[0])
    stylemix.segment(G, seeds[0], parts=args.parts)  # warm-up: imports, the bfloat16 copy, thread pools
    stages = instrument(sync)
    gen, seg = [], []
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    load_before = os.getloadavg()
    try:
        for seed in seeds:
            for fn, out in ((lambda: generate(seed), gen),
                            (lambda: stylemix.segment(G, seed, parts=args.parts), seg)):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                out.append(time.perf_counter() - t0)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    load_after = os.getloadavg()
    ms = {name: 1e3 * statistics.median(v) for name, v in stages.items() if v}
    generation, segment = 1e3 * statistics.median(gen), 1e3 * statistics.median(seg)
    base = sum(ms.get(name, 0.0) for name in BASE)
    own = segment - base
    rows = {"generate one image, no file": generation, "segment": segment, **ms,
            "other (segment less its stages)": segment - sum(ms.values())}
    for name, value in rows.items():
        print(f"{name:48s} {value:8.1f} ms", flush=True)
    budget = args.goal * generation - base
    print(f"segment / generation {segment / generation:.3f}; stylemix's own work {own:.1f} ms, the {args.goal}x goal "
          f"leaves {budget:.1f} ms")
    report({"command": " ".join(["python", "benchmarks/segment_stages.py"] + sys.argv[1:]),
            "generator": getattr(G, "family", type(G).__name__), "device": str(device), "seeds": args.seeds,
            "parts": args.parts, "torch_threads": torch.get_num_threads(), "busy_processes": args.busy,
            "load_average_before": load_before, "load_average_after": load_after, "median_ms": rows,
            "ratio_segment_to_generation": segment / generation, "own_work_ms": own,
            "goal": args.goal, "own_work_budget_ms": budget}, args.out)


if __name__ == "__main__":
    main()
