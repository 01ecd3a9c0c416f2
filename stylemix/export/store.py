"""The dataset on disk: manifests, atomic commits, the card, finalisation, overwrite and locking.

Files are written atomically, then the seed's record is appended to its manifest and fsynced: a seed counts as done
only once its line is on disk, and the manifests are the only source of truth for ``--resume``. Everything derived
from many seeds (the sorted ``manifest.jsonl``, the COCO JSON, ``data.yaml``, the card's counts) is rebuilt from the
records by :func:`finalize`, so an export killed at any moment and resumed ends byte-identical to an uninterrupted
one.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from stylemix.errors import StylemixError
from stylemix.export.card import canonical_json
from stylemix.export.formats import SeedResult, coco_document, dataset_classes, yolo_yaml
from stylemix.export.layout import (BANK, CARD, LAYOUT_VERSION, LOCK, MANIFEST, OWNED, SPLITS, YOLO_YAML, coco_json,
                                    parse_formats, seed_dirs)
from stylemix.export.seeds import shard_manifest
from stylemix.identity import check_arithmetic
from stylemix.io import compact_seeds

if TYPE_CHECKING:
    from stylemix.export.plan import ExportPlan

__all__ = ["ManifestWriter", "check_layout", "clear_export", "commit_results", "commit_seed", "finalize", "is_done",
           "manifest_paths", "missing_seeds", "open_export", "read_card", "read_manifest", "read_records"]


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
        os.write(self.fd, (canonical_json(record) + "\n").encode())
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
    with open(outdir / LOCK, "a+b") as f:
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


def check_layout(outdir: Path, card: dict[str, Any]) -> None:
    """Refuse an export written in another layout: its seeds' files sit in other folders than this version writes.

    Raises:
        StylemixError: the card's ``layout`` is not :data:`~stylemix.export.layout.LAYOUT_VERSION`.
    """
    if card.get("layout") != LAYOUT_VERSION:
        raise StylemixError(
            f"{os.fspath(outdir)!r} holds an export in layout {card.get('layout')} (stylemix {card.get('stylemix')}), "
            f"this stylemix writes layout {LAYOUT_VERSION} (train/val split folders): finish it with the version "
            "that started it, or start again with --overwrite or another folder")


def finalize(outdir: str | os.PathLike) -> dict[str, Any]:
    """Build everything derived from the records, if every requested seed has one; return the card.

    In order, so that a kill at any step leaves a state the next call completes identically: the merged
    ``manifest.jsonl`` sorted by seed, removal of the shard manifests, the format's index (COCO JSON or
    ``data.yaml``), removal of temp files and files no record names, and last the card with ``complete: true``.

    Raises:
        StylemixError: no card, another layout, records with another digest, or seeds still missing.
    """
    from stylemix.io import atomic_write_bytes, write_json
    out = Path(outdir)
    card = read_card(out)
    if card is None:
        raise StylemixError(f"{os.fspath(out)!r} has no {CARD}: not a stylemix export")
    check_layout(out, card)
    formats = parse_formats(card["format"])
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
        atomic_write_bytes(out / MANIFEST, "".join(canonical_json(r) + "\n" for r in ordered).encode())
        for path in manifest_paths(out):
            if path.name != MANIFEST:
                path.unlink()
        written = [r for r in ordered if "skipped" not in r]
        split = {s: [r for r in written if r["split"] == s] for s in SPLITS}
        classes = {fmt: dataset_classes(card, written, fmt) for fmt in formats}
        if "coco" in formats:
            (out / "annotations").mkdir(exist_ok=True)
            for s in SPLITS:  # both, the val file empty when no seed fell there: loaders expect the pair
                write_json(out / coco_json(s), coco_document(split[s], classes["coco"], card))
        if "yolo" in formats:
            atomic_write_bytes(out / YOLO_YAML, yolo_yaml(classes["yolo"], bool(split["val"])).encode())
        _remove_strays(out, seed_dirs(formats, bool(card.get("alpha"))), {p for r in written for p in r["files"]})
        counts = {"requested": len(wanted), "written": len(written), "skipped": len(wanted) - len(written),
                  **{s: len(split[s]) for s in SPLITS},
                  "mean_foreground_fraction": round(float(np.mean([r["foreground_fraction"] for r in written]))
                                                    if written else 0.0, 6)}
        if "coco" in formats:
            counts["annotations"] = sum(len(r["annotations"]) for r in written)
        if "yolo" in formats:
            counts["polygons"] = sum(r["polygons"] for r in written)
        # one table for one format (what every loader reads); with several, the table of each under its name
        card.update(complete=True, classes=classes[formats[0]] if len(formats) == 1 else classes, counts=counts,
                    skipped_seeds=compact_seeds(r["seed"] for r in ordered if "skipped" in r))
        write_json(out / CARD, card)
    return card


def _remove_strays(out: Path, dirs: Sequence[str], keep: set[str]) -> None:
    """Delete temp files of killed writes and seed files no record names, in the export's own folders only."""
    for d in dirs:
        folder = out / d
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            rel = f"{d}/{p.name}"
            stray_tmp = p.name.startswith(".") and p.name.endswith(".tmp")
            seed_file = re.fullmatch(r"(seed|ws)\d+(_alpha)?\.(png|txt)", p.name)
            if p.is_file() and (stray_tmp or (seed_file and rel not in keep)):
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
    for name in OWNED:
        p = outdir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in [*manifest_paths(outdir), *outdir.glob("parts.class[0-9][0-9].png")]:
        p.unlink()


def _check_existing(out: Path, core: dict[str, Any], card: dict[str, Any] | None,
                    records: dict[int, dict[str, Any]], own_manifest: Path, resume: bool) -> None:
    """Refuse to write into ``out`` when it holds another export, or this one without ``resume``.

    A card without records of this run is fine: another shard of the same export wrote it.
    """
    if card is not None:  # another layout first: nothing else about it can be compared
        check_layout(out, card)
    theirs, ours = (card or {}).get("parts") or {}, core.get("parts") or {}
    if card is not None and theirs.get("sha256") != ours.get("sha256"):
        raise StylemixError(f"{os.fspath(out)!r} was exported with " + (
            f"another part bank (sha256 {str(theirs.get('sha256'))[:12]}), not this one "
            f"({str(ours.get('sha256'))[:12]})" if theirs and ours else
            "a part bank" if theirs else "no part bank") + "; use --overwrite or another folder")
    theirs_fg, ours_fg = (card or {}).get("foreground_bank") or {}, core.get("foreground_bank") or {}
    if card is not None and theirs_fg.get("sha256") != ours_fg.get("sha256"):
        def said(fg: dict[str, Any]) -> str:
            return f"the part bank {fg['sha256'][:12]} ({fg.get('source')})" if fg else "the per-image consensus"
        raise StylemixError(f"{os.fspath(out)!r} took its masks from {said(theirs_fg)}, this run would take them "
                            f"from {said(ours_fg)}; use --overwrite or another folder")
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


def commit_results(out: Path, plan: ExportPlan, results: Iterable[SeedResult], *, done: int = 0,
                   progress: bool | None = None, queue: int = 8) -> int:
    """Commit ``results`` in order on one writer thread, so that the fsyncs (a disk round trip per seed)
    overlap the next seeds' segmentation instead of adding to it; returns how many were committed. At most
    ``queue`` seeds wait. An error in a commit stops the export at that seed; an error in ``results`` (a seed
    that failed to segment or encode) is raised once the seeds before it are committed. ``done``: seeds of this
    shard committed before (where the progress starts); ``progress``: as in
    :func:`~stylemix.export.progress.progress_bar`."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from stylemix.export.progress import progress_bar
    mine = plan.mine
    desc = f"export {plan.fmt}" + (f" shard {plan.shard[0]}/{plan.shard[1]}" if plan.shard else "")
    waiting: collections.deque[Future] = collections.deque()
    committed = 0
    with ManifestWriter(out / shard_manifest(plan.shard)) as manifest, \
            ThreadPoolExecutor(1, "stylemix-export-commit") as writer, \
            progress_bar(len(mine), done, desc, progress) as bar:

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
