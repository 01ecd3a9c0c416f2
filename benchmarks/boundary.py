"""Boundary quality of each refinement of the same region decisions, and of a supervised background remover.

    python benchmarks/boundary.py                                   # seeds 0-99 -> benchmarks/results/boundary.json
    python benchmarks/boundary.py --seeds 0-3 --out /tmp/b.json     # smoke check
    python benchmarks/boundary.py --isnet /tmp/isnet/package/dist   # + the ISNet row (npm @imgly/background-removal-data)

Per seed the method's stages run once (:func:`stylemix.segment.style_latents`, ``render_variants``,
``consensus_foreground``); every :data:`stylemix.refine.METHODS` entry then turns the same foreground probability
into a mask (:func:`stylemix.refine.refine_boundary`, then the pipeline's small-component cleaning), so rows differ
only in the boundary stage. Scoring follows benchmarks/quality.py (area reduction to the ground truth's 256 px,
``> 0.5``): mIoU, trimap IoU at bands 1, 3 and 5 px, boundary F-score at 2 px (``stylemix.metrics``). The tuning
seeds were 0-49, so the table shows seeds 0-49, 50-99 and all side by side. Each row's ``ms`` is its own cost per
image (refinement + cleaning, one process, median over seeds).

The ISNet row (benchmark only, never a dependency: the model is MIT, the npm package AGPL) runs the ``medium``
model of ``@imgly/background-removal-data`` (its ``dist/`` chunks joined as ``dist/resources.json`` lists them)
with onnxruntime on the ground truth's 256 px image upscaled bilinearly to 1024 px, normalised as the imgly
library does (``(x - 128) / 256``), output ``> 0.5``. Its probabilities are cached in ``--isnet-cache``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality import DEFAULT_GT, load_gt, to_gt_size  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "boundary.json"
BANDS = (1, 3, 5)
TOLERANCE = 2.0
SPLITS = {"0-49": range(0, 50), "50-99": range(50, 100)}


def scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """All boundary metrics of ``pred`` against ``gt`` (``bool [h, w]``, same size)."""
    from stylemix import metrics
    out = {"miou": metrics.mask_scores(pred, gt)["miou"], **metrics.trimap_ious(pred, gt, BANDS)}
    out["boundary_f"] = metrics.boundary_fscore(pred, gt, TOLERANCE)
    return out


def isnet_model(dist: Path, name: str = "medium") -> bytes:
    """The ONNX bytes of the imgly model ``name``, joined from the chunks ``dist/resources.json`` lists."""
    resources = json.loads((dist / "resources.json").read_text())
    return b"".join((dist / c["hash"]).read_bytes() for c in resources[f"/models/{name}"]["chunks"])


def isnet_probabilities(dist: Path, gt_dir: Path, seeds: list[int], cache: Path, threads: int
                        ) -> dict[int, np.ndarray]:
    """ISNet foreground probability ``float32 [256, 256]`` of each seed's ground-truth image (cached)."""
    import cv2
    cache.mkdir(parents=True, exist_ok=True)
    session = None
    out = {}
    for s in seeds:
        path = cache / f"seed{s:04d}.npy"
        if not path.exists():
            if session is None:
                import onnxruntime as ort
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                session = ort.InferenceSession(isnet_model(dist), opts, providers=["CPUExecutionProvider"])
            img = cv2.cvtColor(cv2.imread(str(gt_dir / f"seed{s:04d}_img.png")), cv2.COLOR_BGR2RGB)
            x = cv2.resize(img, (1024, 1024), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            x = ((x - 128) / 256).transpose(2, 0, 1)[None]
            prob = session.run(["output"], {"input": x})[0][0, 0]
            np.save(path, cv2.resize(prob, img.shape[1::-1], interpolation=cv2.INTER_AREA).astype(np.float32))
        out[s] = np.load(path)
    return out


def summary(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = next(iter(per_seed.values())).keys()
    out = {}
    for name, seeds in {**SPLITS, "all": per_seed.keys()}.items():
        rows = [per_seed[s] for s in seeds if s in per_seed]
        if rows:
            out[name] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-99")
    ap.add_argument("--gt", default=str(DEFAULT_GT))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--methods", default=",".join(("guided", "cascade", "matting")))
    ap.add_argument("--isnet", default=None, help="dist/ folder of @imgly/background-removal-data")
    ap.add_argument("--isnet-cache", default="/tmp/stylemix_isnet")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import stylemix
    from stylemix import io, mixing, refine
    from stylemix.postprocess import clean_labels
    from stylemix.segment import SegmentConfig, consensus_foreground, render_variants, style_latents, to_uint8
    from stylemix.stages import anchor_vote

    seeds = io.parse_seeds(args.seeds)
    gts = load_gt(args.gt, seeds)
    G = stylemix.load_generator()
    cfg = SegmentConfig().resolve(G)
    methods = [m for m in args.methods.split(",") if m]
    per_seed: dict[str, dict[int, dict[str, float]]] = {m: {} for m in methods}
    cost: dict[str, list[float]] = {m: [] for m in methods}
    t_start = time.perf_counter()
    for s in seeds:
        with torch.inference_mode():
            ws_base, ws_mix, crossovers = style_latents(G, s, cfg)
            image, stack = render_variants(G, ws_base, ws_mix, crossovers, cfg)
            image = to_uint8(image)[0].numpy()
        random_state = int(mixing.stream(s, mixing.STREAM_KMEANS).integers(2 ** 31))
        prob, _ = consensus_foreground(stack.float().numpy(), cfg.consensus, random_state,
                                       anchor_vote(cfg.foreground_rule, cfg.frame_penalty), **cfg.kmeans_options())
        for m in methods:
            t0 = time.perf_counter()
            alpha = refine.refine_boundary(image, prob, refine.RefineConfig(method=m))
            mask = clean_labels(refine.binary(alpha), int(round(cfg.min_area * alpha.size))) == 1
            cost[m].append(time.perf_counter() - t0)
            per_seed[m][s] = scores(to_gt_size(mask, gts[s].shape), gts[s])
        print(s, {m: round(per_seed[m][s]["trimap_iou_3"], 3) for m in methods}, flush=True)
    rows = {f"stylemix boundary={m}": {"summary": summary(per_seed[m]), "ms_per_image": 1000 * float(np.median(cost[m])),
                                       "per_seed": per_seed[m]} for m in methods}
    if args.isnet:
        probs = isnet_probabilities(Path(args.isnet), Path(args.gt), seeds, Path(args.isnet_cache), args.threads)
        isnet = {s: scores(probs[s] > 0.5, gts[s]) for s in seeds}
        rows["ISNet (imgly medium, supervised)"] = {"summary": summary(isnet), "per_seed": isnet}
    report = {"command": " ".join(["python", *sys.argv]), "seeds": args.seeds, "version": stylemix.__version__,
              "elapsed_s": time.perf_counter() - t_start, "bands": BANDS, "tolerance_px": TOLERANCE, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    keys = ("miou", *(f"trimap_iou_{b}" for b in BANDS), "boundary_f")
    print("| row | " + " | ".join(keys) + " | ms/image |")
    for name, row in rows.items():
        cells = [" / ".join(f"{row['summary'][sp][k]:.3f}" for sp in ("0-49", "50-99", "all") if sp in row["summary"])
                 for k in keys]
        print(f"| {name} | " + " | ".join(cells) + f" | {row.get('ms_per_image', float('nan')):.0f} |")


if __name__ == "__main__":
    main()
