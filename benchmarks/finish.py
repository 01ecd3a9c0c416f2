"""What one image's finish costs (the boundary stage and the component cleaning), on its real inputs.

    python benchmarks/finish.py --seeds 300-339 --repeat 3 --out benchmarks/results/finish.json
    PYTHONPATH=../old python benchmarks/finish.py ...   # the same inputs through another checkout's code

Renders the seeds once at the defaults and keeps what ``stages.finish_foreground`` receives for each (the bank's
foreground probability at 32 px, the image, its 64 px feature maps), then times, per image and on one thread (as
the pipeline runs it), ``finish_foreground`` whole and its two parts, ``refine.refine_boundary`` and
``postprocess.clean_labels``. Each image's time is its fastest of ``--repeat`` runs (a shared machine's load only
ever adds), averaged over the seeds. ``--inputs F`` keeps the captured inputs in ``F`` (or reads them from it when
it exists), so that two checkouts time the same inputs; with ``--check`` the outputs must equal those stored with
the inputs, byte for byte.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys
import time
from pathlib import Path

import numpy as np

import stylemix
from stylemix.cluster import blas_limit, thread_limit
from stylemix.io import parse_seeds
from stylemix.postprocess import clean_labels
from stylemix.refine import RefineConfig, binary, refine_boundary
from stylemix.stages import finish_foreground

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_throughput import report  # noqa: E402


def capture(seeds: list[int], network: str | None = None) -> list[dict]:
    """The inputs (and outputs) of ``finish_foreground`` for each seed's default ``segment`` (``network``: a generator
    for :func:`stylemix.load_generator`, default the embedded one)."""
    segment_module = importlib.import_module("stylemix.segment")
    G = stylemix.load_generator(network)
    inputs, original = [], segment_module.finish_foreground

    def keep(prob, size, guide, **kw):
        out = original(prob, size, guide, **kw)
        inputs.append({"prob": np.asarray(prob).copy(), "size": size, "guide": np.asarray(guide).copy(), "kw": kw,
                       "labels": np.asarray(out[0]).copy(), "alpha": out[1].copy()})
        return out
    segment_module.finish_foreground = keep
    try:
        for s in seeds:
            stylemix.segment(G, s)
    finally:
        segment_module.finish_foreground = original
    return inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default=None, help="generator (default: the embedded default)")
    ap.add_argument("--seeds", default="300-339")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--inputs", default=None, help="pickle of the captured inputs: written, or read if it exists")
    ap.add_argument("--check", action="store_true", help="fail unless the outputs equal the stored ones")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.inputs and Path(args.inputs).is_file():
        inputs = pickle.loads(Path(args.inputs).read_bytes())
    else:
        inputs = capture(parse_seeds(args.seeds), args.network)
        if args.inputs:
            Path(args.inputs).write_bytes(pickle.dumps(inputs, protocol=5))
    times: dict[str, list[list[float]]] = {"finish_foreground": [], "refine_boundary": [], "clean_labels": []}
    same = True
    with thread_limit(1), blas_limit(1):
        finish_foreground(inputs[0]["prob"], inputs[0]["size"], inputs[0]["guide"], **inputs[0]["kw"])  # warm-up
        for _ in range(args.repeat):
            for name in times:
                times[name].append([])
            for x in inputs:
                t = time.perf_counter()
                labels, alpha = finish_foreground(x["prob"], x["size"], x["guide"], **x["kw"])
                times["finish_foreground"][-1].append(time.perf_counter() - t)
                same &= bool(np.array_equal(labels, x["labels"]) and np.array_equal(alpha, x["alpha"]))
                t = time.perf_counter()
                matte = refine_boundary(x["guide"], x["prob"].astype(np.float32),
                                        RefineConfig(method=x["kw"]["boundary"]), x["kw"].get("features"))
                times["refine_boundary"][-1].append(time.perf_counter() - t)
                mask = binary(matte)
                t = time.perf_counter()
                clean_labels(mask, x["kw"]["min_pixels"])
                times["clean_labels"][-1].append(time.perf_counter() - t)
    ms = {name: round(float(np.min(np.asarray(v), axis=0).mean()) * 1e3, 2) for name, v in times.items()}
    result = {"command": " ".join(["python", "benchmarks/finish.py"] + sys.argv[1:]), "stylemix": stylemix.__file__,
              "images": len(inputs), "repeat": args.repeat, "ms_per_image_fastest_of_repeats": ms,
              "outputs_equal_stored": same}
    report(result, args.out)
    if args.check and not same:
        sys.exit("finish outputs differ from the stored ones")


if __name__ == "__main__":
    main()
