"""How much segmenting costs over generating: R = time(segment one image, its generation included) / time(generate it).

    python benchmarks/speed.py                               # default generator, N = 16, quality on seeds 0-19
    python benchmarks/speed.py --quality-seeds 0-99 --out benchmarks/results/speed.json

Everything is measured side by side in one run and reported as ratios (absolute times on shared machines are
noise): each timed call is repeated, interleaved with the others, and the median is taken. Measured:

* generation alone: mapping + full-resolution synthesis of the base image (what a user pays without stylemix);
* the exact pipeline (``exact=True``: every variant synthesised in full at full resolution, RGB clustered);
* the fast default (``stylemix.segment`` with default settings);
* their fg/bg mIoU and trimap IoU against the pseudo ground truth, so speed is never bought silently;
* ``stylemix export`` throughput against plain generation of the same seeds.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch

import stylemix
from stylemix import io, metrics
from stylemix.config import SegmentConfig
from stylemix.export import export_dataset
from stylemix.mixing import seed_to_z
from stylemix.render import to_uint8

REPO = Path(__file__).resolve().parents[1]


def _generate(G, seed: int) -> np.ndarray:
    with torch.inference_mode():
        ws = G.mapping(torch.from_numpy(seed_to_z(seed, G.z_dim)))
        img = G.synthesis(ws)
        return to_uint8(img)[0].numpy()  # the same conversion segment() applies to its image


def _timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def _quality(G, seeds: list[int], gt_dir: Path, **options) -> dict[str, float]:
    per = {}
    for seg in stylemix.segment_many(G, seeds, config=stylemix.SegmentConfig(**options)):
        gt = io.read_png(gt_dir / f"seed{seg.seed:04d}_mask.png") > 127
        pred = cv2.resize(seg.foreground.astype(np.float32), gt.shape[::-1], interpolation=cv2.INTER_AREA) > 0.5
        per[seg.seed] = metrics.mask_scores(pred, gt)
    return metrics.summarize(per)


def _random_stylegan3(spec: str):
    from stylemix.generators.stylegan3 import StyleGAN3Generator
    kind, res = spec[0].lower(), int(spec[1:])
    if kind not in "tr":
        raise click.BadParameter(f"expected t<RES> or r<RES>, got {spec!r}")
    mult = 2 if kind == "r" else 1
    torch.manual_seed(0)
    return StyleGAN3Generator(resolution=res, channel_base=8192 * mult, channel_max=256 * mult,
                              conv_kernel=1 if kind == "r" else 3, use_radial_filters=kind == "r").eval()


@click.command()
@click.option("--network", default=None, help="Generator (default: the embedded default).")
@click.option("--random-stylegan3", "random_sg3", default=None, metavar="t256|r256|...",
              help="Time a StyleGAN3 of this configuration and resolution with random weights instead of --network "
                   "(channel_base 8192, channel_max 256; doubled for r as NVlabs train.py does). Quality is skipped.")
@click.option("--variants", "-n", type=int, default=SegmentConfig.variants, show_default=True,
              help="Style variants N (default: the library's).")
@click.option("--analysis-res", "analysis_resolution", type=int, default=None,
              help="Analysis resolution of the fast pipeline (default: the library's).")
@click.option("--timing-seeds", default="100-104", show_default=True, help="Seeds timed (not in the dev set).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Interleaved repeats per timed call.")
@click.option("--quality-seeds", default="0-19", show_default=True,
              help="Dev seeds scored for both pipelines ('none' to skip).")
@click.option("--export-seeds", default="200-207", show_default=True,
              help="Seeds for the export throughput ('none' to skip).")
@click.option("--gt", type=click.Path(file_okay=False), default=str(REPO.parent / "shared" / "eval" /
                                                                    "mobilestylegan-ffhq"), show_default=True)
@click.option("--no-exact", is_flag=True, help="Skip the exact pipeline (its timing and quality).")
@click.option("--out", type=click.Path(dir_okay=False), default=str(REPO / "benchmarks" / "results" / "speed.json"),
              show_default=True)
def main(network, random_sg3, variants, analysis_resolution, timing_seeds, repeats, quality_seeds, export_seeds, gt,
         no_exact, out) -> None:
    G = _random_stylegan3(random_sg3) if random_sg3 else stylemix.load_generator(network)
    if random_sg3:
        quality_seeds = "none"  # random weights have no ground truth
    fast = {"variants": variants}
    if analysis_resolution:
        fast["analysis_resolution"] = analysis_resolution
    seeds = io.parse_seeds(timing_seeds)
    _generate(G, seeds[0])  # warm-up: allocator, thread pools, sklearn import
    stylemix.segment(G, seeds[0], config=stylemix.SegmentConfig(**fast))
    times: dict[str, list[float]] = {"generate": [], "fast": [], "exact": []}
    stages: list[dict[str, float]] = []  # the fast pipeline's own split (seg.meta["timing_s"])
    for _ in range(repeats):
        for seed in seeds:
            times["generate"].append(_timed(_generate, G, seed))
            t0 = time.perf_counter()
            stages.append(stylemix.segment(G, seed, config=stylemix.SegmentConfig(**fast)).meta["timing_s"])
            times["fast"].append(time.perf_counter() - t0)
            if not no_exact:
                times["exact"].append(_timed(stylemix.segment, G, seed, variants=variants, exact=True))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    result = {
        "command": " ".join(["python", "benchmarks/speed.py"] + sys.argv[1:]),
        "generator": getattr(G, "family", type(G).__name__), "resolution": G.resolution,
        "stylemix": stylemix.__version__, "torch_threads": torch.get_num_threads(), "fast_options": fast,
        "median_s": med,
        "fast_stages_median_s": {k: statistics.median(st[k] for st in stages) for k in stages[0]},
        "R_fast": med["fast"] / med["generate"], "R_exact": med["exact"] / med["generate"] if "exact" in med else None,
    }
    gt_dir = Path(gt)
    if gt_dir.is_dir() and quality_seeds != "none":
        q = io.parse_seeds(quality_seeds)
        result["quality_seeds"] = quality_seeds
        result["quality_fast"] = _quality(G, q, gt_dir, **fast)
        if not no_exact:
            result["quality_exact"] = _quality(G, q, gt_dir, variants=variants, exact=True)
    if export_seeds != "none":
        ex = io.parse_seeds(export_seeds)
        with tempfile.TemporaryDirectory() as tmp:
            t_gen = _timed(lambda: [_generate(G, s) for s in ex])
            t_exp = _timed(export_dataset, G, ex, Path(tmp) / "DS", format="png", progress=False, **fast)
        result["export_images_per_s"] = len(ex) / t_exp
        result["generate_images_per_s"] = len(ex) / t_gen
        result["export_vs_generation"] = t_exp / t_gen
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    io.write_json(out, result)
    click.echo(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
