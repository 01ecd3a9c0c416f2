"""What an export's folder holds: the formats, the names of its files and folders, and what an export owns there.

docs/export.md shows the layouts; every other stage of the export reads its names from here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALPHA_DIR", "BANK", "CARD", "COCO_JSON", "FORMATS", "IMAGE_DIRS", "LAYOUT_VERSION", "LOCK", "MANIFEST",
           "OWNED", "YOLO_YAML", "name_prefix", "seed_dirs"]

FORMATS = ("png", "coco", "yolo")
LAYOUT_VERSION = 2  # bumped whenever the files written for a seed change; part of the digest
# 2: masks encoded by Pillow (same ids, other bytes than version 1's own encoder)
CARD = "dataset.json"
MANIFEST = "manifest.jsonl"
COCO_JSON = "annotations/instances.json"
YOLO_YAML = "data.yaml"
LOCK = ".export.lock"
IMAGE_DIRS = {"png": ("images", "masks"), "coco": ("images",), "yolo": ("images/train", "labels/train")}
ALPHA_DIR = "alpha"  # seedSSSS_alpha.png of every format, apart from the folders a trainer globs
BANK = "parts.parts"  # the part bank of a parts export, beside the card (with parts.classes.csv, parts.classNN.png)
OWNED = (CARD, YOLO_YAML, LOCK, "images", "masks", "labels", "annotations", ALPHA_DIR, BANK,
         "parts.classes.csv", "parts.foreground.png")  # what overwrite may delete (and parts.classNN.png)


def seed_dirs(fmt: str, alpha: bool = False) -> tuple[str, ...]:
    """The folders that hold per-seed files in an export of ``fmt`` (with ``alpha``: the mattes' too)."""
    return IMAGE_DIRS[fmt] + ((ALPHA_DIR,) if alpha else ())


def name_prefix(card: dict[str, Any]) -> str:
    """``ws`` for an export of a latents file (its records' ``seed`` fields are row numbers), else ``seed``."""
    return "ws" if card.get("latents") else "seed"
