"""The packaged part bank as ``segment(..., parts="default")`` uses it, scored per variant precision.

    python benchmarks/parts_shipped.py                 # seeds 0-99, float32 and auto -> JSON on stdout

``benchmarks/parts.py`` refits its banks; this scores the shipped one (``stylemix/data/mobilestylegan-ffhq.parts``)
without refitting: ``seg.parts`` (1024 px class ids, the pipeline's own finish) reduced to 256 px by the block mode,
confusion over the set, one Hungarian matching for the label set with as many classes as the bank (coarse4), with the helpers and protocol of parts.py
(``../shared/eval/mobilestylegan-ffhq-parts``). Run once per ``SegmentConfig.precision``: whether the bank's part
maps hold when the variants are rendered in bfloat16 (docs/benchmarks.md, Parts).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

import stylemix
from stylemix.io import parse_seeds
from stylemix.parts import packaged_bank_for

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("parts_benchmark", HERE / "parts.py")
PB = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = PB
_spec.loader.exec_module(PB)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-99")
    ap.add_argument("--precisions", default="float32,auto")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    G = stylemix.load_generator("mobilestylegan-ffhq")
    seeds = parse_seeds(a.seeds)
    manifest = json.loads((PB.PARTS_GT / "manifest.json").read_text())
    luts = {s: np.asarray(manifest["label_sets"][s]["lut_from_19"]) for s in ("coarse4", "coarse5")}
    out = {"command": " ".join(["python", "benchmarks/parts_shipped.py"] + sys.argv[1:]), "seeds": a.seeds, "rows": {}}
    for precision in a.precisions.split(","):
        k, resolved = packaged_bank_for(G).n_parts, None
        C19 = np.zeros((k, 19), np.int64)
        for seg in stylemix.segment_many(G, seeds, parts="default", config=stylemix.SegmentConfig(precision=precision)):
            gt19 = cv2.imread(str(PB.PARTS_GT / f"seed{seg.seed:04d}_parts.png"), cv2.IMREAD_UNCHANGED)
            C19 += PB.confusion(PB.block_mode(seg.parts, 256, k), gt19, k, 19)
            resolved = seg.meta["settings"]["precision"]
        row = {}
        for lset, lut in luts.items():
            n = int(lut.max()) + 1
            C = np.stack([C19[:, lut == g].sum(1) for g in range(n)], 1)
            if C.shape[0] == n:
                row[lset] = {m: v for m, v in PB.scores(C, "hungarian").items() if m in ("miou", "pixel_accuracy", "iou")}
        out["rows"][f"{precision} (resolved: {resolved})"] = row
        print(precision, resolved, {s: round(r["miou"], 4) for s, r in row.items()}, file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
