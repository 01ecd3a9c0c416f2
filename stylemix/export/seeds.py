"""Which seeds a process exports and where they go: shard specifications, the seeds of one shard, the manifest each
shard writes, and each seed's split (train or val)."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Sequence

from stylemix.errors import StylemixError
from stylemix.export.layout import MANIFEST

__all__ = ["SPLIT_RULE", "parse_shard", "seed_split", "shard_manifest", "shard_seeds"]

# The card's description of seed_split.
SPLIT_RULE = "val when int(sha256(\"val:S\")[:16], 16) / 16**16 < val_fraction, S the seed (or row)"


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


def seed_split(seed: int, val_fraction: float) -> str:
    """``"val"`` or ``"train"``: seed ``s`` is held out when ``sha256("val:s")``, read as a fraction, is below
    ``val_fraction``.

    By a hash of the seed value alone, so a seed's split never depends on the other seeds asked for, the shards or a
    resume, and neighbouring seeds are mixed (``seed % 10`` would put every tenth seed of a strided list in one
    split).
    """
    h = int(hashlib.sha256(f"val:{int(seed)}".encode()).hexdigest()[:16], 16)
    return "val" if h / 16 ** 16 < val_fraction else "train"
