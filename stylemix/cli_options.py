"""The options the ``stylemix`` commands share (generator, method settings, detector, latents, alpha, parts) as
click decorators, and :func:`method_kwargs`, which turns the method's options into SegmentConfig fields."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import click

from stylemix.errors import StylemixError

if TYPE_CHECKING:
    from stylemix.config import SegmentConfig

__all__ = ["BANK_FIT_FIXED", "METHOD_OPTION_FIELDS", "alpha_option", "bank_fit_options", "detector_options",
           "latents_options", "method_kwargs", "method_options", "network_option", "parts_option", "segment_config"]


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
    """CLI option values -> :class:`~stylemix.config.SegmentConfig` fields (keyword arguments)."""
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


def segment_config(options: dict[str, Any]) -> SegmentConfig:
    """CLI option values -> the run's :class:`~stylemix.config.SegmentConfig`: the method's options
    (:func:`method_kwargs`) and, where the command has :func:`detector_options`, the detector's filters as its
    ``instances``."""
    from stylemix.config import InstanceConfig, SegmentConfig
    config = SegmentConfig(**method_kwargs(options))
    if "det_conf" not in options:
        return config
    return dataclasses.replace(config, instances=InstanceConfig(classes=options["classes"], conf=options["det_conf"],
                                                                iou=options["det_iou"]))


def alpha_option(f: Any) -> Any:
    return click.option("--alpha", is_flag=True,
                        help="Also write seedSSSS_alpha.png: the 8-bit soft matte of the boundary stage "
                             "(>= 128 is the mask). Two-way masks (-k 2) only.")(f)


def parts_option(values: str, help: str) -> Any:
    """``--parts VALUES|auto|none``: what ``help`` says, or (``auto``, the default) fg/bg masks from the part bank
    shipped for the generator, else its bank in the user's cache, or (``none``) from the per-image consensus."""
    return click.option("--parts", "parts", metavar=f"{values}|auto|none", default="auto", show_default=True,
                        help=f"{help} 'auto': fg/bg masks from the bank shipped for the generator, else its bank "
                             "in the cache ($STYLEMIX_CACHE, else ~/.cache/stylemix; no part files); 'none': the "
                             "per-image consensus.")


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
