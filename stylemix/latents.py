"""Latents given by the user instead of seeds: projector output, edited or interpolated w+, rows from a pipeline.

A latents file holds one image per row:

* ``.npz`` with an array ``w`` (what NVlabs ``projector.py`` writes: ``projected_w.npz``, ``w [1, num_ws, w_dim]``),
  or with exactly one array of any name;
* ``.npy`` of w+ rows ``[B, num_ws, w_dim]`` or w rows ``[B, w_dim]`` (one w for every slot).

``z`` rows ``[B, z_dim]`` are read only when asked for (``kind="z"``): a ``[B, 512]`` array is a valid w and a valid
z for most generators, so the shape never decides. Files are read with ``allow_pickle=False``: no code runs.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from stylemix.errors import StylemixError

__all__ = ["KINDS", "LatentRows", "latent_rows", "load_latents", "read_latent_file"]

KINDS = ("w", "z")


@dataclasses.dataclass(frozen=True)
class LatentRows:
    """The rows of a latents file, checked against a generator.

    Attributes:
        values: ``float32 [B, num_ws, w_dim]`` for ``kind="w"``, ``float32 [B, z_dim]`` for ``kind="z"``.
        kind: ``"w"`` (used as the base styles, as given: no truncation) or ``"z"`` (mapped, then truncated with the
            method's ``truncation_psi``, like a seed's z).
        stream_base: the ``base`` of each row's random streams (:func:`stylemix.mixing.row_key`).
        source: file name, for messages and metadata.
    """

    values: np.ndarray
    kind: str = "w"
    stream_base: int = 0
    source: str = "latents"
    rows: tuple[int, ...] | None = None  # each value's row number in the file (None: 0, 1, ...)

    def __len__(self) -> int:
        return len(self.values)

    def row(self, i: int) -> int:
        """The file row of ``values[i]`` (names the outputs and keys the random streams)."""
        return i if self.rows is None else self.rows[i]

    def take(self, rows: Sequence[int]) -> "LatentRows":
        """The given file rows only, keeping their numbers (what one export work unit segments)."""
        rows = [int(r) for r in rows]
        return dataclasses.replace(self, values=self.values[[self.rows.index(r) for r in rows]
                                                            if self.rows is not None else rows],
                                   rows=tuple(rows))


def read_latent_file(path: str | os.PathLike) -> np.ndarray:
    """The array of a ``.npz`` (key ``w``, or its only array) or ``.npy`` file, without unpickling anything."""
    path = Path(path)
    if not path.is_file():
        raise StylemixError(f"latents file {str(path)!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            return np.asarray(data)
        with data:
            keys = list(data.keys())
            if "w" in keys or len(keys) == 1:
                return np.asarray(data["w" if "w" in keys else keys[0]])
    except (ValueError, OSError, EOFError) as exc:
        raise StylemixError(f"{path.name}: not a readable .npy/.npz latents file ({exc})") from None
    raise StylemixError(f"{path.name}: an .npz of latents needs an array 'w' or exactly one array, "
                        f"found {', '.join(keys) or 'none'}")


def latent_rows(values: np.ndarray, num_ws: int, w_dim: int, z_dim: int, *, kind: str = "w",
                stream_base: int = 0, source: str = "latents") -> LatentRows:
    """Check and shape user latents for a generator.

    Args:
        values: for ``kind="w"``: ``[B, num_ws, w_dim]`` or ``[B, w_dim]`` (broadcast to every slot; a 2-D array
            is always rows of w, never one image's w+); for ``kind="z"``: ``[B, z_dim]``.
        num_ws, w_dim, z_dim: the generator's.

    Raises:
        StylemixError: an unknown kind, a shape that fits neither form, no rows, or non-finite values.
    """
    if kind not in KINDS:
        raise StylemixError(f"unknown latent kind {kind!r}: use w or z")
    a = np.asarray(values)
    if a.dtype.kind not in "fiu":
        raise StylemixError(f"{source}: latents must be numbers, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if kind == "w":
        if a.ndim == 2 and a.shape[1] == w_dim:
            a = np.repeat(a[:, None, :], num_ws, axis=1)
        if a.ndim != 3 or a.shape[1:] != (num_ws, w_dim):
            raise StylemixError(f"{source}: w latents must be [B, {num_ws}, {w_dim}] (w+) or [B, {w_dim}] (w) for "
                                f"this generator, got {list(np.shape(values))}")
    elif a.ndim != 2 or a.shape[1] != z_dim:
        raise StylemixError(f"{source}: z latents must be [B, {z_dim}] for this generator, got "
                            f"{list(np.shape(values))}")
    if len(a) == 0:
        raise StylemixError(f"{source}: the file holds no latent rows")
    bad = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))
    if len(bad):
        raise StylemixError(f"{source}: row {int(bad[0])} holds non-finite values")
    if not 0 <= int(stream_base) < 2 ** 32:
        raise StylemixError(f"stream base must be in [0, 2**32), got {stream_base}")
    return LatentRows(np.ascontiguousarray(a), kind, int(stream_base), source)


def load_latents(path: str | os.PathLike, G: object, *, kind: str = "w", stream_base: int = 0) -> LatentRows:
    """:func:`read_latent_file` + :func:`latent_rows` for generator ``G``."""
    return latent_rows(read_latent_file(path), int(G.num_ws), int(G.w_dim), int(G.z_dim),  # type: ignore[attr-defined]
                       kind=kind, stream_base=stream_base, source=Path(path).name)
