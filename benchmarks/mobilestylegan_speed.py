"""Per-image time of the MobileStyleGAN torch port vs OpenVINO f32 on the same IR, at the same thread count.

Medians of ``--reps`` timed calls after one warm-up; only the public API is timed.

    python benchmarks/mobilestylegan_speed.py [--threads 1] [--reps 5]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch

from stylemix.generators import load_generator
from stylemix.generators.mobilestylegan import find_ir_dir


def median_time(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenVINO CPU threads (default 1)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    parser.add_argument("--device", default="cpu", help="torch device for the port (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    G = load_generator("mobilestylegan-ffhq", device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    z = torch.from_numpy(np.random.RandomState(0).randn(9, 512).astype(np.float32)).to(args.device)
    rows: list[tuple[str, float]] = []
    with torch.no_grad():
        ws = G.mapping(z)
        base, variants = ws[:1], ws[1:]
        crossover = G.style_layout.default_crossover
        variants[:, :crossover] = base[:, :crossover]

        def timed(label: str, fn: Callable[[], object], per: int = 1) -> None:
            rows.append((label, median_time(lambda: (fn(), sync()), args.reps) / per))

        try:
            import openvino as ov
        except ImportError:
            timed("torch synthesis, batch 1", lambda: G.synthesis(base))
        else:
            # Interleaved, so that load from other users of a shared machine hits both alike.
            core = ov.Core()
            config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads}
            compiled = core.compile_model(core.read_model(str(find_ir_dir() / "SynthesisNetwork.xml")), "CPU",
                                          config)
            w = base[:, 0].cpu().numpy()
            run_torch, run_ov = (lambda: (G.synthesis(base), sync())), (lambda: compiled([w]))
            run_torch(), run_ov()
            pairs = [(median_time(run_torch, 1), median_time(run_ov, 1)) for _ in range(args.reps)]
            rows.append(("torch synthesis, batch 1", float(np.median([p[0] for p in pairs]))))
            rows.append(("OpenVINO f32 synthesis, batch 1 (interleaved with the line above)",
                         float(np.median([p[1] for p in pairs]))))
        timed("torch synthesis, batch 8 (per image)", lambda: G.synthesis(variants), per=8)
        state = G.synthesis_prefix(base, crossover)
        timed(f"torch suffix after prefix({crossover}), 8 variants (per image)",
              lambda: G.synthesis_suffix(state, variants), per=8)
        for r in (256, 128, 64):
            timed(f"torch suffix resolution={r}, 8 variants (per image)",
                  lambda: G.synthesis_suffix(state, variants, resolution=r), per=8)
        for r in (256, 128, 64):
            timed(f"torch features({r}), batch 1", lambda: G.features(base, r))
    print(f"threads={args.threads} device={args.device}")
    for label, seconds in rows:
        print(f"{label:68s} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
