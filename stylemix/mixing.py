"""Latents and style mixing: seed -> z -> w+, and the N variants that keep the layout slots of the base.

Random streams are derived from the seed so that every result is reproducible and independent of batch size:

* the base latent follows NVlabs, ``z = RandomState(seed).randn(1, z_dim)``, so seed N is their image N;
* variant latents, per-variant crossovers and k-means initialisation each draw from their own stream,
  ``numpy.random.default_rng([seed, stream])``. Variant i's latent is the i-th row of its stream, so asking for more
  variants extends the set without changing the first ones;
* an image given by its latents instead of a seed (row ``r`` of a ``--ws`` file, with a user-set ``base``, default 0)
  draws the same streams from the key ``(WS_STREAM_TAG, base, r)``: ``default_rng([WS_STREAM_TAG, base, r, stream])``,
  never equal to a seed's two-entry key.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

from stylemix.errors import StylemixError

__all__ = ["Crossover", "STREAMS", "STREAM_BANK_PIXELS", "STREAM_CROSSOVER", "STREAM_KMEANS", "STREAM_NOISE",
           "STREAM_SIGNATURE", "STREAM_VARIANTS", "StreamKey", "WS_STREAM_TAG", "check_crossover", "mix_styles",
           "parse_crossover", "row_key", "seed_to_z", "stream", "variant_crossovers", "variant_latents"]

# The one registry of random streams, ``numpy.random.default_rng([seed, stream])``: each use has its own id, so no
# two draws share bits. A new use takes a new id here; an id is never reused or renumbered (results depend on it).
STREAM_VARIANTS = 1  # the variants' latents
STREAM_CROSSOVER = 2  # per-variant crossovers drawn from a range
STREAM_KMEANS = 3  # k-means initialisation of one image
STREAM_SIGNATURE = 4  # a part bank's shared signature latents, keyed by its signature_seed (stylemix.parts)
STREAM_NOISE = 5  # torch's seed for noise_mode="random" (stylemix.render.noise_stream)
STREAM_BANK_PIXELS = 6  # the pixels a part bank's fit samples from one image (stylemix.parts.fit.collect)
STREAMS = {"variants": STREAM_VARIANTS, "crossover": STREAM_CROSSOVER, "kmeans": STREAM_KMEANS,
           "signature": STREAM_SIGNATURE, "noise": STREAM_NOISE, "bank_pixels": STREAM_BANK_PIXELS}

# The first entry of the stream key of a latent row; any value works, it only has to be fixed forever ("ws").
WS_STREAM_TAG = 0x7773

StreamKey = Union[int, Sequence[int]]
"""A seed, or ``(WS_STREAM_TAG, base, row)`` for row ``row`` of a latents file (:func:`row_key`)."""

Crossover = Union[int, tuple[int, int], Sequence[int]]
"""An int (fixed), a ``(low, high)`` tuple (drawn per variant, inclusive) or a list (cycled over variants)."""


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """NVlabs' latent for ``seed``: ``float32 [1, z_dim]``."""
    return np.random.RandomState(seed).randn(1, z_dim).astype(np.float32)


def row_key(row: int, base: int = 0) -> tuple[int, int, int]:
    """The stream key of row ``row`` of a latents file, for the user-set ``base`` (both in ``[0, 2**32)``)."""
    for name, value in (("row", row), ("stream base", base)):
        if not 0 <= int(value) < 2 ** 32:
            raise StylemixError(f"{name} must be in [0, 2**32), got {value}")
    return (WS_STREAM_TAG, int(base), int(row))


def stream(seed: StreamKey, stream_id: int) -> np.random.Generator:
    """The random stream ``stream_id`` of ``seed`` (a seed or a :func:`row_key`), independent of every other stream
    and of NVlabs' z."""
    if stream_id not in STREAMS.values():
        raise StylemixError(f"unknown random stream {stream_id}: every stream has its id in stylemix.mixing.STREAMS")
    key = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(k) for k in seed]
    return np.random.default_rng(key + [int(stream_id)])


def variant_latents(seed: StreamKey, variants: int, z_dim: int) -> np.ndarray:
    """Latents of the style variants of ``seed``: ``float32 [variants, z_dim]``."""
    return stream(seed, STREAM_VARIANTS).standard_normal((variants, z_dim)).astype(np.float32)


def parse_crossover(spec: str) -> Crossover:
    """CLI form -> :data:`Crossover`: ``"6"``, ``"4-10"`` (drawn per variant) or ``"4,7,10"`` (cycled)."""
    try:
        if "," in spec:
            return [int(s) for s in spec.split(",") if s.strip()]
        if "-" in spec.strip()[1:]:
            lo, hi = spec.split("-", 1)
            return (int(lo), int(hi))
        return int(spec)
    except ValueError:
        raise StylemixError(f"bad crossover {spec!r}: use N, LOW-HIGH or N,N,...") from None


def check_crossover(crossover: Crossover, num_ws: int) -> None:
    """Raise :class:`StylemixError` unless every crossover ``crossover`` can produce lies in ``[1, num_ws - 1]``."""
    if isinstance(crossover, bool) or not isinstance(crossover, (int, np.integer, tuple, list, np.ndarray)) or (
            not isinstance(crossover, (int, np.integer))
            and not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in crossover)):
        raise StylemixError(f"bad crossover {crossover!r}: use an int, a (low, high) tuple or a list of ints")
    if isinstance(crossover, (int, np.integer)):
        values = [int(crossover)]
    elif isinstance(crossover, tuple) and len(crossover) == 2:
        if crossover[0] > crossover[1]:
            raise StylemixError("crossover range {}-{} is empty".format(*crossover))
        values = list(crossover)
    else:
        values = [int(c) for c in crossover]
        if not values:
            raise StylemixError("crossover list is empty")
    for c in values:
        if not 1 <= c <= num_ws - 1:
            raise StylemixError(f"crossover {c} out of range: this generator has {num_ws} style slots, "
                                f"so use 1..{num_ws - 1}")


def variant_crossovers(seed: StreamKey, variants: int, crossover: Crossover, num_ws: int) -> np.ndarray:
    """The crossover slot of each variant: ``int64 [variants]``, each in ``[1, num_ws - 1]``.

    Raises:
        StylemixError: a crossover outside ``[1, num_ws - 1]`` (0 would resample the layout, ``num_ws`` nothing).
    """
    check_crossover(crossover, num_ws)
    if isinstance(crossover, (int, np.integer)):
        values = np.full(variants, int(crossover))
    elif isinstance(crossover, tuple) and len(crossover) == 2:
        values = stream(seed, STREAM_CROSSOVER).integers(crossover[0], crossover[1] + 1, size=variants)
    else:
        cycle = [int(c) for c in crossover]
        values = np.array([cycle[i % len(cycle)] for i in range(variants)])
    return values.astype(np.int64)


def mix_styles(ws_base: torch.Tensor, ws_other: torch.Tensor, crossovers: Sequence[int] | np.ndarray
               ) -> torch.Tensor:
    """Variant i takes slots ``[0, crossovers[i])`` from the base and the rest from ``ws_other[i]``.

    Args:
        ws_base: ``[1, num_ws, w_dim]``.
        ws_other: ``[N, num_ws, w_dim]``.
        crossovers: ``[N]`` ints.

    Returns:
        ``[N, num_ws, w_dim]``.
    """
    slots = torch.arange(ws_base.shape[1], device=ws_base.device)
    keep = slots[None, :] < torch.as_tensor(np.asarray(crossovers), device=ws_base.device)[:, None]
    return torch.where(keep[:, :, None], ws_base.expand_as(ws_other), ws_other)
