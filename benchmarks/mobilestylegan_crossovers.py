"""Which MobileStyleGAN slots carry layout and which carry colour: a contact sheet and two numbers per crossover.

For base seeds B and variant seeds V, renders ``ws = [w_B on slots < c, w_V on slots >= c]`` for several crossovers
``c`` and reports, against the base image (all at 128 px):

* ``structure``: Pearson correlation of the grayscale gradient magnitude (1 = same edges: pose, outline, hair shape);
* ``colour``: mean absolute difference of the 16 px thumbnails in uint8 levels (how much the colours move).

Writes ``docs/images/mobilestylegan_crossovers.png``: one block per base seed, rows = crossover, first column = base,
then one column per variant seed (the same variant seeds in every row).

    python benchmarks/mobilestylegan_crossovers.py [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from stylemix.generators import load_generator, resize_image

BASE_SEEDS = (0, 1, 2)
VARIANT_SEEDS = (1000, 1001, 1002, 1003)
SHEET_CROSSOVERS = (1, 4, 5, 6, 7, 10, 13, 16)
METRIC_CROSSOVERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 16, 19, 22)
TILE = 96


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [-1, 1] -> ``uint8 [B, H, W, 3]`` (the eval set's truncating conversion)."""
    return np.clip((img.permute(0, 2, 3, 1).numpy() + 1) * 127.5, 0, 255).astype(np.uint8)


def structure(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of grayscale gradient magnitudes of two ``uint8 [H, W, 3]`` images."""
    def grad(x: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)).ravel()
    return float(np.corrcoef(grad(a), grad(b))[0, 1])


def colour(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |difference| of the 16 px area thumbnails of two ``uint8 [H, W, 3]`` images, in levels."""
    thumb = lambda x: cv2.resize(x, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)  # noqa: E731
    return float(np.abs(thumb(a) - thumb(b)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default="docs/images/mobilestylegan_crossovers.png", help="contact sheet path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    G = load_generator("mobilestylegan-ffhq")
    seed_z = lambda s: torch.from_numpy(np.random.RandomState(s).randn(1, 512).astype(np.float32))  # noqa: E731
    crossovers = sorted(set(SHEET_CROSSOVERS) | set(METRIC_CROSSOVERS))
    blocks, metrics = [], {c: [] for c in crossovers}
    with torch.no_grad():
        ws_var = torch.cat([G.mapping(seed_z(s)) for s in VARIANT_SEEDS])
        for base in BASE_SEEDS:
            ws_base = G.mapping(seed_z(base))
            base_img = to_uint8(resize_image(G.synthesis(ws_base), 128))[0]
            rows = []
            for c in crossovers:
                mixed = torch.cat([ws_base[:, :c].expand(len(ws_var), -1, -1), ws_var[:, c:]], dim=1)
                imgs = to_uint8(G.synthesis_suffix(G.synthesis_prefix(ws_base, c), mixed, resolution=128))
                metrics[c] += [(structure(base_img, v), colour(base_img, v)) for v in imgs]
                if c in SHEET_CROSSOVERS:
                    tiles = [base_img, *imgs]
                    row = np.concatenate([cv2.resize(t, (TILE, TILE), interpolation=cv2.INTER_AREA)
                                          for t in tiles], axis=1)
                    label = np.full((TILE, 40, 3), 255, np.uint8)
                    cv2.putText(label, f"{c}", (4, TILE // 2 + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                                cv2.LINE_AA)
                    rows.append(np.concatenate([label, row], axis=1))
            blocks.append(np.concatenate(rows, axis=0))
            print(f"base seed {base} done", flush=True)
    gap = np.full((blocks[0].shape[0], 12, 3), 255, np.uint8)
    sheet = np.concatenate([x for b in blocks for x in (b, gap)][:-1], axis=1)
    from PIL import Image  # palette PNG keeps the sheet well under 1 MB
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} kB, {sheet.shape[1]}x{sheet.shape[0]})")
    print("crossover  structure(mean)  colour(mean levels)   n")
    for c in crossovers:
        s, col = np.array(metrics[c]).T
        print(f"{c:9d}  {s.mean():14.3f}  {col.mean():19.1f}  {len(s):3d}")


if __name__ == "__main__":
    main()
