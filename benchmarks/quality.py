"""Mask quality of stylemix against pseudo ground truth, side by side with the baselines a user would otherwise pick.

    python benchmarks/quality.py                                  # default method, seeds 0-99 of the default generator
    python benchmarks/quality.py --seeds 0-2 -n 4 --threads 1     # smoke check (a few minutes on one core)
    python benchmarks/quality.py --limit 10 -n 32 --fg-rule combined --out /tmp/n32_combined.json

Protocol (docs/benchmarks.md, "Quality"):

* the method is :func:`stylemix.segment_many` with the given settings (the same options as ``stylemix segment``);
* every mask is brought to the ground truth's size (256 px for the shipped FFHQ set) the way the ground-truth images
  were made: ``cv2.INTER_AREA`` reduction of the full-resolution mask, foreground where the area fraction is
  ``> 0.5`` (smaller masks are upsampled by nearest neighbour); then :func:`stylemix.metrics.mask_scores`;
* baselines, every one with the method's foreground rule and the method's post-processing (guided upsampling and
  small-component cleaning, :func:`stylemix.stages.finish_probability`), so that only the pixel descriptor differs:

  - ``rgb_kmeans``: k-means (k = 2) on the plain RGB of the single base image at the analysis resolution,
    standardised per channel over the image;
  - ``feature_kmeans``: k-means (k = 2) on the generator's intermediate features of the base image at 64 x 64,
    each pixel's vector L2-normalised (the Segmentation-in-Style recipe, without its training);
  - ``average_mask``: the mean ground-truth mask of the scored seeds, thresholded at 0.5, used for every image:
    what ignoring the image scores (it has seen the answers, so it is an optimistic prior, and meaningless on a
    handful of seeds: on one seed it is that seed's ground truth);
  - ``oracle_k2`` / ``oracle_kK``: the method's own clusters at k = 2 and at the configured k, each cluster made
    foreground when most of its pixels are foreground in the ground truth; ``oracle_best_k2`` / ``oracle_best_kK``:
    the same clusters with the fg/bg assignment of highest mIoU (majority vote maximises accuracy, not mIoU, and
    can fall below the method). The gap between the method and ``oracle_best_k2`` is what the foreground rule
    loses; the gap between that oracle and 1 is what the clusters lose.

Figures over a set are means over images, plus the median mIoU. Everything is seeded, so reruns repeat exactly
(bar the timings). Writes ``--out`` (JSON: settings, per-seed scores, summaries, command line, version, elapsed
time) and ``<out stem>_worst.png``, a contact sheet of the worst seeds by method mIoU (image, ground truth,
prediction).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import click
import numpy as np
import torch

import stylemix
from stylemix import io, metrics, visualize
from stylemix.cli_options import method_kwargs, method_options, network_option
from stylemix.cluster import KMeans
from stylemix.config import SegmentConfig
from stylemix.errors import StylemixError
from stylemix.render import render_variants, style_latents
from stylemix.stages import (cluster_stack, decide_foreground, finish_labels, finish_probability, kmeans_seed,
                             min_pixels, order_binary)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GT = REPO.parent / "shared" / "eval" / "mobilestylegan-ffhq"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "quality.json"
FEATURE_RESOLUTION = 64  # Segmentation in Style clusters the generator's 64 x 64 features
# fg/bg mIoU on FFHQ as the papers report it: their own generators, ground truth and seeds, so not comparable
# number for number; shown for scale only.
PUBLISHED = {"network-free style mixing": 0.80, "Segmentation in Style": 0.83, "Labels4Free": 0.88}
SUMMARY_KEYS = (*metrics.METRICS, "median_miou")


# ---------------------------------------------------------------------------------------------------------------
# Ground truth and resizing


def load_gt(folder: str | os.PathLike, seeds: Iterable[int]) -> dict[int, np.ndarray]:
    """Ground-truth masks ``bool [h, w]`` (file pixels > 127) of ``seeds`` from ``folder/seedSSSS_mask.png``.

    Raises:
        StylemixError: the folder or a seed's mask is missing (a partial score would look like a full one).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StylemixError(f"ground-truth folder {os.fspath(folder)!r} does not exist")
    seeds = list(seeds)
    missing = [s for s in seeds if not (folder / f"seed{s:04d}_mask.png").is_file()]
    if missing:
        raise StylemixError(f"no ground truth for seed(s) {', '.join(map(str, missing[:10]))} in "
                            f"{os.fspath(folder)!r}")
    return {s: io.read_png(folder / f"seed{s:04d}_mask.png") > 127 for s in seeds}


def to_gt_size(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``bool [H, W]`` mask -> ``bool shape``: area reduction with a > 0.5 vote when shrinking, nearest otherwise.

    Area reduction mirrors how the ground-truth images were made from the full-resolution image, so a predicted
    boundary lands where it would in the ground truth's pixels (nearest would keep one of every 4 x 4 pixels).
    """
    import cv2
    mask = np.asarray(mask).astype(bool)
    if mask.shape == tuple(shape):
        return mask
    size = (shape[1], shape[0])
    if mask.shape[0] > shape[0]:
        return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def average_mask(gts: Iterable[np.ndarray]) -> np.ndarray:
    """The mean of the ground-truth masks ``bool [h, w]`` thresholded at 0.5: ``bool [h, w]``."""
    return np.mean([np.asarray(g, dtype=np.float32) for g in gts], axis=0) > 0.5


# ---------------------------------------------------------------------------------------------------------------
# Baselines: single-image k-means with the method's foreground rule and post-processing


def kmeans_random_state(seed: int) -> int:
    """The method's k-means seed for ``seed`` (:func:`stylemix.stages.kmeans_seed`), reused so baselines are as
    reproducible."""
    return kmeans_seed(seed)


def binary_foreground(labels: np.ndarray, image: np.ndarray, cfg: SegmentConfig) -> np.ndarray:
    """k = 2 cluster ids ``int [h, w]`` -> ``bool [H, W]`` foreground at the size of ``image uint8 [H, W, 3]``.

    The same steps as the method after clustering: the foreground rule on the analysis-resolution labels, then
    guided upsampling and cleaning with the method's settings.
    """
    labels = np.asarray(labels).astype(np.int32)
    _, is_fg, _ = decide_foreground(labels, 2, cfg.foreground_rule)
    binary = order_binary(labels, is_fg)  # 1 = foreground, as the method orders it before upsampling
    size = image.shape[:2]
    return finish_probability(binary, size, image, min_pixels=min_pixels(cfg.min_area, size), refine=cfg.refine,
                              boundary=cfg.boundary) == 1


def rgb_kmeans_mask(image: np.ndarray, cfg: SegmentConfig, random_state: int) -> np.ndarray:
    """Baseline: k-means (k = 2) on the base image's RGB at ``cfg.analysis_resolution``.

    Args:
        image: ``uint8 [H, W, 3]``.
        cfg: a resolved :class:`SegmentConfig` (analysis resolution, foreground rule, post-processing, k-means).
        random_state: k-means seed.

    Returns:
        ``bool [H, W]`` foreground.
    """
    import cv2
    r = cfg.analysis_resolution
    small = cv2.resize(image.astype(np.float32), (r, r), interpolation=cv2.INTER_AREA).reshape(r * r, 3)
    # Per-channel standardisation over the image: each channel weighs the same, whatever its contrast.
    X = (small - small.mean(0)) / (small.std(0) + 1e-6)
    km = KMeans(2, n_init=cfg.n_init, max_iter=cfg.max_iter, random_state=random_state).fit(X.astype(np.float32))
    return binary_foreground(km.labels_.reshape(r, r), image, cfg)


def feature_kmeans_mask(G: Any, ws_base: torch.Tensor, image: np.ndarray, cfg: SegmentConfig, random_state: int,
                        resolution: int = FEATURE_RESOLUTION) -> np.ndarray | None:
    """Baseline: k-means (k = 2) on ``G.features(ws_base, resolution)``, each pixel's vector L2-normalised.

    Args:
        ws_base: ``[1, num_ws, w_dim]`` the base image's styles.
        image: ``uint8 [H, W, 3]`` the base image (guides the upsampling).

    Returns:
        ``bool [H, W]`` foreground, or ``None`` when ``G`` exposes no features.
    """
    resolution = min(resolution, int(G.resolution))
    try:
        with torch.inference_mode():
            feats = G.features(ws_base, resolution, noise_mode=cfg.noise_mode)
    except NotImplementedError:
        return None
    f = feats[0].float().cpu().numpy()  # [C, r, r]
    c, h, w = f.shape
    X = f.reshape(c, h * w).T
    X = X / (np.linalg.norm(X, axis=1, keepdims=True) + 1e-6)  # cosine geometry, as Segmentation in Style uses
    km = KMeans(2, n_init=cfg.n_init, max_iter=cfg.max_iter, random_state=random_state).fit(
        np.ascontiguousarray(X, dtype=np.float32))
    return binary_foreground(km.labels_.reshape(h, w), image, cfg)


def best_assignment(fg_count: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The fg/bg assignment of k clusters with the highest mIoU, found from per-cluster counts alone.

    Args:
        fg_count: ``[k]`` ground-truth foreground pixels in each cluster.
        count: ``[k]`` pixels in each cluster.

    Returns:
        ``bool [k]`` is-foreground (ties: the first in ``itertools.product`` order, so it is deterministic).
    """
    import itertools
    fg_count, count = np.asarray(fg_count, np.float64), np.asarray(count, np.float64)
    total_fg, total = fg_count.sum(), count.sum()
    best, best_miou = None, -1.0
    for bits in itertools.product((False, True), repeat=len(count)):
        a = np.array(bits)
        tp = fg_count[a].sum()
        fp = count[a].sum() - tp
        fn, tn = total_fg - tp, total - total_fg - fp
        fg = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        bg = tn / (tn + fn + fp) if tn + fn + fp else 1.0
        if (fg + bg) / 2 > best_miou:
            best, best_miou = a, (fg + bg) / 2
    return best


def oracle_masks(G: Any, seed: int, image: np.ndarray, gt: np.ndarray, cfg: SegmentConfig,
                 max_search: int = 12) -> dict[str, np.ndarray]:
    """The method's clusters with each cluster assigned fg/bg by the ground truth ``gt``.

    Renders the seed's variant stack once (the method's stages, same seeds and settings, so the clusters at the
    configured k are the method's own) and clusters it at k = 2 and at ``cfg.clusters``. Two assignments each:

    * ``oracle_kK``: per-cluster majority vote (a cluster is foreground when most of its pixels are);
    * ``oracle_best_kK``: the assignment with the highest mIoU (exhaustive over ``2**k``, for k <= ``max_search``).
      Majority vote maximises pixel accuracy, not mIoU: with a large person it can call both clusters foreground
      and score below the method, so this is the one that bounds what the clusters allow.

    Args:
        image: ``uint8 [H, W, 3]`` the base image (guides the upsampling, as in the method).
        gt: ``bool [h, w]`` ground truth.

    Returns:
        ``{row name: bool [H, W]}`` oracle foreground at the image's size.
    """
    import cv2
    with torch.inference_mode():
        ws_base, ws_mix, crossovers = style_latents(G, seed, cfg)
        _, stack = render_variants(G, ws_base, ws_mix, crossovers, cfg)
    stack = stack.float().cpu().numpy()
    H, W = image.shape[:2]
    # Votes are counted at image resolution against the nearest-upsampled ground truth: every ground-truth pixel
    # then counts in proportion to its area, whatever the two resolutions.
    gt_full = cv2.resize(gt.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = {}
    for k in sorted({2, cfg.clusters}):
        labels = cluster_stack(stack, k, kmeans_random_state(seed), **cfg.kmeans_options())
        area = min_pixels(cfg.min_area, (H, W))
        if k == 2:  # cluster 1 as the probability: the k = 2 finish, boundary stage included
            labels = finish_probability(labels, (H, W), image, min_pixels=area, refine=cfg.refine, boundary=cfg.boundary)
        else:
            labels = finish_labels(labels, (H, W), k, image, min_pixels=area, refine=cfg.refine)
        fg_count = np.bincount(labels.ravel(), weights=gt_full.ravel(), minlength=k)
        count = np.bincount(labels.ravel(), minlength=k)
        out[f"oracle_k{k}"] = (fg_count > count / 2)[labels]
        if k <= max_search:
            out[f"oracle_best_k{k}"] = best_assignment(fg_count, count)[labels]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Scoring a seed list


@dataclasses.dataclass
class SeedCase:
    """What the report keeps of one seed: its scores, and small images for the contact sheet."""

    seed: int
    scores: dict[str, dict[str, float]]  # row name -> metric -> value
    margin: float
    seconds: float
    thumb: np.ndarray  # uint8 [h, w, 3] the base image at the ground truth's size
    prediction: np.ndarray  # bool [h, w] the method's mask at the ground truth's size


def score_seeds(G: Any, seeds: Iterable[int], cfg: SegmentConfig, gts: dict[int, np.ndarray], *,
                baselines: bool = True, oracle: bool = True, band: int = 3, parts: str = "auto") -> list[SeedCase]:
    """Segment ``seeds`` with the method and score it, the image baselines and the oracle against ``gts``.

    Args:
        G: the generator, loaded once.
        cfg: method settings (resolved against ``G`` here).
        gts: ``{seed: bool [h, w]}`` ground truth.
        baselines, oracle: also score the k-means baselines / the oracle (each about one more render per seed).
        band: trimap band half-width in ground-truth pixels.
        parts: :func:`stylemix.segment`'s ``parts``: ``auto`` (the bank shipped for ``G`` decides the foreground
            where one exists) or ``none`` (the per-image consensus, what a generator without a bank gets).

    Returns:
        One :class:`SeedCase` per seed, in order. The average-mask baseline needs every seed's ground truth, so
        :func:`add_average_mask` adds it afterwards.
    """
    import cv2
    cfg = cfg.resolve(G)
    seeds = list(seeds)
    cases = []
    from tqdm import tqdm
    for seg in tqdm(stylemix.segment_many(G, seeds, config=cfg, parts=parts), total=len(seeds), unit="img",
                    desc="quality", disable=None):
        gt = gts[seg.seed]
        t = seg.meta["timing_s"]
        prediction = to_gt_size(seg.foreground, gt.shape)
        scores = {"method": metrics.mask_scores(prediction, gt, band)}
        if baselines:
            rs = kmeans_random_state(seg.seed)
            scores["rgb_kmeans"] = metrics.mask_scores(to_gt_size(rgb_kmeans_mask(seg.image, cfg, rs), gt.shape),
                                                       gt, band)
            with torch.inference_mode():
                ws_base = style_latents(G, seg.seed, cfg)[0]
            feat = feature_kmeans_mask(G, ws_base, seg.image, cfg, rs)
            if feat is not None:
                scores["feature_kmeans"] = metrics.mask_scores(to_gt_size(feat, gt.shape), gt, band)
        if oracle:
            for name, mask in oracle_masks(G, seg.seed, seg.image, gt, cfg).items():
                scores[name] = metrics.mask_scores(to_gt_size(mask, gt.shape), gt, band)
        thumb = cv2.resize(seg.image, gt.shape[::-1], interpolation=cv2.INTER_AREA)
        cases.append(SeedCase(seg.seed, scores, float(seg.meta["foreground_margin"]), float(sum(t.values())),
                              thumb, prediction))
    return cases


def add_average_mask(cases: list[SeedCase], gts: dict[int, np.ndarray], band: int = 3) -> np.ndarray:
    """Score the average-mask baseline of the cases' seeds into each case; returns that mask ``bool [h, w]``."""
    prior = average_mask(gts[c.seed] for c in cases)
    for c in cases:
        c.scores["average_mask"] = metrics.mask_scores(prior, gts[c.seed], band)
    return prior


def summaries(cases: list[SeedCase]) -> dict[str, dict[str, float]]:
    """Per row (method, each baseline): the means over images of every metric, the median mIoU, the count."""
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for c in cases:
        for name, s in c.scores.items():
            rows.setdefault(name, {})[c.seed] = s
    out = {}
    for name, per in rows.items():
        summary = metrics.summarize(per)
        summary["median_miou"] = float(np.median([s["miou"] for s in per.values()]))
        out[name] = summary
    return out


def worst_sheet(cases: list[SeedCase], gts: dict[int, np.ndarray], count: int = 8, tile: int = 128) -> np.ndarray:
    """Contact sheet of the ``count`` worst seeds by method mIoU: image | ground truth | prediction per row."""
    worst = sorted(cases, key=lambda c: (c.scores["method"]["miou"], c.seed))[:count]
    tiles, captions = [], []
    for c in worst:
        tiles += [c.thumb, visualize.overlay(c.thumb, gts[c.seed].astype(np.int32)),
                  visualize.overlay(c.thumb, c.prediction.astype(np.int32))]
        captions += [f"seed {c.seed}", "ground truth", f"mIoU {c.scores['method']['miou']:.3f}"]
    return visualize.contact_sheet(tiles, 3, captions, tile=tile)


ROW_LABELS = {
    "method": "stylemix (this method)",
    "rgb_kmeans": "k-means k=2 on base-image RGB",
    "feature_kmeans": f"k-means k=2 on G features {FEATURE_RESOLUTION}px",
    "average_mask": "average GT mask (ignores the image)",
}


def row_label(name: str) -> str:
    """Table label of a summary row."""
    if name.startswith("oracle_best_k"):
        return f"oracle: method clusters k={name[len('oracle_best_k'):]}, best fg/bg"
    if name.startswith("oracle_k"):
        return f"oracle: method clusters k={name[len('oracle_k'):]}, majority vote"
    return ROW_LABELS.get(name, name)


def format_table(summary: dict[str, dict[str, float]]) -> str:
    """The compact text table: our rows with every metric, then the published mIoU figures."""
    oracles = sorted((k for k in summary if k.startswith("oracle")),
                     key=lambda k: (int(k.rsplit("k", 1)[1]), k.startswith("oracle_best")))
    order = [n for n in ["method", *oracles, "rgb_kmeans", "feature_kmeans", "average_mask"] if n in summary]
    published = [f"{name} (published, other protocol)" for name in PUBLISHED]
    width = max(len(x) for x in [*map(row_label, order), *published])
    head = f"{'':{width}} {'fg IoU':>7} {'bg IoU':>7} {'mIoU':>7} {'trimap':>7} {'med mIoU':>8}"
    lines = [head, "-" * len(head)]
    for name in order:
        s = summary[name]
        lines.append(f"{row_label(name):{width}} {s['fg_iou']:7.4f} {s['bg_iou']:7.4f} {s['miou']:7.4f} "
                     f"{s['trimap_iou']:7.4f} {s['median_miou']:8.4f}")
    for label, miou in zip(published, PUBLISHED.values()):
        lines.append(f"{label:{width}} {'':7} {'':7} {miou:7.2f}")
    lines.append(f"({summary['method']['images']} images; means over images; published rows: FFHQ fg/bg mIoU "
                 "as the papers report it, with their own generators and ground truth)")
    return "\n".join(lines)


def run(G: Any, seeds: list[int], cfg: SegmentConfig, gt_folder: str | os.PathLike, out: str | os.PathLike, *,
        baselines: bool = True, oracle: bool = True, band: int = 3, worst: int = 8, network: str | None = None,
        command: str = "", parts: str = "auto") -> dict[str, Any]:
    """Score, write ``out`` (JSON) and ``<out stem>_worst.png``; returns the report written."""
    t0 = time.perf_counter()
    cfg = cfg.resolve(G)
    gts = load_gt(gt_folder, seeds)  # first, so a missing ground truth fails before any rendering
    cases = score_seeds(G, seeds, cfg, gts, baselines=baselines, oracle=oracle, band=band, parts=parts)
    add_average_mask(cases, gts, band)
    summary = summaries(cases)
    out = Path(out)
    io.prepare_outdir(out.parent)
    sheet_path = out.with_name(out.stem + "_worst.png")
    io.write_png(sheet_path, worst_sheet(cases, gts, worst))
    gt_shape = next(iter(gts.values())).shape
    report = {
        "benchmark": "quality",
        "stylemix": stylemix.__version__,
        "command": command,
        "network": network or "mobilestylegan-ffhq",
        "generator": {k: v for k, v in G.describe().items() if isinstance(v, (int, float, str))},
        "settings": cfg.as_dict(),
        "parts": parts,
        "seeds": seeds,
        "ground_truth": {"folder": os.fspath(gt_folder), "resolution": list(gt_shape)},
        "protocol": {
            "resize": "full-resolution masks -> ground-truth size by cv2.INTER_AREA, foreground where > 0.5",
            "metrics": "stylemix.metrics.mask_scores; set figures are means over images, plus the median mIoU",
            "trimap_band_px": band,
            "baselines": "k = 2, the method's foreground rule and post-processing; features L2-normalised at "
                         f"{FEATURE_RESOLUTION} px; average mask of the scored seeds' ground truth > 0.5; oracle = "
                         "method clusters assigned by the ground truth, per-cluster majority vote (oracle_kK) and the "
                         "mIoU-best assignment (oracle_best_kK)",
        },
        "summary": summary,
        "published_miou_other_protocol": PUBLISHED,
        "per_seed": {f"seed{c.seed:04d}": {"scores": c.scores, "foreground_margin": c.margin,
                                           "method_seconds": round(c.seconds, 4)} for c in cases},
        "worst_sheet": sheet_path.name,
        "elapsed_s": round(time.perf_counter() - t0, 2),
        "method_s_per_image": round(float(np.mean([c.seconds for c in cases])), 4),
        "torch_threads": torch.get_num_threads(),
    }
    io.write_json(out, report)
    return report


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@network_option
@click.option("--seeds", default="0-99", help="Seeds to score, e.g. 0-99 (each needs a ground-truth mask).")
@click.option("--limit", type=int, default=None, help="Score only the first LIMIT seeds (smoke checks).")
@click.option("--gt", "gt_folder", default=os.fspath(DEFAULT_GT), type=click.Path(file_okay=False),
              help="Folder with seedSSSS_mask.png ground truth (255 = foreground).")
@click.option("--out", default=os.fspath(DEFAULT_OUT), type=click.Path(dir_okay=False),
              help="JSON report; the worst-case sheet goes beside it as <stem>_worst.png.")
@click.option("--band", type=int, default=3, help="Trimap band half-width in ground-truth pixels.")
@click.option("--worst", type=int, default=8, help="Seeds on the worst-case contact sheet.")
@click.option("--no-baselines", is_flag=True, help="Skip the RGB and feature k-means baselines.")
@click.option("--no-oracle", is_flag=True, help="Skip the oracle (saves one variant render per seed).")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--parts", type=click.Choice(["auto", "none"]), default="auto",
              help="Foreground from the bank shipped for the generator (auto) or the per-image consensus (none).")
@method_options
def main(network: str | None, device: str, seeds: str, limit: int | None, gt_folder: str, out: str, band: int,
         worst: int, no_baselines: bool, no_oracle: bool, threads: int | None, parts: str, **options: Any) -> None:
    """Score the method and its baselines against pseudo ground truth; print a table, write JSON + a sheet.

    \b
    Examples:
      python benchmarks/quality.py
      python benchmarks/quality.py --seeds 0-2 -n 4 --threads 1 --out /tmp/q.json
      python benchmarks/quality.py -n 32 --fg-rule combined --out /tmp/n32_combined.json
    """
    from stylemix.backend import get_backend
    try:
        if threads:
            torch.set_num_threads(threads)
        seed_list = io.parse_seeds(seeds)[:limit]
        cfg = SegmentConfig(**method_kwargs(options))
        G = stylemix.load_generator(network, device=get_backend(device).torch_device)
        report = run(G, seed_list, cfg, gt_folder, out, baselines=not no_baselines, oracle=not no_oracle,
                     band=band, worst=worst, network=network, command=shlex.join(["python", *sys.argv]),
                     parts=parts)
    except StylemixError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_table(report["summary"]))
    click.echo(f"wrote {out} and {report['worst_sheet']} ({report['elapsed_s']:.1f} s)")


if __name__ == "__main__":
    main()
