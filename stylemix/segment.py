"""The pipeline: seed -> base image + N style variants -> per-pixel vectors -> k-means -> foreground -> masks.

:func:`segment` is the library entry point; :class:`SegmentConfig` holds every knob with its default (docs/method.md
explains each). The stages are separate functions so that the instance mode and the benchmarks reuse them:
:func:`render_variants`, :func:`cluster_stack` / :func:`consensus_foreground`, :func:`decide_foreground`,
:func:`finish_labels`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from stylemix import mixing
from stylemix.backend import Backend, get_backend, to_numpy
from stylemix.config import DESCRIPTORS, REFINEMENTS, SegmentConfig, default_crossovers  # noqa: F401 (re-exported)
from stylemix.errors import StylemixError
from stylemix.foreground import cluster_scores
from stylemix.instances import InstanceStep, prepare_instances
from stylemix.render import generator_device, has_features, noise_stream, render_variants  # noqa: F401
from stylemix.stages import (cluster_stack, consensus_foreground, decide_foreground, finish_labels,  # noqa: F401
                             foreground_probability, kmeans_seed, order_binary, part_labels)

@dataclasses.dataclass
class Segmentation:
    """The result for one seed (NumPy arrays at the API edge).

    Attributes:
        seed: the NVlabs seed.
        image: ``uint8 [H, W, 3]`` the base image.
        labels: ``int32 [H, W]`` cluster ids; for k = 2, 1 = foreground and 0 = background.
        foreground: ``bool [H, W]`` (for k > 2, the union of the clusters judged foreground).
        meta: every setting, the per-variant crossovers, cluster scores, the foreground margin and timings.
        instances, instance_records, semantic: the instance mode's results (``segment(..., detector=...)``,
            see :mod:`stylemix.instances`), else ``None``: ``int32 [H, W]`` instance ids (0 = background),
            one :class:`~stylemix.instances.InstanceRecord` per detection, ``int32 [H, W]`` class id + 1.
    """

    seed: int
    image: np.ndarray
    labels: np.ndarray
    foreground: np.ndarray
    meta: dict[str, Any]
    # Instance mode (issue #4): the stylemix.instances.Instances that InstanceStep returns.
    instances: np.ndarray | None = None
    instance_records: list[Any] | None = None
    semantic: np.ndarray | None = None


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """NVIDIA's conversion: ``img [B, 3, H, W]`` float -> ``uint8 [B, H, W, 3]`` (``x * 127.5 + 128``, clamped)."""
    # Contiguous: a channels-first input keeps a permuted layout, which OpenCV (overlays, PNGs) rejects.
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).contiguous()


def style_latents(G: Any, seed: int, cfg: SegmentConfig) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Base and mixed styles of ``seed``: ``(ws_base [1, num_ws, w_dim], ws_mix [N, num_ws, w_dim], crossovers [N])``."""
    device = generator_device(G)
    z = torch.from_numpy(np.concatenate([mixing.seed_to_z(seed, G.z_dim),
                                         mixing.variant_latents(seed, cfg.variants, G.z_dim)])).to(device)
    c = torch.zeros(len(z), G.c_dim, device=device) if G.c_dim else None
    ws = G.mapping(z, c, truncation_psi=cfg.truncation_psi, truncation_cutoff=cfg.truncation_cutoff)
    crossovers = mixing.variant_crossovers(seed, cfg.variants, cfg.crossover, G.num_ws)
    return ws[:1], mixing.mix_styles(ws[:1], ws[1:], crossovers), crossovers


def segment(G: Any, seed: int = 0, *, config: SegmentConfig | None = None, detector: Any = None,
            classes: Any = None, conf: float = 0.25, iou: float = 0.7, instance_config: Any = None,
            **options: Any) -> Segmentation:
    """Segment the image of ``seed`` made by ``G``.

    Args:
        G: a generator (:func:`stylemix.load_generator`); the device of its weights picks the backend.
        seed: NVlabs seed, ``z = RandomState(seed).randn(1, z_dim)``.
        config: a :class:`SegmentConfig`; keyword ``options`` (its field names) override it.
        detector, classes, conf, iou, instance_config: instance mode, off when ``detector`` is ``None``: a weights
            path or a callable (:mod:`stylemix.detect`), a class filter (``"person,horse"`` or ids), the detector's
            confidence and NMS IoU thresholds, an :class:`~stylemix.instances.InstanceConfig`. Fills the
            result's ``instances``, ``instance_records`` and ``semantic``.

    Returns:
        A :class:`Segmentation`.

    Example:
        >>> G = stylemix.load_generator("shapes")
        >>> seg = stylemix.segment(G, seed=0, variants=8)
        >>> seg.foreground.shape
        (64, 64)
    """
    return next(segment_many(G, [seed], config=config, detector=detector, classes=classes, conf=conf, iou=iou,
                             instance_config=instance_config, **options))


def segment_many(G: Any, seeds: Iterable[int], *, config: SegmentConfig | None = None, detector: Any = None,
                 classes: Any = None, conf: float = 0.25, iou: float = 0.7, instance_config: Any = None,
                 **options: Any) -> Iterator[Segmentation]:
    """:func:`segment` over ``seeds``, validating the settings and loading the detector once."""
    cfg = dataclasses.replace(config or SegmentConfig(), **_known(options)).resolve(G)
    device = generator_device(G)
    backend = get_backend(str(device) if device.type == "cuda" else "cpu")  # cuda:N keeps its index
    step = prepare_instances(detector, classes, conf, iou, instance_config)
    for seed in seeds:
        yield _segment(G, int(seed), cfg, backend, step)


def _known(options: dict[str, Any]) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(SegmentConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise StylemixError(f"unknown option {unknown[0]!r}; options are {', '.join(sorted(fields))}")
    return options


def _segment(G: Any, seed: int, cfg: SegmentConfig, backend: Backend,
             instance_step: InstanceStep | None = None) -> Segmentation:
    if seed < 0 or seed >= 2 ** 32:
        raise StylemixError(f"seed must be in [0, 2**32), got {seed}")
    with backend.scope():  # CuPy on the generator's cuda:N for this seed only
        return _segment_on_device(G, seed, cfg, backend, instance_step)


def _segment_on_device(G: Any, seed: int, cfg: SegmentConfig, backend: Backend,
                       instance_step: InstanceStep | None) -> Segmentation:
    t0 = time.perf_counter()
    with torch.inference_mode(), noise_stream(seed, cfg.noise_mode, generator_device(G)):
        ws_base, ws_mix, crossovers = style_latents(G, seed, cfg)
        image, stack = render_variants(G, ws_base, ws_mix, crossovers, cfg)
        if not (bool(torch.isfinite(image).all()) and bool(torch.isfinite(stack).all())):
            # NaN / inf weights or an fp16 overflow: clustering it would give garbage masks, not an error
            raise StylemixError(f"seed {seed}: the generator's output is not finite (NaN or inf); "
                                "nothing was written for it")
        image_u8 = to_uint8(image)[0]
    t1 = time.perf_counter()
    xp = backend.xp
    random_state = kmeans_seed(seed)
    stack = backend.from_torch(stack.float())
    extra = {}
    if cfg.clusters == 2:
        prob, scores, margin, extra["consensus_agreement"] = foreground_probability(stack, cfg, random_state)
    else:
        labels, scores, is_fg, margin = part_labels(stack, cfg, random_state)
    t2 = time.perf_counter()
    guide = backend.from_torch(image_u8)
    size = tuple(image_u8.shape[:2])
    if cfg.clusters == 2:
        full = finish_labels(prob, size, 2, guide, cfg)  # 1 = foreground
        foreground, is_fg = full == 1, xp.asarray([False, True])
    else:
        full = finish_labels(labels, size, cfg.clusters, guide, cfg)
        foreground = is_fg[full]
    t3 = time.perf_counter()
    meta = {
        "seed": seed,
        "generator": getattr(G, "family", type(G).__name__),
        "resolution": int(G.resolution),
        "settings": cfg.as_dict(),
        "crossovers": crossovers.tolist(),
        "foreground_margin": round(margin, 6),
        "cluster_scores": [round(float(s), 6) for s in to_numpy(scores)],
        "foreground_clusters": [int(i) for i in np.flatnonzero(to_numpy(is_fg))],
        "foreground_fraction": round(float(foreground.mean()), 6),
        **{key: round(value, 6) for key, value in extra.items()},
        "timing_s": {"render": t1 - t0, "cluster": t2 - t1, "postprocess": t3 - t2},
    }
    seg = Segmentation(seed, to_numpy(image_u8), to_numpy(full).astype(np.int32),
                       to_numpy(foreground).astype(bool), meta)
    if instance_step is not None:  # instance mode (stylemix/instances.py): per-box clustering of the same stack
        t4 = time.perf_counter()
        inst, seg.meta["instances"] = instance_step(seg.image, stack, cfg, random_state)
        seg.instances, seg.semantic, seg.instance_records = inst.labels, inst.semantic, inst.records
        seg.meta["timing_s"]["instances"] = time.perf_counter() - t4
    return seg
