"""The ``stylemix`` command line: thin wrappers that turn options into keyword arguments of the library."""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from stylemix.errors import StylemixError

__all__ = ["BANK_FIT_FIXED", "METHOD_OPTION_FIELDS", "alpha_option", "bank_fit_options", "convert", "detector_options",
           "discover", "evaluate", "export", "info", "latents_options", "main", "method_kwargs", "method_options",
           "network_option", "parts_option", "segment"]


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


# The SegmentConfig field of each option of method_options, in its order.
METHOD_OPTION_FIELDS = ("variants", "clusters", "crossover", "truncation_psi", "truncation_cutoff",
                        "analysis_resolution", "normalization", "descriptor", "feature_dim", "foreground_rule",
                        "consensus", "frame_penalty", "min_area", "refine", "boundary", "batch_size", "precision",
                        "exact")


def method_options(f: Any, leave_out: tuple[str, ...] = ()) -> Any:
    """The method's knobs (shared by ``segment`` and ``export``); defaults are SegmentConfig's. ``leave_out``: the
    SegmentConfig fields whose options a command does not offer, because they change nothing there."""
    from stylemix.vectors import NORMALIZATIONS
    from stylemix.foreground import RULES
    from stylemix.config import BOUNDARIES, DESCRIPTORS, PRECISIONS, REFINEMENTS, SegmentConfig
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
                     help="Two-way masks: how the boundary is placed."),
        click.option("--batch", "batch_size", type=int, default=d.batch_size,
                     help="Images segmented together (their variants one call per crossover group)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=d.precision,
                     help="Variant stack arithmetic (auto: bfloat16 where the generator and the device support it)."),
        click.option("--exact", is_flag=True, help="Reference pipeline: every variant in full at full resolution."),
    ]
    for name, opt in reversed(list(zip(METHOD_OPTION_FIELDS, options, strict=True))):
        if name not in leave_out:
            f = opt(f)
    return f


# A bank's fit clusters the generator's features at k = 2 and upsamples nothing, so these settings do nothing in
# ``discover`` (its -k is the number of part classes).
BANK_FIT_FIXED = ("descriptor", "min_area", "refine", "boundary")


def bank_fit_options(f: Any) -> Any:
    """:func:`method_options` without the settings a bank's fit does not read (:data:`BANK_FIT_FIXED`)."""
    return method_options(f, leave_out=BANK_FIT_FIXED)


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
    import dataclasses

    from stylemix.config import SegmentConfig
    from stylemix.mixing import parse_crossover
    kwargs = {f.name: options[f.name] for f in dataclasses.fields(SegmentConfig) if f.name in options}
    if kwargs.get("crossover") is not None:
        kwargs["crossover"] = parse_crossover(kwargs["crossover"])
    if isinstance(kwargs.get("consensus"), str):
        try:
            kwargs["consensus"] = tuple(int(k) for k in kwargs["consensus"].split(","))
        except ValueError:
            raise StylemixError(f"bad --consensus {kwargs['consensus']!r}: give cluster counts like 2,3,4,5") from None
    return kwargs


def alpha_option(f: Any) -> Any:
    return click.option("--alpha", is_flag=True,
                        help="Also write seedSSSS_alpha.png: the 8-bit soft matte of the boundary stage "
                             "(>= 128 is the mask). Two-way masks (-k 2) only.")(f)


def parts_option(values: str, help: str) -> Any:
    """``--parts VALUES|auto|none``: what ``help`` says, or (``auto``, the default) fg/bg masks from the part bank
    shipped for the generator where one exists, or (``none``) from the per-image consensus."""
    return click.option("--parts", "parts", metavar=f"{values}|auto|none", default="auto", show_default=True,
                        help=f"{help} 'auto': fg/bg masks from the bank shipped for the generator where it has one "
                             "(no part files); 'none': the per-image consensus.")


def latents_options(f: Any) -> Any:
    """Images given by latents instead of seeds (stylemix/latents.py)."""
    options = [
        click.option("--ws", "ws_file", metavar="FILE", default=None,
                     help="Segment the rows of FILE instead of seeds: .npz with 'w' (NVlabs projector output) or "
                          ".npy of w+ [B, num_ws, w_dim] / w [B, w_dim]. Files are named wsRRRR after the row."),
        click.option("--z", "ws_are_z", is_flag=True, help="FILE holds z rows [B, z_dim] (mapped, truncated)."),
        click.option("--stream-base", type=int, default=0,
                     help="Base of each row's variant streams; change it to draw other variants."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _fields(cls: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The ``options`` named as fields of the dataclass ``cls``."""
    import dataclasses
    return {f.name: options[f.name] for f in dataclasses.fields(cls) if f.name in options}


def _check_subjects(seeds: str | None, ws_file: str | None, ws_are_z: bool) -> None:
    """Exactly one of ``--seeds`` and ``--ws``; ``--z`` only with ``--ws``."""
    if (ws_file is None) == (seeds is None):
        raise StylemixError("give either --seeds or --ws FILE" if ws_file is None else
                            "give either --seeds or --ws FILE, not both")
    if ws_are_z and ws_file is None:
        raise StylemixError("--z applies to --ws FILE only")


def _latents(G: Any, ws_file: str | None, ws_are_z: bool, stream_base: int, seeds: str | None) -> Any:
    """The checked rows of ``--ws`` for ``G`` (or ``None`` for seeds)."""
    _check_subjects(seeds, ws_file, ws_are_z)
    if ws_file is None:
        return None
    from stylemix.latents import load_latents
    return load_latents(ws_file, G, kind="z" if ws_are_z else "w", stream_base=stream_base)


@main.command()
@network_option
@click.option("--seeds", "--seed", "seeds", default=None,
              help="Seeds, e.g. 0-7,12 (NVlabs convention); --seed is the same option.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where to write the files.")
@latents_options
@click.option("--rotate", type=float, default=None, metavar="DEG",
              help="StyleGAN3 only: rotate the image by DEG degrees through the Fourier input's transform.")
@click.option("--translate", default=None, metavar="X,Y",
              help="StyleGAN3 only: translate the image by X,Y (units of the image side) through that transform.")
@method_options
@detector_options
@parts_option("FILE|default", "A part bank (stylemix discover; 'default': the one shipped for the default generator): "
              "writes seedSSSS_parts.png and its overlay, and the mask from the bank's foreground classes.")
@alpha_option
def segment(network: str | None, device: str, seeds: str | None, outdir: str, ws_file: str | None, ws_are_z: bool,
            stream_base: int, rotate: float | None, translate: str | None, parts: str | None, alpha: bool,
            **options: Any) -> None:
    """Segment the images of SEEDS and write image, mask and overlay per seed.

    \b
    Files, per seed (SSSS = seed, zero-padded to 4 digits):
      seedSSSS.png          the generated image
      seedSSSS_mask.png     uint8; k=2: 255 foreground, 0 background; k>2: cluster ids
      seedSSSS_overlay.png  the mask drawn over the image
      seedSSSS.json         settings, per-variant crossovers, foreground margin
      seedSSSS_alpha.png    with --alpha: the 8-bit matte (>= 128: the mask)
    and with --detector (instance mode, docs/instances.md):
      seedSSSS_instances.png          instance ids, 0 = background (uint8, uint16 past 255)
      seedSSSS_semantic.png           class id + 1 per pixel, 0 = background
      seedSSSS_instances.json         one record per detection: class, score, box, area, margin, kept/reason
      seedSSSS_instances_overlay.png  instances and boxes drawn over the image
    and with --parts (docs/parts.md):
      seedSSSS_parts.png          uint8 class ids of the bank (the same id the same part in every image)
      seedSSSS_parts_overlay.png  the classes in fixed colours, with a legend

    \b
    Examples:
      stylemix segment --seeds 0-7 --outdir out
      stylemix segment --network network-snapshot.pkl --seeds 0-3,10 -n 32 -k 4 --outdir parts
      stylemix segment --seeds 0-15 --detector yolov8n.tflite --classes person --outdir people
    """
    from tqdm import tqdm

    import stylemix
    from stylemix import io
    from stylemix.outputs import check_alpha, ordered_map, write_seed

    seed_list = io.parse_seeds(seeds) if seeds is not None else None
    kwargs = method_kwargs(options)
    check_alpha(alpha, kwargs["clusters"])
    G = stylemix.load_generator(network, device=_device(device))
    latents = _latents(G, ws_file, ws_are_z, stream_base, seeds)
    transform = _set_input_transform(G, rotate, translate)
    segs = stylemix.segment_many(G, seed_list, ws=latents, detector=options["detector"], classes=options["classes"],
                                 conf=options["det_conf"], iou=options["det_iou"], parts=parts, **kwargs)
    # segment_many checks every setting and loads the detector and the part bank once, when its first result is
    # asked for: take that result before the folder is created, so that bad input writes nothing.
    first = next(segs)
    out = io.prepare_outdir(outdir)
    extra: dict[str, Any] = {} if transform is None else {"input_transform": transform}
    if latents is not None:
        extra["latents_file"] = {"name": latents.source, "sha256": io.file_sha256(ws_file)}
    total = len(seed_list) if latents is None else len(latents)
    # Encoding and writing run on writer threads while the next seed is segmented (stylemix.outputs.ordered_map);
    # an error in either stops the command after the seeds before it are written.
    written = ordered_map(lambda seg: write_seed(seg, out, alpha=alpha, meta=extra), itertools.chain([first], segs))
    for _ in tqdm(written, total=total, unit="img", desc="segment", disable=None):
        pass


def _set_input_transform(G: Any, rotate: float | None, translate: str | None) -> dict[str, Any] | None:
    """``--rotate`` / ``--translate`` -> ``G.input_transform`` (gen_images.py's recipe); what was set, for the JSON."""
    if rotate is None and translate is None:
        return None
    if not hasattr(G, "input_transform"):
        raise StylemixError(f"--rotate / --translate need a StyleGAN3 network (a Fourier-feature input); "
                            f"{getattr(G, 'family', type(G).__name__)} has none")
    try:
        tx, ty = (0.0, 0.0) if translate is None else (float(v) for v in translate.split(","))
    except ValueError:
        raise StylemixError(f"bad --translate {translate!r}: give X,Y, e.g. 0.1,-0.2") from None
    angle = 0.0 if rotate is None else rotate
    if not all(np.isfinite(v) for v in (angle, tx, ty)):
        raise StylemixError("--rotate and --translate must be finite numbers")
    from stylemix.generators.stylegan3 import input_transform_matrix
    G.input_transform = input_transform_matrix(angle, (tx, ty))
    return {"rotate": angle, "translate": [tx, ty], "matrix": G.input_transform.tolist()}


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
        click.echo(json.dumps({"summary": summary, "per_image": {io.stem(s): v for s, v in per.items()}},
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
        from stylemix.identity import generator_id
        facts["generator"] = {**G.describe(), "id": generator_id(G)}
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
    """The torch device of ``--device``; every command that renders asks here first, so this is also where the
    command's process gets its host allocator tuned (:func:`stylemix.backend.tune_host_allocator`: 1.5x faster
    generation and segmentation on a CPU)."""
    from stylemix.backend import get_backend, tune_host_allocator
    tune_host_allocator()
    return str(get_backend(device).torch_device)


def _masks_by_seed(folder: str) -> dict[int, Path]:
    found = {}
    for p in Path(folder).iterdir():
        m = re.fullmatch(r"seed(\d+)_mask\.png", p.name)
        if m:
            found[int(m.group(1))] = p
    return found


# ---- export (issue #5): pseudo-label datasets; the library is stylemix/export/ -------------------------------------


@main.command()
@network_option
@click.option("--seeds", "--seed", "seeds", default=None,
              help="Seeds, e.g. 0-99999 (NVlabs convention; --seed is the same option). Required unless --merge.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="The dataset root.")
@click.option("--format", "fmt", type=click.Choice(("png", "coco", "yolo")), default="png",
              help="png: images/ + masks/; coco: instances JSON with RLE; yolo: ultralytics segmentation.")
@latents_options
@method_options
@detector_options
@alpha_option
@parts_option("FILE|default|K", "A parts dataset: masks, COCO categories and YOLO classes are the classes of a "
              "part bank (a file of stylemix discover, or 'default'), or of one fitted with K classes on the first "
              "100 seeds.")
@click.option("--min-margin", type=float, default=0.0,
              help="Skip seeds whose foreground margin is below this (recorded in the manifest).")
@click.option("--resume", is_flag=True, help="Continue an interrupted export of the same settings and seeds.")
@click.option("--overwrite", is_flag=True, help="Delete the export already in OUTDIR first.")
@click.option("--shard", default=None, metavar="I/N|auto",
              help="Export only seeds s with s mod N = I; auto: torchrun's RANK/WORLD_SIZE.")
@click.option("--batch-seeds", type=int, default=16, help="Seeds per work unit (one Ray task).")
@click.option("--merge", is_flag=True, help="Only merge the shard manifests of OUTDIR into one dataset.")
@click.option("--ray", is_flag=True, help="Segment on a Ray cluster (pip install stylemix[ray]).")
@click.option("--ray-address", default=None, metavar="ADDR", help="Ray cluster to join. Default: a local one.")
@click.option("--workers", type=int, default=None, help="Ray actors. Default: one per GPU, else one per CPU.")
def export(network: str | None, device: str, seeds: str | None, outdir: str, fmt: str, merge: bool,
           **options: Any) -> None:
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
      stylemix export --seeds 0-9999 --format coco --parts default --outdir PARTS  # consistent part classes
    """
    from stylemix import export as ex
    from stylemix.config import SegmentConfig
    if merge:
        card = ex.finalize(outdir)
        click.echo(f"merged {card['counts']['written']} images ({card['counts']['skipped']} seeds skipped) "
                   f"into {os.path.join(outdir, ex.CARD)}")
        return
    ws_file, ws_are_z = options["ws_file"], options["ws_are_z"]
    _check_subjects(seeds, ws_file, ws_are_z)
    from stylemix.generators.registry import DEFAULT_GENERATOR
    subjects = seeds if ws_file is None else ex.LatentsFile(ws_file, "z" if ws_are_z else "w", options["stream_base"])
    # The options named as the settings' fields fill them; the detector's thresholds are --det-conf, --det-iou.
    dataset = ex.DatasetSettings(**_fields(ex.DatasetSettings, options), conf=options["det_conf"],
                                 iou=options["det_iou"])
    run = ex.RunOptions(**_fields(ex.RunOptions, options), device=_device(device))
    summary = ex.export_dataset(network or DEFAULT_GENERATOR, subjects, outdir, fmt,
                                SegmentConfig(**method_kwargs(options)), dataset, run)
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


# ---- convert (issue #12): any supported network file -> one safetensors file; the library is generators/files.py ----


@main.command()
@click.argument("src", metavar="SRC")
@click.argument("out", metavar="OUT.safetensors", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def convert(src: str, out: str, overwrite: bool) -> None:
    """Convert the generator in SRC (any format stylemix reads) to OUT.safetensors.

    \b
    The output holds the weights and, in its metadata, the family, the constructor config, the style layout and
    the source's sha256; it carries no code, and `--network OUT.safetensors` gives outputs bit-identical to SRC's.
    OUT is written to a temporary file and renamed, so a failed conversion leaves nothing behind.

    \b
    Examples:
      stylemix convert stylegan2-ffhq-config-f.pkl ffhq.safetensors      # a TensorFlow pickle
      stylemix convert network-snapshot-025000.pkl snapshot.safetensors
    """
    from stylemix.generators.convert import convert_to_safetensors
    summary = convert_to_safetensors(src, out, overwrite=overwrite)
    click.echo(f"wrote {summary['out']}: {summary['family']}, {summary['tensors']} tensors, {summary['bytes']} bytes, "
               f"sha256 {summary['sha256']} (source sha256 {summary['source_sha256'] or 'none'})")


# ---- end of convert -----------------------------------------------------------------------------------------------



# ---- discover (issue #14): part banks; the library is stylemix/parts/ -------------------------------------------


@main.command()
@network_option
@click.option("--seeds", "--seed", "seeds", required=True, help="Seeds of the bank's images, e.g. 200-399 (keep them apart from "
                                             "the seeds you evaluate on).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The bank file to write (.parts).")
@click.option("--prototypes", type=int, default=None, help="k-means prototypes of the pooled descriptors (M).")
@click.option("--signature-variants", type=int, default=None, help="Shared style variants of the signature cue.")
@click.option("--foreground", type=click.Choice(("fine", "bank", "combined", "consensus")), default=None,
              help="The mask of `segment --parts`: the fine foreground prototypes (default), the bank's classes, "
                   "their mean with the consensus, or the latter.")
@bank_fit_options
def discover(network: str | None, device: str, seeds: str, out: str, prototypes: int | None,
             signature_variants: int | None, foreground: str | None, **options: Any) -> None:
    """Fit a part bank of K = -k classes that mean the same part in every image of the generator (docs/parts.md).

    \b
    Writes OUT (safetensors: arrays + settings, the generator's id; loading runs no code), beside it
    OUT_STEM.classes.csv (class names and foreground flags: edit them) and OUT_STEM.classNN.png (each class
    highlighted on the first 16 seeds, to name it by looking).

    \b
    Example:
      stylemix discover --seeds 200-399 -k 4 --out faces.parts    (-k: the number of part classes)
      stylemix segment --seeds 0-3 --parts faces.parts --outdir out
    """
    from tqdm import tqdm

    import stylemix
    from stylemix import io
    from stylemix.parts.fit import discover as fit_bank

    seed_list = io.parse_seeds(seeds)
    kwargs = method_kwargs(options)
    n_parts = kwargs.pop("clusters")  # -k is the number of classes here; the consensus inside uses k = 2
    extra = {k: v for k, v in (("prototypes", prototypes), ("signature_variants", signature_variants),
                               ("foreground", foreground)) if v is not None}
    G = stylemix.load_generator(network, device=_device(device))
    with tqdm(total=len(seed_list), unit="img", desc="discover", disable=None) as bar:
        bank = fit_bank(G, seed_list, n_parts, progress=lambda done, total: bar.update(1), **kwargs, **extra)
    for path in bank.save(out):
        click.echo(path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
