"""The README's picture: seeds 0-3 of the default generator at the defaults, image / mask / overlay per seed.

    python benchmarks/readme_figure.py --out docs/images/readme_overlays.png

It is what ``stylemix segment --seeds 0-3`` writes, laid out as one contact sheet (160 px tiles, six columns), and
prints each seed's mIoU against the pseudo ground truth of ../shared/eval/mobilestylegan-ffhq when it is there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import stylemix
from stylemix import visualize
from stylemix.io import parse_seeds
from stylemix.metrics import mask_scores

ROOT = Path(__file__).resolve().parents[1]
GT = ROOT.parent / "shared" / "eval" / "mobilestylegan-ffhq"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-3")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "readme_overlays.png")
    args = ap.parse_args()
    G = stylemix.load_generator()
    tiles, captions = [], []
    for seg in stylemix.segment_many(G, parse_seeds(args.seeds)):
        mask = seg.foreground.astype(np.uint8) * 255
        tiles += [seg.image, mask, visualize.overlay(seg.image, seg.foreground.astype(np.int32))]
        captions += [f"seed {seg.seed} {name}" for name in ("image", "mask", "overlay")]
        gt_path = GT / f"seed{seg.seed:04d}_mask.png"
        if gt_path.is_file():
            gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE) > 127
            print(f"seed {seg.seed}: mIoU {mask_scores(seg.foreground, gt)['miou']:.3f}")
    sheet = visualize.contact_sheet(tiles, columns=6, captions=captions, tile=160)
    cv2.imwrite(str(args.out), sheet[:, :, ::-1])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
