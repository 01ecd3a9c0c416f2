"""Which seeds a process exports: shard specifications, the seeds of one shard, and the manifest each shard writes."""

from __future__ import annotations

import os
import re
from typing import Sequence

from stylemix.errors import StylemixError
from stylemix.export.layout import MANIFEST

__all__ = ["parse_shard", "shard_manifest", "shard_seeds"]


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
    """The manifest file a shard appends to: ``manifest.jsonl`` unsharded, else ``manifest-shardI-of-N.jsonl``."""
    return MANIFEST if shard is None else f"manifest-shard{shard[0]}-of-{shard[1]}.jsonl"
