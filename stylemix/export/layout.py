"""What an export's folder holds: the formats, the train/val split folders, the names of its files and folders,
and what an export owns there.

Every format shares ``images/{train,val}/``; beside them png writes ``masks/{split}/``, YOLO ``labels/{split}/``
and ``data.yaml``, COCO ``annotations/instances_{split}.json``, so one export can hold several formats at once.
docs/export.md shows the layouts; every other stage of the export reads its names from here.
"""

from __future__ import annotations

from typing import Any, Sequence

from stylemix.errors import StylemixError

__all__ = ["ALPHA_DIR", "BANK", "CARD", "COCO_JSON", "FORMATS", "FORMAT_DIRS", "LAYOUT_VERSION", "LOCK", "MANIFEST",
           "OWNED", "SPLITS", "YOLO_YAML", "coco_json", "name_prefix", "parse_formats", "seed_dirs", "seed_path"]

FORMATS = ("png", "coco", "yolo")
LAYOUT_VERSION = 3  # bumped whenever the files written for a seed change; part of the digest
# 2: masks encoded by Pillow (same ids, other bytes than version 1's own encoder)
# 3: train/val split folders shared by every format, several formats in one export, --size
SPLITS = ("train", "val")
CARD = "dataset.json"
MANIFEST = "manifest.jsonl"
COCO_JSON = "annotations/instances_{split}.json"
YOLO_YAML = "data.yaml"
LOCK = ".export.lock"
FORMAT_DIRS = {"png": ("images", "masks"), "coco": ("images",), "yolo": ("images", "labels")}
ALPHA_DIR = "alpha"  # alpha/{split}/seedSSSS_alpha.png of every format, apart from the folders a trainer globs
BANK = "parts.parts"  # the part bank of a parts export, beside the card (with parts.classes.csv, parts.classNN.png)
OWNED = (CARD, YOLO_YAML, LOCK, "images", "masks", "labels", "annotations", ALPHA_DIR, BANK,
         "parts.classes.csv", "parts.foreground.png")  # what overwrite may delete (and parts.classNN.png)


def parse_formats(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"yolo,png"`` (or a sequence of names) -> ``("png", "yolo")``: known formats, in :data:`FORMATS` order.

    Raises:
        StylemixError: an unknown or empty format.
    """
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise StylemixError(f"unknown format {','.join(unknown) or repr(spec)!s}: use one or more of "
                            f"{', '.join(FORMATS)}, comma-separated (png,coco,yolo)")
    return tuple(f for f in FORMATS if f in names)


def coco_json(split: str) -> str:
    """The COCO instances file of ``split``: ``annotations/instances_train.json``, ``..._val.json``."""
    return COCO_JSON.format(split=split)


def seed_dirs(formats: str | Sequence[str], alpha: bool = False) -> tuple[str, ...]:
    """The folders that hold per-seed files in an export of ``formats`` (with ``alpha``: the mattes' too), each
    split's own."""
    tops = dict.fromkeys(d for f in parse_formats(formats) for d in FORMAT_DIRS[f])
    return tuple(f"{d}/{s}" for d in [*tops, *([ALPHA_DIR] if alpha else [])] for s in SPLITS)


def seed_path(folder: str, split: str, name: str, suffix: str = ".png") -> str:
    """A seed's file, relative to the dataset root: ``images/train/seed0042.png``."""
    return f"{folder}/{split}/{name}{suffix}"


def name_prefix(card: dict[str, Any]) -> str:
    """``ws`` for an export of a latents file (its records' ``seed`` fields are row numbers), else ``seed``."""
    return "ws" if card.get("latents") else "seed"
