"""Pseudo-label datasets: segment many seeds and write them in a layout a trainer reads unmodified.

:func:`export_dataset` is the entry point (``stylemix export`` is its command line); docs/export.md explains the
formats, the dataset card, resume, sharding and Ray. One file per stage:

* :mod:`~stylemix.export.plan`: check the settings, load the generator, detector and part bank once, compute the
  card's settings and digest (:mod:`~stylemix.export.card`); :mod:`~stylemix.export.seeds`: seed lists and shards.
* :mod:`~stylemix.export.distributed`: segment the seeds, in this process or on Ray actors, and encode each one
  into files and a manifest record (:mod:`~stylemix.export.formats`, a pure function: every way of running
  produces the same bytes).
* :mod:`~stylemix.export.store`: write each seed's files atomically, then its manifest line (the commit point);
  once every seed has a record, rebuild everything derived from many seeds, so an export killed at any moment and
  resumed ends byte-identical to an uninterrupted one. :mod:`~stylemix.export.layout` names the files.
* :mod:`~stylemix.export.convert`: another format from a finished export's png masks, without rendering
  (:func:`convert_export`); :mod:`~stylemix.export.progress`: the progress bar, or plain lines in a log.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from stylemix.config import SegmentConfig
from stylemix.errors import StylemixError
from stylemix.export.card import generator_identity, instance_identity, settings_digest
from stylemix.export.convert import convert_export
from stylemix.export.distributed import SeedWorker, seed_results
from stylemix.export.formats import Encoding, SeedResult, class_map, encode_seed, mask_palette
from stylemix.export.layout import (ALPHA_DIR, BANK, CARD, COCO_JSON, FORMATS, LAYOUT_VERSION, MANIFEST, SPLITS,
                                    YOLO_YAML, coco_json, parse_formats, seed_dirs)
from stylemix.export.options import DatasetSettings, LatentsFile, RunOptions, Subjects, split_keywords
from stylemix.export.plan import DISCOVER_SEEDS, ExportPlan, plan_export
from stylemix.export.seeds import parse_shard, seed_split, shard_seeds
from stylemix.export.store import (clear_export, commit_results, finalize, missing_seeds, open_export,
                                   read_manifest, read_records)

__all__ = ["ALPHA_DIR", "BANK", "CARD", "COCO_JSON", "DISCOVER_SEEDS", "DatasetSettings", "Encoding", "ExportPlan",
           "FORMATS", "LAYOUT_VERSION", "LatentsFile", "MANIFEST", "RunOptions", "SPLITS", "SeedResult", "SeedWorker",
           "YOLO_YAML", "class_map", "clear_export", "coco_json", "commit_results", "convert_export", "encode_seed",
           "export_dataset", "finalize", "generator_identity", "instance_identity", "mask_palette", "missing_seeds",
           "open_export", "parse_formats", "parse_shard", "plan_export", "read_manifest", "read_records", "seed_dirs",
           "seed_results", "seed_split", "settings_digest", "shard_seeds"]


def export_dataset(generator: Any, seeds: Subjects, outdir: str | os.PathLike, format: str = "png",
                   config: SegmentConfig | None = None, dataset: DatasetSettings | None = None,
                   run: RunOptions | None = None, **keywords: Any) -> dict[str, Any]:
    """Export the segmentations of ``seeds`` as a training dataset in ``outdir``.

    The composition of the export's stages: :func:`~stylemix.export.plan.plan_export` (settings, identity,
    digest), :func:`~stylemix.export.store.open_export` (the folder, its card, what is pending),
    :func:`~stylemix.export.distributed.seed_results` (segment and encode),
    :func:`~stylemix.export.store.commit_results` (atomic files, then the manifest line) and, once every seed has a
    record, :func:`~stylemix.export.store.finalize`.

    Args:
        generator: a generator, or a source for :func:`stylemix.load_generator` (a file or a registered name).
        seeds: ``"0-99,200"`` or an iterable of ints; or a :class:`~stylemix.export.options.LatentsFile`, every
            row of a latents file.
        outdir: the dataset root (created).
        format: ``png`` (images + class-id masks), ``coco`` (instances JSONs) or ``yolo`` (ultralytics
            segmentation), or several comma-separated (``"png,coco,yolo"``: one rendering, every format's files,
            the images shared); layouts in :func:`~stylemix.export.formats.encode_labels` and docs/export.md.
        config: the method's settings, as for :func:`stylemix.segment`.
        dataset: what each seed writes beyond them (:class:`~stylemix.export.options.DatasetSettings`: margin
            filter, mattes, part bank, instance mode, output size, val split, class name, COCO mask form).
        run: how this run goes (:class:`~stylemix.export.options.RunOptions`: resume, overwrite, shard, Ray,
            workers, device, progress); no byte depends on it.
        keywords: the same settings as flat keywords (``variants=8, resume=True, min_margin=0.1``, and ``ws``,
            ``ws_kind``, ``stream_base`` for a latents file), applied on top of the objects
            (:func:`~stylemix.export.options.split_keywords`).

    Returns:
        A summary: ``outdir``, ``exported`` (this call), ``done`` (before it), ``pending`` (seeds of every shard
        not written yet), ``shard`` (``(I, N)`` or ``None``), ``waiting_shards`` (the shards those seeds belong
        to), ``complete``,
        ``elapsed_s``, ``images_per_s``, ``foreground_bank`` (the card's record of the part bank that decided
        two-way masks, or ``None``), and the ``card`` once complete.

    Example:
        >>> export_dataset("shapes", "0-99", "DS", "yolo", SegmentConfig(variants=8), run=RunOptions(resume=True))
    """
    seeds, config, dataset, run = split_keywords(keywords, seeds, config, dataset, run)
    if run.batch_seeds < 1:
        raise StylemixError(f"--batch-seeds must be at least 1, got {run.batch_seeds}")
    plan = plan_export(generator, seeds, format, config, dataset, shard=run.shard, device=run.device,
                       reuse_bank=None if run.overwrite else Path(outdir) / BANK)
    out, pending = open_export(plan, outdir, resume=run.resume, overwrite=run.overwrite)
    t0 = time.perf_counter()
    results = seed_results(plan, pending, batch_seeds=run.batch_seeds, ray=run.ray, ray_address=run.ray_address,
                           workers=run.workers, writer_threads=run.writer_threads)
    mine = plan.mine
    commit_results(out, plan, results, done=len(mine) - len(pending), progress=run.progress)
    elapsed = time.perf_counter() - t0
    summary: dict[str, Any] = {"outdir": os.fspath(out), "exported": len(pending), "done": len(mine) - len(pending),
                               "elapsed_s": round(elapsed, 3),
                               "images_per_s": round(len(pending) / elapsed, 3) if pending and elapsed > 0 else None}
    remaining = missing_seeds(out, plan.seeds, read_records(out))
    summary["foreground_bank"] = plan.core.get("foreground_bank")
    summary["pending"] = len(remaining)
    summary["shard"] = plan.shard
    summary["waiting_shards"] = sorted({s % plan.shard[1] for s in remaining}) if plan.shard else []
    summary["complete"] = not remaining
    if not remaining:
        summary["card"] = finalize(out)
    return summary
