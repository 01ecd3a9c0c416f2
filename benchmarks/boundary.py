"""Boundary quality of each refinement of the same region decisions, and of a supervised background remover.

    python benchmarks/boundary.py                                   # seeds 0-99 -> benchmarks/results/boundary.json
    python benchmarks/boundary.py --seeds 0-3 --out /tmp/b.json     # smoke check
    python benchmarks/boundary.py --isnet /tmp/isnet/package/dist   # + the ISNet row (npm @imgly/background-removal-data)
    python benchmarks/boundary.py --figures docs/images             # only the close-ups of docs/benchmarks.md
    python benchmarks/boundary.py --cache /tmp/bcache --parts none  # stages cached; the per-image consensus decides

Per seed the method's stages run once (:func:`stylemix.render.style_latents`, ``render_variants``,
``consensus_foreground``, then, as ``segment`` with ``parts="auto"``, the packaged part bank's foreground where
the generator has one; ``--parts none`` keeps the consensus), and :func:`stylemix.segment.boundary_features` for
the methods that read the generator's features; ``--cache DIR`` keeps each seed's image and both foreground
probabilities (and the feature maps) so that a rerun skips the rendering and clustering (the feature maps are
rendered again, to time them in the run); every :data:`stylemix.refine.METHODS` entry then turns the same foreground probability into a mask
(:func:`stylemix.refine.refine_boundary`, then the pipeline's small-component cleaning), so rows differ only in
the boundary stage. Scoring follows benchmarks/quality.py (area reduction to the ground truth's 256 px,
``> 0.5``): mIoU, trimap IoU at bands 1, 3 and 5 px, boundary F-score at 2 px (``stylemix.metrics``). The tuning
seeds were 0-49 and 20-79 (two rounds of choices), so the table shows seeds 0-49, 50-99 and all side by side. Each row's ``ms`` is its own cost per
image (refinement + cleaning, plus rendering the feature maps for the methods that read them; one process,
median over seeds), beside ``generate_ms``, the median time of one plain generation (mapping + synthesis) in the
same run, so that the stage's cost can be read against the throughput goal (segment <= 1.25x one generation).

The ISNet row (benchmark only, never a dependency: the model is MIT, the npm package AGPL) runs the ``medium``
model of ``@imgly/background-removal-data`` (its ``dist/`` chunks joined as ``dist/resources.json`` lists them)
with onnxruntime on the ground truth's 256 px image upscaled bilinearly to 1024 px, normalised as the imgly
library does (``(x - 128) / 256``), output ``> 0.5``. Its probabilities are cached in ``--isnet-cache``.
"""

from __future__ import annotations

import argparse
import dataclasses
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
# Close-ups for docs/benchmarks.md: per part, the range of a 96 px window's top and left corners (ground-truth
# pixels); the window shown is the one, over FIGURE_SEEDS, where the first and last figure methods disagree most.
CLOSEUPS = {"hair": ((0, 40), (0, 160)), "ears": ((70, 130), (0, 160)), "shoulders": ((150, 160), (0, 160))}
CLOSEUP_SIDE = 96
FIGURE_SEEDS = range(24)
FIGURE_METHODS = ("cascade", "features", "features-matting")


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


def closeup_tile(image: np.ndarray, gt: np.ndarray, mask: np.ndarray, box: tuple[int, int, int], zoom: int = 2,
                 caption: str = "") -> np.ndarray:
    """``uint8 [side*zoom, side*zoom, 3]``: the crop ``box = (top, left, side)`` of ``image`` (ground-truth size),
    enlarged, the ground truth's boundary in green and ``mask``'s in red (both ``bool``, ground-truth size)."""
    import cv2
    from stylemix.metrics import boundary_pixels
    top, left, side = box
    sl = (slice(top, top + side), slice(left, left + side))
    big = cv2.resize(image[sl], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    for m, colour in ((gt, (0, 255, 0)), (mask, (255, 40, 40))):
        edge = cv2.resize(boundary_pixels(m[sl]).astype(np.uint8), None, fx=zoom, fy=zoom,
                          interpolation=cv2.INTER_NEAREST).astype(bool)
        big[edge] = colour
    if caption:
        cv2.putText(big, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return big


def pick_closeups(masks: dict[tuple[int, str], np.ndarray], seeds: list[int], methods: list[str], per_part: int = 2
                  ) -> list[tuple[str, int, tuple[int, int, int]]]:
    """``(part, seed, (top, left, side))`` for each part of :data:`CLOSEUPS`: the windows where ``methods[0]``'s and
    ``methods[-1]``'s masks differ in most pixels, one per seed, ``per_part`` seeds per part (ears: only windows
    touching the left or right third, where ears are)."""
    side, out = CLOSEUP_SIDE, []
    for part, ((t0, t1), (l0, l1)) in CLOSEUPS.items():
        best = []
        for s in seeds:
            diff = (masks[s, methods[0]] != masks[s, methods[-1]]).astype(np.float64)
            ii = np.pad(diff, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
            win = ii[side:, side:] - ii[:-side, side:] - ii[side:, :-side] + ii[:-side, :-side]  # [top, left]
            allowed = np.zeros_like(win, dtype=bool)
            allowed[t0:t1 + 1, l0:l1 + 1] = True
            if part == "ears":
                allowed[:, 30:130] = False
            top, left = np.unravel_index(np.where(allowed, win, -1).argmax(), win.shape)
            best.append((win[top, left], s, (int(top), int(left), side)))
        used = {seed for _, seed, _ in out}
        picks = [b for b in sorted(best, reverse=True) if b[1] not in used][:per_part]
        out += [(part, s, box) for _, s, box in picks]
    return out


def summary(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = next(iter(per_seed.values())).keys()
    out = {}
    for name, seeds in {**SPLITS, "all": per_seed.keys()}.items():
        rows = [per_seed[s] for s in seeds if s in per_seed]
        if rows:
            out[name] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return out


def run_stages(G, cfg, s: int, bank_step) -> dict:
    """The method's stages for seed ``s`` up to the foreground probability: ``image uint8 [H, W, 3]``, the
    foreground probability ``float32 [h, w]`` of the per-image consensus (``prob:none``) and, where ``bank_step``
    is given, the bank's (``prob:auto``, as ``segment`` with ``parts="auto"``), each feature method's maps and
    their render time."""
    from stylemix import mixing, refine
    from stylemix.render import render_variants, style_latents, to_uint8
    from stylemix.segment import boundary_features
    from stylemix.stages import consensus_foreground
    from stylemix.stages import anchor_vote
    with torch.inference_mode():
        ws_base, ws_mix, crossovers = style_latents(G, s, cfg)
        image, stack = render_variants(G, ws_base, ws_mix, crossovers, cfg)
        image = to_uint8(image)[0].numpy()
        features, feature_s = {}, {}
        for m in refine.FEATURE_METHODS:  # each method's own feature maps, and what they cost
            t0 = time.perf_counter()
            features[m] = boundary_features(G, ws_base, dataclasses.replace(cfg, boundary=m), s)
            feature_s[m] = time.perf_counter() - t0
    random_state = int(mixing.stream(s, mixing.STREAM_KMEANS).integers(2 ** 31))
    prob, _ = consensus_foreground(stack.float().numpy(), cfg.consensus, random_state,
                                   anchor_vote(cfg.foreground_rule, cfg.frame_penalty), **cfg.kmeans_options())
    out = {"image": image, "prob:none": np.asarray(prob, np.float32), "features": features, "feature_s": feature_s}
    if bank_step is not None:
        base32 = next((f for f in features.values() if f is not None and f.shape[-1] == cfg.analysis_resolution), None)
        out["prob:auto"] = np.asarray(bank_step(ws_base, prob, image, base32)[1], np.float32)
    return out


def _cache_path(cache: Path, s: int) -> Path:
    import stylemix
    return cache / f"v{stylemix.__version__}" / f"seed{s:04d}.npz"


def save_stages(cache: Path, s: int, stages: dict) -> None:
    path = _cache_path(cache, s)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in stages.items() if k.startswith("prob:")}
    arrays["image"] = stages["image"]
    for m, f in stages["features"].items():
        if f is not None:
            arrays[f"features:{m}"] = f
            arrays[f"feature_s:{m}"] = stages["feature_s"][m]
    np.savez(path, **arrays)


def load_stages(cache: Path, s: int) -> dict | None:
    path = _cache_path(cache, s)
    if not path.exists():
        return None
    with np.load(path) as z:
        out = {"image": z["image"], "features": {}, "feature_s": {}}
        for k in z.files:
            if k.startswith("prob:"):
                out[k] = z[k]
            if k.startswith("features:"):
                out["features"][k[9:]] = z[k]
            elif k.startswith("feature_s:"):
                out["feature_s"][k[10:]] = float(z[k])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-99")
    ap.add_argument("--gt", default=str(DEFAULT_GT))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--methods", default="guided,cascade,matting,grabcut,features,features-matting")
    ap.add_argument("--isnet", default=None, help="dist/ folder of @imgly/background-removal-data")
    ap.add_argument("--isnet-cache", default="/tmp/stylemix_isnet")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--figures", default=None, help="write only the close-ups boundary_<part>.png to this folder")
    ap.add_argument("--parts", default="auto", help="auto (the default: the packaged bank decides fg/bg) or none")
    ap.add_argument("--cache", default=None, help="folder of per-seed stage results (image, probability, features), "
                    "written on the first run and read on the next (keyed by seed and the stylemix version)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import cv2
    import stylemix
    from stylemix import io, mixing, refine
    from stylemix.postprocess import clean_labels
    from stylemix.parts import part_step
    from stylemix.config import SegmentConfig
    from stylemix.render import style_latents
    from stylemix.segment import boundary_features

    seeds = list(FIGURE_SEEDS) if args.figures else io.parse_seeds(args.seeds)
    gts = load_gt(args.gt, seeds)
    G = stylemix.load_generator()
    cfg = SegmentConfig().resolve(G)
    methods = list(FIGURE_METHODS) if args.figures else [m for m in args.methods.split(",") if m]
    masks: dict[tuple[int, str], np.ndarray] = {}
    thumbs: dict[int, np.ndarray] = {}
    per_seed: dict[str, dict[int, dict[str, float]]] = {m: {} for m in methods}
    cost: dict[str, list[float]] = {m: [] for m in methods}
    generate: list[float] = []
    t_start = time.perf_counter()
    if args.parts not in ("auto", "none"):
        raise SystemExit(f"--parts must be auto or none, got {args.parts!r}")
    bank_step = part_step(G, "auto", cfg)  # both probabilities go into the cache; --parts picks one
    cache = Path(args.cache) if args.cache else None
    for s in seeds:
        with torch.inference_mode():  # one plain generation, timed in this run even when the stages are cached
            t0 = time.perf_counter()
            G.synthesis(G.mapping(torch.from_numpy(mixing.seed_to_z(s, G.z_dim)), None), noise_mode=cfg.noise_mode)
            generate.append(time.perf_counter() - t0)
        stages = load_stages(cache, s) if cache else None
        cached = stages is not None
        if stages is None:
            stages = run_stages(G, cfg, s, bank_step)
            if cache:
                save_stages(cache, s, stages)
        image, features, feature_s = stages["image"], stages["features"], stages["feature_s"]
        if cached:  # the feature maps' render time, measured in this run (the maps come out the same)
            with torch.inference_mode():
                ws_base = style_latents(G, s, cfg)[0]
                for m in set(methods) & set(refine.FEATURE_METHODS):
                    t0 = time.perf_counter()
                    features[m] = boundary_features(G, ws_base, dataclasses.replace(cfg, boundary=m), s)
                    feature_s[m] = time.perf_counter() - t0
        prob = stages.get(f"prob:{args.parts}", stages["prob:none"])
        for m in methods:
            t0 = time.perf_counter()
            alpha = refine.refine_boundary(image, prob, refine.RefineConfig(method=m), features.get(m))
            mask = clean_labels(refine.binary(alpha), int(round(cfg.min_area * alpha.size))) == 1
            cost[m].append(time.perf_counter() - t0 + feature_s.get(m, 0.0))
            per_seed[m][s] = scores(to_gt_size(mask, gts[s].shape), gts[s])
            masks[s, m] = to_gt_size(mask, gts[s].shape)
        thumbs[s] = cv2.resize(image, gts[s].shape[::-1], interpolation=cv2.INTER_AREA)
        print(s, {m: round(per_seed[m][s]["trimap_iou_3"], 3) for m in methods}, flush=True)
    if args.figures:
        picks = pick_closeups(masks, seeds, methods)
        for part in CLOSEUPS:
            grid = [np.concatenate([closeup_tile(thumbs[s], gts[s], masks[s, m], box,
                                                 caption=f"seed {s} {m}" + (" (default)" if m == cfg.boundary else ""))
                                    for m in methods], axis=1)
                    for name, s, box in picks if name == part]
            io.write_png(Path(args.figures) / f"boundary_{part}.png", np.concatenate(grid, axis=0))
            print("wrote", Path(args.figures) / f"boundary_{part}.png")
        return
    rows = {f"stylemix boundary={m}": {"summary": summary(per_seed[m]), "ms_per_image": 1000 * float(np.median(cost[m])),
                                       "per_seed": per_seed[m]} for m in methods}
    if args.isnet:
        probs = isnet_probabilities(Path(args.isnet), Path(args.gt), seeds, Path(args.isnet_cache), args.threads)
        isnet = {s: scores(probs[s] > 0.5, gts[s]) for s in seeds}
        rows["ISNet (imgly medium, supervised)"] = {"summary": summary(isnet), "per_seed": isnet}
    report = {"command": " ".join(["python", *sys.argv]), "seeds": args.seeds, "version": stylemix.__version__,
              "elapsed_s": time.perf_counter() - t_start, "generate_ms": 1000 * float(np.median(generate)), "bands": BANDS, "tolerance_px": TOLERANCE, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    keys = ("miou", *(f"trimap_iou_{b}" for b in BANDS), "boundary_f")
    print("| row | " + " | ".join(keys) + " | ms/image |")
    for name, row in rows.items():
        cells = [" / ".join(f"{row['summary'][sp][k]:.3f}" for sp in ("0-49", "50-99", "all") if sp in row["summary"])
                 for k in keys]
        print(f"| {name} | " + " | ".join(cells) + f" | {row.get('ms_per_image', float('nan')):.0f} |")
    print(f"one generation: {report['generate_ms']:.0f} ms (median)")


if __name__ == "__main__":
    main()
