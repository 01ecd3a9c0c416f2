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

from stylemix.cli_options import (alpha_option, bank_fit_options, detector_options, latents_options, method_kwargs,
                                  method_options, network_option, parts_option, segment_config)
from stylemix.errors import StylemixError

__all__ = ["BANK_HINT", "convert", "discover", "evaluate", "export", "info", "main", "segment"]


class _Group(click.Group):
    """Turns every :class:`StylemixError` into one ``Error: ...`` line and exit status 1, and every warning into one
    ``Warning: ...`` line on stderr (a warning says what stylemix did instead of what was asked; the source line
    Python adds would only hide it)."""

    def invoke(self, ctx: click.Context) -> Any:
        import warnings
        before = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except StylemixError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            warnings.showwarning = before


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    click.echo(f"Warning: {message}", err=True)


# Printed by `segment` when the masks come from the per-image consensus for want of a part bank.
BANK_HINT = ("stylemix: no part bank for this generator, so the masks come from the per-image consensus; for the "
             "bank's better masks add --parts fit once (fits one on seeds 200-399, a minute or two on a CPU, and "
             "caches it for every later command) or run `stylemix discover --seeds 200-399 --out BANK.parts` and "
             "pass --parts BANK.parts")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="stylemix")
def main() -> None:
    """Training-free segmentation of images from style-based GANs by style mixing."""


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
@parts_option("FILE|default|fit", "A part bank (stylemix discover; 'default': the one shipped for the default "
              "generator): writes seedSSSS_parts.png and its overlay, and the mask from the bank's foreground. "
              "'fit': fit the generator's bank on seeds 200-399 now and cache it (fg/bg masks from it, no part "
              "files), even where a shipped or cached one exists.")
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
    config = segment_config(options)
    check_alpha(alpha, config.clusters)
    G = stylemix.load_generator(network, device=_device(device))
    latents = _latents(G, ws_file, ws_are_z, stream_base, seeds)
    transform = _set_input_transform(G, rotate, translate)
    segs = stylemix.segment_many(G, seed_list, ws=latents, config=config, detector=options["detector"], parts=parts)
    # segment_many checks every setting and loads the detector and the part bank once, when its first result is
    # asked for: take that result before the folder is created, so that bad input writes nothing.
    first = next(segs)
    out = io.prepare_outdir(outdir)
    if parts == "auto" and first.meta.foreground_from == "consensus" and not config.exact:
        click.echo(BANK_HINT, err=True)
    elif parts == "fit" and first.meta.parts is not None:
        from stylemix.parts.cache import cached_bank_path
        where = cached_bank_path(G)
        click.echo(f"stylemix: {first.meta.parts['bank']}; the masks come from this bank"
                   + ("" if where is None or not where.is_file() else f", cached as {where}"), err=True)
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
    """Describe a generator (family, resolution, style slots, id, the part bank --parts auto uses) and the
    available backends.

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
        from stylemix.parts.cache import cached_bank_path
        from stylemix.parts.step import auto_bank
        found = auto_bank(G)  # what --parts auto takes the foreground from
        facts["generator"] = {**G.describe(), "id": generator_id(G), "part bank": (
            "none (the per-image consensus; --parts fit fits and caches one)" if found is None else
            f"{found.source} ({cached_bank_path(G)})" if found.source == "auto: cached" else found.source)}
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
@click.option("--format", "fmt", default="png", metavar="png|coco|yolo[,...]",
              help="png: images/ + masks/ (class ids); coco: annotations/instances_{train,val}.json; yolo: "
              "ultralytics segmentation. Several at once, comma-separated (png,coco,yolo): one rendering, shared "
              "images.")
@click.option("--size", type=int, default=None, metavar="PX",
              help="Longer side of the written images and masks (area reduction). Default: the generator's own.")
@click.option("--val-fraction", type=float, default=0.1,
              help="Share of seeds in the val split (images/val, ...), chosen by a hash of each seed.")
@click.option("--class-name", default=None, help="Name of the foreground class of two-way masks (default: foreground).")
@click.option("--coco-masks", type=click.Choice(("polygon", "rle")), default=None,
              help="COCO segmentation as polygons (detectron2's and torchvision's defaults read them; the default) or "
              "exact RLE.")
@click.option("--from", "source", default=None, type=click.Path(file_okay=False), metavar="DS",
              help="Write --format from the finished export DS (its png masks) instead of rendering: seconds. "
              "Takes no --seeds or method options; --class-name and --coco-masks may change.")
@latents_options
@method_options
@detector_options
@alpha_option
@parts_option("FILE|default|K|fit", "A parts dataset: masks, COCO categories and YOLO classes are the classes of "
              "a part bank (a file of stylemix discover, or 'default'), or of one fitted with K classes on the "
              "first 100 seeds. 'fit': fg/bg masks from the generator's bank fitted on the run's first 200 seeds "
              "and cached, even where a shipped or cached one exists. 'auto' fits that bank too where the generator "
              "has no shipped or cached one (at least 100 seeds in the run).")
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
      stylemix export --seeds 0-999 --format png,coco,yolo --size 256 --outdir DS  # every format, one rendering
      stylemix export --from DS --format coco --coco-masks rle --outdir DS-RLE     # re-encoded, no rendering
    """
    from stylemix import export as ex
    source = options.pop("source")
    named = {k: options.pop(k) for k in ("class_name", "coco_masks")}
    if source is not None:
        if seeds is not None or options["ws_file"] is not None or network is not None or merge:
            raise StylemixError("--from converts an existing export: give no --seeds, --ws, --network or --merge")
        run = ex.RunOptions(resume=options["resume"], overwrite=options["overwrite"])
        summary = ex.convert_export(source, outdir, fmt, named["class_name"], named["coco_masks"], run)
        counts = summary["card"]["counts"]
        click.echo(f"converted {summary['exported']} seeds of {source} in {summary['elapsed_s']} s "
                   f"({summary['done']} were already done); dataset complete: {counts['written']} images, "
                   f"{counts['skipped']} seeds skipped; {os.path.join(outdir, ex.CARD)}")
        return
    if merge:
        card = ex.finalize(outdir)
        click.echo(f"merged {card['counts']['written']} images ({card['counts']['skipped']} seeds skipped) "
                   f"into {os.path.join(outdir, ex.CARD)}")
        return
    ws_file, ws_are_z = options["ws_file"], options["ws_are_z"]
    _check_subjects(seeds, ws_file, ws_are_z)
    from stylemix.generators.registry import DEFAULT_GENERATOR
    subjects = seeds if ws_file is None else ex.LatentsFile(ws_file, "z" if ws_are_z else "w", options["stream_base"])
    # The options named as the settings' fields fill them; the detector's filters go to the config's instances.
    dataset = ex.DatasetSettings(**_fields(ex.DatasetSettings, options),
                                 **{k: v for k, v in named.items() if v is not None})
    run = ex.RunOptions(**_fields(ex.RunOptions, options), device=_device(device))
    summary = ex.export_dataset(network or DEFAULT_GENERATOR, subjects, outdir, fmt, segment_config(options),
                                dataset, run)
    rate = f", {summary['images_per_s']} img/s" if summary["images_per_s"] else ""
    click.echo(f"exported {summary['exported']} seeds in {summary['elapsed_s']} s{rate} "
               f"({summary['done']} were already done)")
    if summary["foreground_bank"]:
        fg = summary["foreground_bank"]
        click.echo(f"masks: foreground from the part bank {fg['sha256'][:12]} ({fg['source']}"
                   + (f", fitted on seeds {fg['fit_seeds']})" if fg.get("fit_seeds") else ")"))
    if summary["complete"]:
        counts = summary["card"]["counts"]
        click.echo(f"dataset complete: {counts['written']} images, {counts['skipped']} seeds skipped; "
                   f"{os.path.join(outdir, ex.CARD)}")
    elif summary["shard"]:
        index, count = summary["shard"]
        waiting = ", ".join(f"{i}/{count}" for i in summary["waiting_shards"])
        click.echo(f"shard {index}/{count} done; {summary['pending']} seeds of other shards ({waiting}) not written "
                   "yet: run the remaining shards, the last one to finish merges (or, once they are written: "
                   f"stylemix export --merge --outdir {outdir})")
    else:
        click.echo(f"{summary['pending']} seeds not written yet: run the same command with --resume")


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
    from stylemix.config import SegmentConfig
    from stylemix.parts.bank import PartSettings
    from stylemix.parts.fit import discover as fit_bank

    seed_list = io.parse_seeds(seeds)
    kwargs = method_kwargs(options)
    n_parts = kwargs.pop("clusters")  # -k is the number of classes here; the consensus inside uses k = 2
    given = {"prototypes": prototypes, "signature_variants": signature_variants, "foreground": foreground}
    settings = PartSettings(**{k: v for k, v in given.items() if v is not None})
    G = stylemix.load_generator(network, device=_device(device))
    with tqdm(total=len(seed_list), unit="img", desc="discover", disable=None) as bar:
        bank = fit_bank(G, seed_list, n_parts, settings=settings, config=SegmentConfig(**kwargs),
                        progress=lambda done, total: bar.update(1))
    for path in bank.save(out):
        click.echo(path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
