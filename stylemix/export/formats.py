"""Encoding: one segmentation to the files and the manifest record of its formats (png, COCO, YOLO, any of them at
once), and each format's index built from every record (the COCO JSONs, YOLO's ``data.yaml``, the class table).

A seed's labels are first brought to the output size (:func:`seed_labels`: image, class ids, instances, matte);
every format is then written from those labels alone (:func:`encode_labels`), which is also how an existing export
is converted to another format without rendering (:mod:`~stylemix.export.convert`). Both are pure (no file
system), so one process, a shard of a torchrun job, a Ray actor and a conversion produce the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Sequence

import numpy as np

from stylemix.errors import StylemixError
from stylemix.export.layout import ALPHA_DIR, name_prefix, parse_formats, seed_path
from stylemix.export.seeds import seed_split
from stylemix.io import stem

__all__ = ["COCO_MASKS", "Encoding", "SeedLabels", "SeedResult", "class_map", "coco_document", "coco_polygons",
           "coco_rle", "dataset_classes", "encode_labels", "encode_seed", "instances", "join_polygons",
           "mask_palette", "output_shape", "resize_ids", "resize_image", "seed_labels", "yolo_polygons",
           "yolo_yaml"]

COCO_MASKS = ("polygon", "rle")


@dataclasses.dataclass
class SeedResult:
    """What one seed contributes: ``files`` maps paths relative to the dataset root to their bytes, ``record`` is
    its manifest line (JSON object)."""

    seed: int
    files: dict[str, bytes]
    record: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Encoding:
    """How a seed's labels become files; every field is in the card and the digest.

    Attributes:
        formats: the formats written, in :data:`~stylemix.export.layout.FORMATS` order.
        digest: the export's settings digest, repeated in every record.
        min_margin, alpha, size, val_fraction, class_name, coco_masks: as in
            :class:`~stylemix.export.options.DatasetSettings`.
    """

    formats: tuple[str, ...]
    digest: str
    min_margin: float
    alpha: bool
    size: int | None
    val_fraction: float
    class_name: str
    coco_masks: str


@dataclasses.dataclass
class SeedLabels:
    """A seed's labels at the output size, all any format writes.

    Attributes:
        name: the file stem (``seed0042``, ``ws0003``).
        image_png: the RGB image's PNG bytes.
        ids: ``uint8 [h, w]`` the png format's class ids (:func:`class_map`, resized).
        objects: ``[(mask bool [h, w], class_id, class_name), ...]`` the COCO / YOLO instances (:func:`instances`).
        matte_png: the 8-bit matte's PNG bytes (``None`` without ``alpha``).
        named: a detector decided the classes (the png record then lists the classes it saw).
    """

    name: str
    image_png: bytes
    ids: np.ndarray
    objects: list[tuple[np.ndarray, int, str]]
    matte_png: bytes | None = None
    named: bool = False


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


def output_shape(shape: Sequence[int], size: int | None) -> tuple[int, int]:
    """``(h, w)`` of an image of ``shape[:2]`` whose longer side becomes ``size`` (``None``: unchanged)."""
    h, w = int(shape[0]), int(shape[1])
    if size is None or max(h, w) == size:
        return h, w
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _interpolation(shape: Sequence[int], to: tuple[int, int]) -> int:
    import cv2
    return cv2.INTER_AREA if to[0] * to[1] < shape[0] * shape[1] else cv2.INTER_LINEAR


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``uint8 [H, W(, C)]`` -> ``[h, w(, C)]``: area averaging when reducing (no aliasing), bilinear when enlarging."""
    import cv2
    if image.shape[:2] == tuple(shape):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=_interpolation(image.shape, shape))


def resize_ids(ids: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Integer ids ``[H, W]`` -> ``[h, w]``: each output pixel takes the id that covers most of its area.

    An area vote rather than nearest-neighbour sampling: every id stays a valid class (no blend of two ids), and a
    region keeps the pixels it mostly covers instead of those a sampling grid happens to hit. Ties go to the lower
    id.
    """
    from stylemix.postprocess import resize_maps
    if ids.shape == tuple(shape):
        return ids
    classes = np.unique(ids)
    shares = resize_maps((ids[None] == classes[:, None, None]).astype(np.float32), tuple(shape),
                         area=shape[0] * shape[1] < ids.shape[0] * ids.shape[1])
    return classes[shares.argmax(0)].astype(ids.dtype)


def instances(seg: Any, class_name: str = "foreground") -> list[tuple[np.ndarray, int, str]]:
    """Instance masks of a segmentation: ``[(mask bool [H, W], class_id, class_name), ...]``.

    Instance mode (``seg.instances`` int [H, W], 0 = none, with ``seg.instance_records``): one instance per kept
    record, in the detector's classes. A part bank (``seg.parts``): one per class present, named by the bank.
    Otherwise the whole foreground is one instance of class 0 ``class_name`` (none when it is empty): without a
    detector nothing tells two objects apart, and a piece cut off by the mask (a hat, a hand) belongs to the
    subject rather than being an object of its own.
    """
    return _objects(seg, class_name, (seg.image.shape[0], seg.image.shape[1]))


def _objects(seg: Any, class_name: str, shape: tuple[int, int], ids: np.ndarray | None = None
             ) -> list[tuple[np.ndarray, int, str]]:
    """:func:`instances` at ``shape`` (``ids``: the resized :func:`class_map`, where already computed)."""
    if getattr(seg, "parts", None) is not None:
        names = seg.meta.parts["classes"]
        parts = resize_ids(seg.parts, shape) if ids is None else ids
        return [(parts == c, int(c), str(names[c])) for c in np.unique(parts)]
    if getattr(seg, "instances", None) is not None:
        inst = resize_ids(seg.instances, shape)
        found = [(inst == r.id, int(r.class_id), str(r.class_name)) for r in seg.instance_records if r.kept and r.id]
        return [o for o in found if o[0].any()]  # an instance smaller than a pixel of the output is gone
    fg = resize_ids(seg.foreground.astype(np.uint8), shape) > 0
    return [(fg, 0, class_name)] if fg.any() else []


def seed_labels(seg: Any, encoding: Encoding) -> SeedLabels:
    """A :class:`~stylemix.segment.Segmentation`'s labels at the output size (``encoding.size``).

    The image and the matte are reduced with ``cv2.INTER_AREA``, the class ids and instance ids by
    :func:`resize_ids`; the matte is then kept on the resized mask's side of 128, so ``matte >= 128`` is still
    exactly the foreground.
    """
    from stylemix.io import encode_png
    shape = output_shape(seg.image.shape, encoding.size)
    ids = resize_ids(class_map(seg), shape)
    two_way = getattr(seg, "parts", None) is None and getattr(seg, "semantic", None) is None and \
        int(seg.meta.settings["clusters"]) == 2
    objects = _objects(seg, encoding.class_name, shape, ids if getattr(seg, "parts", None) is not None else None)
    matte = None
    if encoding.alpha:
        from stylemix.outputs import alpha_image
        a = resize_image(alpha_image(seg), shape)
        fg = ids > 0 if two_way else resize_ids(seg.foreground.astype(np.uint8), shape) > 0
        matte = encode_png(np.where(fg, np.maximum(a, 128), np.minimum(a, 127)).astype(np.uint8))
    return SeedLabels(seg.name, encode_png(resize_image(seg.image, shape)), ids, objects, matte,
                      named=getattr(seg, "instances", None) is not None)


def yolo_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """External contours of ``mask bool [H, W]`` as ``float [P, 2]`` (x, y) in [0, 1], P >= 3 (holes are lost).

    Coordinates are pixel indices over the size, which is what ultralytics' ``fillPoly`` turns back into the mask.
    """
    h, w = mask.shape
    return [np.clip(c / (w, h), 0, 1) for c in _contours(mask) if len(c) >= 3]


def _contours(mask: np.ndarray) -> list[np.ndarray]:
    """External contours of ``mask bool [H, W]``: ``float [P, 2]`` pixel indices (x, y), in OpenCV's order."""
    import cv2
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c[:, 0, :].astype(np.float64) for c in contours]


def join_polygons(polygons: Sequence[np.ndarray]) -> np.ndarray:
    """Several polygons ``float [P_i, 2]`` -> one ``float [Q, 2]`` that outlines them all (YOLO has one polygon per
    object).

    Each polygon starts at its vertex nearest the previous one's start and is walked back to that vertex; after the
    last, the path returns over the same starts. The joins are traversed both ways, so they enclose no area: drawn
    with ``fillPoly`` they add one-pixel lines between the pieces, as ultralytics' own COCO converter does.
    """
    if len(polygons) == 1:
        return polygons[0]
    path, starts = [], []
    for poly in polygons:
        first = 0 if not starts else int(np.argmin(((poly - starts[-1]) ** 2).sum(1)))
        ring = np.roll(poly, -first, axis=0)
        starts.append(ring[0])
        path += [ring, ring[:1]]
    path += [np.array(starts[-2:0:-1]).reshape(-1, 2)]
    return np.concatenate(path)


def coco_polygons(mask: np.ndarray) -> list[list[float]]:
    """``mask bool [H, W]`` -> COCO polygons ``[[x1, y1, x2, y2, ...], ...]``, one per external contour (holes are
    filled).

    Vertices are the contour's pixel centres (``index + 0.5``: COCO's pixel ``i`` spans ``[i, i + 1]``). A piece of
    fewer than 3 contour points becomes the square around its pixels, so no piece is lost.
    """
    out = []
    for c in _contours(mask):
        if len(c) >= 3:
            out.append([round(float(v), 2) for v in (c + 0.5).ravel()])
        else:
            (x0, y0), (x1, y1) = c.min(0), c.max(0) + 1
            out.append([float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)])
    return out


def coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """``mask bool [H, W]`` -> COCO RLE ``{"size": [H, W], "counts": str}`` (pycocotools' compressed form)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_seed(seg: Any, encoding: Encoding) -> SeedResult:
    """Turn a :class:`~stylemix.segment.Segmentation` into the files and the manifest record of ``encoding``'s
    formats (:func:`seed_labels`, then :func:`encode_labels`).

    A seed whose foreground margin is below ``encoding.min_margin`` writes no file; its record says why.
    """
    seed, meta = int(seg.seed if seg.row is None else seg.row), seg.meta
    record: dict[str, Any] = {"seed": seed, "digest": encoding.digest, "foreground_margin": meta.foreground_margin,
                              "foreground_fraction": meta.foreground_fraction,
                              "size": list(output_shape(seg.image.shape, encoding.size)),
                              "split": seed_split(seed, encoding.val_fraction)}
    if meta.foreground_margin < encoding.min_margin:
        record["skipped"] = f"foreground margin {meta.foreground_margin} < min margin {encoding.min_margin}"
        return SeedResult(seed, {}, record)
    return encode_labels(seed_labels(seg, encoding), encoding, record)


def encode_labels(labels: SeedLabels, encoding: Encoding, record: dict[str, Any]) -> SeedResult:
    """A seed's files in every format of ``encoding``, and its record (``record``, with ``seed`` and ``split``,
    completed: the files' sha256, COCO annotations, YOLO classes and polygon count).

    Files (SSSS = seed, at least 4 digits; SPLIT = ``train`` or ``val``):
      every format: ``images/SPLIT/seedSSSS.png`` RGB.
      png:  ``masks/SPLIT/seedSSSS.png`` palette PNG of :func:`class_map` ids.
      coco: the annotations (polygons or RLE, bbox, area) go in the record (for the split's COCO JSON).
      yolo: ``labels/SPLIT/seedSSSS.txt``: ``class x1 y1 x2 y2 ...``, one line per instance.
    With ``alpha``, ``alpha/SPLIT/seedSSSS_alpha.png``, the 8-bit matte (``>= 128`` is the foreground).
    """
    from stylemix.io import encode_palette_png
    name, split = labels.name, record["split"]
    formats = parse_formats(encoding.formats)
    files: dict[str, bytes] = {seed_path("images", split, name): labels.image_png}
    if "png" in formats:
        files[seed_path("masks", split, name)] = encode_palette_png(labels.ids, mask_palette())
        if labels.named:
            record["classes"] = {str(c): n for _, c, n in labels.objects}
    if "coco" in formats:
        anns = []
        for mask, class_id, class_name in labels.objects:
            ys, xs = np.nonzero(mask)
            bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            shape = coco_rle(mask) if encoding.coco_masks == "rle" else coco_polygons(mask)
            anns.append({"class_id": class_id, "class_name": class_name, "area": int(mask.sum()), "bbox": bbox,
                         "segmentation": shape})
        record["annotations"] = anns
    if "yolo" in formats:
        lines, names = [], {}
        for mask, class_id, class_name in labels.objects:
            names[str(class_id)] = class_name
            polygons = yolo_polygons(mask)
            if polygons:
                lines.append(f"{class_id} " + " ".join(f"{v:.6f}" for v in join_polygons(polygons).ravel()))
        files[seed_path("labels", split, name, ".txt")] = "".join(line + "\n" for line in lines).encode()
        record["classes"], record["polygons"] = names, len(lines)
    if encoding.alpha and labels.matte_png is not None:
        files[seed_path(ALPHA_DIR, split, name, "_alpha.png")] = labels.matte_png
    record["files"] = {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}
    return SeedResult(int(record["seed"]), files, record)


def dataset_classes(card: dict[str, Any], written: list[dict[str, Any]], fmt: str | None = None) -> dict[str, str]:
    """Class id (as a string, JSON keys) -> name for the whole dataset in format ``fmt`` (default: the card's
    first), in id order: png ids count the background, COCO and YOLO classes do not."""
    fmt = fmt or parse_formats(card["format"])[0]
    name = card.get("class_name", "foreground")
    if card.get("parts"):  # every format: the bank's classes, ids as they are
        return {str(row["id"]): row["name"] for row in card["parts"]["classes"]}
    detector_names = (card.get("instances") or {}).get("names")
    if fmt == "png" and card.get("instances"):
        found = {int(a): n for a, n in (detector_names or {}).items()}
        for r in written:  # a detector without a names table: the names seen
            found.update({int(c): n for c, n in r.get("classes", {}).items()})
        return {"0": "background", **{str(i + 1): found.get(i, f"class{i}") for i in range(max(found, default=-1) + 1)}}
    if fmt == "png":
        k = int(card["settings"]["clusters"])
        return {"0": "background", "1": name} if k == 2 else {str(i): f"rank{i}" for i in range(k)}
    names: dict[int, str] = {}
    for r in written:
        for a in r.get("annotations", ()):
            names.setdefault(int(a["class_id"]), a["class_name"])
        for cid, cname in r.get("classes", {}).items():
            names.setdefault(int(cid), cname)
    if detector_names:
        names = {int(i): n for i, n in detector_names.items()}
    names = names or {0: name}
    top = max(names)
    return {str(i): names.get(i, f"class{i}") for i in range(top + 1)}  # YOLO wants dense ids


def coco_document(written: list[dict[str, Any]], classes: dict[str, str], card: dict[str, Any]) -> dict[str, Any]:
    """The COCO instances JSON of the records (one split's, sorted by seed): image id = seed, category id = class
    id + 1, ``file_name`` relative to the split's image folder (``images/train``)."""
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


def yolo_yaml(classes: dict[str, str], has_val: bool = True) -> str:
    """``data.yaml`` without a ``path:`` key, so ultralytics resolves the folders next to the file itself; ``val``
    is ``images/val``, or ``images/train`` when no seed fell in the val split (ultralytics refuses an empty one)."""
    names = "".join(f"  {i}: {json.dumps(n)}\n" for i, n in classes.items())
    val = "images/val" if has_val else "images/train  # no seed fell in the val split (--val-fraction)"
    return ("# stylemix pseudo-label export (docs/export.md). Paths are relative to this file's folder.\n"
            f"train: images/train\nval: {val}\nnames:\n{names}")

