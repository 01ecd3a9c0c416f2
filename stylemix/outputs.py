"""The files of one segmented image, built in one place and written atomically.

:func:`seed_files` turns a :class:`~stylemix.segment.Segmentation` into ``{file name: bytes}`` (pure: no file
system); :func:`write_seed` writes them into a folder (what ``stylemix segment`` does per seed and what a Python
caller uses for the same layout); :func:`ordered_map` runs such work on background threads, handing results back
in order, so that PNG encoding overlaps the next image's segmentation and yields the same bytes as running it
inline. The export (:mod:`stylemix.export`) has its own dataset layout but encodes with the same helpers.

Files per image (``SSSS`` = the seed, at least four digits, :func:`stylemix.io.stem`; ``wsRRRR`` for a latents row):

* ``seedSSSS.png``: the image, RGB; ``seedSSSS_mask.png``: uint8, k = 2: 255 foreground, 0 background, k > 2:
  cluster ids; ``seedSSSS_overlay.png``: the mask over the image; ``seedSSSS.json``: settings, crossovers, scores,
  foreground margin (and what the caller adds);
* with ``alpha``: ``seedSSSS_alpha.png``, the 8-bit matte (``>= 128`` is exactly the mask);
* instance mode: ``seedSSSS_instances.png`` (instance ids, 0 = background; uint8, uint16 past 255),
  ``seedSSSS_semantic.png`` (detector class id + 1), ``seedSSSS_instances.json`` (one record per detection),
  ``seedSSSS_instances_overlay.png``;
* a part bank: ``seedSSSS_parts.png`` (uint8 class ids of the bank), ``seedSSSS_parts_overlay.png`` (fixed colours
  per class, with a legend).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from stylemix.errors import StylemixError

__all__ = ["WRITER_QUEUE", "WRITER_THREADS", "alpha_image", "check_alpha", "instance_files", "mask_image",
           "ordered_map", "seed_files", "write_files", "write_seed"]

T = TypeVar("T")
R = TypeVar("R")

# Background threads that encode and write (0: inline). Two: PNG encoding and zlib release the GIL, and a third
# thread only competes with the segmentation for the cores (benchmarks/export_throughput.py).
WRITER_THREADS = 2
WRITER_QUEUE = 8  # results that may wait for a writer: bounds the memory held by images not yet written


def mask_image(seg: Any) -> np.ndarray:
    """``uint8 [H, W]`` of ``seedSSSS_mask.png``: k = 2 (or a part bank's foreground): 255 foreground, 0
    background; k > 2: the cluster ids."""
    if int(seg.meta.settings["clusters"]) == 2:
        return seg.foreground.astype(np.uint8) * np.uint8(255)
    return seg.labels.astype(np.uint8)


def alpha_image(seg: Any) -> np.ndarray:
    """``uint8 [H, W]`` of ``seedSSSS_alpha.png``: the matte ``seg.alpha float32 [H, W]`` as ``round(255 a)``,
    kept on the mask's side of the threshold, so that ``alpha >= 128`` is exactly ``seg.foreground``.

    Raises:
        StylemixError: ``seg`` has no matte (k > 2: the clusters are not a two-way decision).
    """
    from stylemix.refine import alpha_uint8
    if getattr(seg, "alpha", None) is None:
        raise StylemixError(f"{seg.name}: no alpha matte (the matte exists for two-way masks, k = 2)")
    a = alpha_uint8(seg.alpha)
    # round(255 * 0.5) = 128 while 0.5 itself is background: ties go to the mask's side
    return np.where(seg.foreground, np.maximum(a, 128), np.minimum(a, 127)).astype(np.uint8)


def check_alpha(alpha: bool, clusters: int) -> None:
    """Refuse ``--alpha`` where there is no matte (one line, before anything is written)."""
    if alpha and int(clusters) != 2:
        raise StylemixError(f"--alpha needs two-way masks (-k 2, the default), got -k {clusters}: clusters of "
                            "parts have no matte")


def seed_files(seg: Any, *, alpha: bool = False, meta: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The files of ``seg`` (table in the module docstring) as ``{file name: bytes}``, in a fixed order.

    Args:
        seg: a :class:`~stylemix.segment.Segmentation`.
        alpha: also write ``_alpha.png`` (needs ``seg.alpha``).
        meta: entries added to ``seg.meta`` in the JSON (e.g. the input transform, the latents file).
    """
    from stylemix import io, visualize
    name = seg.name
    two_way = int(seg.meta.settings["clusters"]) == 2
    files = {
        f"{name}.png": io.encode_png(seg.image),
        f"{name}_mask.png": io.encode_png(mask_image(seg)),
        f"{name}_overlay.png": io.encode_png(visualize.overlay(seg.image, seg.labels, background=not two_way)),
        f"{name}.json": io.encode_json({**seg.meta.as_dict(), **(meta or {})}),
    }
    if alpha:
        files[f"{name}_alpha.png"] = io.encode_png(alpha_image(seg))
    if getattr(seg, "instances", None) is not None:
        files.update(instance_files(seg))
    if getattr(seg, "parts", None) is not None:
        names = (seg.meta.parts or {}).get("classes") or [f"class{i}" for i in range(int(seg.parts.max()) + 1)]
        files[f"{name}_parts.png"] = io.encode_png(seg.parts.astype(np.uint8))
        files[f"{name}_parts_overlay.png"] = io.encode_png(visualize.parts_overlay(seg.image, seg.parts, names))
    return files


def instance_files(seg: Any) -> dict[str, bytes]:
    """The instance mode's files of ``seg``: ``_instances.png`` and ``_semantic.png`` (uint8, uint16 past 255),
    ``_instances.json`` (one record per detection) and ``_instances_overlay.png``."""
    from stylemix import io
    from stylemix.instances import overlay_instances
    name = seg.name
    files = {}
    for suffix, ids in (("_instances", seg.instances), ("_semantic", seg.semantic)):
        files[f"{name}{suffix}.png"] = io.encode_png(ids.astype(np.uint8 if ids.max(initial=0) <= 255 else np.uint16))
    files[f"{name}_instances.json"] = io.encode_json({"seed": seg.seed, **seg.meta.instances,
                                                      "instances": [r.as_dict() for r in seg.instance_records]})
    files[f"{name}_instances_overlay.png"] = io.encode_png(
        overlay_instances(seg.image, seg.instances, seg.instance_records))
    return files


def write_files(outdir: str | os.PathLike, files: dict[str, bytes]) -> list[Path]:
    """Write ``files`` (names relative to ``outdir``) atomically, in order; returns their paths."""
    from stylemix.io import atomic_write_bytes
    out = Path(outdir)
    paths = []
    for rel, data in files.items():
        atomic_write_bytes(out / rel, data)
        paths.append(out / rel)
    return paths


def write_seed(seg: Any, outdir: str | os.PathLike, *, alpha: bool = False, meta: dict[str, Any] | None = None
               ) -> list[Path]:
    """Write the files of ``seg`` (:func:`seed_files`) into ``outdir``, each atomically; returns their paths.

    Example:
        >>> seg = stylemix.segment(G, seed=3)
        >>> write_seed(seg, "out")    # out/seed0003.png, out/seed0003_mask.png, ...
    """
    return write_files(outdir, seed_files(seg, alpha=alpha, meta=meta))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int = WRITER_THREADS,
                queue: int = WRITER_QUEUE) -> Iterator[R]:
    """``fn(item)`` for each of ``items``, run on ``threads`` background threads while ``items`` is still being
    produced (e.g. encoding one seed while the next is segmented), yielded in the order of ``items``.

    At most ``queue`` results wait, so a slow writer holds the producer back instead of filling memory. An error
    in ``fn`` is raised at that item's turn, after every earlier result; an error while producing ``items`` is
    raised after the results of the items produced before it, so that their work is not lost. ``threads=0`` runs
    ``fn`` inline (the reference the threaded path must match byte for byte).
    """
    if threads <= 0:
        yield from map(fn, items)
        return
    from concurrent.futures import Future, ThreadPoolExecutor
    waiting: collections.deque[Future] = collections.deque()
    with ThreadPoolExecutor(threads, "stylemix-writer") as pool:
        try:
            iterator = iter(items)
            while True:
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                except Exception:
                    while waiting:  # hand back what was produced before the failure, then fail
                        yield waiting.popleft().result()
                    raise
                waiting.append(pool.submit(fn, item))
                while waiting and (len(waiting) > queue or waiting[0].done()):
                    yield waiting.popleft().result()
            while waiting:
                yield waiting.popleft().result()
        finally:
            for f in waiting:  # on an error or an early stop: jobs not yet started are dropped
                f.cancel()
