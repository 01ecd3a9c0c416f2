"""The export's settings objects beside the method's :class:`~stylemix.config.SegmentConfig`: what each seed writes
(:class:`DatasetSettings`, part of the digest), how this run goes (:class:`RunOptions`, no byte depends on it), a
latents file to export instead of seeds (:class:`LatentsFile`), and :func:`split_keywords`, which maps the flat
keywords ``export_dataset`` has always accepted onto them."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Union

from stylemix.config import SegmentConfig
from stylemix.errors import StylemixError

__all__ = ["DatasetSettings", "LatentsFile", "RunOptions", "Subjects", "split_keywords"]


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
    """What each seed of an export writes beyond the method's settings; every field is in the card and the digest.

    Attributes:
        min_margin: seeds whose foreground margin is below this write no file, and are recorded as skipped.
        alpha: also write each seed's 8-bit matte, ``alpha/seedSSSS_alpha.png`` (k = 2 only).
        parts: a parts dataset: a :class:`~stylemix.parts.PartBank`, a bank file or ``"default"``; or K (or a
            :class:`~stylemix.parts.PartSettings`) to fit one on the first
            :data:`~stylemix.export.plan.DISCOVER_SEEDS` seeds. Masks, COCO categories and YOLO classes are then
            the bank's class ids and names; the bank is stored beside the card (``parts.parts``) and its sha256 is
            part of the digest. ``"auto"`` (default) / ``"fit"`` / ``"none"`` / ``None``: no parts dataset; the
            fg/bg masks come from the generator's bank (``auto``: the one shipped for it, else the dataset's or
            the user's cached one, else one fitted on the run's first 200 seeds and cached; ``fit``: that fit
            always; :func:`~stylemix.export.plan.foreground_bank`), named in the card's ``foreground_bank`` with
            its sha256 (in the digest), or (``"none"`` / ``None``, or ``auto`` with fewer than 100 seeds and no
            bank) from the per-image consensus.
        detector: instance mode, as for :func:`stylemix.segment` (its filters and per-box settings are the
            config's ``instances``): the coco and yolo formats then hold the detector's instances and classes, the
            png masks its semantic map.
        size: the longer side of every written image, mask and matte in px (``None``: the generator's own).
            Images and mattes are reduced with ``cv2.INTER_AREA``, class-id masks by an area vote (each pixel
            takes the class covering most of it), and polygons and boxes are those of the resized masks.
        val_fraction: the share of seeds held out in the ``val`` split, chosen by a hash of the seed
            (:func:`~stylemix.export.seeds.seed_split`): the same seed is in the same split in every run.
        class_name: the name of the foreground class of two-way masks (``foreground``; e.g. ``person``).
        coco_masks: ``polygon`` (what detectron2's and torchvision's defaults read; holes filled) or ``rle``
            (exact masks, compressed RLE).
    """

    min_margin: float = 0.0
    alpha: bool = False
    parts: Any = "auto"
    detector: Any = None
    size: int | None = None
    val_fraction: float = 0.1
    class_name: str = "foreground"
    coco_masks: str = "polygon"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How one run of an export goes; the bytes written do not depend on any of these.

    Attributes:
        resume: continue an export of the same settings and seeds; without it an existing export is refused.
        overwrite: delete an existing export in the folder first (not with ``shard``: other shards may be writing).
        shard: ``"I/N"`` exports only seeds with ``seed % N == I``, into ``manifest-shardI-of-N.jsonl``;
            ``"auto"`` reads ``RANK``/``WORLD_SIZE``. The shard that completes the set merges everything.
        batch_seeds: seeds per Ray task.
        ray, ray_address, workers: segment on a Ray cluster (``None``: the running one, or a new local one) with
            ``workers`` actors (default: one per GPU, else one per CPU).
        device: where a generator source is loaded in this process.
        progress: show a tqdm bar (``None``: on a terminal; elsewhere, such as a log file, a plain line on stderr
            every 5 % of the seeds or 30 s).
        writer_threads: threads that encode seeds while the next ones are segmented (``None``: the default of
            :mod:`stylemix.outputs`; 0: inline).
    """

    resume: bool = False
    overwrite: bool = False
    shard: str | tuple[int, int] | None = None
    batch_seeds: int = 16
    ray: bool = False
    ray_address: str | None = None
    workers: int | None = None
    device: str = "cpu"
    progress: bool | None = None
    writer_threads: int | None = None


@dataclasses.dataclass(frozen=True)
class LatentsFile:
    """Every row of a latents file as the subjects of an export, instead of seeds: files are named ``wsRRRR``, the
    records' ``seed`` fields and the shards are row numbers, and the card records the file's name and sha256.

    Attributes:
        path: a ``.npy`` / ``.npz`` / ``.pt`` file read with :func:`stylemix.latents.load_latents`, or a
            :class:`~stylemix.latents.LatentRows`.
        kind: ``w`` (w or w+ rows) or ``z``.
        stream_base: the variants' random streams (:func:`stylemix.mixing.row_key`).
    """

    path: Any
    kind: str = "w"
    stream_base: int = 0


Subjects = Union[str, Iterable[int], LatentsFile, None]  # "0-99,200", ints, or the rows of a latents file
_LATENT_KEYWORDS = {"ws": "path", "ws_kind": "kind", "stream_base": "stream_base"}
# The instance settings export_dataset has always taken as flat keywords: fields of the config's instances.
_INSTANCE_KEYWORDS = ("classes", "conf", "iou")


def _names(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def split_keywords(keywords: dict[str, Any], seeds: Subjects, config: SegmentConfig | None,
                   dataset: DatasetSettings | None, run: RunOptions | None
                   ) -> tuple[Subjects, SegmentConfig, DatasetSettings, RunOptions]:
    """The flat keywords of ``export_dataset`` (``variants=8, resume=True, ws=path, ...``) applied to the objects
    they belong to: fields of :class:`RunOptions`, :class:`DatasetSettings` or :class:`SegmentConfig`, and
    ``ws`` / ``ws_kind`` / ``stream_base`` as a :class:`LatentsFile` in place of ``seeds``, ``classes`` /
    ``conf`` / ``iou`` as fields of the config's ``instances`` and ``instance_config`` as that field.

    Raises:
        StylemixError: a keyword that belongs to none of them, or both seeds and ``ws``.
    """
    parts: dict[str, dict[str, Any]] = {"run": {}, "dataset": {}, "config": {}, "latents": {}, "instances": {}}
    run_names, dataset_names, config_names = _names(RunOptions), _names(DatasetSettings), _names(SegmentConfig)
    for name, value in keywords.items():
        if name in run_names:
            parts["run"][name] = value
        elif name in dataset_names:
            parts["dataset"][name] = value
        elif name in _LATENT_KEYWORDS:
            parts["latents"][_LATENT_KEYWORDS[name]] = value
        elif name in config_names:
            parts["config"][name] = value
        elif name in _INSTANCE_KEYWORDS:
            parts["instances"][name] = value
        elif name == "instance_config":
            if value is not None:
                parts["config"]["instances"] = value
        else:
            raise StylemixError(f"unknown option {name!r}; options are {', '.join(sorted(config_names))} "
                                "(SegmentConfig), and the fields of DatasetSettings and RunOptions")
    if parts["latents"].get("path") is not None:
        if seeds is not None:
            raise StylemixError("give either seeds or a latents file (--ws), not both")
        seeds = LatentsFile(**parts["latents"])
    config = dataclasses.replace(config or SegmentConfig(), **parts["config"])
    if parts["instances"]:
        config = dataclasses.replace(config, instances=dataclasses.replace(config.instances, **parts["instances"]))
    return (seeds, config,
            dataclasses.replace(dataset or DatasetSettings(), **parts["dataset"]),
            dataclasses.replace(run or RunOptions(), **parts["run"]))

