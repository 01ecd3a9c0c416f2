"""How far the masks move with the arithmetic, the thread count and another machine's rounding.

    python benchmarks/reproducibility.py                      # seeds 0-99 of the default generator, every case
    python benchmarks/reproducibility.py --seeds 0-3          # smoke check

Each case segments the same seeds with the default settings and one thing changed, against the ``float32`` case
(variant stacks in float32, torch's default thread count):

* ``bfloat16``: the variant stacks in bfloat16 (what ``precision="auto"`` picks on a CPU with native bfloat16);
* ``float32, 1 thread``: torch on one thread (oneDNN's kernels round differently with the thread count);
* ``float32, ws + 1 ulp``: every mapped style moved by one float32 ulp, standing in for a CPU or GPU whose mapping
  rounds otherwise (the part bank must still apply; the masks move by what the rounding moves them).

Per case: the per-pixel agreement of the full-size masks with the ``float32`` case (mean and worst seed), the IoU of
the two masks (mean and worst), how many seeds give the same mask bytes, and the fg/bg scores against the pseudo
ground truth (:func:`stylemix.metrics.mask_scores`, scored as ``benchmarks/quality.py`` scores: the mask reduced to
the ground truth's size by ``INTER_AREA``, foreground above one half). Writes ``--out`` (JSON) and prints a table.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
import torch

import stylemix
from stylemix import io, metrics
from stylemix.identity import cpu_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DEFAULT_GT, load_gt, to_gt_size  # noqa: E402  (the same scoring as quality.py)

REPO = Path(__file__).resolve().parents[1]


def nudged_mapping(G: Any) -> Callable[..., torch.Tensor]:
    """``G.mapping`` with every output moved one float32 ulp up: another machine's rounding of the same styles."""
    original = G.mapping

    def mapping(z: torch.Tensor, c: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        ws = original(z, c, **kwargs)
        return torch.nextafter(ws, torch.full_like(ws, np.inf))
    return mapping


def masks(G: Any, seeds: list[int], **settings: Any) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Full-size foreground masks ``bool [H, W]`` and each seed's ``foreground_from`` under ``settings``."""
    out, source = {}, {}
    for seg in stylemix.segment_many(G, seeds, config=stylemix.SegmentConfig(**settings)):
        out[seg.seed], source[seg.seed] = seg.foreground, seg.meta["foreground_from"]
    return out, source


def compare(ref: dict[int, np.ndarray], other: dict[int, np.ndarray]) -> dict[str, float]:
    agree = [float((ref[s] == other[s]).mean()) for s in ref]
    iou = [float((ref[s] & other[s]).sum() / max((ref[s] | other[s]).sum(), 1)) for s in ref]
    return {"pixel_agreement_mean": round(float(np.mean(agree)), 6), "pixel_agreement_min": round(min(agree), 6),
            "mask_iou_mean": round(float(np.mean(iou)), 6), "mask_iou_min": round(min(iou), 6),
            "identical_masks": int(sum(a == 1.0 for a in agree)), "seeds": len(agree)}


def scores(found: dict[int, np.ndarray], gts: dict[int, np.ndarray]) -> dict[str, float]:
    per = {s: metrics.mask_scores(to_gt_size(m, gts[s].shape), gts[s]) for s, m in found.items()}
    return {"miou": round(float(np.mean([v["miou"] for v in per.values()])), 4),
            "trimap_iou": round(float(np.mean([v["trimap_iou"] for v in per.values()])), 4),
            "median_miou": round(float(np.median([v["miou"] for v in per.values()])), 4)}


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--seeds", default="0-99", help="Seeds to segment (each needs a ground-truth mask).")
@click.option("--gt", "gt_folder", default=os.fspath(DEFAULT_GT), type=click.Path(file_okay=False),
              help="Pseudo ground-truth masks (seedSSSS_mask.png).")
@click.option("--out", default=os.fspath(REPO / "benchmarks" / "results" / "reproducibility.json"),
              type=click.Path(dir_okay=False), help="The results JSON.")
def main(seeds: str, gt_folder: str, out: str) -> None:
    """Masks under bfloat16, one thread and one-ulp-moved styles, against float32 on torch's threads."""
    t0 = time.time()
    seed_list = io.parse_seeds(seeds)
    gts = load_gt(gt_folder, seed_list)
    G = stylemix.load_generator("mobilestylegan-ffhq").eval()
    threads = torch.get_num_threads()
    ref, ref_from = masks(G, seed_list, precision="float32")
    cases: dict[str, dict[str, Any]] = {"float32": {**scores(ref, gts), "foreground_from": sorted(set(ref_from.values()))}}
    runs: list[tuple[str, Callable[[], tuple[dict[int, np.ndarray], dict[int, str]]]]] = [
        ("bfloat16", lambda: masks(G, seed_list, precision="bfloat16"))]

    def one_thread() -> tuple[dict[int, np.ndarray], dict[int, str]]:
        torch.set_num_threads(1)
        try:
            return masks(G, seed_list, precision="float32")
        finally:
            torch.set_num_threads(threads)

    def moved() -> tuple[dict[int, np.ndarray], dict[int, str]]:
        G.mapping = nudged_mapping(G)
        try:
            return masks(G, seed_list, precision="float32")
        finally:
            del G.mapping  # the instance attribute goes; the class's method is back
    runs += [("float32, 1 thread", one_thread), ("float32, ws + 1 ulp", moved)]
    for name, run in runs:
        found, source = run()
        cases[name] = {**compare(ref, found), **scores(found, gts), "foreground_from": sorted(set(source.values()))}
    result = {"command": shlex.join(["python", "benchmarks/reproducibility.py", *sys.argv[1:]]),
              "cpu": cpu_model(), "torch_threads": threads, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "seeds": seeds, "stylemix": stylemix.__version__,
              "cases": cases, "elapsed_s": round(time.time() - t0, 1)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    for name, c in cases.items():
        line = f"{name:22s} mIoU {c['miou']:.4f}  trimap {c['trimap_iou']:.4f}  median {c['median_miou']:.4f}"
        if "pixel_agreement_mean" in c:
            line += (f"  agreement {c['pixel_agreement_mean']:.6f} (min {c['pixel_agreement_min']:.6f})  "
                     f"mask IoU {c['mask_iou_mean']:.4f} (min {c['mask_iou_min']:.4f})  "
                     f"identical {c['identical_masks']}/{c['seeds']}")
        click.echo(line + f"  [{', '.join(c['foreground_from'])}]")


if __name__ == "__main__":
    main()
