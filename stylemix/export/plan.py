"""Planning an export: check every setting, load the generator, the latents, the detector and the part bank once
(or fit the bank, which then also goes to the user's bank cache), and compute the card's settings and their
digest, before any seed is segmented.

The digest (generator weights, method settings, format, filter, part bank, stylemix version) is stored in the card
and in every record; a run whose digest differs is refused unless the dataset is cleared with ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

from stylemix.config import SegmentConfig
from stylemix.errors import StylemixError
from stylemix.export.card import generator_identity, instance_identity, settings_digest
from stylemix.export.formats import COCO_MASKS, Encoding
from stylemix.export.layout import BANK, LAYOUT_VERSION, parse_formats
from stylemix.export.options import DatasetSettings, LatentsFile, Subjects
from stylemix.export.seeds import SPLIT_RULE, parse_shard, shard_seeds
from stylemix.identity import arithmetic
from stylemix.io import compact_seeds, file_sha256

__all__ = ["DISCOVER_SEEDS", "ExportPlan", "bank_files", "check_dataset", "export_bank", "foreground_bank",
           "plan_export"]

# How many of the first seeds of a run `--parts K` fits its bank on (all of them when there are fewer).
DISCOVER_SEEDS = 100
# Not part of the digest or the card: the segment docstring guarantees results do not depend on it.
_PERFORMANCE_SETTINGS = ("batch_size",)


@dataclasses.dataclass
class ExportPlan:
    """What an export decides before it renders a seed (:func:`plan_export`); every later job reads it.

    Attributes:
        G: the generator, loaded once; ``source``: the file or registered name it came from (what Ray actors
            load), ``None`` for a generator object.
        config: the resolved :class:`~stylemix.config.SegmentConfig` (resolved once, here).
        encoding: how each seed becomes files (:class:`~stylemix.export.formats.Encoding`: formats, digest,
            margin filter, matte, size, split, class name, COCO mask form).
        seeds: every seed of the export (or latents row), in the order given; ``shard``: ``(I, N)`` or ``None``.
        core: the card's settings, with their ``digest``.
        latents: the :class:`~stylemix.latents.LatentRows` of a latents export, else ``None``.
        instances: the instance mode's :class:`~stylemix.instances.InstanceStep` (detector loaded once), or
            ``None``.
        bank: the :class:`~stylemix.parts.PartBank` of a parts export, else ``None``; ``bank_files``: its files as
            the export stores them (``parts.parts``, ``parts.classes.csv``, contact sheets), by name.
        foreground: without a parts bank, the :class:`~stylemix.parts.ForegroundBank` that decides two-way masks
            (:func:`foreground_bank`), or ``None``: the per-image consensus. Chosen here once, so that every
            worker, shard and resume segments with the same bank.
    """

    G: Any
    source: str | None
    config: Any
    encoding: Encoding
    seeds: list[int]
    shard: tuple[int, int] | None
    core: dict[str, Any]
    latents: Any = None
    instances: Any = None
    bank: Any = None
    bank_files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    foreground: Any = None

    @property
    def digest(self) -> str:
        return self.core["digest"]

    @property
    def fmt(self) -> str:
        """The formats as the card writes them (``png``, ``coco,yolo``)."""
        return ",".join(self.encoding.formats)

    @property
    def alpha(self) -> bool:
        return self.encoding.alpha

    @property
    def mine(self) -> list[int]:
        """The seeds this process exports (its shard's)."""
        return self.seeds if self.shard is None else shard_seeds(self.seeds, *self.shard)

    def segment_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`stylemix.segment.segment_many` for this export's seeds."""
        return {"config": self.config, "detector": self.instances,
                "parts": self.bank if self.bank is not None else self.foreground or "none"}


def plan_export(generator: Any, seeds: Subjects, format: str = "png", config: SegmentConfig | None = None,
                dataset: DatasetSettings | None = None, *, shard: str | tuple[int, int] | None = None,
                device: str = "cpu", reuse_bank: str | os.PathLike | None = None) -> ExportPlan:
    """Check every setting, load the generator, the latents, the detector and the part bank once (or fit the
    bank), and compute the card's settings and digest; writes nothing in the dataset (a bank fitted for
    ``parts="auto"`` / ``"fit"`` goes to the user's bank cache, :func:`foreground_bank`).

    Args:
        generator, seeds, format, config, dataset: as for :func:`stylemix.export.export_dataset`.
        shard, device: as in :class:`~stylemix.export.options.RunOptions`.
        reuse_bank: a bank file an earlier run of this export stored, loaded instead of fitting ``parts=K`` again
            when it was fitted with the same settings on the same seeds.
    """
    import stylemix
    from stylemix.instances import prepare_instances
    from stylemix.io import parse_seeds
    from stylemix.outputs import check_alpha
    from stylemix.render import generator_device

    ds = dataset or DatasetSettings()
    formats = parse_formats(format)
    check_dataset(ds)
    if seeds is None:
        raise StylemixError("no seeds to export")
    seed_list: list[int] = []
    if not isinstance(seeds, LatentsFile):
        seed_list = parse_seeds(seeds) if isinstance(seeds, str) else list(dict.fromkeys(int(s) for s in seeds))
        if not seed_list:
            raise StylemixError("no seeds to export")
    shard_t = parse_shard(shard)
    source = os.fspath(generator) if isinstance(generator, (str, os.PathLike)) else None
    G = stylemix.load_generator(source, device=device) if source is not None else generator
    latents, latents_identity = None, None
    if isinstance(seeds, LatentsFile):
        latents, latents_identity = _load_latents(seeds, G)
        seed_list = [latents.row(i) for i in range(len(latents))]
    cfg = (config or SegmentConfig()).resolve(G)
    check_alpha(ds.alpha, cfg.clusters)
    step = prepare_instances(ds.detector, cfg.instances)  # checks, loads once
    core = {"stylemix": stylemix.__version__, "layout": LAYOUT_VERSION, "format": ",".join(formats),
            "generator": generator_identity(G, source),
            "settings": {k: v for k, v in cfg.as_dict().items() if k not in _PERFORMANCE_SETTINGS},
            "instances": instance_identity(step), "min_margin": float(ds.min_margin),
            "seeds": compact_seeds(seed_list), "shards": "seed s belongs to shard s mod N",
            "arithmetic": arithmetic(cfg.precision, generator_device(G)),
            "size": ds.size, "val_fraction": float(ds.val_fraction), "split": SPLIT_RULE,
            "class_name": ds.class_name, "coco_masks": ds.coco_masks}
    if latents_identity is not None:  # only then: a seed export's card and digest stay what they were
        core["latents"] = latents_identity
    if ds.alpha:  # likewise
        core["alpha"] = True
    bank, files, foreground, parts = None, {}, None, ds.parts
    if parts is None or (isinstance(parts, str) and parts in ("auto", "fit", "none")):  # no parts dataset: what
        mode, parts = parts or "none", None  # decides the fg/bg masks (none: the consensus, as in segment_many)
        if mode != "none":
            foreground, files, record = foreground_bank(mode, G, seed_list, cfg, latents is not None, reuse_bank)
            if record is not None:  # the bank that decides the masks is in the card and the digest
                core["foreground_bank"] = record
    if parts is not None:
        if step is not None:
            raise StylemixError("--parts and --detector cannot be combined in an export: export the parts and the "
                                "instances as two datasets")
        bank, label = export_bank(parts, G, seed_list, cfg, latents is not None, reuse_bank)
        files = bank_files(bank)
        core["parts"] = {"source": label, "file": BANK, "sha256": hashlib.sha256(files[BANK]).hexdigest(),
                         "fit_seeds": bank.fit_seeds, "classes": bank.table()}
    core["digest"] = settings_digest(core)
    encoding = Encoding(formats, core["digest"], float(ds.min_margin), ds.alpha, ds.size, float(ds.val_fraction),
                        ds.class_name, ds.coco_masks)
    return ExportPlan(G, source, cfg, encoding, seed_list, shard_t, core, latents, step, bank, files, foreground)


def check_dataset(ds: DatasetSettings) -> None:
    """Refuse settings no export can write, before anything is loaded or written.

    Raises:
        StylemixError: a size below 1 px, a val fraction outside [0, 1), an empty class name or an unknown COCO
            mask form.
    """
    if ds.size is not None and (isinstance(ds.size, bool) or not isinstance(ds.size, int) or ds.size < 1):
        raise StylemixError(f"--size must be a whole number of pixels >= 1, got {ds.size!r}")
    if not 0 <= ds.val_fraction < 1:
        raise StylemixError(f"--val-fraction must be in [0, 1), got {ds.val_fraction}")
    if not str(ds.class_name).strip() or "\n" in str(ds.class_name):
        raise StylemixError(f"--class-name must be a non-empty name on one line, got {ds.class_name!r}")
    if ds.coco_masks not in COCO_MASKS:
        raise StylemixError(f"--coco-masks must be one of {', '.join(COCO_MASKS)}, got {ds.coco_masks!r}")


def _load_latents(spec: LatentsFile, G: Any) -> tuple[Any, dict[str, Any]]:
    """The :class:`~stylemix.latents.LatentRows` of ``spec`` and what the card says about them."""
    from stylemix.latents import LatentRows, load_latents
    ws = spec.path
    latents = ws if isinstance(ws, LatentRows) else load_latents(ws, G, kind=spec.kind, stream_base=spec.stream_base)
    identity = {"file": latents.source, "kind": latents.kind, "stream_base": latents.stream_base,
                "rows": len(latents), "sha256": file_sha256(ws) if not isinstance(ws, LatentRows)
                else hashlib.sha256(latents.values.tobytes()).hexdigest()}
    return latents, identity


def export_bank(parts: Any, G: Any, seeds: Sequence[int], cfg: Any, rows: bool = False,
                reuse: str | os.PathLike | None = None) -> tuple[Any, str]:
    """The part bank of ``export --parts`` and what the card calls its source.

    Args:
        parts: a bank (:class:`~stylemix.parts.PartBank`, a file, ``"default"``), or what to fit: K (an int, or
            its string) or a :class:`~stylemix.parts.PartSettings`, fitted on the first :data:`DISCOVER_SEEDS` of
            ``seeds`` with the export's settings ``cfg`` (deterministic: every shard and every resume gets the
            same bank).
        rows: the export is of latents rows (fitting needs seeds).
        reuse: a bank stored by an earlier run, used when it was fitted with the same settings on the same seeds.
    """
    from stylemix.parts.bank import PartBank, PartSettings, load_bank
    from stylemix.parts.fit import discover
    if isinstance(parts, str) and parts.isdigit():
        parts = int(parts)
    if isinstance(parts, bool) or not isinstance(parts, (int, PartSettings)):
        bank = load_bank(parts, G)
        label = "bank object" if isinstance(parts, PartBank) else "default" if str(parts) == "default" \
            else Path(parts).name
        return bank, label
    settings = parts if isinstance(parts, PartSettings) else PartSettings(n_parts=parts)
    if rows:
        raise StylemixError("--parts K fits a bank on seeds: with --ws give a bank file (stylemix discover)")
    fit_seeds = list(seeds[:DISCOVER_SEEDS])
    if reuse is not None and Path(reuse).is_file():
        stored = PartBank.load(reuse, G)
        if stored.settings == settings and stored.fit_seeds == compact_seeds(fit_seeds):
            return stored, f"discovered, K = {settings.n_parts}"
    from tqdm import tqdm
    with tqdm(total=len(fit_seeds), unit="img", desc=f"fit part bank K={settings.n_parts}", disable=None) as bar:
        bank = discover(G, fit_seeds, settings.n_parts, settings=settings, config=cfg,
                        progress=lambda done, total: bar.update(1))
    return bank, f"discovered, K = {settings.n_parts}"


def foreground_bank(mode: str, G: Any, seeds: Sequence[int], cfg: Any, rows: bool = False,
                    reuse: str | os.PathLike | None = None) -> tuple[Any, dict[str, bytes], dict[str, Any] | None]:
    """The bank that decides an export's two-way masks under ``parts="auto"`` or ``"fit"`` (``mode``).

    ``auto``: the bank shipped for ``G`` where one applies (not stored in the dataset: the card names it by its
    sha256); else the bank this dataset stored in an earlier run (``reuse``: a resume or another shard segments
    with the same bank); else ``G``'s bank in the user's cache; else one fitted now on the first
    :data:`~stylemix.parts.fit.FLOW_SEEDS` seeds of the run (deterministic: the same in every shard and resume)
    and stored in the cache, when the run has at least :data:`~stylemix.parts.fit.MIN_FLOW_SEEDS`; else none, and
    a warning says why. ``fit``: the fit on the run's first seeds always (the dataset's stored bank where it is
    that fit), in the cache too. A bank other than the packaged one is stored in the dataset (``parts.parts``).

    Args:
        mode: ``auto`` or ``fit``.
        G, seeds, cfg: the generator, the run's seeds in order, its resolved settings.
        rows: the export is of latents rows (a fit needs seeds).
        reuse: the dataset's bank file (``parts.parts``), if an earlier run stored one.

    Returns:
        ``(ForegroundBank or None, the dataset's bank files by name, the card's foreground_bank record or None)``.

    Raises:
        StylemixError: ``fit`` where it cannot fit (k > 2, ``exact``, latents rows, too few seeds).
    """
    from stylemix.backend import warn_once
    from stylemix.parts.bank import PACKAGED_FOR, PartBank, PartSettings, packaged_bank_for, resolve_bank_path
    from stylemix.parts.cache import cached_bank
    from stylemix.parts.fit import FLOW_SEEDS, MIN_FLOW_SEEDS, fit_flow_bank
    from stylemix.parts.step import ForegroundBank
    if cfg.clusters != 2 or cfg.exact:
        if mode == "fit":
            raise StylemixError("--parts fit decides two-way masks: use it with -k 2 and without --exact")
        return None, {}, None
    if mode == "auto":
        packaged = packaged_bank_for(G)
        if packaged is not None:  # as in stylemix segment
            name = PACKAGED_FOR[G.family]
            return (ForegroundBank(packaged, f"auto: {name}"), {},
                    {"source": f"auto: {name}", "sha256": file_sha256(resolve_bank_path(name)),
                     "classes": packaged.table()})
    fit_seeds = list(seeds[:FLOW_SEEDS])
    stored = None
    if reuse is not None and Path(reuse).is_file():
        stored = PartBank.load(reuse)
        if stored.mismatch(G) is not None or stored.settings != PartSettings() or (
                mode == "fit" and stored.fit_seeds != compact_seeds(fit_seeds)):
            stored = None
    cached = cached_bank(G) if mode == "auto" and stored is None else None
    if stored is not None:
        bank, origin = stored, "stored in the dataset"
    elif cached is not None:
        bank, origin = cached[0], "cached"
    else:
        why = ("latents rows give no seeds to fit on" if rows else
               f"the run has {len(fit_seeds)} seeds, fewer than {MIN_FLOW_SEEDS}" if len(fit_seeds) < MIN_FLOW_SEEDS
               else None)
        if why is not None:
            fix = ("fit one with `stylemix discover --seeds 200-399 --out BANK.parts` and pass --parts BANK.parts, "
                   "or `stylemix segment --parts fit` once, which caches it")
            if mode == "fit":
                raise StylemixError(f"--parts fit cannot fit a part bank: {why}; {fix}")
            warn_once(f"no part bank for this generator, so the masks come from the per-image consensus ({why}): "
                      f"{fix}")
            return None, {}, None
        # A bank of fewer images than FLOW_SEEDS serves this dataset but is not cached: later commands would
        # inherit a weaker bank than the one a full fit gives them.
        bank, _ = fit_flow_bank(G, fit_seeds, cfg, cache=len(fit_seeds) >= FLOW_SEEDS)
        if len(fit_seeds) < FLOW_SEEDS:
            warn_once(f"the part bank fitted on this run's {len(fit_seeds)} seeds decides its masks but is not "
                      f"cached (a cached bank is fitted on {FLOW_SEEDS}): `stylemix segment --parts fit` caches one")
        origin = f"fitted on the run's first {len(fit_seeds)} seeds"
    files = bank_files(bank)
    source = f"{mode}: {origin}" if mode == "auto" else "fit"
    record = {"source": source, "file": BANK, "sha256": hashlib.sha256(files[BANK]).hexdigest(),
              "fit_seeds": bank.fit_seeds, "classes": bank.table()}
    return ForegroundBank(bank, source), files, record


def bank_files(bank: Any) -> dict[str, bytes]:
    """``bank`` as an export stores it: ``parts.parts`` (the bank file; its sha256 is in the digest),
    ``parts.classes.csv`` (the class table) and, right after fitting, ``parts.classNN.png`` (contact sheets)."""
    from stylemix.parts.bank import saved_bytes
    return saved_bytes(bank, BANK)
