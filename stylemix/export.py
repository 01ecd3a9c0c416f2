"""Pseudo-label datasets: segment many seeds and write them in a layout a trainer reads unmodified.

:func:`export_dataset` is the entry point (``stylemix export`` is its command line); docs/export.md explains the
formats, the dataset card, resume, sharding and Ray. The design in four sentences:

* Each seed is turned into files and one manifest record by a pure function (:func:`render_seed`), so one process,
  a shard of a torchrun job and a Ray actor produce the same bytes.
* Files are written atomically, then the record is appended to the manifest and fsynced: a seed counts as done only
  once its line is on disk, and the manifest is the only source of truth for ``--resume``.
* Everything derived from many seeds (the sorted ``manifest.jsonl``, the COCO JSON, ``data.yaml``, the card's
  counts) is rebuilt from the records by :func:`finalize`, so an export killed at any moment and resumed ends
  byte-identical to an uninterrupted one.
* A settings digest (generator weights, method settings, format, filter, stylemix version) is stored in the card
  and in every record; a run whose digest differs is refused unless the dataset is cleared with ``overwrite``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from stylemix.errors import StylemixError
from stylemix.identity import arithmetic, check_arithmetic, generator_id
from stylemix.io import compact_seeds, file_sha256, stem  # noqa: F401 (export.* documented names)

FORMATS = ("png", "coco", "yolo")
LAYOUT_VERSION = 2  # bumped whenever the files written for a seed change; part of the digest
# 2: masks encoded by Pillow (same ids, other bytes than version 1's own encoder)
CARD = "dataset.json"
MANIFEST = "manifest.jsonl"
COCO_JSON = "annotations/instances.json"
YOLO_YAML = "data.yaml"
_LOCK = ".export.lock"
_IMAGE_DIRS = {"png": ("images", "masks"), "coco": ("images",), "yolo": ("images/train", "labels/train")}
ALPHA_DIR = "alpha"  # seedSSSS_alpha.png of every format, apart from the folders a trainer globs
BANK = "parts.parts"  # the part bank of a parts export, beside the card (with parts.classes.csv, parts.classNN.png)
# How many of the first seeds of a run `--parts K` fits its bank on (all of them when there are fewer).
DISCOVER_SEEDS = 100
_OWNED = (CARD, YOLO_YAML, _LOCK, "images", "masks", "labels", "annotations", ALPHA_DIR, BANK,
          "parts.classes.csv")  # what overwrite may delete (and parts.classNN.png)
# Not part of the digest or the card: the segment docstring guarantees results do not depend on it.
_PERFORMANCE_SETTINGS = ("batch_size",)


# ----------------------------------------------------------------------------------------------------------------
# Seeds and shards


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"I/N"`` -> ``(I, N)``; ``"auto"`` reads torchrun's ``RANK`` and ``WORLD_SIZE`` (unset: no sharding)."""
    if spec is None or isinstance(spec, tuple):
        shard = spec
    elif spec == "auto":
        if "WORLD_SIZE" not in os.environ:
            return None
        try:
            shard = (int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"]))
        except ValueError:
            raise StylemixError("RANK and WORLD_SIZE must be integers for --shard auto") from None
    else:
        m = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
        if not m:
            raise StylemixError(f"bad shard {spec!r}: use I/N (e.g. 0/4) or auto")
        shard = (int(m.group(1)), int(m.group(2)))
    if shard is not None and not 0 <= shard[0] < shard[1]:
        raise StylemixError(f"shard index must be in [0, N), got {shard[0]}/{shard[1]}")
    return None if shard is None or shard[1] == 1 else shard


def shard_seeds(seeds: Sequence[int], index: int, count: int) -> list[int]:
    """The seeds of shard ``index`` of ``count``: seed ``s`` belongs to shard ``s mod count``.

    By seed value rather than list position, so a seed's shard never depends on which other seeds were asked for.
    """
    return [s for s in seeds if s % count == index]


def shard_manifest(shard: tuple[int, int] | None) -> str:
    return MANIFEST if shard is None else f"manifest-shard{shard[0]}-of-{shard[1]}.jsonl"


# ----------------------------------------------------------------------------------------------------------------
# Settings, generator identity, digest


def generator_identity(G: Any, source: str | os.PathLike | None) -> dict[str, Any]:
    """What the card says about the generator: its source (file name or registered name), its id
    (:func:`stylemix.identity.generator_id`, the same on every machine), ``G.describe()`` and, for a file, the
    file's sha256."""
    facts = json.loads(json.dumps(G.describe() if hasattr(G, "describe") else {}, default=str))
    ident: dict[str, Any] = {"family": getattr(G, "family", type(G).__name__), "describe": facts,
                             "id": generator_id(G)}
    if source is not None and os.path.isfile(source):
        ident.update(source=Path(source).name, sha256=file_sha256(source))
    else:
        ident.update(source=None if source is None else os.fspath(source))
    return ident


def instance_identity(step: Any) -> dict[str, Any] | None:
    """The instance mode's settings for the card (``None`` when off): detector name and, for a weights file, its
    sha256, class filter, thresholds, per-box settings and the detector's class table.

    Args:
        step: :func:`stylemix.instances.prepare_instances`'s result.
    """
    from stylemix.detect import detector_name
    if step is None:
        return None
    ident: dict[str, Any] = {
        "detector": detector_name(step.detector), "classes": step.classes, "conf": step.conf, "iou": step.iou,
        "settings": dataclasses.asdict(step.config),
        "names": {str(k): v for k, v in sorted((getattr(step.detector, "names", None) or {}).items())}}
    weights = getattr(step.detector, "weights", None)  # a YoloDetector's file
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        ident["sha256"] = file_sha256(weights)
    return ident


def settings_digest(core: dict[str, Any]) -> str:
    """sha256 of what decides every byte a seed writes (the card ``core`` minus names that do not)."""
    keyed = {k: v for k, v in core.items() if k not in ("seeds", "digest")}
    keyed["generator"] = {k: v for k, v in core["generator"].items() if k != "source"}  # a renamed file is the same
    if "parts" in core:
        keyed["parts"] = {k: v for k, v in core["parts"].items() if k != "source"}
    return hashlib.sha256(_canonical(keyed).encode()).hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------------------------------------------
# One seed -> files + record (pure: no file system)


@dataclasses.dataclass
class SeedResult:
    """What one seed contributes: ``files`` maps paths relative to the dataset root to their bytes, ``record`` is
    its manifest line (JSON object)."""

    seed: int
    files: dict[str, bytes]
    record: dict[str, Any]


def name_prefix(card: dict[str, Any]) -> str:
    """``ws`` for an export of a latents file (its records' ``seed`` fields are row numbers), else ``seed``."""
    return "ws" if card.get("latents") else "seed"


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
    k = int(seg.meta["settings"]["clusters"])
    if k == 2:
        return seg.foreground.astype(np.uint8)
    order = np.argsort(np.asarray(seg.meta["cluster_scores"]), kind="stable")
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
        names = seg.meta["parts"]["classes"]
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


def seed_dirs(fmt: str, alpha: bool = False) -> tuple[str, ...]:
    """The folders that hold per-seed files in an export of ``fmt`` (with ``alpha``: the mattes' too)."""
    return _IMAGE_DIRS[fmt] + ((ALPHA_DIR,) if alpha else ())


def render_seed(seg: Any, fmt: str, digest: str, min_margin: float, alpha: bool = False) -> SeedResult:
    """Turn a :class:`~stylemix.segment.Segmentation` into the files and the manifest record of ``fmt``.

    Files per format (SSSS = seed, at least 4 digits):
      png:  ``images/seedSSSS.png`` RGB, ``masks/seedSSSS.png`` palette PNG of :func:`class_map` ids.
      coco: ``images/seedSSSS.png``; the annotations (RLE, bbox, area) go in the record, for :func:`finalize`.
      yolo: ``images/train/seedSSSS.png``, ``labels/train/seedSSSS.txt``: ``class x1 y1 x2 y2 ...`` per polygon.
    With ``alpha``, every format adds ``alpha/seedSSSS_alpha.png``, the 8-bit matte
    (:func:`stylemix.outputs.alpha_image`; ``>= 128`` is the foreground).
    A seed whose foreground margin is below ``min_margin`` writes no file; its record says why.
    """
    from stylemix.io import encode_palette_png, encode_png
    seed, meta = int(seg.seed if seg.row is None else seg.row), seg.meta
    record: dict[str, Any] = {"seed": seed, "digest": digest, "foreground_margin": meta["foreground_margin"],
                              "foreground_fraction": meta["foreground_fraction"], "size": list(seg.image.shape[:2])}
    if meta["foreground_margin"] < min_margin:
        record["skipped"] = f"foreground margin {meta['foreground_margin']} < min margin {min_margin}"
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


# ----------------------------------------------------------------------------------------------------------------
# The dataset on disk: manifests, commits, finalisation


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The records of one manifest file; a torn last line (a kill mid-append) is ignored.

    Raises:
        StylemixError: any other line that is not a JSON record (the file is corrupt, not merely interrupted).
    """
    if not path.exists():
        return []
    lines = [(i, line) for i, line in enumerate(path.read_bytes().split(b"\n"), 1) if line.strip()]
    records = []
    for j, (number, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if j == len(lines) - 1:
                continue  # only the last line can be torn; it was never acknowledged
            raise StylemixError(f"{path} is corrupt: line {number} is not a JSON record") from None
    return records


def manifest_paths(outdir: Path) -> list[Path]:
    """``manifest.jsonl`` and every ``manifest-shardI-of-N.jsonl`` of ``outdir``."""
    return sorted(p for p in outdir.glob("manifest*.jsonl") if re.fullmatch(r"manifest(-shard\d+-of-\d+)?\.jsonl",
                                                                             p.name))


def read_records(outdir: Path) -> dict[int, dict[str, Any]]:
    """Every record of every manifest of ``outdir`` by seed (a later line for the same seed wins)."""
    records: dict[int, dict[str, Any]] = {}
    for path in manifest_paths(outdir):
        for rec in read_manifest(path):
            records[int(rec["seed"])] = rec
    return records


def is_done(outdir: Path, record: dict[str, Any]) -> bool:
    """A record counts only while its files exist (a deleted image makes the seed be redone)."""
    return all((outdir / p).is_file() for p in record.get("files", {}))


def missing_seeds(outdir: Path, seeds: Sequence[int], records: dict[int, dict[str, Any]]) -> list[int]:
    """The ``seeds`` (in their order) without a record whose files all exist: what remains to export."""
    return [s for s in seeds if s not in records or not is_done(outdir, records[s])]


class ManifestWriter:
    """Appends records to one manifest file, one fsynced ``write`` per line.

    On open, bytes after the last newline (a line torn by a kill) are cut off so the next line starts clean.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            data = path.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep != len(data):
                with open(path, "r+b") as f:
                    f.truncate(keep)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (_canonical(record) + "\n").encode())
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def commit_seed(outdir: Path, result: SeedResult, manifest: ManifestWriter) -> None:
    """Write a seed's files atomically, make the renames durable, then append its record (the commit point)."""
    from stylemix.io import atomic_write_bytes
    dirs = set()
    for rel, data in result.files.items():
        path = outdir / rel
        atomic_write_bytes(path, data)
        dirs.add(path.parent)
    for d in sorted(dirs):  # the rename must reach the disk before the line that vouches for it
        _fsync_dir(d)
    manifest.append(result.record)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(outdir: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``outdir/.export.lock`` (serialises shards finishing at the same time)."""
    import fcntl
    with open(outdir / _LOCK, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def read_card(outdir: Path) -> dict[str, Any] | None:
    path = outdir / CARD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise StylemixError(f"{os.fspath(path)!r} is not a stylemix dataset card") from None


def finalize(outdir: str | os.PathLike) -> dict[str, Any]:
    """Build everything derived from the records, if every requested seed has one; return the card.

    In order, so that a kill at any step leaves a state the next call completes identically: the merged
    ``manifest.jsonl`` sorted by seed, removal of the shard manifests, the format's index (COCO JSON or
    ``data.yaml``), removal of temp files and files no record names, and last the card with ``complete: true``.

    Raises:
        StylemixError: no card, records with another digest, or seeds still missing.
    """
    from stylemix.io import atomic_write_bytes, write_json
    out = Path(outdir)
    card = read_card(out)
    if card is None:
        raise StylemixError(f"{os.fspath(out)!r} has no {CARD}: not a stylemix export")
    with _locked(out):
        records = read_records(out)
        _check_digests(out, card["digest"], records.values())
        from stylemix.io import parse_seeds
        wanted = parse_seeds(card["seeds"]) if card["seeds"] else []
        missing = missing_seeds(out, wanted, records)
        if missing:
            raise StylemixError(f"{len(missing)} of {len(wanted)} seeds are not exported yet (first: {missing[0]}); "
                                "run the missing shards, or resume, then merge")
        ordered = [records[s] for s in sorted(wanted)]
        atomic_write_bytes(out / MANIFEST, "".join(_canonical(r) + "\n" for r in ordered).encode())
        for path in manifest_paths(out):
            if path.name != MANIFEST:
                path.unlink()
        written = [r for r in ordered if "skipped" not in r]
        classes = _classes(card, written)
        if card["format"] == "coco":
            (out / "annotations").mkdir(exist_ok=True)
            write_json(out / COCO_JSON, coco_document(written, classes, card))
        elif card["format"] == "yolo":
            atomic_write_bytes(out / YOLO_YAML, yolo_yaml(classes).encode())
        _remove_strays(out, seed_dirs(card["format"], bool(card.get("alpha"))),
                       {p for r in written for p in r["files"]})
        counts = {"requested": len(wanted), "written": len(written), "skipped": len(wanted) - len(written),
                  "mean_foreground_fraction": round(float(np.mean([r["foreground_fraction"] for r in written]))
                                                    if written else 0.0, 6)}
        if card["format"] == "coco":
            counts["annotations"] = sum(len(r["annotations"]) for r in written)
        elif card["format"] == "yolo":
            counts["polygons"] = sum(r["polygons"] for r in written)
        card.update(complete=True, classes=classes, counts=counts,
                    skipped_seeds=compact_seeds(r["seed"] for r in ordered if "skipped" in r))
        write_json(out / CARD, card)
    return card


def _classes(card: dict[str, Any], written: list[dict[str, Any]]) -> dict[str, str]:
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


def _remove_strays(out: Path, dirs: Sequence[str], keep: set[str]) -> None:
    """Delete temp files of killed writes and seed files no record names, in the export's own folders only."""
    for d in dirs:
        folder = out / d
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            rel = f"{d}/{p.name}"
            stray_tmp = p.name.startswith(".") and p.name.endswith(".tmp")
            if p.is_file() and (stray_tmp or (re.fullmatch(r"(seed|ws)\d+(_alpha)?\.(png|txt)", p.name) and rel not in keep)):
                p.unlink()
    for p in out.glob(".*.tmp"):
        p.unlink()
    if (out / "annotations").is_dir():
        for p in (out / "annotations").glob(".*.tmp"):
            p.unlink()


def _check_digests(out: Path, digest: str, records: Iterable[dict[str, Any]]) -> None:
    """Refuse records (or a card) made with other settings than ``digest``."""
    for rec in records:
        if rec.get("digest") != digest:
            raise StylemixError(f"{os.fspath(out)!r} holds an export with other settings (digest "
                                f"{str(rec.get('digest'))[:12]} != {digest[:12]}); use --overwrite or another folder")


def clear_export(outdir: Path) -> None:
    """Delete what an export owns in ``outdir`` (card, manifests, data.yaml, image/label folders); nothing else."""
    for name in _OWNED:
        p = outdir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in [*manifest_paths(outdir), *outdir.glob("parts.class[0-9][0-9].png")]:
        p.unlink()


# ----------------------------------------------------------------------------------------------------------------
# The export's jobs: plan (settings, identity, digest), open (the folder and its card), render, commit, finalize


@dataclasses.dataclass
class ExportPlan:
    """What an export decides before it renders a seed (:func:`plan_export`); every later job reads it.

    Attributes:
        G: the generator, loaded once; ``source``: the file or registered name it came from (what Ray actors
            load), ``None`` for a generator object.
        config: the resolved :class:`~stylemix.segment.SegmentConfig` (resolved once, here).
        fmt, min_margin: the format and the margin filter.
        seeds: every seed of the export (or latents row), in the order given; ``shard``: ``(I, N)`` or ``None``.
        core: the card's settings, with their ``digest``.
        latents: the :class:`~stylemix.latents.LatentRows` of a latents export, else ``None``.
        instances: the instance mode's :class:`~stylemix.instances.InstanceStep` (detector loaded once), or
            ``None``.
        alpha: every seed also writes its matte (``alpha/seedSSSS_alpha.png``).
        bank: the :class:`~stylemix.parts.PartBank` of a parts export, else ``None``; ``bank_files``: its files as
            the export stores them (``parts.parts``, ``parts.classes.csv``, contact sheets), by name.
        foreground: without a bank, what decides two-way masks: ``"auto"`` (the packaged bank where the generator
            has one, as ``stylemix segment`` does by default) or ``"none"`` (the per-image consensus).
    """

    G: Any
    source: str | None
    config: Any
    fmt: str
    min_margin: float
    seeds: list[int]
    shard: tuple[int, int] | None
    core: dict[str, Any]
    latents: Any = None
    instances: Any = None
    alpha: bool = False
    bank: Any = None
    bank_files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    foreground: str = "auto"

    @property
    def digest(self) -> str:
        return self.core["digest"]

    @property
    def mine(self) -> list[int]:
        """The seeds this process exports (its shard's)."""
        return self.seeds if self.shard is None else shard_seeds(self.seeds, *self.shard)

    def segment_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`stylemix.segment.segment_many` for this export's seeds."""
        return {"config": self.config, "detector": self.instances,
                "parts": self.bank if self.bank is not None else self.foreground}


def plan_export(generator: Any, seeds: str | Iterable[int] | None, *, ws: Any = None, ws_kind: str = "w",
                stream_base: int = 0, format: str = "png", min_margin: float = 0.0,
                shard: str | tuple[int, int] | None = None, device: str = "cpu", config: Any = None,
                detector: Any = None, classes: Any = None, conf: float = 0.25, iou: float = 0.7,
                instance_config: Any = None, alpha: bool = False, parts: Any = "auto",
                reuse_bank: str | os.PathLike | None = None, **options: Any) -> ExportPlan:
    """Check every setting, load the generator, the latents, the detector and the part bank once (or fit the
    bank), and compute the card's settings and digest; writes nothing. Arguments as for :func:`export_dataset`;
    ``reuse_bank``: a bank file an earlier run of this export stored, loaded instead of fitting ``parts=K`` again
    when it was fitted with the same settings on the same seeds."""
    import stylemix
    from stylemix.instances import prepare_instances
    from stylemix.io import parse_seeds
    from stylemix.outputs import check_alpha
    from stylemix.render import generator_device
    from stylemix.segment import SegmentConfig, _known

    if format not in FORMATS:
        raise StylemixError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
    if (seeds is None) == (ws is None):
        raise StylemixError("give either seeds or a latents file (--ws), not both" if ws is not None else
                            "no seeds to export")
    seed_list: list[int] = []
    if ws is None:
        seed_list = parse_seeds(seeds) if isinstance(seeds, str) else list(dict.fromkeys(int(s) for s in seeds))
        if not seed_list:
            raise StylemixError("no seeds to export")
    shard_t = parse_shard(shard)
    source = os.fspath(generator) if isinstance(generator, (str, os.PathLike)) else None
    G = stylemix.load_generator(source, device=device) if source is not None else generator
    latents, latents_identity = None, None
    if ws is not None:
        from stylemix.latents import LatentRows, load_latents
        latents = ws if isinstance(ws, LatentRows) else load_latents(ws, G, kind=ws_kind, stream_base=stream_base)
        seed_list = [latents.row(i) for i in range(len(latents))]
        latents_identity = {"file": latents.source, "kind": latents.kind, "stream_base": latents.stream_base,
                            "rows": len(latents), "sha256": file_sha256(ws) if not isinstance(ws, LatentRows)
                            else hashlib.sha256(latents.values.tobytes()).hexdigest()}
    cfg = dataclasses.replace(config or SegmentConfig(), **_known(options)).resolve(G)
    check_alpha(alpha, cfg.clusters)
    step = prepare_instances(detector, classes, conf, iou, instance_config)  # checks every setting, loads once
    core = {"stylemix": stylemix.__version__, "layout": LAYOUT_VERSION, "format": format,
            "generator": generator_identity(G, source),
            "settings": {k: v for k, v in cfg.as_dict().items() if k not in _PERFORMANCE_SETTINGS},
            "instances": instance_identity(step), "min_margin": float(min_margin),
            "seeds": compact_seeds(seed_list), "shards": "seed s belongs to shard s mod N",
            "arithmetic": arithmetic(cfg.precision, generator_device(G))}
    if latents_identity is not None:  # only then: a seed export's card and digest stay what they were
        core["latents"] = latents_identity
    if alpha:  # likewise
        core["alpha"] = True
    bank, files, foreground = None, {}, "auto"
    if parts is None or (isinstance(parts, str) and parts in ("auto", "none")):  # no parts dataset: what decides
        foreground, parts = parts or "none", None  # the fg/bg masks (None: the consensus, as in segment_many)
    if parts is None and foreground == "auto":
        from stylemix.parts import PACKAGED_FOR, part_step, resolve_bank_path
        auto = part_step(G, "auto", cfg)
        if auto is not None:  # the packaged bank decides the masks (as in stylemix segment): it is in the digest
            name = PACKAGED_FOR[G.family]
            core["foreground_bank"] = {"source": f"auto: {name}", "sha256": file_sha256(resolve_bank_path(name)),
                                       "classes": auto.bank.table()}
    if parts is not None:
        if step is not None:
            raise StylemixError("--parts and --detector cannot be combined in an export: export the parts and the "
                                "instances as two datasets")
        bank, label = export_bank(parts, G, seed_list, cfg, latents is not None, reuse_bank)
        files = bank_files(bank)
        core["parts"] = {"source": label, "file": BANK, "sha256": hashlib.sha256(files[BANK]).hexdigest(),
                         "fit_seeds": bank.fit_seeds, "classes": bank.table()}
    core["digest"] = settings_digest(core)
    return ExportPlan(G, source, cfg, format, float(min_margin), seed_list, shard_t, core, latents, step, alpha,
                      bank, files, foreground)


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
    from stylemix.parts import PartBank, PartSettings, discover, load_bank
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


def bank_files(bank: Any) -> dict[str, bytes]:
    """``bank`` as an export stores it: ``parts.parts`` (the bank file; its sha256 is in the digest),
    ``parts.classes.csv`` (the class table) and, right after fitting, ``parts.classNN.png`` (contact sheets)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        return {p.name: p.read_bytes() for p in bank.save(Path(tmp) / BANK)}


def open_export(plan: ExportPlan, outdir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False
                ) -> tuple[Path, list[int]]:
    """Make ``outdir`` the plan's dataset: clear it (``overwrite``), refuse another export or an unasked resume,
    write the card if it has none, create the format's folders. Returns the root and this process's pending seeds
    (in order)."""
    from stylemix.io import atomic_write_bytes, prepare_outdir, write_json
    if overwrite and plan.shard is not None:
        raise StylemixError("--overwrite cannot be combined with --shard: clear the folder once before the shards "
                            "start (stylemix export --overwrite without --shard, or rm -r)")
    out = prepare_outdir(outdir)
    if overwrite:
        clear_export(out)
    card, records = read_card(out), read_records(out)
    _check_existing(out, plan.core, card, records, out / shard_manifest(plan.shard), resume)
    # The bank's files before the card that vouches for them, the bank itself last: a later run that finds it
    # reuses it instead of fitting again, so the table and the contact sheets must already be there.
    for name in sorted(plan.bank_files, key=lambda n: n == BANK):
        if not (out / name).is_file():
            atomic_write_bytes(out / name, plan.bank_files[name])
    if card is None:
        write_json(out / CARD, {**plan.core, "complete": False})
    for d in seed_dirs(plan.fmt, plan.alpha):
        (out / d).mkdir(parents=True, exist_ok=True)
    return out, missing_seeds(out, plan.mine, records)


def render_results(plan: ExportPlan, seeds: Sequence[int], *, batch_seeds: int = 16, ray: bool = False,
                   ray_address: str | None = None, workers: int | None = None, writer_threads: int | None = None
                   ) -> Iterator[SeedResult]:
    """The :class:`SeedResult` of each of ``seeds``: in order, segmented in this process while ``writer_threads``
    threads (``None``: :data:`stylemix.outputs.WRITER_THREADS`; 0: inline) encode the seeds before them, the same
    bytes either way; or, with ``ray``, rendered by Ray actors in blocks of ``batch_seeds``, in completion order."""
    if batch_seeds < 1:
        raise StylemixError(f"--batch-seeds must be at least 1, got {batch_seeds}")
    if not seeds:
        return iter(())
    if ray:
        blocks = [list(seeds[i:i + batch_seeds]) for i in range(0, len(seeds), batch_seeds)]
        return _ray_results(plan, blocks, ray_address, workers)
    from stylemix.outputs import WRITER_THREADS, ordered_map
    renderer = SeedRenderer(plan.G, plan)
    threads = WRITER_THREADS if writer_threads is None else writer_threads
    return ordered_map(renderer.render, renderer.segmentations(seeds), threads=threads)


def commit_results(out: Path, plan: ExportPlan, results: Iterable[SeedResult], *, done: int = 0,
                   progress: bool | None = None, queue: int = 8) -> int:
    """Commit ``results`` in order on one writer thread, so that the fsyncs (about 10-20 ms a seed on a plain
    disk) overlap the next seeds' segmentation instead of adding to it; returns how many were committed. At most
    ``queue`` seeds wait. An error in a commit stops the export at that seed; an error in ``results`` (a seed
    that failed to segment or encode) is raised once the seeds before it are committed. ``done``: seeds of this
    shard committed before (where the progress bar starts)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm import tqdm
    mine = plan.mine
    desc = f"export {plan.fmt}" + (f" {plan.shard[0]}/{plan.shard[1]}" if plan.shard else "")
    disable = None if progress is None else not progress  # None: tqdm shows the bar only on a terminal
    waiting: collections.deque[Future] = collections.deque()
    committed = 0
    with ManifestWriter(out / shard_manifest(plan.shard)) as manifest, \
            ThreadPoolExecutor(1, "stylemix-export-commit") as writer, \
            tqdm(total=len(mine), initial=done, unit="img", desc=desc, disable=disable, smoothing=0.1) as bar:

        failed_commit = False

        def finish(block: bool) -> None:
            """Wait for the oldest commits: all of them (``block``), or those done and any beyond ``queue``."""
            nonlocal committed, failed_commit
            while waiting and (block or len(waiting) > queue or waiting[0].done()):
                try:
                    waiting.popleft().result()
                except BaseException:
                    failed_commit = True
                    raise
                committed += 1
                bar.update(1)

        try:
            try:
                for result in results:
                    waiting.append(writer.submit(commit_seed, out, result, manifest))
                    finish(block=False)
                finish(block=True)
            except Exception:
                if not failed_commit:  # a seed failed before its commit: the ones queued before it still commit
                    finish(block=True)
                raise
        finally:
            for f in waiting:  # after a failed commit, the commits not yet started are dropped (seeds stay pending)
                f.cancel()
    return committed


class SeedRenderer:
    """Segments seeds and renders them into :class:`SeedResult` (what a Ray actor holds; also used in-process).

    Args:
        generator: a generator, or a source for :func:`stylemix.load_generator` (loaded on ``device``).
        plan: the export's :class:`ExportPlan` (its ``G`` is not used: a Ray actor gets the plan without it).
        device: where a source is loaded, or a generator object moved (``None``: left where it is).
    """

    def __init__(self, generator: Any, plan: ExportPlan, device: str | None = None) -> None:
        import stylemix
        if isinstance(generator, (str, os.PathLike)):
            generator = stylemix.load_generator(generator, device=device or "cpu")
        elif device is not None:
            generator = generator.to(device)
        self.G, self.plan = generator, plan

    def segmentations(self, seeds: Sequence[int]) -> Iterator[Any]:
        """The :class:`~stylemix.segment.Segmentation` of each of ``seeds`` (latents rows for a latents export)."""
        from stylemix.segment import segment_many
        latents = self.plan.latents
        items = {"seeds": list(seeds)} if latents is None else {"ws": latents.take(seeds)}
        return segment_many(self.G, **items, **self.plan.segment_kwargs())

    def render(self, seg: Any) -> SeedResult:
        return render_seed(seg, self.plan.fmt, self.plan.digest, self.plan.min_margin, self.plan.alpha)

    def run(self, seeds: Sequence[int]) -> list[SeedResult]:
        return [self.render(seg) for seg in self.segmentations(seeds)]


def _ray_results(plan: ExportPlan, blocks: list[list[int]], address: str | None, workers: int | None
                 ) -> Iterator[SeedResult]:
    """Results of ``blocks`` rendered by Ray actors, in completion order.

    One actor per worker holds the generator; with GPUs in the cluster each actor takes one GPU, else one CPU. The
    driver keeps every file write (the actors return bytes), so the nodes need no shared file system. The actors
    get the plan as it is (settings resolved and checked, the instance step built once here); a YOLO detector
    travels as its weights path and thresholds and is opened once per actor, since a model cannot be shared
    between processes.
    """
    from stylemix.render import generator_device  # lazy like every torch-side import here
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise StylemixError("--ray needs Ray: pip install 'stylemix[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    n = workers or gpus or max(int(resources.get("CPU", 1)), 1)
    remote = ray.remote(num_gpus=1, num_cpus=0) if gpus else ray.remote(num_cpus=1)
    Actor = remote(SeedRenderer)
    G = plan.G
    if plan.source is not None:
        source: Any = plan.source  # a path every node can read (shared storage or the same layout), or a name
    else:  # weights travel on the CPU (a node may have no GPU); a copy, so the caller's generator stays put
        source = ray.put(G if generator_device(G).type == "cpu" else copy.deepcopy(G).cpu())
    spec = ray.put(dataclasses.replace(plan, G=None))
    actors = [Actor.remote(source, spec, "cuda" if gpus else "cpu") for _ in range(n)]
    try:
        pool = ActorPool(actors)  # submits a block whenever an actor is free: at most `n` blocks in flight
        for results in pool.map_unordered(lambda a, block: a.run.remote(block), blocks):
            yield from results
    finally:
        for a in actors:
            ray.kill(a)


# ----------------------------------------------------------------------------------------------------------------
# The entry point


def export_dataset(generator: Any, seeds: str | Iterable[int] | None, outdir: str | os.PathLike, *,
                   ws: Any = None, ws_kind: str = "w", stream_base: int = 0, format: str = "png",
                   min_margin: float = 0.0, resume: bool = False, overwrite: bool = False,
                   shard: str | tuple[int, int] | None = None, batch_seeds: int = 16, ray: bool = False,
                   ray_address: str | None = None, workers: int | None = None, device: str = "cpu",
                   progress: bool | None = None, config: Any = None, detector: Any = None, classes: Any = None,
                   conf: float = 0.25, iou: float = 0.7, instance_config: Any = None, alpha: bool = False,
                   parts: Any = "auto", writer_threads: int | None = None, **options: Any) -> dict[str, Any]:
    """Export the segmentations of ``seeds`` as a training dataset in ``outdir``.

    The composition of the export's jobs: :func:`plan_export` (settings, identity, digest), :func:`open_export`
    (the folder, its card, what is pending), :func:`render_results` (segment and encode), :func:`commit_results`
    (atomic files, then the manifest line) and, once every seed has a record, :func:`finalize`.

    Args:
        generator: a generator, or a source for :func:`stylemix.load_generator` (a file or a registered name).
        seeds: ``"0-99,200"`` or an iterable of ints; ``None`` with ``ws``.
        ws, ws_kind, stream_base: instead of seeds, every row of a latents file (a path, read with
            :func:`stylemix.latents.load_latents`, or a :class:`~stylemix.latents.LatentRows`): files are named
            ``wsRRRR``, the records' ``seed`` fields and the shards are row numbers, and the card records the file's
            name and sha256 under ``latents``.
        outdir: the dataset root (created).
        format: ``png`` (images + class-id masks), ``coco`` (instances JSON, RLE) or ``yolo`` (ultralytics
            segmentation); layouts in :func:`render_seed` and docs/export.md.
        min_margin: seeds whose foreground margin is below this are skipped, and recorded as skipped.
        resume: continue an export of the same settings and seeds; without it an existing export is refused.
        overwrite: delete an existing export in ``outdir`` first (not with ``shard``: other shards may be writing).
        shard: ``"I/N"`` exports only seeds with ``seed % N == I``, into ``manifest-shardI-of-N.jsonl``;
            ``"auto"`` reads ``RANK``/``WORLD_SIZE``. The shard that completes the set merges everything.
        batch_seeds: seeds per Ray task.
        writer_threads: threads that encode seeds while the next ones are segmented (``None``: the default of
            :mod:`stylemix.outputs`; 0: inline). Like ``batch_size``, it changes no byte and is not in the digest.
        ray, ray_address, workers: render on a Ray cluster (``None``: the running one, or a new local one) with
            ``workers`` actors (default: one per GPU, else one per CPU).
        device: where a generator source is loaded in this process.
        progress: show a tqdm bar (``None``: only on a terminal).
        config, options: method settings, as for :func:`stylemix.segment`.
        detector, classes, conf, iou, instance_config: instance mode, as for :func:`stylemix.segment`: the coco
            and yolo formats then hold the detector's instances and classes, the png masks its semantic map.
        alpha: also write each seed's 8-bit matte, ``alpha/seedSSSS_alpha.png`` (k = 2 only); recorded in the
            card and the digest like every other file.
        parts: a parts dataset: a :class:`~stylemix.parts.PartBank`, a bank file or ``"default"``; or K (or a
            :class:`~stylemix.parts.PartSettings`) to fit one on the first :data:`DISCOVER_SEEDS` seeds. Masks,
            COCO categories and YOLO classes are then the bank's class ids and names; the bank is stored in
            ``outdir`` (``parts.parts``) and its sha256 is part of the digest. ``"auto"`` (default) / ``"none"``
            / ``None``: no parts dataset; the fg/bg masks as :func:`stylemix.segment.segment` makes them, from the
            bank shipped for the generator where one exists (its sha256 in the digest, ``foreground_bank`` in the
            card) or (``"none"`` / ``None``) from the per-image consensus.

    Returns:
        A summary: ``outdir``, ``exported`` (this call), ``done`` (before it), ``pending``, ``complete``,
        ``elapsed_s``, ``images_per_s``, and the ``card`` once complete.
    """
    if batch_seeds < 1:
        raise StylemixError(f"--batch-seeds must be at least 1, got {batch_seeds}")
    plan = plan_export(generator, seeds, ws=ws, ws_kind=ws_kind, stream_base=stream_base, format=format,
                       min_margin=min_margin, shard=shard, device=device, config=config, detector=detector,
                       classes=classes, conf=conf, iou=iou, instance_config=instance_config, alpha=alpha,
                       parts=parts, reuse_bank=None if overwrite else Path(outdir) / BANK, **options)
    out, pending = open_export(plan, outdir, resume=resume, overwrite=overwrite)
    t0 = time.perf_counter()
    results = render_results(plan, pending, batch_seeds=batch_seeds, ray=ray, ray_address=ray_address,
                             workers=workers, writer_threads=writer_threads)
    mine = plan.mine
    commit_results(out, plan, results, done=len(mine) - len(pending), progress=progress)
    elapsed = time.perf_counter() - t0
    summary: dict[str, Any] = {"outdir": os.fspath(out), "exported": len(pending), "done": len(mine) - len(pending),
                               "elapsed_s": round(elapsed, 3),
                               "images_per_s": round(len(pending) / elapsed, 3) if pending and elapsed > 0 else None}
    remaining = missing_seeds(out, plan.seeds, read_records(out))
    summary["pending"] = len(remaining)
    summary["complete"] = not remaining
    if not remaining:
        summary["card"] = finalize(out)
    return summary


def _check_existing(out: Path, core: dict[str, Any], card: dict[str, Any] | None,
                    records: dict[int, dict[str, Any]], own_manifest: Path, resume: bool) -> None:
    """Refuse to write into ``out`` when it holds another export, or this one without ``resume``.

    A card without records of this run is fine: another shard of the same export wrote it.
    """
    theirs, ours = (card or {}).get("parts") or {}, core.get("parts") or {}
    if card is not None and theirs.get("sha256") != ours.get("sha256"):
        raise StylemixError(f"{os.fspath(out)!r} was exported with " + (
            f"another part bank (sha256 {str(theirs.get('sha256'))[:12]}), not this one "
            f"({str(ours.get('sha256'))[:12]})" if theirs and ours else
            "a part bank" if theirs else "no part bank") + "; use --overwrite or another folder")
    if card is not None:  # the arithmetic first: its line says how to resume
        check_arithmetic(card.get("arithmetic"), core["arithmetic"], repr(os.fspath(out)))
    _check_digests(out, core["digest"], [card, *records.values()] if card else records.values())
    if card is not None and card.get("seeds") != core["seeds"]:
        raise StylemixError(f"{os.fspath(out)!r} was exported for seeds {card.get('seeds')}, not {core['seeds']}; "
                            "use --overwrite or another folder")
    started = (card.get("complete") or read_manifest(own_manifest)) if card is not None else bool(records)
    if started and not resume:
        raise StylemixError(f"{os.fspath(out)!r} already holds this export; use --resume to continue it or "
                            "--overwrite to start again")
