"""Instance mode vs whole-image fg/bg on MobileStyleGAN faces, scored against the pseudo ground truth.

    python benchmarks/instances.py                          # seeds 0-15, current SegmentConfig defaults
    python benchmarks/instances.py --seeds 0-99 --out runs/instances.json

For each seed, one :func:`stylemix.segment_many` pass gives both results from the same variants: the whole-image
foreground and the instances of the detector's ``person`` boxes. The instance mode's prediction is the *main
person*: the kept person instance with the largest area (an empty mask when none is kept). Both are scored with
:func:`stylemix.metrics.mask_scores` against ``seedSSSS_mask.png`` of the eval folder (means over images, as
``stylemix eval``). Writes a JSON with the summary, per-seed scores and instance counts. Public API only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-15", help="seeds, e.g. 0-15 (NVlabs syntax)")
    ap.add_argument("--detector", default=str(SHARED / "models" / "yolov8n-int8" / "yolov8n_int8.tflite"))
    ap.add_argument("--gt", default=str(SHARED / "eval" / "mobilestylegan-ffhq"), help="eval folder")
    ap.add_argument("--classes", default="person")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", default=str(REPO / "runs" / "instances.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import stylemix
    from stylemix import io, metrics

    seeds = io.parse_seeds(args.seeds)
    G = stylemix.load_generator("mobilestylegan-ffhq")
    whole, inst, per_seed = {}, {}, {}
    t0 = time.perf_counter()
    config = stylemix.SegmentConfig(instances=stylemix.InstanceConfig(classes=args.classes))
    for seg in stylemix.segment_many(G, seeds, detector=args.detector, config=config):
        gt = io.read_png(Path(args.gt) / f"seed{seg.seed:04d}_mask.png") > 127
        kept = [r for r in seg.instance_records if r.kept]
        main_person = max(kept, key=lambda r: r.area, default=None)
        pred = seg.instances == main_person.id if main_person else np.zeros_like(seg.foreground)
        whole[seg.seed] = metrics.mask_scores(seg.foreground, gt)
        inst[seg.seed] = metrics.mask_scores(pred, gt)
        per_seed[f"seed{seg.seed:04d}"] = {
            "whole_image": _rounded(whole[seg.seed]), "main_instance": _rounded(inst[seg.seed]),
            "detections": len(seg.instance_records), "instances": len(kept),
            "records": [{k: r.as_dict()[k] for k in ("id", "score", "box", "area", "foreground_margin", "reason")}
                        for r in seg.instance_records],
        }
        print(f"seed {seg.seed:4d}  whole mIoU {whole[seg.seed]['miou']:.4f}  instance mIoU "
              f"{inst[seg.seed]['miou']:.4f}  instances {len(kept)}/{len(seg.instance_records)}", flush=True)
    report = {
        "command": "python benchmarks/instances.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seeds": args.seeds, "detector": os.path.basename(args.detector), "classes": args.classes,
        "settings": stylemix.SegmentConfig().resolve(G).as_dict(),
        "whole_image": _rounded(metrics.summarize(whole)),
        "main_instance": _rounded(metrics.summarize(inst)),
        "detections": sum(v["detections"] for v in per_seed.values()),
        "instances": sum(v["instances"] for v in per_seed.values()),
        "merged": sum(r["reason"].startswith("same object") for v in per_seed.values() for r in v["records"]),
        "wall_s": round(time.perf_counter() - t0, 1), "threads": args.threads,
        "machine": platform.processor() or platform.machine(), "stylemix": stylemix.__version__,
        "per_seed": per_seed,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for mode in ("whole_image", "main_instance"):
        s = report[mode]
        print(f"{mode:>14}: mIoU {s['miou']:.4f}  trimap IoU {s['trimap_iou']:.4f}  fg IoU {s['fg_iou']:.4f}")
    print(f"wrote {out}")
    return report


def _rounded(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


if __name__ == "__main__":
    main()
