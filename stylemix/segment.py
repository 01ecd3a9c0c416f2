"""The pipeline: seed -> base image + N style variants -> per-pixel vectors -> k-means -> foreground -> masks.

:func:`segment` is the library entry point; :class:`SegmentConfig` holds every knob with its default (docs/method.md
explains each). The stages are separate functions so that the instance mode and the benchmarks reuse them:
:func:`render_variants`, :func:`cluster_stack` / :func:`consensus_foreground`, :func:`decide_foreground`,
:func:`finish_labels`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from stylemix import mixing, refine
from stylemix.backend import Backend, array_module, get_backend, to_numpy
from stylemix.cluster import KMeans
from stylemix.errors import StylemixError
from stylemix.features import NORMALIZATIONS, pixel_vectors
from stylemix.foreground import RULES, anchor_foreground, cluster_scores, foreground_clusters
from stylemix.generators.base import resize_image
from stylemix.postprocess import clean_labels, upsample_labels, upsample_mask

DESCRIPTORS = ("auto", "features", "rgb")
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
        boundary: for two-way masks under ``refine="guided"``, how the boundary is placed on the image's edges
            (:mod:`stylemix.refine`): ``cascade`` (narrowing guided passes, the default: a few milliseconds),
            ``matting`` (closed-form matting in a band, needs pymatting: better boundaries, ~0.1 s per image on a
            CPU core) or ``guided`` (one guided pass, the method before the refinement stage).
        noise_mode: generator noise, ``const`` so that variants differ only by their styles.
        batch_size: variants rendered per synthesis call (results do not depend on it).
        exact: the reference pipeline with no shortcut: every variant synthesised in full at full resolution and
            clustered on its RGB, area-downsampled to the analysis resolution (implies ``descriptor="rgb"``).
        n_init, max_iter: k-means restarts and iterations.
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
    boundary: str = "cascade"
    noise_mode: str = "const"
    batch_size: int = 8
    exact: bool = False
    n_init: int = 3
    max_iter: int = 100

    def resolve(self, G: Any) -> "SegmentConfig":
        """Fill generator-dependent defaults and check every value; one clear :class:`StylemixError` if bad."""
        analysis_resolution = min(self.analysis_resolution, G.resolution)
        crossover = default_crossovers(G, analysis_resolution) if self.crossover is None else self.crossover
        descriptor = self.descriptor
        if self.exact:
            descriptor = "rgb"
        elif descriptor == "auto":
            descriptor = "features" if has_features(G) else "rgb"
        cfg = dataclasses.replace(self, crossover=crossover, descriptor=descriptor,
                                  consensus=tuple(int(k) for k in self.consensus),
                                  analysis_resolution=analysis_resolution, frame_penalty=float(self.frame_penalty))
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
                                     ("noise mode", cfg.noise_mode, ("const", "random", "none"))):
            if value not in allowed:
                raise StylemixError(f"unknown {name} {value!r}: use one of {', '.join(allowed)}")
        if not 0 <= cfg.min_area < 0.5:
            raise StylemixError(f"min_area is a fraction of the image in [0, 0.5), got {cfg.min_area}")
        if not 0 <= cfg.frame_penalty <= 10:
            raise StylemixError(f"frame_penalty must lie in [0, 10], got {cfg.frame_penalty}")
        if cfg.batch_size < 1:
            raise StylemixError(f"batch size must be at least 1, got {cfg.batch_size}")
        if cfg.feature_dim < 1:
            raise StylemixError(f"feature_dim must be at least 1, got {cfg.feature_dim}")
        if cfg.descriptor == "features" and not has_features(G):
            raise StylemixError(f"{getattr(G, 'family', type(G).__name__)} exposes no feature maps: use descriptor rgb")
        mixing.check_crossover(crossover, G.num_ws)
        return cfg

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(d["crossover"], tuple):  # JSON has no tuples: a range is written "LOW-HIGH"
            d["crossover"] = "{}-{}".format(*d["crossover"])
        return d


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


def has_features(G: Any) -> bool:
    """Whether ``G`` implements ``features`` (the base class's fallback raises)."""
    from stylemix.generators.base import GeneratorBase
    method = getattr(type(G), "features", None)
    return method is not None and method is not GeneratorBase.features


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
    # Instance mode (issue #4), filled by stylemix.instances.InstanceStep.
    instances: np.ndarray | None = None
    instance_records: list[Any] | None = None
    semantic: np.ndarray | None = None


def generator_device(G: Any) -> torch.device:
    """The device of ``G``'s weights (CPU when it has none)."""
    for t in list(G.parameters()) + list(G.buffers()) if isinstance(G, torch.nn.Module) else []:
        return t.device
    return torch.device("cpu")


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


def render_variants(G: Any, ws_base: torch.Tensor, ws_mix: torch.Tensor, crossovers: np.ndarray,
                    cfg: SegmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The base image at full resolution and the variant stack at the analysis resolution.

    The fast path runs the base's layers below each crossover once (``synthesis_prefixes``), finishes each group of
    variants sharing a crossover from its state, and stops them at the analysis resolution, taking their feature
    maps (projected to ``feature_dim`` channels, ``features_suffix``) or their partial RGB image; ``cfg.exact``
    renders everything in full and area-resizes the RGB.

    Returns:
        ``(image [1, 3, H, W], stack [N, C, r, r])``, variants in their original order.
    """
    r, nm = cfg.analysis_resolution, cfg.noise_mode
    if cfg.exact:
        image = G.synthesis(ws_base, noise_mode=nm)
        return image, torch.cat([resize_image(G.synthesis(ws_mix[i:i + cfg.batch_size], noise_mode=nm), r)
                                 for i in range(0, len(ws_mix), cfg.batch_size)])
    states = G.synthesis_prefixes(ws_base, sorted({int(c) for c in crossovers}), noise_mode=nm)
    image = G.synthesis_suffix(states[max(states)], ws_base, None, noise_mode=nm)  # the deepest state: least left
    if cfg.descriptor == "features":
        render = (lambda state, w: G.features_suffix(state, w, r, cfg.feature_dim, noise_mode=nm))
    else:
        render = (lambda state, w: G.synthesis_suffix(state, w, r, noise_mode=nm))
    order, parts = [], []
    for c, state in states.items():
        rows = np.flatnonzero(crossovers == c)
        for i in range(0, len(rows), cfg.batch_size):
            order.extend(rows[i:i + cfg.batch_size])
            parts.append(render(state, ws_mix[rows[i:i + cfg.batch_size]]))
    return image, torch.cat(parts)[torch.from_numpy(np.argsort(order))]


def cluster_stack(stack: Any, cfg: SegmentConfig, random_state: int) -> Any:
    """k-means labels ``int32 [h, w]`` of the variant stack ``[N, C, h, w]`` (NumPy or CuPy)."""
    n, c, h, w = stack.shape
    X = pixel_vectors(stack, cfg.normalization)
    km = KMeans(cfg.clusters, n_init=cfg.n_init, max_iter=cfg.max_iter, random_state=random_state).fit(X)
    return km.labels_.reshape(h, w)


def consensus_foreground(stack: Any, cfg: SegmentConfig, random_state: int,
                         vote: Callable[[Any, Any, int], Any] | None = None) -> tuple[Any, float]:
    """Foreground probability ``float32 [h, w]`` of the variant stack ``[N, C, h, w]`` and the votes' agreement.

    One k-means per ``k`` in ``cfg.consensus`` on the same vectors; each clustering is merged into foreground and
    background by ``vote(vectors [h*w, D], labels [h, w], k) -> bool [h, w]`` (default: two anchors,
    :func:`~stylemix.foreground.anchor_foreground` with ``cfg.foreground_rule``; the instance mode passes its own),
    and the probability is the fraction of those decisions that call a pixel foreground. Single splits flip between
    "face against the rest" and "person against the background" from seed to seed; their majority is steadier
    (docs/benchmarks.md), and the soft map it leaves is what the guided upsampling snaps to the image's edges.
    Agreement: mean ``|2p - 1|``, 1 when unanimous.
    """
    if vote is None:
        def vote(X: Any, labels: Any, k: int) -> Any:
            return anchor_foreground(X, labels, k, cfg.foreground_rule, frame_penalty=cfg.frame_penalty)[labels]
    n, c, h, w = stack.shape
    X = pixel_vectors(stack, cfg.normalization)
    xp = array_module(X)
    votes = xp.zeros((h, w), dtype=xp.float32)
    for k in cfg.consensus:
        km = KMeans(int(k), n_init=cfg.n_init, max_iter=cfg.max_iter, random_state=random_state).fit(X)
        votes += vote(X, km.labels_.reshape(h, w), int(k)).astype(xp.float32)
    prob = votes / len(cfg.consensus)
    return prob, float(xp.abs(2 * prob - 1).mean())


def decide_foreground(labels: Any, n_clusters: int, rule: str | Any) -> tuple[Any, Any, float]:
    """Foreground decision on ``labels [h, w]``: ``(scores [k], is_fg [k] bool, margin)``.

    For k = 2 the labels are then relabelled so that 1 is the foreground (see :func:`order_binary`).
    """
    scores = cluster_scores(labels, n_clusters, rule)
    is_fg, margin = foreground_clusters(scores)
    return scores, is_fg, margin


def order_binary(labels: Any, is_fg: Any) -> Any:
    """For k = 2: labels with 1 = foreground, 0 = background."""
    return is_fg[labels].astype(labels.dtype)


def finish_labels(labels: Any, size: tuple[int, int], n_clusters: int, guide: Any | None, cfg: SegmentConfig
                  ) -> Any:
    """Analysis-resolution labels (or, for k = 2, a foreground probability ``float [h, w]``) -> cleaned
    ``int32 [H, W]`` labels at ``size``."""
    guide = guide if cfg.refine == "guided" else None
    if n_clusters == 2 and guide is not None and cfg.boundary != "guided":
        xp = array_module(labels)
        alpha = refine.refine_boundary(to_numpy(guide), to_numpy(labels).astype(np.float32),
                                       refine.RefineConfig(method=cfg.boundary))
        full = xp.asarray(refine.binary(alpha))
    elif n_clusters == 2 and labels.dtype.kind == "f":
        full = upsample_mask(labels, size, guide)
    else:
        full = upsample_labels(labels, size, n_clusters, guide)
    return clean_labels(full, int(round(cfg.min_area * size[0] * size[1])))


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
    backend = get_backend("cuda" if generator_device(G).type == "cuda" else "cpu")
    from stylemix.instances import prepare_instances  # lazy: stylemix.instances builds on this module
    step = prepare_instances(detector, classes, conf, iou, instance_config)
    for seed in seeds:
        yield _segment(G, int(seed), cfg, backend, step)


def _known(options: dict[str, Any]) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(SegmentConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise StylemixError(f"unknown option {unknown[0]!r}; options are {', '.join(sorted(fields))}")
    return options


def _segment(G: Any, seed: int, cfg: SegmentConfig, backend: Backend, instance_step: Any = None) -> Segmentation:
    if seed < 0 or seed >= 2 ** 32:
        raise StylemixError(f"seed must be in [0, 2**32), got {seed}")
    t0 = time.perf_counter()
    with torch.inference_mode():
        ws_base, ws_mix, crossovers = style_latents(G, seed, cfg)
        image, stack = render_variants(G, ws_base, ws_mix, crossovers, cfg)
        image_u8 = to_uint8(image)[0]
    t1 = time.perf_counter()
    xp = backend.xp
    random_state = int(mixing.stream(seed, mixing.STREAM_KMEANS).integers(2 ** 31))
    stack = backend.from_torch(stack.float())
    extra = {}
    if cfg.clusters == 2:
        prob, extra["consensus_agreement"] = consensus_foreground(stack, cfg, random_state)
        # Scores and margin keep their k = 2 meaning: the foreground rule's verdict on the final split.
        scores = cluster_scores((prob > 0.5).astype(xp.int32), 2, cfg.foreground_rule)
        labels, is_fg, margin = prob, xp.asarray([False, True]), max(float(scores[1]), 0.0)
    else:
        labels = cluster_stack(stack, cfg, random_state)
        scores, is_fg, margin = decide_foreground(labels, cfg.clusters, cfg.foreground_rule)
    t2 = time.perf_counter()
    guide = backend.from_torch(image_u8)
    full = finish_labels(labels, tuple(image_u8.shape[:2]), cfg.clusters, guide, cfg)
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
        instance_step(seg, stack, cfg, random_state)
    return seg
