"""The small-component fill of ``postprocess.clean_labels``: the hand-written blob fill against one library call.

    python benchmarks/component_fill.py --seeds 0-99 --out benchmarks/results/component_fill.json

Every seed runs the default pipeline; at its cleaning step the same label map and the same small components are
filled three ways, each timed on the same input, interleaved:

* ``blobs``: the package's ``_fill_blobs`` / ``_fill_locally`` (a blob ringed by one label takes it, the others a
  distance transform of a window around them; the whole-image distance transform when a cap is hit);
* ``edt``: one ``scipy.ndimage.distance_transform_edt(drop, return_indices=True)`` of the whole image (the same
  nearest-kept-pixel rule, ties broken by SciPy);
* ``cv2_labels``: one ``cv2.distanceTransformWithLabels`` (5x5 approximation of the Euclidean distance).

The masks of each are scored against the pseudo ground truth as in ``benchmarks/quality.py`` (256 px, area
reduction), and compared pixel for pixel with ``blobs``. Only the fill is timed: finding the small components is
the same for all three.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import scipy.ndimage

import stylemix
from stylemix import io, metrics, postprocess, stages
from stylemix.io import parse_seeds

REPO = Path(__file__).resolve().parents[1]


def fill_blobs(labels: np.ndarray, drop: np.ndarray) -> np.ndarray:
    out = labels.astype(np.int32)
    if postprocess._fill_blobs(out, drop):
        return out
    return fill_edt(labels, drop)


def fill_edt(labels: np.ndarray, drop: np.ndarray) -> np.ndarray:
    idx = scipy.ndimage.distance_transform_edt(drop, return_distances=False, return_indices=True)
    return labels[idx[0], idx[1]].astype(np.int32)


def fill_cv2(labels: np.ndarray, drop: np.ndarray) -> np.ndarray:
    # Non-zero pixels take the label of their nearest zero pixel; DIST_LABEL_PIXEL numbers the zero (kept) pixels
    # 1, 2, ... in raster order, so a lookup of the kept pixels' values maps labels back to cluster ids.
    _, lab = cv2.distanceTransformWithLabels(drop.view(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.concatenate([[0], labels[~drop]]).astype(np.int32)
    return lut[lab]


METHODS = {"blobs": fill_blobs, "edt": fill_edt, "cv2_labels": fill_cv2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-99")
    ap.add_argument("--gt", default=str(REPO.parent / "shared" / "eval" / "mobilestylegan-ffhq"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "component_fill.json"))
    args = ap.parse_args()
    G = stylemix.load_generator()
    seeds = parse_seeds(args.seeds)
    times = {m: [] for m in METHODS}
    results: dict[str, np.ndarray] = {}
    diffs = {m: [] for m in METHODS}
    original = stages.clean_labels

    def recording(labels, min_area):
        labels = np.asarray(labels)
        drop = postprocess._small_components_host(labels, min_area)
        if not drop.any() or drop.all():
            for m in METHODS:
                results[m] = labels.astype(np.int32)
                times[m].append(0.0)
            return original(labels, min_area)
        for m, fn in METHODS.items():
            t0 = time.perf_counter()
            results[m] = fn(labels, drop)
            times[m].append(time.perf_counter() - t0)
        for m in METHODS:
            diffs[m].append(int((results[m] != results["blobs"]).sum()))
        return results["blobs"]

    stages.clean_labels = recording
    gt_dir = Path(args.gt)
    scores = {m: {} for m in METHODS}
    # One image at a time: its fills are the last ones.
    for seg in stylemix.segment_many(G, seeds, config=stylemix.SegmentConfig(batch_size=1)):
        gt = io.read_png(gt_dir / f"seed{seg.seed:04d}_mask.png") > 127
        for m in METHODS:
            fg = results[m] == 1
            pred = cv2.resize(fg.astype(np.float32), gt.shape[::-1], interpolation=cv2.INTER_AREA) > 0.5
            scores[m][seg.seed] = metrics.mask_scores(pred, gt)
        print(seg.seed, {m: round(times[m][-1] * 1e3, 2) for m in METHODS}, {m: diffs[m][-1] for m in METHODS},
              flush=True)
    stages.clean_labels = original
    summary = {m: {"median_ms": 1e3 * statistics.median(times[m]), "mean_ms": 1e3 * statistics.mean(times[m]),
                   "max_ms": 1e3 * max(times[m]), "pixels_differing_from_blobs_total": sum(diffs[m]),
                   "seeds_differing": sum(d > 0 for d in diffs[m]), **metrics.summarize(scores[m])}
               for m in METHODS}
    out = {"command": " ".join(["python", "benchmarks/component_fill.py"] + sys.argv[1:]), "seeds": args.seeds,
           "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
