"""The settings of the method: :class:`SegmentConfig` (the whole-image pipeline), which holds an
:class:`InstanceConfig` (the detector's filters and the per-box step of the instance mode), with their checks. Every other module reads its settings from here; this one
imports no stage, so the import graph runs one way (config -> stages -> instances -> segment -> export / cli).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from stylemix import mixing, refine
from stylemix.errors import StylemixError
from stylemix.foreground import RULES
from stylemix.backend import native_bfloat16
from stylemix.detect import check_thresholds
from stylemix.render import generator_device, has_features
from stylemix.vectors import NORMALIZATIONS

__all__ = ["BOUNDARIES", "DESCRIPTORS", "InstanceConfig", "PRECISIONS", "REFINEMENTS", "SegmentConfig",
           "default_crossovers", "refuse_legacy", "variant_precision"]

DESCRIPTORS = ("auto", "features", "rgb")
PRECISIONS = ("auto", "float32", "bfloat16")
REFINEMENTS = ("guided", "nearest")
BOUNDARIES = refine.METHODS


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
    """Every setting of the method (defaults are the documented ones; see docs/method.md).

    Attributes:
        variants: N, number of style variants rendered per image (>= 2).
        clusters: k for k-means; 2 gives foreground/background, more gives parts.
        crossover: slots ``[0, crossover)`` are kept from the base (layout); an int, a ``(low, high)`` range drawn
            per variant, or a list cycled over variants. ``None``: the four depths ``[c - 3, c]`` ending at the
            generator's ``default_crossover`` c, moved down if needed so that each one changes the analysis
            resolution (:func:`default_crossovers`).
        truncation_psi, truncation_cutoff: NVIDIA truncation of the base and the variant latents.
        analysis_resolution: side at which variants are rendered and clustered (power of two, <= resolution).
        normalization: per-pixel vector normalisation, ``standardize`` | ``center`` | ``none``.
        descriptor: ``features`` (the generator's feature maps at the analysis resolution, randomly projected to
            ``feature_dim`` channels per variant: they stop synthesis early and cluster better), ``rgb`` (the
            variants' pixels) or ``auto`` (features when the generator exposes them, else rgb).
        feature_dim: channels kept per variant by the fixed random projection of the features.
        foreground_rule: ``centre`` | ``border`` | ``combined`` (see :mod:`stylemix.foreground`).
        consensus: for ``clusters = 2``, the k-means cluster counts whose foreground decisions are averaged into the
            mask (:func:`consensus_foreground`); ``(2,)`` is the plain two-way split.
        frame_penalty: in each consensus vote, how much a cluster's share of the image frame holds it back from
            joining the foreground (``alpha`` of :func:`~stylemix.foreground.anchor_foreground`; 0: nearer anchor).
        min_area: components smaller than this fraction of the image are merged into their surroundings.
        refine: ``guided`` (edges follow the full-resolution image) or ``nearest`` upsampling of the labels.
        boundary: for two-way masks under ``refine="guided"``, how the boundary is placed (:mod:`stylemix.refine`):
            ``features-matting`` (the default: the band around the region decision's boundary relabelled by the
            base image's generator features at twice the analysis resolution and its colours, then closed-form
            matting of a narrower band; ``matting`` for a generator without features), ``features`` (the
            relabelling at the analysis resolution, then narrowing guided passes; ``cascade`` without features),
            ``cascade`` (the guided passes alone), ``grabcut`` (a colour graph cut in the band), ``matting``
            (closed-form matting of the cascade's band) or ``guided`` (one guided pass, the method before the
            refinement stage).
        noise_mode: generator noise, ``const`` so that variants differ only by their styles; ``random`` draws it
            from torch's generator seeded by the seed's noise stream (same inputs, same masks).
        batch_size: images segmented together: on a GPU their variants in one call per crossover group (each base
            image is always rendered alone), their clustering and post-processing in one pass without per-image
            setup, side by side on up to torch's thread count (:func:`stylemix.segment.finish_workers`; ``exact``:
            full-resolution variants rendered this many per call). A performance knob: the masks do not depend on
            it (gathered variants' floats differ by the rounding of batched kernels, docs/benchmarks.md; on a CPU
            each image's variants are their own calls, :func:`stylemix.backend.gathers_variants`, and a batch is
            byte-identical to its images alone).
        precision: the variant stack's arithmetic: ``float32``, ``bfloat16`` (a bfloat16 copy of the generator
            finishes the variants; half the memory traffic, 1.5-2x faster on CPUs with AVX-512 BF16 / AMX and on
            GPUs) or ``auto`` (bfloat16 where the generator declares its masks unchanged in it,
            ``variant_precision``, and the device computes it natively; else float32). The base image is always
            the generator's float32 image; ``exact`` always float32.
        exact: the reference pipeline with no shortcut: every variant synthesised in full at full resolution and
            clustered on its RGB, area-downsampled to the analysis resolution (implies ``descriptor="rgb"``).
        n_init, max_iter: k-means restarts and iterations.
        instances: the instance mode's settings (:class:`InstanceConfig`), read only when a detector is given
            (``segment(..., detector=...)``). Not in :meth:`as_dict`: a run with a detector records them in
            ``meta["instances"]``, and the settings of a run without one do not depend on them.
    """

    variants: int = 24
    clusters: int = 2
    crossover: mixing.Crossover | None = None
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    analysis_resolution: int = 32
    normalization: str = "standardize"
    descriptor: str = "auto"
    feature_dim: int = 16
    foreground_rule: str = "centre"
    consensus: tuple[int, ...] = (2, 3, 4, 5)
    frame_penalty: float = 0.75
    min_area: float = 0.002
    refine: str = "guided"
    boundary: str = "features-matting"
    noise_mode: str = "const"
    batch_size: int = 8
    precision: str = "auto"
    exact: bool = False
    n_init: int = 3
    max_iter: int = 100
    instances: "InstanceConfig" = dataclasses.field(default_factory=lambda: InstanceConfig())

    def resolve(self, G: Any) -> "SegmentConfig":
        """Fill generator-dependent defaults and check every value; one clear :class:`StylemixError` if bad."""
        self.check_types()
        analysis_resolution = min(self.analysis_resolution, G.resolution)
        crossover = default_crossovers(G, analysis_resolution) if self.crossover is None else self.crossover
        descriptor = self.descriptor
        if self.exact:
            descriptor = "rgb"
        elif descriptor == "auto":
            descriptor = "features" if has_features(G) else "rgb"
        cfg = dataclasses.replace(self, crossover=crossover, descriptor=descriptor,
                                  precision=variant_precision(G, self),
                                  consensus=tuple(int(k) for k in self.consensus),
                                  analysis_resolution=analysis_resolution, frame_penalty=float(self.frame_penalty))
        if not math.isfinite(cfg.truncation_psi):
            raise StylemixError(f"truncation_psi must be a finite number, got {cfg.truncation_psi}")
        if cfg.variants < 2:
            raise StylemixError(f"variants must be at least 2, got {cfg.variants}")
        if cfg.clusters < 2:
            raise StylemixError(f"clusters must be at least 2, got {cfg.clusters}")
        if not cfg.consensus or any(int(k) < 2 for k in cfg.consensus):
            raise StylemixError(f"consensus needs cluster counts of at least 2, got {cfg.consensus}")
        r = cfg.analysis_resolution
        if r < 4 or r & (r - 1):
            raise StylemixError(f"analysis resolution must be a power of two >= 4, got {self.analysis_resolution}")
        for name, value, allowed in (("normalization", cfg.normalization, NORMALIZATIONS),
                                     ("descriptor", cfg.descriptor, DESCRIPTORS),
                                     ("foreground rule", cfg.foreground_rule, RULES),
                                     ("refine", cfg.refine, REFINEMENTS),
                                     ("boundary method", cfg.boundary, BOUNDARIES),
                                     ("noise mode", cfg.noise_mode, ("const", "random", "none")),
                                     ("precision", cfg.precision, PRECISIONS)):
            if value not in allowed:
                raise StylemixError(f"unknown {name} {value!r}: use one of {', '.join(allowed)}")
        if not 0 <= cfg.min_area < 0.5:
            raise StylemixError(f"min_area is a fraction of the image in [0, 0.5), got {cfg.min_area}")
        if not 0 <= cfg.frame_penalty <= 10:
            raise StylemixError(f"frame_penalty must lie in [0, 10], got {cfg.frame_penalty}")
        if cfg.batch_size < 1:
            raise StylemixError(f"batch size must be at least 1, got {cfg.batch_size}")
        if cfg.n_init < 1 or cfg.max_iter < 1:
            raise StylemixError(f"n_init and max_iter must be at least 1, got {cfg.n_init} and {cfg.max_iter}")
        if cfg.feature_dim < 1:
            raise StylemixError(f"feature_dim must be at least 1, got {cfg.feature_dim}")
        if cfg.descriptor == "features" and not has_features(G):
            raise StylemixError(f"{getattr(G, 'family', type(G).__name__)} exposes no feature maps: use descriptor rgb")
        mixing.check_crossover(crossover, G.num_ws)
        return cfg

    def check_types(self) -> None:
        """One :class:`StylemixError` line for a value of the wrong type (a string where a number belongs, ...),
        before any comparison could fail on it with a bare ``TypeError``."""
        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_real(v: Any) -> bool:
            return (is_int(v) or isinstance(v, (float, np.floating))) and not isinstance(v, bool)

        if not isinstance(self.instances, InstanceConfig):
            raise StylemixError(f"instances must be an InstanceConfig, got {self.instances!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            ok = {"int": is_int(v), "int | None": v is None or is_int(v), "float": is_real(v),
                  "str": isinstance(v, str), "bool": isinstance(v, (bool, np.bool_)),
                  "tuple[int, ...]": isinstance(v, (tuple, list)) and all(is_int(k) for k in v),
                  }.get(str(f.type), True)  # crossover: mixing.check_crossover
            if not ok:
                kind = str(f.type).replace("tuple[int, ...]", "a sequence of ints").replace(" | None", " or None")
                raise StylemixError(f"{f.name} must be {kind}, got {v!r}")

    def kmeans_options(self) -> dict[str, Any]:
        """The settings of every stage that runs k-means (:mod:`stylemix.stages`): ``normalization``, ``n_init``,
        ``max_iter``, as keyword arguments."""
        return {"normalization": self.normalization, "n_init": self.n_init, "max_iter": self.max_iter}

    def as_dict(self) -> dict[str, Any]:
        """The whole-image settings as JSON (``seedSSSS.json``'s ``settings``, the export's digest): every field
        but ``instances``."""
        d = dataclasses.asdict(self)
        del d["instances"]
        if isinstance(d["crossover"], tuple):  # JSON has no tuples: a range is written "LOW-HIGH"
            d["crossover"] = "{}-{}".format(*d["crossover"])
        return d


def variant_precision(G: Any, cfg: SegmentConfig) -> str:
    """``cfg.precision`` resolved for ``G``: ``auto`` -> ``bfloat16`` where ``G`` declares its variants safe in it
    (``variant_precision``) and its device computes it natively (:func:`stylemix.backend.native_bfloat16`), else
    ``float32``; ``exact`` -> ``float32``. An unknown value is returned as given (``resolve`` reports it).

    Raises:
        StylemixError: ``bfloat16`` asked for a generator that is not a ``torch.nn.Module`` (nothing to convert).
    """
    if cfg.exact or cfg.precision not in PRECISIONS:
        return "float32" if cfg.exact else cfg.precision
    is_module = isinstance(G, torch.nn.Module)
    if cfg.precision == "auto":
        declared = getattr(G, "variant_precision", "float32") == "bfloat16"
        return "bfloat16" if declared and is_module and native_bfloat16(generator_device(G)) else "float32"
    if cfg.precision == "bfloat16" and not is_module:
        raise StylemixError(f"precision bfloat16 needs a torch.nn.Module generator, got {type(G).__name__}: "
                            "use precision float32")
    return cfg.precision


def default_crossovers(G: Any, analysis_resolution: int | None = None) -> list[int]:
    """Four consecutive crossovers ``[c - 3, c]`` ending at ``G``'s declared crossover c, from the one that keeps
    little more than the pose to the declared one (clipped to ``[1, num_ws - 1]``, duplicates dropped).

    Given the analysis resolution r, c is first lowered below the number of slots that drive layers at r or
    coarser: a crossover past them leaves every variant's stack at r equal to the base's (the MobileStyleGAN
    default c = 7 with c + 3 = 10 wasted a third of the variants at r = 32 before this rule).
    """
    c = G.style_layout.default_crossover
    if analysis_resolution is not None:
        reaching = sum(1 for res in G.style_layout.slot_resolutions if res <= analysis_resolution)
        c = min(c, reaching - 1)
    return sorted({min(max(x, 1), G.num_ws - 1) for x in range(c - 3, c + 1)})


@dataclasses.dataclass(frozen=True)
class InstanceConfig:
    """Settings of the instance mode: which detections count, and the per-box step that segments each.

    Attributes:
        classes: keep only these detector classes: names or ids, ``"person,horse"`` or a sequence (``None``: all).
        conf, iou: the detector's confidence and NMS IoU thresholds, in [0, 1].
        clusters: k for k-means inside each crop (2: object / rest).
        crop_margins: context added on each side of a box, as a fraction of its width (height): the ring that
            tells the clustering what "not the object" looks like. Tried in order until the box gives a plausible
            instance: tight first (neighbours stay out), wider when the box holds too little background.
        max_box_fill: drop an instance whose mask covers more than this fraction of its box.
        min_crop: drop a box narrower than this many analysis pixels (raise the analysis resolution for small
            objects).
        min_margin: drop an instance whose foreground margin is below this (one with no evidence at all, margin 0,
            is always dropped). Default 0: like the whole-image mode, a weak instance is kept with its margin
            recorded, and filtering is left to the consumer (e.g. ``stylemix export --min-margin``).
        max_edge_cover: a mask covering more than this fraction of a crop side (one inside the image) is cut by
            the crop, so the next, wider margin is tried (:func:`edge_cover`).
        merge_overlap: two detections of one class whose boxes and masks both share more than this fraction of
            the smaller one are one object detected twice, and are merged (1 turns merging off).
    """

    classes: str | tuple[str | int, ...] | None = None
    conf: float = 0.25
    iou: float = 0.7
    clusters: int = 2
    crop_margins: tuple[float, ...] = (0.15, 0.5, 2.0)
    max_box_fill: float = 0.95
    min_crop: int = 4
    min_margin: float = 0.0
    max_edge_cover: float = 0.1
    merge_overlap: float = 0.7

    # The detector's filters; the other fields are the per-box step's (box_settings).
    DETECTOR_FIELDS = ("classes", "conf", "iou")

    def box_settings(self) -> dict[str, Any]:
        """The per-box step's settings as JSON (``meta["instances"]["settings"]``): every field but the detector's
        filters, which the record holds beside them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.DETECTOR_FIELDS}

    def check(self) -> None:
        """One :class:`StylemixError` line for a value out of range."""
        check_thresholds(self.conf, self.iou)
        if self.clusters < 2:
            raise StylemixError(f"instance clusters must be at least 2, got {self.clusters}")
        if not self.crop_margins or not all(0 <= m <= 4 for m in self.crop_margins):
            raise StylemixError(f"crop margins are fractions of the box side in [0, 4], got {self.crop_margins}")
        if not 0 < self.max_box_fill <= 1:
            raise StylemixError(f"max box fill must be in (0, 1], got {self.max_box_fill}")
        if not 0 <= self.merge_overlap <= 1:
            raise StylemixError(f"merge overlap must be in [0, 1], got {self.merge_overlap}")
        if not 0 <= self.max_edge_cover <= 1:
            raise StylemixError(f"max edge cover must be in [0, 1], got {self.max_edge_cover}")
        if not 0 <= self.min_margin < 1:
            raise StylemixError(f"min margin must be in [0, 1), got {self.min_margin}")
        if self.min_crop < 2:
            raise StylemixError(f"min crop must be at least 2 analysis pixels, got {self.min_crop}")




def refuse_legacy(function: str, keywords: dict[str, Any]) -> None:
    """One :class:`StylemixError` line for the settings ``function`` took as loose keywords in earlier versions
    (``segment(G, 0, variants=8, classes="person")``), naming the spelling that replaces them
    (``config=SegmentConfig(variants=8, instances=InstanceConfig(classes='person'))``); nothing when none.
    ``instance_config=X`` is ``instances=X``; a keyword that never was a setting is reported as unknown."""
    if not keywords:
        return
    config_names = {f.name for f in dataclasses.fields(SegmentConfig)} - {"instances"}
    instance_names = {f.name for f in dataclasses.fields(InstanceConfig)}
    unknown = sorted(set(keywords) - config_names - instance_names - {"instance_config"})
    if unknown:
        raise StylemixError(f"unknown option {unknown[0]!r}; the settings are the fields of SegmentConfig "
                            f"({', '.join(sorted(config_names))}), passed as config=SegmentConfig(...)")
    flat = [f"{k}={v!r}" for k, v in keywords.items() if k in config_names]
    loose = [f"{k}={v!r}" for k, v in keywords.items() if k in instance_names - config_names]
    if loose:
        flat.append(f"instances=InstanceConfig({', '.join(loose)})")
    elif "instance_config" in keywords:
        flat.append(f"instances={keywords['instance_config']!r}")
    raise StylemixError(f"{function}() takes its settings through config=: use "
                        f"config=SegmentConfig({', '.join(flat)})")
