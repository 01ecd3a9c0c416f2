"""Encoding: one segmentation to the files and the manifest record of a format (png, COCO, YOLO), and the
format's index built from every record (the COCO JSON, YOLO's ``data.yaml``, the class table).

:func:`encode_seed` is pure (no file system), so one process, a shard of a torchrun job and a Ray actor produce
the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from stylemix.errors import StylemixError
from stylemix.export.layout import ALPHA_DIR, FORMATS, name_prefix
from stylemix.io import stem

__all__ = ["SeedResult", "class_map", "coco_document", "coco_rle", "dataset_classes", "encode_seed", "instances",
           "mask_palette", "yolo_polygons", "yolo_yaml"]


@dataclasses.dataclass
class SeedResult:
    """What one seed contributes: ``files`` maps paths relative to the dataset root to their bytes, ``record`` is
    its manifest line (JSON object)."""

    seed: int
    files: dict[str, bytes]
    record: dict[str, Any]


def mask_palette() -> np.ndarray:
    """``uint8 [256, 3]``: the overlay colours of :mod:`stylemix.visualize`, so id 0 (background) is black."""
    from stylemix.visualize import palette
    return palette(256)


def class_map(seg: Any) -> np.ndarray:
    """``uint8 [H, W]`` class ids of the png format.

    k = 2: 0 background, 1 foreground. k > 2: clusters renumbered by rank of their foreground score (0 = the most
    background-like), because raw k-means ids are arbitrary per image while ranks mean the same in every image.
    Instance mode (a detector ran): the semantic map, 0 background, detector class id + 1. A part bank: its class
    ids (the same id the same part in every image).
    """
    if getattr(seg, "parts", None) is not None:
        return seg.parts.astype(np.uint8)
    if getattr(seg, "semantic", None) is not None:
        if seg.semantic.max(initial=0) > 255:
            raise StylemixError("the png format holds at most 255 detector classes")
        return seg.semantic.astype(np.uint8)
    k = int(seg.meta.settings["clusters"])
    if k == 2:
        return seg.foreground.astype(np.uint8)
    order = np.argsort(np.asarray(seg.meta.cluster_scores), kind="stable")
    rank = np.empty(k, np.uint8)
    rank[order] = np.arange(k, dtype=np.uint8)
    return rank[seg.labels]


def instances(seg: Any) -> list[tuple[np.ndarray, int, str]]:
    """Instance masks of a segmentation: ``[(mask bool [H, W], class_id, class_name), ...]``.

    Instance mode (``seg.instances`` int [H, W], 0 = none, with ``seg.instance_records``): one instance per kept
    record, in the detector's classes. A part bank (``seg.parts``): one per class present, named by the bank.
    Otherwise each 8-connected component of the foreground is an instance of class 0 ``foreground`` (the same
    regions the YOLO polygons outline).
    """
    if getattr(seg, "parts", None) is not None:
        names = seg.meta.parts["classes"]
        return [(seg.parts == c, int(c), str(names[c])) for c in np.unique(seg.parts)]
    if getattr(seg, "instances", None) is not None:
        return [(seg.instances == r.id, int(r.class_id), str(r.class_name))
                for r in seg.instance_records if r.kept and r.id]
    import scipy.ndimage
    comps, n = scipy.ndimage.label(seg.foreground, structure=np.ones((3, 3), bool))
    return [(comps == i, 0, "foreground") for i in range(1, n + 1)]


def yolo_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """External contours of ``mask bool [H, W]`` as ``float [P, 2]`` (x, y) in [0, 1], P >= 3 (holes are lost).

    Coordinates are pixel indices over the size, which is what ultralytics' ``fillPoly`` turns back into the mask.
    """
    import cv2
    h, w = mask.shape
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [np.clip(c[:, 0, :].astype(np.float64) / (w, h), 0, 1) for c in contours if len(c) >= 3]


def coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """``mask bool [H, W]`` -> COCO RLE ``{"size": [H, W], "counts": str}`` (pycocotools' compressed form)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_seed(seg: Any, fmt: str, digest: str, min_margin: float, alpha: bool = False) -> SeedResult:
    """Turn a :class:`~stylemix.segment.Segmentation` into the files and the manifest record of ``fmt``.

    Files per format (SSSS = seed, at least 4 digits):
      png:  ``images/seedSSSS.png`` RGB, ``masks/seedSSSS.png`` palette PNG of :func:`class_map` ids.
      coco: ``images/seedSSSS.png``; the annotations (RLE, bbox, area) go in the record (for the COCO JSON).
      yolo: ``images/train/seedSSSS.png``, ``labels/train/seedSSSS.txt``: ``class x1 y1 x2 y2 ...`` per polygon.
    With ``alpha``, every format adds ``alpha/seedSSSS_alpha.png``, the 8-bit matte
    (:func:`stylemix.outputs.alpha_image`; ``>= 128`` is the foreground).
    A seed whose foreground margin is below ``min_margin`` writes no file; its record says why.
    """
    from stylemix.io import encode_palette_png, encode_png
    seed, meta = int(seg.seed if seg.row is None else seg.row), seg.meta
    record: dict[str, Any] = {"seed": seed, "digest": digest, "foreground_margin": meta.foreground_margin,
                              "foreground_fraction": meta.foreground_fraction, "size": list(seg.image.shape[:2])}
    if meta.foreground_margin < min_margin:
        record["skipped"] = f"foreground margin {meta.foreground_margin} < min margin {min_margin}"
        return SeedResult(seed, {}, record)
    name = seg.name
    files: dict[str, bytes] = {}
    if fmt == "png":
        files[f"images/{name}.png"] = encode_png(seg.image)
        files[f"masks/{name}.png"] = encode_palette_png(class_map(seg), mask_palette())
        if getattr(seg, "instances", None) is not None:
            record["classes"] = {str(c): n for _, c, n in instances(seg)}
    elif fmt == "coco":
        files[f"images/{name}.png"] = encode_png(seg.image)
        anns = []
        for mask, class_id, class_name in instances(seg):
            rle = coco_rle(mask)
            ys, xs = np.nonzero(mask)
            bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            anns.append({"class_id": class_id, "class_name": class_name, "area": int(mask.sum()), "bbox": bbox,
                         "segmentation": rle})
        record["annotations"] = anns
    elif fmt == "yolo":
        files[f"images/train/{name}.png"] = encode_png(seg.image)
        lines, names = [], {}
        for mask, class_id, class_name in instances(seg):
            names[str(class_id)] = class_name
            lines += [f"{class_id} " + " ".join(f"{v:.6f}" for v in poly.ravel()) for poly in yolo_polygons(mask)]
        files[f"labels/train/{name}.txt"] = "".join(line + "\n" for line in lines).encode()
        record["classes"], record["polygons"] = names, len(lines)
    else:
        raise StylemixError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if alpha:
        from stylemix.outputs import alpha_image
        files[f"{ALPHA_DIR}/{name}_alpha.png"] = encode_png(alpha_image(seg))
    record["files"] = {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}
    return SeedResult(seed, files, record)


def dataset_classes(card: dict[str, Any], written: list[dict[str, Any]]) -> dict[str, str]:
    """Class id (as a string, JSON keys) -> name for the whole dataset, in id order."""
    if card.get("parts"):  # every format: the bank's classes, ids as they are
        return {str(row["id"]): row["name"] for row in card["parts"]["classes"]}
    detector_names = (card.get("instances") or {}).get("names")
    if card["format"] == "png" and card.get("instances"):
        found = {int(a): n for a, n in (detector_names or {}).items()}
        for r in written:  # a detector without a names table: the names seen
            found.update({int(c): n for c, n in r.get("classes", {}).items()})
        return {"0": "background", **{str(i + 1): found.get(i, f"class{i}") for i in range(max(found, default=-1) + 1)}}
    if card["format"] == "png":
        k = int(card["settings"]["clusters"])
        return {"0": "background", "1": "foreground"} if k == 2 else {str(i): f"rank{i}" for i in range(k)}
    names: dict[int, str] = {}
    for r in written:
        for a in r.get("annotations", ()):
            names.setdefault(int(a["class_id"]), a["class_name"])
        for cid, name in r.get("classes", {}).items():
            names.setdefault(int(cid), name)
    if detector_names:
        names = {int(i): n for i, n in detector_names.items()}
    names = names or {0: "foreground"}
    top = max(names)
    return {str(i): names.get(i, f"class{i}") for i in range(top + 1)}  # YOLO wants dense ids


def coco_document(written: list[dict[str, Any]], classes: dict[str, str], card: dict[str, Any]) -> dict[str, Any]:
    """The COCO instances JSON of the records (sorted by seed): image id = seed, category id = class id + 1."""
    images, annotations = [], []
    for r in written:
        name = stem(r["seed"], name_prefix(card)) + ".png"
        h, w = r["size"]
        images.append({"id": r["seed"], "file_name": name, "height": h, "width": w})
        for a in r["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": r["seed"], "category_id": a["class_id"] + 1,
                                "segmentation": a["segmentation"], "area": a["area"], "bbox": a["bbox"],
                                "iscrowd": 0})
    return {"info": {"description": "stylemix pseudo-labels", "version": card["stylemix"],
                     "digest": card["digest"]},
            "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": int(i) + 1, "name": n, "supercategory": "part" if card.get("parts") else "object"}
                           for i, n in classes.items()]}


def yolo_yaml(classes: dict[str, str]) -> str:
    """``data.yaml`` without a ``path:`` key, so ultralytics resolves the folders next to the file itself."""
    names = "".join(f"  {i}: {json.dumps(n)}\n" for i, n in classes.items())
    return ("# stylemix pseudo-label export (docs/export.md). Paths are relative to this file's folder.\n"
            "# There is no held-out split: val repeats train; split by seed if you need one.\n"
            f"train: images/train\nval: images/train\nnames:\n{names}")
