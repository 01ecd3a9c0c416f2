"""The pipeline: seed -> base image + N style variants -> per-pixel vectors -> k-means -> foreground -> masks.

:func:`segment` is the library entry point; :class:`~stylemix.config.SegmentConfig` holds every knob with its default (docs/method.md
explains each). :func:`segment_many` chooses the run's foreground source once (:mod:`stylemix.sources`: the
per-image consensus, a part bank, or the k > 2 clusters) and works in batches of ``batch_size`` images: one
:func:`~stylemix.render.render_batch`, then per image source -> finish (:func:`~stylemix.stages.finish_foreground`
or :func:`~stylemix.stages.finish_labels`) -> instances (:mod:`stylemix.instances`, when a detector runs).
"""

from __future__ import annotations

import collections.abc
import concurrent.futures
import dataclasses
import time
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from stylemix import mixing, refine
from stylemix.backend import Backend, get_backend, to_numpy, warn_once
from stylemix.cluster import blas_limit, thread_limit
from stylemix.config import SegmentConfig, refuse_legacy
from stylemix.errors import StylemixError
from stylemix.instances import InstanceStep, prepare_instances
from stylemix.parts.step import part_step
from stylemix.render import (Rendered, Subject, generator_device, has_features, image_features, noise_stream,
                             render_batch, subjects, to_uint8)
from stylemix.sources import ForegroundSource, foreground_source
from stylemix.stages import finish_foreground, finish_labels, kmeans_seed, min_pixels

__all__ = ["Segmentation", "SegmentationMeta", "boundary_features", "boundary_resolution", "finish_workers", "segment", "segment_many"]


@dataclasses.dataclass(eq=False)  # equal to any mapping with the same JSON object (Mapping.__eq__)
class SegmentationMeta(collections.abc.Mapping):
    """What one segmentation records beside its arrays; ``seedSSSS.json`` is :meth:`as_dict`.

    Read as attributes (``meta.foreground_margin``) or, as the JSON's keys, like a dict (``meta["settings"]``).

    Attributes:
        seed: the NVlabs seed (``None`` for a latents row).
        generator, resolution: the generator's family and its image side.
        settings: every setting (:meth:`~stylemix.config.SegmentConfig.as_dict`).
        crossovers: the crossover of each variant.
        boundary: the boundary method that ran (k = 2 under guided refinement), else ``None``.
        foreground_margin, foreground_fraction: how clearly the foreground was chosen, and its share of the image.
        cluster_scores, foreground_clusters: each cluster's foreground score, and the clusters judged foreground.
        foreground_from: what decided the mask: ``clusters`` (k > 2), ``consensus`` or ``part bank (MODE)``.
        timing_s: seconds per stage (``render``, ``cluster``, ``postprocess``, and ``instances`` when it ran).
        ws_row, latent_kind, stream_key: the latents row, its kind and its random-stream key (rows only).
        consensus_agreement: how far the consensus's votes agree (when a consensus ran).
        parts: the part bank's record (:meth:`~stylemix.parts.step.PartStep.describe`) when a bank ran.
        instances: the instance mode's record when a detector ran.
    """

    seed: int | None
    generator: str
    resolution: int
    settings: dict[str, Any]
    crossovers: list[int]
    boundary: str | None
    foreground_margin: float
    cluster_scores: list[float]
    foreground_clusters: list[int]
    foreground_fraction: float
    foreground_from: str
    timing_s: dict[str, float]
    ws_row: int | None = None
    latent_kind: str | None = None
    stream_key: list[Any] | None = None
    consensus_agreement: float | None = None
    parts: dict[str, Any] | None = None
    instances: dict[str, Any] | None = None

    # Recorded only when they apply: a seed's JSON has no latents keys, a k > 2 one no consensus agreement.
    _OPTIONAL = ("ws_row", "latent_kind", "stream_key", "consensus_agreement", "parts", "instances")

    def as_dict(self) -> dict[str, Any]:
        """The JSON object: every field, the optional ones only when set (the values themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in self._OPTIONAL or getattr(self, f.name) is not None}

    def __getitem__(self, key: str) -> Any:
        try:
            return self.as_dict()[key]
        except KeyError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())


@dataclasses.dataclass
class Segmentation:
    """The result for one seed (NumPy arrays at the API edge).

    Attributes:
        seed: the NVlabs seed.
        image: ``uint8 [H, W, 3]`` the base image.
        labels: ``int32 [H, W]`` cluster ids; for k = 2, 1 = foreground and 0 = background.
        foreground: ``bool [H, W]`` (for k > 2, the union of the clusters judged foreground).
        meta: a :class:`SegmentationMeta`: every setting, the per-variant crossovers, cluster scores, the
            foreground margin and timings.
        parts: with ``segment(..., parts=bank)``, ``int32 [H, W]`` the bank's class ids (:mod:`stylemix.parts`):
            where the bank has a background class, class 0 exactly where ``mask`` is background and a foreground
            part everywhere else; the foreground then follows the bank's setting (default ``fine``: its fine prototypes' pooled
            rates; ``bank``: the union of its foreground classes; ``combined`` averages those with the consensus).
        instances, instance_records, semantic: the instance mode's results (``segment(..., detector=...)``,
            see :mod:`stylemix.instances`), else ``None``: ``int32 [H, W]`` instance ids (0 = background),
            one :class:`~stylemix.instances.InstanceRecord` per detection, ``int32 [H, W]`` class id + 1.
        alpha: k = 2: ``float32 [H, W]`` in [0, 1], the soft matte of the boundary stage
            (:func:`stylemix.stages.finish_foreground`), ``alpha > 0.5`` exactly where ``foreground``; else ``None``.
    """

    seed: int | None
    image: np.ndarray
    labels: np.ndarray
    foreground: np.ndarray
    meta: SegmentationMeta
    # Instance mode (issue #4): the stylemix.instances.Instances that InstanceStep returns.
    instances: np.ndarray | None = None
    instance_records: list[Any] | None = None
    semantic: np.ndarray | None = None
    # Part bank mode (issue #14): int32 [H, W] class ids of the bank, the same id the same part in every image.
    parts: np.ndarray | None = None
    row: int | None = None  # the latents row (segment(..., ws=...)), when the image is not given by a seed
    # Two-way masks (k = 2): float32 [H, W] in [0, 1], the boundary stage's matte; alpha > 0.5 is the foreground.
    alpha: np.ndarray | None = None

    @property
    def name(self) -> str:
        """File stem: ``seedSSSS`` for a seed, ``wsRRRR`` for row RRRR of the latents (zero-padded to 4 digits)."""
        from stylemix.io import stem
        return stem(self.seed) if self.row is None else stem(self.row, "ws")


def segment(G: Any, seed: int = 0, *, ws: Any = None, z: Any = None, stream_base: int = 0,
            config: SegmentConfig | None = None, detector: Any = None, parts: Any = "auto",
            **legacy: Any) -> Segmentation:
    """Segment the image of ``seed`` made by ``G`` (or the image of the latents ``ws`` / ``z``).

    Args:
        G: a generator (:func:`stylemix.load_generator`); the device of its weights picks the backend.
        seed: NVlabs seed, ``z = RandomState(seed).randn(1, z_dim)``.
        ws: instead of a seed, one image's styles: w+ ``[num_ws, w_dim]`` or ``[1, num_ws, w_dim]``, or w
            ``[w_dim]``, used as given. ``z``: one latent ``[z_dim]``, mapped like a seed's. Their variants draw
            from the streams of row 0 with ``stream_base`` (:func:`stylemix.mixing.row_key`).
        config: a :class:`SegmentConfig`, every setting of the run (default: ``SegmentConfig()``); change one
            with ``SegmentConfig(variants=8)`` or ``dataclasses.replace(config, variants=8)``.
        detector: instance mode, off when ``None``: a weights path or a callable (:mod:`stylemix.detect`), loaded
            with the thresholds of ``config.instances`` (:class:`~stylemix.config.InstanceConfig`: class filter,
            confidence and NMS IoU, the per-box settings). Fills the result's ``instances``,
            ``instance_records`` and ``semantic``.
        parts: ``"auto"`` (default): two-way masks take their foreground from the part bank shipped for ``G``
            where one exists (the default generator: it measures better than the per-image consensus,
            docs/parts.md), else from ``G``'s bank in the user's cache (:mod:`stylemix.parts.cache`: fitted by an
            export or by ``"fit"``), else from the consensus; ``"fit"``: fit ``G``'s bank on seeds 200-399 first
            (a few minutes on a CPU), cache it and take the foreground from it, even where a packaged or cached
            bank exists; ``None`` / ``"none"``: the consensus always; a
            :class:`~stylemix.parts.PartBank`, a bank file or ``"default"`` (the bank shipped for the default
            generator): fills ``seg.parts`` and takes the foreground from the bank (refused for another generator).
            ``meta["foreground_from"]`` says which decided the mask.
        legacy: the keywords of earlier versions (``variants=8``, ``classes=...``): refused with one line that
            names the new spelling.

    Returns:
        A :class:`Segmentation`.

    Example:
        >>> G = stylemix.load_generator("shapes")
        >>> seg = stylemix.segment(G, seed=0, config=stylemix.SegmentConfig(variants=8))
        >>> seg.foreground.shape
        (64, 64)
    """
    refuse_legacy("segment", legacy)
    if ws is not None or z is not None:
        from stylemix.latents import latent_rows
        kind = "w" if z is None else "z"
        one = np.asarray(ws if z is None else z)
        if one.ndim == (2 if kind == "w" else 1) or (kind == "w" and one.ndim == 1):
            one = one[None]  # one image's w+ / w / z without the batch axis
        rows = latent_rows(one, G.num_ws, G.w_dim, G.z_dim, kind=kind, stream_base=stream_base)
        if len(rows) != 1:
            raise StylemixError(f"segment takes one image's latents, got {len(rows)} rows: use segment_many")
        return next(segment_many(G, ws=rows, config=config, detector=detector, parts=parts))
    return next(segment_many(G, [seed], config=config, detector=detector, parts=parts))


def segment_many(G: Any, seeds: Iterable[int] | None = None, *, ws: Any = None, zs: Any = None,
                 stream_base: int = 0, config: SegmentConfig | None = None, detector: Any = None,
                 parts: Any = "auto", **legacy: Any) -> Iterator[Segmentation]:
    """:func:`segment` over ``seeds``, or over the rows of ``ws`` (w+ ``[B, num_ws, w_dim]`` or w ``[B, w_dim]``,
    or a :class:`~stylemix.latents.LatentRows`) or ``zs`` (``[B, z_dim]``), validating the settings and loading
    the detector and the part bank once. Row ``r``'s variants draw from the key ``(WS_STREAM_TAG, stream_base, r)``."""
    from stylemix.latents import LatentRows, latent_rows
    refuse_legacy("segment_many", legacy)
    given = [name for name, v in (("seeds", seeds), ("ws", ws), ("zs", zs)) if v is not None]
    if len(given) > 1:
        raise StylemixError(f"give one of seeds, ws and zs, not {' and '.join(given)}")
    latents = ws if zs is None else zs
    if latents is not None and not isinstance(latents, LatentRows):
        latents = latent_rows(latents, G.num_ws, G.w_dim, G.z_dim, kind="w" if zs is None else "z",
                              stream_base=stream_base)
    cfg = (config or SegmentConfig()).resolve(G)
    device = generator_device(G)
    backend = get_backend(str(device) if device.type == "cuda" else "cpu")  # cuda:N keeps its index
    step = prepare_instances(detector, cfg.instances)
    bank_step = part_step(G, parts, cfg)
    source = foreground_source(cfg, bank_step)
    shared = _shared_variants(cfg, bank_step, step)
    # The base image's feature maps the later stages read, taken while it is synthesised (render_batch).
    resolutions = tuple(r for r in (boundary_resolution(G, cfg), None if bank_step is None else
                                    bank_step.cfg.analysis_resolution) if r is not None)
    batch: list[Subject] = []
    for subject in subjects(seeds, latents):
        batch.append(subject)
        if len(batch) == cfg.batch_size:
            yield from _segment_batch(G, batch, cfg, backend, source, step, shared, resolutions)
            batch = []
    if batch:
        yield from _segment_batch(G, batch, cfg, backend, source, step, shared, resolutions)


def _shared_variants(cfg: SegmentConfig, part_step: Any, instance_step: InstanceStep | None) -> Any:
    """The part bank's signature variants when they can be the images' variant stack (one stack rendered per image
    instead of two, :meth:`~stylemix.parts.PartStep.shared_variants`), else ``None``: each image its own variants.

    They can when their stack has the image stack's shape (:meth:`~stylemix.parts.PartStep.shares_stack`) and
    either nothing clusters the image's stack (a two-way mask whose bank foreground reads no consensus, no
    detector) or the bank has as many variants as ``cfg.variants``. A generator without a bank keeps its own.
    """
    if part_step is None or not part_step.shares_stack(cfg):
        return None
    stack_used = cfg.clusters != 2 or instance_step is not None or part_step.needs_consensus
    if stack_used and cfg.variants != part_step.bank.settings.signature_variants:
        return None
    return part_step.shared_variants()


def boundary_resolution(G: Any, cfg: SegmentConfig) -> int | None:
    """The resolution of the base image's feature maps the boundary stage reads (``boundary`` in
    :data:`stylemix.refine.FEATURE_METHODS`, r from :meth:`~stylemix.refine.RefineConfig.feature_resolution`, at
    most the image's), else ``None`` (another method, k > 2, or a generator without features)."""
    if cfg.clusters != 2 or cfg.refine != "guided" or cfg.boundary not in refine.FEATURE_METHODS or not has_features(G):
        return None
    return min(refine.RefineConfig(method=cfg.boundary).feature_resolution(cfg.analysis_resolution), int(G.resolution))


def boundary_features(G: Any, ws_base: Any, cfg: SegmentConfig, key: mixing.StreamKey = 0,
                      captured: dict[int, Any] | None = None) -> np.ndarray | None:
    """The base image's feature maps ``float32 [C, r, r]`` for a boundary method that reads them (r:
    :func:`boundary_resolution`), else ``None``. ``captured``: ``{r: [1, C, r, r]}`` maps taken during the base
    image's synthesis (``Rendered.features``), used when they hold r; else they are rendered here, under
    ``noise_mode="random"`` with their own noise from the stream of ``key`` (the image's: the same on every run)."""
    r = boundary_resolution(G, cfg)
    if r is None:
        return None
    if captured and r in captured:
        return captured[r][0].float().cpu().numpy()
    with torch.inference_mode(), noise_stream(key, cfg.noise_mode, generator_device(G)):
        return image_features(G, ws_base, r, cfg.noise_mode)[0].float().cpu().numpy()


def _segment_batch(G: Any, batch: list[Subject], cfg: SegmentConfig, backend: Backend, source: ForegroundSource,
                   instance_step: InstanceStep | None = None, shared: Any = None,
                   feature_resolutions: tuple[int, ...] = ()) -> list[Segmentation]:
    """Segment the images of ``batch``: one :func:`~stylemix.render.render_batch` (of the ``shared`` variants when
    given, keeping the base images' feature maps at ``feature_resolutions``), one finite check of the batch, then
    each image's uint8 conversion, clustering and post-processing (under one thread limit each); the
    same masks as one image at a time."""
    # CuPy on the generator's cuda:N for this batch only; NumPy's BLAS on one thread (cluster.blas_limit)
    with backend.scope(), blas_limit(1):
        t0 = time.perf_counter()
        with torch.inference_mode():
            rendered = render_batch(G, batch, cfg, shared, feature_resolutions)
            _check_finite(batch, rendered)
            images = [to_uint8(r.image)[0] for r in rendered]  # uint8 [H, W, 3] each (one image stays in cache)
        render_s = (time.perf_counter() - t0) / len(batch)  # the batch's render, shared equally

        def finish(i: int) -> Segmentation:
            return _finish_image(G, batch[i], rendered[i], images[i], cfg, backend, source, instance_step, render_s)

        workers = finish_workers(len(batch), backend, rendered, feature_resolutions, instance_step, source.bank)
        if workers == 1:
            return [finish(i) for i in range(len(batch))]
        # Each image's finish is NumPy / SciPy / OpenCV on one thread, which release the GIL, while torch's pool idles
        # between batches: the images of a batch finish side by side, each as it would alone (the same bytes).
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="stylemix-finish") as pool:
            return list(pool.map(finish, range(len(batch))))


def finish_workers(images: int, backend: Backend, rendered: list[Rendered], feature_resolutions: tuple[int, ...],
                   instance_step: InstanceStep | None, part_step: Any) -> int:
    """How many threads finish the ``images`` of a batch side by side: up to torch's thread count (what the
    process may use; ``torch.set_num_threads(1)`` keeps everything on one), where the finish runs on the CPU and
    renders nothing (no detector, the bank's stack shared, the base features captured); else 1."""
    if images == 1 or backend.xp is not np or instance_step is not None:
        return 1
    if part_step is not None and not all(r.shared for r in rendered):  # the bank renders its own stack
        return 1
    if not all(res in r.features for r in rendered for res in feature_resolutions):  # a fallback render
        return 1
    return max(1, min(images, torch.get_num_threads()))


def _check_finite(batch: list[Subject], rendered: list[Rendered]) -> None:
    """One :class:`StylemixError` naming the first image whose renders hold NaN or inf (NaN / inf weights, an fp16
    overflow: clustering them would give garbage masks, not an error)."""
    # A finite sum means finite values (NaN and inf propagate): one reduction per tensor, no bool copy of it; only a
    # sum that overflowed or a bad image needs the elementwise test.
    for subject, r in zip(batch, rendered):
        for t in (r.image, r.stack):
            if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
                name = f"seed {subject.seed}" if subject.row is None else f"latents row {subject.row}"
                raise StylemixError(f"{name}: the generator's output is not finite (NaN or inf); "
                                    "nothing was written for it")


def _finish_image(G: Any, subject: Subject, rendered: Rendered, image_u8: torch.Tensor, cfg: SegmentConfig,
                  backend: Backend, source: ForegroundSource, instance_step: InstanceStep | None, render_s: float
                  ) -> Segmentation:
    """One image from its renders: the run's foreground source decides its regions, the boundary stage finishes
    them at full resolution, then the instance step (when a detector runs)."""
    t1 = time.perf_counter()
    xp = backend.xp
    random_state = kmeans_seed(subject.key)
    stack = backend.from_torch(rendered.stack.float())
    guide = backend.from_torch(image_u8)
    features = boundary_features(G, rendered.ws_base, cfg, subject.key, rendered.features)
    decision = source.decide(stack, random_state, rendered, guide, features)
    t2 = time.perf_counter()
    size = tuple(image_u8.shape[:2])
    area = min_pixels(cfg.min_area, size)
    alpha = None
    with thread_limit(1):  # one thread, as the source's clustering (stylemix.sources.Consensus)
        if decision.prob is not None:
            full, alpha = finish_foreground(decision.prob, size, guide, min_pixels=area, refine=cfg.refine,
                                            boundary=cfg.boundary, features=features)
            foreground, is_fg = full == 1, xp.asarray([False, True])  # 1 = foreground
        else:
            full = finish_labels(decision.labels, size, cfg.clusters, guide, min_pixels=area, refine=cfg.refine)
            is_fg = decision.is_fg
            foreground = is_fg[full]
    t3 = time.perf_counter()
    boundary_run = None
    if cfg.clusters == 2 and cfg.refine == "guided":
        boundary_run = refine.method_run(cfg.boundary, features is not None)
        if boundary_run != cfg.boundary:
            warn_once(f"boundary {cfg.boundary} needs the generator's feature maps, which "
                      f"{getattr(G, 'family', type(G).__name__)} does not expose: the boundary runs {boundary_run}")
    meta = SegmentationMeta(
        seed=subject.seed, generator=getattr(G, "family", type(G).__name__), resolution=int(G.resolution),
        settings=cfg.as_dict(), crossovers=rendered.crossovers.tolist(), boundary=boundary_run,
        foreground_margin=round(decision.margin, 6),
        cluster_scores=[round(float(s), 6) for s in to_numpy(decision.scores)],
        foreground_clusters=[int(i) for i in np.flatnonzero(to_numpy(is_fg))],
        foreground_fraction=round(float(foreground.mean()), 6), foreground_from=source.name,
        timing_s={"render": render_s, "cluster": t2 - t1, "postprocess": t3 - t2},
        **({} if subject.row is None else {"ws_row": subject.row, "latent_kind": subject.kind,
                                           "stream_key": list(subject.key)}),
        consensus_agreement=None if decision.agreement is None else round(decision.agreement, 6),
        parts=None if source.bank is None else source.bank.describe())
    mask = to_numpy(foreground).astype(bool)
    parts = decision.parts
    if parts is not None:  # the part map's background is the mask's, so that the two agree pixel for pixel
        parts = source.bank.with_background(parts, mask)
    seg = Segmentation(subject.seed, to_numpy(image_u8), to_numpy(full).astype(np.int32), mask, meta,
                       row=subject.row, parts=parts, alpha=alpha)
    if instance_step is not None:  # instance mode (stylemix/instances.py): per-box clustering of the same stack
        t4 = time.perf_counter()
        inst, meta.instances = instance_step(seg.image, stack, cfg, random_state, guide, features)
        seg.instances, seg.semantic, seg.instance_records = inst.labels, inst.semantic, inst.records
        meta.timing_s["instances"] = time.perf_counter() - t4
    return seg
