"""The consensus picture of docs/method.md: per seed, the image, each clustering's vote, the vote fraction, the mask.

    python benchmarks/consensus_figure.py --seeds 95,37,81

Also prints, per seed, the mIoU of the plain two-way split and of the default (consensus) mask against the pseudo
ground truth, which the caption quotes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

import stylemix
from stylemix import io, mixing, visualize
from stylemix.config import SegmentConfig
from stylemix.foreground import anchor_foreground
from stylemix.metrics import mask_scores
from stylemix.render import render_variants, style_latents
from stylemix.stages import consensus_foreground

ROOT = Path(__file__).resolve().parents[1]
GT = ROOT.parent / "shared" / "eval" / "mobilestylegan-ffhq"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="95,37,81")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "consensus.png"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    G = stylemix.load_generator()
    cfg = SegmentConfig().resolve(G)
    tiles, caps = [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        with torch.inference_mode():
            wb, wm, cr = style_latents(G, seed, cfg)
            stack = render_variants(G, wb, wm, cr, cfg)[1].float().numpy()
        rs = int(mixing.stream(seed, mixing.STREAM_KMEANS).integers(2 ** 31))
        seg = stylemix.segment(G, seed)
        tiles.append(seg.image)
        caps.append(f"seed {seed}")
        votes = []  # (k, labels, vote) of each clustering, recorded by the package's own consensus

        def vote(X, labels, k):
            fg = anchor_foreground(X, labels, k, cfg.foreground_rule, frame_penalty=cfg.frame_penalty)[labels]
            votes.append((k, labels, fg))
            return fg

        prob = consensus_foreground(stack, cfg.consensus, rs, vote, **cfg.kmeans_options())[0]
        for k, labels, fg in votes:
            col = cv2.resize(visualize.colorize(labels + 1), (256, 256), interpolation=cv2.INTER_NEAREST)
            keep = cv2.resize(fg.astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST) > 0
            tiles.append((col * np.where(keep, 1.0, 0.25)[..., None]).astype(np.uint8))  # background votes dimmed
            caps.append(f"k={k} vote (bg dimmed)")
        tiles.append((cv2.resize(prob, (256, 256), interpolation=cv2.INTER_NEAREST) * 255).astype(np.uint8))
        caps.append("vote fraction")
        tiles.append(visualize.overlay(seg.image, seg.foreground.astype(np.int32)))
        caps.append("final mask")
        gt = io.read_png(GT / f"seed{seed:04d}_mask.png") > 127
        plain = stylemix.segment(G, seed, config=stylemix.SegmentConfig(consensus=(2,))).foreground
        print(f"seed {seed}: plain k=2 {mask_scores(plain, gt)['miou']:.2f}  "
              f"default {mask_scores(seg.foreground, gt)['miou']:.2f}")
    sheet = visualize.contact_sheet(tiles, 2 + len(cfg.consensus) + 1, caps, tile=160)
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
