"""Files: seed lists, atomic writes (temp file + rename in the same folder), PNG reading and writing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from stylemix.errors import StylemixError


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (what exports and metadata record for network, detector and latents files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_seeds(spec: str) -> list[int]:
    """``"0-7,12"`` -> ``[0, 1, ..., 7, 12]`` (NVlabs' syntax; order kept, duplicates dropped)."""
    seeds: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise StylemixError(f"bad seed list {spec!r}: use numbers and ranges like 0-7,12")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise StylemixError(f"bad seed range {part!r}: the end is before the start")
        if hi >= 2 ** 32:
            raise StylemixError(f"seed {hi} is too large: seeds are in [0, 2**32)")
        seeds.extend(range(lo, hi + 1))
    return list(dict.fromkeys(seeds))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent, its old content, or complete: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_png(array: np.ndarray) -> bytes:
    """``uint8 [H, W]`` or ``[H, W, 3]`` RGB -> PNG bytes (deterministic)."""
    import cv2
    if array.ndim == 3:
        array = array[:, :, ::-1]  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise StylemixError("could not encode PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    atomic_write_bytes(path, encode_png(array))


def read_png(path: str | os.PathLike) -> np.ndarray:
    """PNG -> ``uint8 [H, W]`` (grey) or ``[H, W, 3]`` RGB."""
    import cv2
    img = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise StylemixError(f"cannot read image {os.fspath(path)!r}")
    if img.ndim == 3:
        img = img[:, :, 2::-1] if img.shape[2] >= 3 else img[:, :, 0]
    return np.ascontiguousarray(img)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def prepare_outdir(outdir: str | os.PathLike) -> Path:
    """Create ``outdir`` (and parents) and check it is writable; one clear error otherwise."""
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StylemixError(f"cannot create output folder {os.fspath(out)!r}: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise StylemixError(f"output folder {os.fspath(out)!r} is not writable")
    return out
