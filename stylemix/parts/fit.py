"""Fitting a part bank: render the bank's images (:func:`bank_image`), sample their pixels (:func:`collect`),
then PCA, prototypes, pooled foreground rates and the merge into classes (:func:`fit`, :func:`regroup`);
:func:`discover` does all of it."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from stylemix import mixing
from stylemix.errors import StylemixError
from stylemix.parts.bank import PartBank, PartSettings, round_half
from stylemix.parts.cues import image_cues, signature_latents
from stylemix.parts.descriptors import class_rates, descriptors, fit_pca, merge_prototypes, nearest, positions, raw_cues
from stylemix.parts.sheets import class_sheets, foreground_sheet

__all__ = ["FIT_SEEDS", "FLOW_SEEDS", "MIN_FLOW_SEEDS", "BankSamples", "bank_image", "collect", "discover", "fit",
           "fit_flow_bank", "regroup"]

# The bank a generator gets without a separate step (``export`` with ``parts="auto"``, ``parts="fit"``): fitted
# with the default :class:`PartSettings` on FLOW_SEEDS images (the fine foreground needs about 200 to be stable;
# docs/parts.md). An export fits on its first FLOW_SEEDS seeds, on at least MIN_FLOW_SEEDS (a bank of 100
# images still beats the per-image consensus, by less); ``segment --parts fit`` on FIT_SEEDS, a fixed range, so
# its bank does not depend on which seeds are segmented and is the one `stylemix discover --seeds 200-399` writes.
FLOW_SEEDS = 200
MIN_FLOW_SEEDS = 100
FIT_SEEDS = range(200, 400)


def discover(G: Any, seeds: Iterable[int], n_parts: int | None = None, *, settings: PartSettings | None = None,
             config: Any = None, sheet_seeds: int = 16, progress: Any = None, **legacy: Any) -> PartBank:
    """Fit a :class:`PartBank` of ``n_parts`` classes on the images of ``seeds``.

    Args:
        G: the generator (its device picks the backend for the consensus).
        seeds: NVlabs seeds of the bank's images (keep them apart from the seeds you evaluate on).
        n_parts: K; ``None``: ``settings.n_parts`` (default 4).
        settings: :class:`PartSettings` (default: ``PartSettings()``).
        config: the :class:`~stylemix.config.SegmentConfig` of the images' renders and per-image consensus. The
            bank pools a two-way consensus on the generator's feature maps, so it runs with ``clusters=2`` and
            ``descriptor="features"``; a config that asks otherwise is warned that those two are not used.
        sheet_seeds: how many of the first seeds go on the contact sheets.
        progress: optional callable ``progress(done, total)``.
        legacy: the loose keywords of earlier versions (``variants=8``, ``prototypes=8``): refused with one line
            that names the new spelling.

    Returns:
        The bank, with ``bank.sheets`` (one contact sheet per class) for :meth:`PartBank.save`.
    """
    from stylemix.backend import warn_once
    from stylemix.config import SegmentConfig
    _refuse_legacy(legacy)
    seeds = [int(s) for s in seeds]
    settings = settings or PartSettings()
    if n_parts is not None:
        settings = dataclasses.replace(settings, n_parts=int(n_parts))
    settings.check()
    cfg = config or SegmentConfig()
    ignored = [f"{name}={value!r}" for name, value, used in (("clusters", cfg.clusters, (2,)),
                                                              ("descriptor", cfg.descriptor, ("auto", "features")))
               if value not in used]
    if ignored:
        warn_once(f"a part bank pools a two-way consensus on the generator's features: the config's "
                  f"{' and '.join(ignored)} are not used in its fit (n_parts={settings.n_parts} sets its classes)")
    cfg = dataclasses.replace(cfg, clusters=2, descriptor="features").resolve(G)
    crossovers = tuple(settings.crossovers) or tuple(int(c) for c in np.atleast_1d(cfg.crossover))
    if len(seeds) < 2:
        raise StylemixError("a part bank needs at least 2 seeds")
    samples = collect(G, seeds, settings, cfg, crossovers, sheet_seeds, progress)
    return fit(samples, settings, cfg, crossovers, G)


def _refuse_legacy(keywords: dict[str, Any]) -> None:
    """One :class:`StylemixError` line for :func:`discover`'s loose keywords of earlier versions, naming the
    ``settings=PartSettings(...)`` and ``config=SegmentConfig(...)`` that replace them."""
    from stylemix.config import SegmentConfig
    if not keywords:
        return
    part_names = {f.name for f in dataclasses.fields(PartSettings)}
    config_names = {f.name for f in dataclasses.fields(SegmentConfig)}
    unknown = sorted(set(keywords) - part_names - config_names)
    if unknown:
        raise StylemixError(f"unknown option {unknown[0]!r}: discover takes settings=PartSettings(...) and "
                            "config=SegmentConfig(...)")
    spelled = [f"{arg}={cls}({', '.join(f'{k}={v!r}' for k, v in keywords.items() if k in names)})"
               for arg, cls, names in (("settings", "PartSettings", part_names),
                                       ("config", "SegmentConfig", config_names - part_names))
               if set(keywords) & names]
    raise StylemixError(f"discover() takes its settings as objects: use {', '.join(spelled)}")


def fit_flow_bank(G: Any, seeds: Sequence[int], cfg: Any, cache: bool = True) -> tuple[PartBank, Any]:
    """Fit the flow's bank of ``G`` (default :class:`PartSettings`) on ``seeds`` under the segmentation settings
    ``cfg``, with a progress bar (on a terminal), and store it in the user's bank cache when ``cache`` (and ``G``
    has an id). Returns the bank and its cache file (``None`` when not cached)."""
    from tqdm import tqdm

    from stylemix.parts.cache import store_bank
    with tqdm(total=len(seeds), unit="img", desc="fit part bank", disable=None) as bar:
        bank = discover(G, seeds, settings=PartSettings(), config=cfg, progress=lambda done, total: bar.update(1))
    if not cache:
        return bank, None
    from stylemix.identity import generator_id
    if generator_id(G) is None:
        from stylemix.backend import warn_once
        warn_once(f"the part bank fitted for {getattr(G, 'family', type(G).__name__)} is not cached: a generator "
                  "that is not a torch.nn.Module has no id to find it by later (save it with PartBank.save)")
        return bank, None
    return bank, store_bank(bank, G)


@dataclasses.dataclass
class BankSamples:
    """What :func:`collect` gathers from the bank's images: per sampled pixel its cues ``F [P, C]``, ``S [P, N*D]``,
    consensus foreground probability ``prob [P]`` and position ``pos [P, 2]``; the seeds; and, for the contact
    sheets, ``(seed, image, F, S, pos)`` of the first images with every pixel."""

    F: np.ndarray
    S: np.ndarray
    prob: np.ndarray
    pos: np.ndarray
    seeds: list[int]
    sheet_data: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def collect(G: Any, seeds: Sequence[int], settings: PartSettings, cfg: Any, crossovers: Sequence[int],
            sheet_seeds: int = 16, progress: Any = None, render: Any = None) -> BankSamples:
    """Render the bank's images and sample their pixels (``settings.pixels_per_image`` each, drawn from the
    seed's own stream, so a sample never depends on the other seeds). ``render``: a stand-in for
    :func:`bank_image` with its signature (benchmarks/parts.py passes a cached one); asked for the image only
    for the first ``sheet_seeds`` seeds.

    On a CPU each image renders on one torch thread, images side by side on as many threads as torch had: torch's
    kernels (oneDNN's 1x1 convolutions among them) round differently with the thread count, and a bank must be
    the same bytes at any thread count. Side by side costs about what one image on every thread costs.
    """
    from stylemix.cluster import thread_limit
    from stylemix.outputs import ordered_map
    from stylemix.render import generator_device
    latents = signature_latents(G, settings)
    render = render or bank_image
    on_cpu = not isinstance(G, torch.nn.Module) or generator_device(G).type == "cpu"
    workers = min(torch.get_num_threads(), len(seeds)) if on_cpu else 0
    samples, sheet_data = [], []
    before = torch.get_num_threads()
    try:
        if on_cpu:
            torch.set_num_threads(1)
        with thread_limit(1):
            # Only the contact sheets' seeds need their image: the others skip its full-resolution synthesis (a
            # large share of a bank image's cost at 1024 px; no byte of the bank depends on it).
            rendered = ordered_map(lambda i: render(G, seeds[i], cfg, latents, crossovers, image=i < sheet_seeds),
                                   range(len(seeds)), threads=workers if workers > 1 else 0,
                                   queue=2 * max(workers, 1))
            for i, (seed, (F, S, prob, image, pos)) in enumerate(zip(seeds, rendered)):
                pick = np.sort(mixing.stream(seed, mixing.STREAM_BANK_PIXELS).permutation(len(F))
                               [:settings.pixels_per_image])
                samples.append((F[pick], S[pick], prob.ravel()[pick], pos[pick]))
                if i < sheet_seeds:
                    sheet_data.append((seed, image, F, S, pos))
                if progress is not None:
                    progress(i + 1, len(seeds))
    finally:
        torch.set_num_threads(before)
    F, S, P, pos = (np.concatenate(x) for x in zip(*samples))
    return BankSamples(F, S, P, pos, list(seeds), sheet_data)


def fit(samples: BankSamples, settings: PartSettings, cfg: Any, crossovers: Sequence[int], G: Any,
        consensus_split: bool = True) -> PartBank:
    """The bank of ``samples``: PCA of each cue, prototypes, pooled foreground rates, merge into classes.
    ``consensus_split=False`` merges all prototypes by Ward alone (an ablation: no foreground evidence)."""
    from stylemix.cluster import thread_limit
    from stylemix.identity import generator_id
    from stylemix.io import compact_seeds
    F, S, pos = samples.F, samples.S, samples.pos
    # One thread and float64 throughout, rounded where stored: the same samples give the same bank bytes at any
    # thread count (threaded BLAS and k-means sum partials in arrival order) and, but for last-digit ties, on
    # any CPU.
    with thread_limit(1):
        # The PCA is kept at float16 precision (stored so: a bank is tens of KB); the prototypes are fitted on it.
        f_mean, f_basis, s_mean, s_basis = (round_half(a) for a in (*fit_pca(F, settings.feature_components),
                                                              *fit_pca(S, settings.signature_components)))
        bank = PartBank(settings, cfg.analysis_resolution, cfg.feature_dim, tuple(crossovers), f_mean, f_basis,
                        s_mean, s_basis, np.zeros((0, 0), np.float32), np.zeros(0, np.int32),
                        np.zeros(0, np.float32), [], [], [],
                        {"family": getattr(G, "family", type(G).__name__), "id": generator_id(G)},
                        compact_seeds(samples.seeds))
        X = descriptors(F, S, pos, bank, np.float64)
        centres, _ = _prototypes(X, settings)
        # The fine foreground prototypes: the same descriptors, many more centres (kept at float16, as stored).
        fine, _ = _prototypes(X, dataclasses.replace(settings, prototypes=settings.foreground_prototypes))
        bank = dataclasses.replace(bank, prototypes=centres.astype(np.float32), foreground_prototypes=round_half(fine))
        return regroup(bank, samples, settings.n_parts, consensus_split)


def regroup(bank: PartBank, samples: BankSamples, n_parts: int, consensus_split: bool = True) -> PartBank:
    """The bank's prototypes merged into ``n_parts`` classes from the pooled statistics of ``samples`` (the
    prototypes are kept, so banks of several K share them), as ``bank.settings`` says (``merge_cue``,
    ``lower_band``). One thread and float64, as :func:`fit`."""
    from stylemix.cluster import thread_limit
    with thread_limit(1):
        return _regroup(bank, samples, n_parts, consensus_split)


def _regroup(bank: PartBank, samples: BankSamples, n_parts: int, consensus_split: bool) -> PartBank:
    X = descriptors(samples.F, samples.S, samples.pos, bank, np.float64)
    proto = nearest(X, bank.prototypes)
    M = len(bank.prototypes)
    count = np.bincount(proto, minlength=M).astype(np.float64)
    rate = np.bincount(proto, weights=samples.prob, minlength=M) / np.maximum(count, 1)
    mean_y = np.bincount(proto, weights=samples.pos[:, 0], minlength=M) / np.maximum(count, 1)
    # The merge compares the settings' cue: the feature block is the first Pf columns of a prototype.
    merged = bank.prototypes
    if bank.settings.merge_cue == "features":
        merged = bank.prototypes[:, :len(bank.feature_basis)]
    cls = merge_prototypes(merged, rate if consensus_split else np.ones(M), count, n_parts, mean_y,
                           bank.settings.lower_band)
    K = int(cls.max()) + 1
    share = np.bincount(cls[proto], minlength=K) / len(proto)
    rates = class_rates(cls, rate.astype(np.float32), K)
    names = ["background" if k == 0 and rates[0] <= 0.5 else f"part{k}" for k in range(K)]
    fine_rate = bank.foreground_rate
    if len(bank.foreground_prototypes):  # each fine prototype's pooled consensus rate, as the prototypes' above
        fine = nearest(X, bank.foreground_prototypes)
        n = len(bank.foreground_prototypes)
        fine_rate = (np.bincount(fine, weights=samples.prob, minlength=n)
                     / np.maximum(np.bincount(fine, minlength=n), 1)).astype(np.float32)
    bank = dataclasses.replace(bank, settings=dataclasses.replace(bank.settings, n_parts=int(n_parts)),
                               prototype_class=cls, prototype_foreground=rate.astype(np.float32), class_names=names,
                               class_foreground=[bool(r > 0.5) for r in rates], class_share=list(share),
                               foreground_rate=fine_rate)
    bank.sheets = class_sheets(bank, samples.sheet_data)
    bank.foreground_sheet = foreground_sheet(bank, samples.sheet_data) if len(bank.foreground_prototypes) else None
    return bank


def _prototypes(X: np.ndarray, settings: PartSettings) -> tuple[np.ndarray, np.ndarray]:
    """k-means centres ``[M, D]`` (float32) and labels ``[P]`` of the descriptors ``X [P, D]`` (float64 in a fit)."""
    from stylemix.cluster import KMeans
    M = min(settings.prototypes, len(np.unique(X.round(4), axis=0)))
    km = KMeans(max(M, settings.n_parts), n_init=2, random_state=settings.random_state).fit(X)
    return km.cluster_centers_, np.asarray(km.labels_)


def bank_image(G: Any, seed: int, cfg: Any, latents: np.ndarray, crossovers: Sequence[int], image: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """One bank image: its cues ``F [r*r, C]``, ``S [r*r, N*D]``, its consensus foreground probability
    ``[r, r]``, its image ``uint8 [H, W, 3]`` (``None`` with ``image=False``, where its synthesis can be skipped:
    :func:`stylemix.render.render_variants`) and the positions ``[r*r, 2]``."""
    from stylemix.render import render_variants, style_latents, to_uint8
    from stylemix.stages import anchor_vote, consensus_foreground, kmeans_seed
    with torch.inference_mode():
        ws_base, ws_mix, cx = style_latents(G, seed, cfg)
        full, stack = render_variants(G, ws_base, ws_mix, cx, cfg, with_image=image)
        image_u8 = None if full is None else to_uint8(full)[0].cpu().numpy()
    prob, _ = consensus_foreground(stack.float().cpu().numpy(), cfg.consensus, kmeans_seed(seed),
                                   anchor_vote(cfg.foreground_rule, cfg.frame_penalty), **cfg.kmeans_options())
    base, sig = image_cues(G, ws_base, latents, crossovers, cfg)
    F, S = raw_cues(base, sig)
    r = cfg.analysis_resolution
    return F, S, np.asarray(prob), image_u8, positions(r, r)
