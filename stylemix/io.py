"""Files: seed lists, atomic writes (temp file + rename in the same folder), PNG reading and writing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from stylemix.errors import StylemixError

__all__ = ["atomic_write_bytes", "compact_seeds", "encode_json", "encode_palette_png", "encode_png", "file_sha256",
           "parse_seeds", "prepare_outdir", "read_png", "stem", "write_json", "write_png"]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (what exports and metadata record for network, detector and latents files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stem(seed: int, prefix: str = "seed") -> str:
    """File stem of a seed (``seedSSSS``), or of a latents row with ``prefix="ws"`` (``wsRRRR``): at least four
    digits. The one place that spells it; everything that names per-seed files calls this."""
    return f"{prefix}{seed:04d}"


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


def _umask() -> int:
    """The process's umask. Reading it means setting it, which is not thread-safe (writer threads call this), so it
    is read once, at import, in the importing thread."""
    return _UMASK


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent, its old content, or complete: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); outputs are ordinary files a user shares: 0666 less the umask.
        os.chmod(tmp, 0o666 & ~_umask())
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


def encode_palette_png(ids: np.ndarray, palette: np.ndarray) -> bytes:
    """``uint8 [H, W]`` class ids -> an 8-bit palette PNG whose pixel values are the ids (Pillow's encoder).

    PIL, torchvision and mmseg read the ids back directly; ``palette uint8 [256, 3]`` only makes the mask visible
    in a viewer (OpenCV has no palette writer). The bytes depend only on the ids, the palette and the Pillow/zlib
    build: no timestamp or text chunk is written, the compression level is fixed.
    """
    import io as _io

    from PIL import Image
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise StylemixError(f"expected uint8 [H, W] class ids, got {ids.dtype} {ids.shape}")
    palette = np.ascontiguousarray(palette, np.uint8)
    if palette.shape != (256, 3):
        raise StylemixError(f"expected a uint8 [256, 3] palette, got {palette.shape}")
    img = Image.fromarray(np.ascontiguousarray(ids))  # mode L; putpalette makes it P with the same values
    img.putpalette(palette.tobytes())
    buf = _io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def encode_json(obj: Any) -> bytes:
    """The bytes of every JSON file stylemix writes: sorted keys, one-space indent, a final newline."""
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


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
    atomic_write_bytes(path, encode_json(obj))


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


def compact_seeds(seeds: Iterable[int]) -> str:
    """Sorted seeds as NVlabs ranges: ``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the inverse of ``io.parse_seeds``)."""
    parts: list[str] = []
    run: list[int] = []
    for s in sorted(set(int(s) for s in seeds)):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [s]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)
