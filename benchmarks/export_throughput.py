"""What an export costs against generating and saving the same images, side by side in one process.

    python benchmarks/export_throughput.py --seeds 200-207 --batch-sizes 1,8 --repeat 2 \\
        --out benchmarks/results/export_throughput.json
    python benchmarks/export_throughput.py ... --busy 1        # with a competing process ('while True: pass')
    python benchmarks/export_throughput.py ... --tune-allocator  # glibc's allocator tuned, as the stylemix command

Each row is timed ``--repeat`` times, the rows interleaved within a repeat (a shared machine's load hits them
alike), and the median is reported as images/s and as a ratio to the reference:

* ``generate + save``: mapping and 1024 px synthesis of the seeds, ``--gen-batch`` per call, the NVIDIA uint8
  conversion, PNG-encoded and written (what a user pays for the images alone; the reference of the export rows);
* ``generate one image``: one seed per call, saved as above (the reference of ``segment one image``); and
  ``generate one image, no file``: the same without the PNG (``segment`` writes nothing, so its ratio to this row
  is reported too: the stricter one);
* ``export, batch B``: ``export_dataset(format=png)`` of the same seeds (also reported against ``generate one
  image``, the same images generated and saved one per call, when that row ran) with ``batch_size=B`` (images, masks,
  manifest, card); ``segment_many, batch B``: the same without files; ``... N = 16`` with 16 variants;
* ``segment one image``: ``stylemix.segment(G, seed)`` per seed, at the defaults (a batch of one; on the default
  generator its part bank decides the foreground), with ``parts="none"`` (the per-image consensus: what a
  generator without a bank pays) and with ``variants=16``.

Beside the wall time, each row's CPU time (``time.process_time``: every thread of this process) is reported
with its own ratio: on a shared machine it moves far less with the other jobs' load than the wall time does (it
still counts the threads' spin-waits). Peak memory is the process's resident high-water mark (``ru_maxrss``) after each row's first run, the rows run in
order of growing batch, so each value bounds that row. The load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import stylemix
from stylemix.backend import tune_host_allocator
from stylemix.export import export_dataset
from stylemix.io import parse_seeds
from stylemix.mixing import seed_to_z
from stylemix.render import generator_device, to_uint8

REPO = Path(__file__).resolve().parents[1]


def generate_and_save(G, seeds: list[int], outdir: Path | None, batch: int) -> None:
    """Generate ``seeds``, ``batch`` per call, and write each as a PNG into ``outdir`` (``None``: no file)."""
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for i in range(0, len(seeds), batch):
            chunk = seeds[i:i + batch]
            z = torch.from_numpy(np.concatenate([seed_to_z(s, G.z_dim) for s in chunk])).to(generator_device(G))
            images = to_uint8(G.synthesis(G.mapping(z))).cpu().numpy()
            for s, img in zip(chunk, images) if outdir is not None else ():
                ok, png = cv2.imencode(".png", img[:, :, ::-1])
                (outdir / f"seed{s:04d}.png").write_bytes(png.tobytes())


def report(result: dict, out: str | None) -> None:
    """Print ``result`` as JSON and, with ``out``, write it there (its folder made)."""
    print(json.dumps(result, indent=1))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default=None, help="generator (default: the embedded default)")
    ap.add_argument("--device", default="cpu", help="where the generator runs: cpu, cuda, cuda:N (bin/gpu-check)")
    ap.add_argument("--seeds", default="200-207")
    ap.add_argument("--batch-sizes", default="1,8", help="SegmentConfig.batch_size values of the export rows")
    ap.add_argument("--gen-batch", type=int, default=8, help="images per synthesis call of the reference")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="competing processes spinning meanwhile")
    ap.add_argument("--no-n16", action="store_true", help="skip the N = 16 rows")
    ap.add_argument("--no-single", action="store_true", help="skip the one-image rows (segment vs generate)")
    ap.add_argument("--no-segment-many", action="store_true", help="skip the segment_many rows (no files)")
    ap.add_argument("--tune-allocator", action="store_true",
                    help="tune glibc's allocator first, as the stylemix command does (backend.tune_host_allocator)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tuned = args.tune_allocator and tune_host_allocator()
    G = stylemix.load_generator(args.network, device=args.device)
    sync = torch.cuda.synchronize if generator_device(G).type == "cuda" else (lambda: None)
    seeds = parse_seeds(args.seeds)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    best = max(sizes)
    # Warm-up: imports, thread pools, allocator.
    list(stylemix.segment_many(G, seeds[:2], config=stylemix.SegmentConfig(batch_size=2)))
    generate_and_save(G, seeds[:1], Path(tempfile.mkdtemp()), 1)

    def in_tmp(fn):
        def run():
            tmp = Path(tempfile.mkdtemp())
            try:
                fn(tmp / "out")
            finally:
                shutil.rmtree(tmp)
        return run

    rows: dict[str, tuple[str, object]] = {  # name -> (reference row, callable)
        "generate + save": ("", in_tmp(lambda out: generate_and_save(G, seeds, out, args.gen_batch))),
    }
    if not args.no_single:
        rows["generate one image"] = ("", in_tmp(lambda out: generate_and_save(G, seeds, out, 1)))
        rows["generate one image, no file"] = ("", lambda: generate_and_save(G, seeds, None, 1))
        rows["segment one image"] = ("generate one image", lambda: [stylemix.segment(G, s) for s in seeds])
        rows["segment one image, parts none"] = ("generate one image", lambda: [
            stylemix.segment(G, s, parts="none") for s in seeds])
    if not args.no_n16 and not args.no_single:
        n16 = stylemix.SegmentConfig(variants=16)
        rows["segment one image, N = 16"] = ("generate one image",
                                             lambda: [stylemix.segment(G, s, config=n16) for s in seeds])
    for b in sorted(sizes):
        if not args.no_segment_many:
            rows[f"segment_many, batch {b}"] = ("generate + save", lambda b=b: list(
                stylemix.segment_many(G, seeds, config=stylemix.SegmentConfig(batch_size=b))))
        rows[f"export, batch {b}"] = ("generate + save", in_tmp(lambda out, b=b: export_dataset(
            G, seeds, out, format="png", progress=False, batch_size=b)))
    if not args.no_n16:
        if not args.no_segment_many:
            rows[f"segment_many, batch {best}, N = 16"] = ("generate + save", lambda: list(
                stylemix.segment_many(G, seeds, config=stylemix.SegmentConfig(batch_size=best, variants=16))))
        rows[f"export, batch {best}, N = 16"] = ("generate + save", in_tmp(lambda out: export_dataset(
            G, seeds, out, format="png", progress=False, batch_size=best, variants=16)))

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}  # CPU seconds of this process, every thread
    peak: dict[str, float] = {}
    loads: list[tuple[float, float, float]] = []  # after each repeat
    try:
        for r in range(args.repeat):
            for name, (_, fn) in rows.items():
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                sync()  # a GPU's queued kernels belong to the row that launched them
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                if r == 0:
                    peak[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
                print(f"repeat {r}: {name:34s} {len(seeds) / times[name][-1]:6.3f} img/s  load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
            loads.append(os.getloadavg())
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    load_after = os.getloadavg()
    med = {name: statistics.median(v) for name, v in times.items()}
    med_cpu = {name: statistics.median(v) for name, v in cpu.items()}
    table = {}
    for name, (ref, _) in rows.items():
        table[name] = {"images_per_s": len(seeds) / med[name], "median_s": med[name],
                       "ratio_to_" + (ref or "itself"): med[name] / med[ref] if ref else 1.0,
                       "median_cpu_s": med_cpu[name],
                       "cpu_ratio_to_" + (ref or "itself"): med_cpu[name] / med_cpu[ref] if ref else 1.0,
                       "peak_rss_mib_after_first_run": peak[name]}
        # Also against the stricter reference where it was timed: segment writes no file, and on a CPU the same
        # images generated and saved one per call can be faster than eight per call.
        strict = {"generate one image": "generate one image, no file",
                  "generate + save": "generate one image"}.get(ref)
        if strict in med:
            table[name]["ratio_to_" + strict] = med[name] / med[strict]
            table[name]["cpu_ratio_to_" + strict] = med_cpu[name] / med_cpu[strict]
    result = {"command": " ".join(["python", "benchmarks/export_throughput.py"] + sys.argv[1:]),
              "generator": getattr(G, "family", type(G).__name__), "seeds": args.seeds, "repeat": args.repeat,
              "device": str(generator_device(G)), "busy_processes": args.busy, "allocator_tuned": bool(tuned), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_average_before": load_before, "load_average_after_each_repeat": loads,
              "load_average_after": load_after, "rows": table}
    report(result, args.out)


if __name__ == "__main__":
    main()
