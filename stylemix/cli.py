"""The ``stylemix`` command line: thin wrappers that turn options into keyword arguments of the library."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from stylemix.errors import StylemixError

_SEG_OPTS = ("variants", "clusters", "crossover", "truncation_psi", "truncation_cutoff", "analysis_resolution",
             "normalization", "descriptor", "feature_dim", "foreground_rule", "consensus", "frame_penalty",
             "min_area", "refine", "boundary", "batch_size", "exact")


class _Group(click.Group):
    """Turns every :class:`StylemixError` into one ``Error: ...`` line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StylemixError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="stylemix")
def main() -> None:
    """Training-free segmentation of images from style-based GANs by style mixing."""


def network_option(f: Any) -> Any:
    f = click.option("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when usable).")(f)
    return click.option("--network", "network", metavar="SRC", default=None,
                        help="Generator: a file (.pkl/.pt/.pth) or a registered name. Default: mobilestylegan-ffhq.")(f)


def method_options(f: Any) -> Any:
    """The method's knobs (shared by ``segment`` and ``export``); defaults are SegmentConfig's."""
    from stylemix.features import NORMALIZATIONS
    from stylemix.foreground import RULES
    from stylemix.segment import BOUNDARIES, DESCRIPTORS, REFINEMENTS, SegmentConfig
    d = SegmentConfig()
    options = [
        click.option("--variants", "-n", type=int, default=d.variants, help="Style variants per image (N)."),
        click.option("--clusters", "-k", type=int, default=d.clusters, help="k-means clusters; 2 = fg/bg."),
        click.option("--crossover", default=None, metavar="C|LO-HI|C,C,..",
                     help="Slots [0, C) kept from the base. LO-HI: drawn per variant; a list: cycled. "
                          "Default: C-3..C ending at the generator's C (lowered to reach the analysis res)."),
        click.option("--trunc", "truncation_psi", type=float, default=d.truncation_psi, help="Truncation psi."),
        click.option("--trunc-cutoff", "truncation_cutoff", type=int, default=None,
                     help="Truncate only slots < this (default: all)."),
        click.option("--analysis-res", "analysis_resolution", type=int, default=d.analysis_resolution,
                     help="Resolution at which variants are rendered and clustered."),
        click.option("--normalization", type=click.Choice(NORMALIZATIONS), default=d.normalization,
                     help="Per-pixel vector normalisation."),
        click.option("--descriptor", type=click.Choice(DESCRIPTORS), default=d.descriptor,
                     help="Cluster the generator's feature maps or the variants' RGB (auto: features if any)."),
        click.option("--feature-dim", type=int, default=d.feature_dim,
                     help="Channels per variant kept by the random projection of feature maps."),
        click.option("--fg-rule", "foreground_rule", type=click.Choice(RULES), default=d.foreground_rule,
                     help="How the foreground cluster is chosen."),
        click.option("--consensus", default=",".join(map(str, d.consensus)), metavar="K,K,..",
                     help="For k = 2: cluster counts whose foreground decisions are averaged (2 = plain split)."),
        click.option("--frame-penalty", type=float, default=d.frame_penalty,
                     help="How much touching the image frame holds a cluster back from the foreground (0: off)."),
        click.option("--min-area", type=float, default=d.min_area,
                     help="Merge components smaller than this fraction of the image."),
        click.option("--refine", type=click.Choice(REFINEMENTS), default=d.refine,
                     help="Upsample labels guided by the image, or nearest."),
        click.option("--boundary", type=click.Choice(BOUNDARIES), default=d.boundary,
                     help="Two-way masks: how the boundary snaps to image edges (matting needs pymatting)."),
        click.option("--batch", "batch_size", type=int, default=d.batch_size, help="Variants per synthesis call."),
        click.option("--exact", is_flag=True, help="Reference pipeline: every variant in full at full resolution."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def detector_options(f: Any) -> Any:
    """Instance mode (stylemix/instances.py): a detector proposes boxes, each box is segmented by style mixing."""
    options = [
        click.option("--detector", metavar="PATH", default=None,
                     help="Detector weights (.pt/.onnx/.tflite, Ultralytics YOLO) for instance masks. Default: off."),
        click.option("--classes", default=None, metavar="NAME|ID,..",
                     help="Keep only these detector classes, e.g. person,horse. Default: all."),
        click.option("--det-conf", type=float, default=0.25, help="Detector confidence threshold."),
        click.option("--det-iou", type=float, default=0.7, help="Detector NMS IoU threshold."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def method_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """CLI option values -> :func:`stylemix.segment` keyword arguments."""
    from stylemix.mixing import parse_crossover
    kwargs = {k: options[k] for k in _SEG_OPTS if k in options}
    if kwargs.get("crossover") is not None:
        kwargs["crossover"] = parse_crossover(kwargs["crossover"])
    if isinstance(kwargs.get("consensus"), str):
        try:
            kwargs["consensus"] = tuple(int(k) for k in kwargs["consensus"].split(","))
        except ValueError:
            raise StylemixError(f"bad --consensus {kwargs['consensus']!r}: give cluster counts like 2,3,4,5") from None
    return kwargs


@main.command()
@network_option
@click.option("--seeds", required=True, help="Seeds, e.g. 0-7,12 (NVlabs convention).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where to write the files.")
@method_options
@detector_options
def segment(network: str | None, device: str, seeds: str, outdir: str, **options: Any) -> None:
    """Segment the images of SEEDS and write image, mask and overlay per seed.

    \b
    Files, per seed (SSSS = seed, zero-padded to 4 digits):
      seedSSSS.png          the generated image
      seedSSSS_mask.png     uint8; k=2: 255 foreground, 0 background; k>2: cluster ids
      seedSSSS_overlay.png  the mask drawn over the image
      seedSSSS.json         settings, per-variant crossovers, foreground margin
    and with --detector (instance mode, docs/instances.md):
      seedSSSS_instances.png          instance ids, 0 = background (uint8, uint16 past 255)
      seedSSSS_semantic.png           class id + 1 per pixel, 0 = background
      seedSSSS_instances.json         one record per detection: class, score, box, area, margin, kept/reason
      seedSSSS_instances_overlay.png  instances and boxes drawn over the image

    \b
    Examples:
      stylemix segment --seeds 0-7 --outdir out
      stylemix segment --network network-snapshot.pkl --seeds 0-3,10 -n 32 -k 4 --outdir parts
      stylemix segment --seeds 0-15 --detector yolov8n.tflite --classes person --outdir people
    """
    import numpy as np
    from tqdm import tqdm

    import stylemix
    from stylemix import io, visualize

    seed_list = io.parse_seeds(seeds)
    kwargs = method_kwargs(options)
    G = stylemix.load_generator(network, device=_device(device))
    from stylemix.segment import SegmentConfig
    SegmentConfig(**kwargs).resolve(G)  # every bad value fails here, before anything is written
    from stylemix.instances import prepare_instances, write_instances
    step = prepare_instances(options["detector"], options["classes"], options["det_conf"], options["det_iou"])
    if step is not None:  # the loaded detector, so that it is loaded once and its errors come first
        kwargs.update(detector=step.detector, classes=step.classes, conf=step.conf, iou=step.iou)
    out = io.prepare_outdir(outdir)
    for seg in tqdm(stylemix.segment_many(G, seed_list, **kwargs), total=len(seed_list), unit="img",
                    desc="segment", disable=None):
        stem = out / f"seed{seg.seed:04d}"
        k = seg.meta["settings"]["clusters"]
        mask = (seg.foreground * 255).astype(np.uint8) if k == 2 else seg.labels.astype(np.uint8)
        io.write_png(f"{stem}.png", seg.image)
        io.write_png(f"{stem}_mask.png", mask)
        io.write_png(f"{stem}_overlay.png", visualize.overlay(seg.image, seg.labels, background=k > 2))
        io.write_json(f"{stem}.json", seg.meta)
        if seg.instances is not None:
            write_instances(stem, seg)


@main.command("eval")
@click.option("--pred", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder with seedSSSS_mask.png predictions.")
@click.option("--gt", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder with seedSSSS_mask.png ground truth (255 = foreground).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (per image and summary) instead of a table.")
@click.option("--band", type=int, default=3, help="Trimap band half-width in ground-truth pixels.")
def evaluate(pred: str, gt: str, as_json: bool, band: int) -> None:
    """Score predicted masks against ground truth: fg IoU, bg IoU, mIoU, trimap IoU.

    Masks are matched by seed number in the file name; a prediction of another size is resized to the ground
    truth's by nearest neighbour. Set figures are means over images. Pixels > 127 are foreground.

    \b
    Example:
      stylemix eval --pred out --gt ../shared/eval/mobilestylegan-ffhq
    """
    from stylemix import io, metrics
    preds, gts = _masks_by_seed(pred), _masks_by_seed(gt)
    common = sorted(set(preds) & set(gts))
    if not common:
        raise StylemixError(f"no seedSSSS_mask.png file of {pred!r} has a ground truth in {gt!r}")
    per = {s: metrics.mask_scores(io.read_png(preds[s]) > 127, io.read_png(gts[s]) > 127, band) for s in common}
    summary = metrics.summarize(per)
    summary["missing_predictions"] = len(set(gts) - set(preds))
    if as_json:
        click.echo(json.dumps({"summary": summary, "per_image": {f"seed{s:04d}": v for s, v in per.items()}},
                              indent=1))
        return
    click.echo(f"{'seed':>8} " + " ".join(f"{m:>10}" for m in metrics.METRICS))
    for s, v in per.items():
        click.echo(f"{s:>8} " + " ".join(f"{v[m]:10.4f}" for m in metrics.METRICS))
    click.echo(f"{'mean':>8} " + " ".join(f"{summary[m]:10.4f}" for m in metrics.METRICS)
               + f"   ({summary['images']} images)")


@main.command()
@network_option
def info(network: str | None, device: str) -> None:
    """Describe a generator (family, resolution, style slots) and the available backends.

    \b
    Example:
      stylemix info --network network-snapshot.pkl
    """
    import stylemix
    from stylemix.backend import available_devices
    facts: dict[str, Any] = {"stylemix": stylemix.__version__, "devices": available_devices()}
    try:
        G = stylemix.load_generator(network, device=_device(device))
        facts["generator"] = G.describe()
    except StylemixError as exc:
        if network is not None:
            raise
        facts["generator"] = f"default generator unavailable: {exc}"
    for key, value in facts.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {json.dumps(v) if not isinstance(v, str) else v}")
        else:
            click.echo(f"{key}: {value}")


def _device(device: str) -> str:
    from stylemix.backend import get_backend
    return str(get_backend(device).torch_device)


def _masks_by_seed(folder: str) -> dict[int, Path]:
    found = {}
    for p in Path(folder).iterdir():
        m = re.fullmatch(r"seed(\d+)_mask\.png", p.name)
        if m:
            found[int(m.group(1))] = p
    return found


# ---- export (issue #5): pseudo-label datasets; the library is stylemix/export.py ----------------------------------


@main.command()
@network_option
@click.option("--seeds", default=None, help="Seeds, e.g. 0-99999 (NVlabs convention). Required unless --merge.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="The dataset root.")
@click.option("--format", "fmt", type=click.Choice(("png", "coco", "yolo")), default="png",
              help="png: images/ + masks/; coco: instances JSON with RLE; yolo: ultralytics segmentation.")
@method_options
@detector_options
@click.option("--min-margin", type=float, default=0.0,
              help="Skip seeds whose foreground margin is below this (recorded in the manifest).")
@click.option("--resume", is_flag=True, help="Continue an interrupted export of the same settings and seeds.")
@click.option("--overwrite", is_flag=True, help="Delete the export already in OUTDIR first.")
@click.option("--shard", default=None, metavar="I/N|auto",
              help="Export only seeds s with s mod N = I; auto: torchrun's RANK/WORLD_SIZE.")
@click.option("--batch-seeds", type=int, default=16, help="Seeds per work unit (one Ray task).")
@click.option("--merge", is_flag=True, help="Only merge the shard manifests of OUTDIR into one dataset.")
@click.option("--ray", "use_ray", is_flag=True, help="Segment on a Ray cluster (pip install stylemix[ray]).")
@click.option("--ray-address", default=None, metavar="ADDR", help="Ray cluster to join. Default: a local one.")
@click.option("--workers", type=int, default=None, help="Ray actors. Default: one per GPU, else one per CPU.")
def export(network: str | None, device: str, seeds: str | None, outdir: str, fmt: str, min_margin: float,
           resume: bool, overwrite: bool, shard: str | None, batch_seeds: int, merge: bool, use_ray: bool,
           ray_address: str | None, workers: int | None, **options: Any) -> None:
    """Export the segmentations of SEEDS as a dataset a trainer reads as it is (docs/export.md).

    \b
    OUTDIR holds the format's files, dataset.json (generator, settings, seeds, counts) and manifest.jsonl (one
    line per seed: files and their sha256, foreground margin, or why it was skipped). A killed export continues
    with --resume and ends byte-identical to an uninterrupted one.

    \b
    Examples:
      stylemix export --network shapes --seeds 0-999 --format yolo --outdir DS
      yolo segment train data=DS/data.yaml epochs=1 imgsz=64 model=yolov8n-seg.yaml
      stylemix export --seeds 0-99999 --format coco --outdir DS --shard 3/8      # one of 8 machines
      stylemix export --seeds 0-99999 --format png -k 4 --outdir DS --ray --ray-address auto
    """
    from stylemix import export as ex
    if merge:
        card = ex.merge_shards(outdir)
        click.echo(f"merged {card['counts']['written']} images ({card['counts']['skipped']} seeds skipped) "
                   f"into {os.path.join(outdir, ex.CARD)}")
        return
    if seeds is None:
        raise StylemixError("--seeds is required (unless --merge)")
    kwargs = method_kwargs(options)
    kwargs.update(detector=options["detector"], classes=options["classes"], conf=options["det_conf"],
                  iou=options["det_iou"])
    from stylemix.generators.registry import DEFAULT_GENERATOR
    summary = ex.export_dataset(network or DEFAULT_GENERATOR, seeds, outdir, format=fmt, min_margin=min_margin,
                                resume=resume, overwrite=overwrite, shard=shard, batch_seeds=batch_seeds,
                                ray=use_ray, ray_address=ray_address, workers=workers, device=_device(device),
                                **kwargs)
    rate = f", {summary['images_per_s']} img/s" if summary["images_per_s"] else ""
    click.echo(f"exported {summary['exported']} seeds in {summary['elapsed_s']} s{rate} "
               f"({summary['done']} were already done)")
    if summary["complete"]:
        counts = summary["card"]["counts"]
        click.echo(f"dataset complete: {counts['written']} images, {counts['skipped']} seeds skipped; "
                   f"{os.path.join(outdir, ex.CARD)}")
    else:
        click.echo(f"{summary['pending']} seeds are still missing (other shards); the last shard to finish merges, "
                   f"or run: stylemix export --merge --outdir {outdir}")


# ---- end of export ------------------------------------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
