"""Another format from an existing export, without rendering: the png format's stored class-id masks (and its
images and mattes, as they are) re-encoded by the same :func:`~stylemix.export.formats.encode_labels` an export
runs, so the result is byte-identical to exporting that format directly."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from stylemix.errors import StylemixError
from stylemix.export.card import settings_digest
from stylemix.export.formats import Encoding, SeedLabels, SeedResult, encode_labels
from stylemix.export.layout import ALPHA_DIR, BANK, CARD, parse_formats, seed_path
from stylemix.export.options import DatasetSettings, RunOptions
from stylemix.export.plan import ExportPlan, check_dataset
from stylemix.export.store import (check_layout, commit_results, finalize, missing_seeds, open_export, read_card,
                                   read_records)
from stylemix.io import stem

__all__ = ["CARD_ONLY", "convert_export"]

# What a finished card adds to the settings it started with (left out of the converted export's settings).
CARD_ONLY = ("complete", "classes", "counts", "skipped_seeds")


def _source_card(src: Path) -> dict[str, Any]:
    """The card of a finished export that conversion can read, or one line saying why not."""
    card = read_card(src)
    where = repr(os.fspath(src))
    if card is None:
        raise StylemixError(f"{where} has no {CARD}: not a stylemix export")
    check_layout(src, card)
    if not card.get("complete"):
        raise StylemixError(f"{where} is not complete: finish it first (--resume, or the remaining shards)")
    if "png" not in parse_formats(card["format"]):
        raise StylemixError(f"{where} holds no png masks (format {card['format']}): conversion re-encodes the png "
                            "format's masks; export with --format png,... once, then convert")
    if card.get("instances"):
        raise StylemixError(f"{where} is an instance-mode export: its png masks hold the classes, not the instances; "
                            "export every format in one run instead (--format png,coco,yolo)")
    if not card.get("parts") and int(card["settings"]["clusters"]) != 2:
        raise StylemixError(f"{where} has k = {card['settings']['clusters']} cluster ranks, not a foreground; "
                            "export every format in one run instead (--format png,coco,yolo)")
    return card


def _labels(src: Path, card: dict[str, Any], record: dict[str, Any]) -> SeedLabels:
    """One seed's :class:`SeedLabels` read back from the source export's files."""
    from PIL import Image
    name, split = stem(record["seed"], "ws" if card.get("latents") else "seed"), record["split"]
    with Image.open(src / seed_path("masks", split, name)) as im:
        ids = np.array(im)
    if card.get("parts"):
        names = {int(row["id"]): str(row["name"]) for row in card["parts"]["classes"]}
        objects = [(ids == c, int(c), names[int(c)]) for c in np.unique(ids)]
    else:
        fg = ids > 0
        objects = [(fg, 0, card["class_name"])] if fg.any() else []
    matte = (src / seed_path(ALPHA_DIR, split, name, "_alpha.png")).read_bytes() if card.get("alpha") else None
    return SeedLabels(name, (src / seed_path("images", split, name)).read_bytes(), ids, objects, matte)


def convert_export(source: str | os.PathLike, outdir: str | os.PathLike, format: str,
                   class_name: str | None = None, coco_masks: str | None = None,
                   run: RunOptions | None = None) -> dict[str, Any]:
    """Write ``format`` (one or several, ``"coco,yolo"``) into ``outdir`` from the finished export ``source``,
    reading its png masks instead of rendering: seconds where the export took minutes.

    Images (size and split included) and mattes are the source's bytes; the result equals a direct export of
    ``format`` with the source's settings, and it resumes, refuses and merges like one.

    Args:
        source: an export holding the png format, two-way masks or a part bank (not instance mode: its png masks
            hold classes, not instances).
        outdir: the new dataset's root (not ``source``).
        format: the formats to write.
        class_name, coco_masks: the foreground's name and the COCO mask form (``None``: the source's).
        run: ``resume``, ``overwrite`` and ``progress`` apply (:class:`~stylemix.export.options.RunOptions`).

    Returns:
        The summary of :func:`~stylemix.export.export_dataset` (``exported``, ``done``, ``complete``, ``card``).

    Raises:
        StylemixError: a source that is no finished export, has no png masks or cannot be converted, or the same
            folder as ``outdir``.
    """
    from stylemix.io import parse_seeds
    run = run or RunOptions()
    src = Path(source)
    card = _source_card(src)
    if Path(outdir).resolve() == src.resolve():
        raise StylemixError("convert into another folder than the source export (--outdir)")
    formats = parse_formats(format)
    core = {k: v for k, v in card.items() if k not in CARD_ONLY and k != "digest"}
    core.update(format=",".join(formats), class_name=class_name or card["class_name"],
                coco_masks=coco_masks or card["coco_masks"])
    check_dataset(DatasetSettings(class_name=core["class_name"], coco_masks=core["coco_masks"]))
    core["digest"] = settings_digest(core)
    encoding = Encoding(formats, core["digest"], float(core["min_margin"]), bool(core.get("alpha")), core["size"],
                        float(core["val_fraction"]), core["class_name"], core["coco_masks"])
    stored = card.get("parts") or card.get("foreground_bank") or {}
    bank_files = {p.name: p.read_bytes() for p in sorted(src.glob("parts.*")) if stored.get("file") == BANK}
    seeds = parse_seeds(card["seeds"]) if card["seeds"] else []
    plan = ExportPlan(None, None, None, encoding, seeds, None, core, bank_files=bank_files)
    out, pending = open_export(plan, outdir, resume=run.resume, overwrite=run.overwrite)
    records = read_records(src)

    def results() -> Iterator[SeedResult]:
        for seed in pending:
            rec = records[seed]
            base = {k: rec[k] for k in ("seed", "foreground_margin", "foreground_fraction", "size", "split")}
            base["digest"] = core["digest"]
            if "skipped" in rec:
                yield SeedResult(seed, {}, {**base, "skipped": rec["skipped"]})
            else:
                yield encode_labels(_labels(src, card, rec), encoding, base)

    t0 = time.perf_counter()
    commit_results(out, plan, results(), done=len(seeds) - len(pending), progress=run.progress)
    elapsed = time.perf_counter() - t0
    summary: dict[str, Any] = {"outdir": os.fspath(out), "exported": len(pending), "done": len(seeds) - len(pending),
                               "elapsed_s": round(elapsed, 3), "shard": None, "waiting_shards": [],
                               "images_per_s": round(len(pending) / elapsed, 3) if pending and elapsed > 0 else None,
                               "foreground_bank": core.get("foreground_bank")}
    remaining = missing_seeds(out, seeds, read_records(out))
    summary.update(pending=len(remaining), complete=not remaining)
    if not remaining:
        summary["card"] = finalize(out)
    return summary
