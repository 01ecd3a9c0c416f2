"""Pictures: mask overlays and contact sheets (NumPy + OpenCV, uint8 RGB in and out)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["PALETTE", "colorize", "contact_sheet", "draw_boxes", "overlay", "palette", "parts_overlay"]

# Distinct colours for label ids 1.. (0 = background stays uncoloured in overlays); Glasbey-like, fixed.
PALETTE = np.array([
    [0, 0, 0], [255, 64, 64], [64, 160, 255], [255, 200, 0], [64, 220, 120], [200, 80, 255], [255, 128, 0],
    [0, 220, 220], [255, 96, 200], [150, 200, 40], [120, 120, 255], [200, 150, 100], [0, 128, 96],
    [255, 180, 180], [128, 64, 0], [180, 255, 180], [64, 64, 160],
], dtype=np.uint8)


def palette(n: int) -> np.ndarray:
    """``uint8 [n, 3]`` colours for label ids ``0..n-1`` (cycled past the fixed table)."""
    reps = -(-n // (len(PALETTE) - 1))
    colours = np.concatenate([PALETTE[:1]] + [PALETTE[1:]] * reps)
    return colours[:n]


def colorize(labels: np.ndarray) -> np.ndarray:
    """``int [H, W]`` labels -> ``uint8 [H, W, 3]`` with :func:`palette` colours."""
    return palette(int(labels.max()) + 1)[labels]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45, contours: bool = True,
            background: bool = False) -> np.ndarray:
    """Tint ``image uint8 [H, W, 3]`` by ``labels int [H, W]`` and outline each region.

    Label 0 is left untinted unless ``background`` (use it for part labels where 0 is a real part).
    """
    import cv2
    labels = np.asarray(labels).astype(np.int32)
    colours = palette(int(labels.max()) + 2)
    if background:
        colours = colours[1:]
    tint = colours[labels]
    painted = labels >= 0 if background else labels > 0
    out = image.astype(np.float32)
    out[painted] = (1 - alpha) * out[painted] + alpha * tint[painted]
    out = out.astype(np.uint8)
    if contours:
        thickness = max(1, image.shape[0] // 256)
        for value in np.unique(labels):
            if value == 0 and not background:
                continue
            cs, _ = cv2.findContours((labels == value).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, cs, -1, tuple(int(c) for c in colours[value]), thickness)
    return out


def draw_boxes(image: np.ndarray, boxes: np.ndarray, texts: Sequence[str] = (), ids: Sequence[int] = ()
               ) -> np.ndarray:
    """Draw ``boxes float [n, 4]`` (x0, y0, x1, y1 in pixels) with optional captions, coloured by ``ids``."""
    import cv2
    out = image.copy()
    ids = list(ids) or list(range(1, len(boxes) + 1))
    colours = palette(max(ids, default=0) + 1)
    thickness = max(1, image.shape[0] // 256)
    for i, box in enumerate(np.asarray(boxes).reshape(-1, 4)):
        colour = tuple(int(c) for c in colours[ids[i]])
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness)
        if i < len(texts):
            cv2.putText(out, texts[i], (x0 + 2, max(12, y0 + 14)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thickness, colour, thickness, cv2.LINE_AA)
    return out


def contact_sheet(tiles: Sequence[np.ndarray], columns: int, captions: Sequence[str] = (), tile: int = 128,
                  pad: int = 2) -> np.ndarray:
    """Grid of ``tiles`` (uint8 ``[H, W, 3]`` or ``[H, W]``), each resized to ``tile`` px, optional captions."""
    import cv2
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (tile + pad) + pad, columns * (tile + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        t = np.asarray(t)
        if t.ndim == 2:
            t = np.repeat(t[:, :, None], 3, axis=2)
        interp = cv2.INTER_AREA if t.shape[0] > tile else cv2.INTER_NEAREST
        t = cv2.resize(t, (tile, tile), interpolation=interp)
        if i < len(captions) and captions[i]:
            t = _caption(t, captions[i])
        r, c = divmod(i, columns)
        y, x = pad + r * (tile + pad), pad + c * (tile + pad)
        sheet[y:y + tile, x:x + tile] = t
    return sheet


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    """``text`` in white with a black outline at the bottom left of ``tile uint8 [S, S, 3]``.

    The outline is the text's own mask widened by a pixel, not the text drawn thicker: thicker glyphs advance
    further, so a thick black copy would end to the right of the white one.
    """
    import cv2
    ink = np.zeros(tile.shape[:2], np.uint8)
    cv2.putText(ink, text, (3, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 255, 1, cv2.LINE_AA)
    halo = cv2.dilate(ink, np.ones((3, 3), np.uint8)).astype(np.float32)[:, :, None] / 255
    out = tile.astype(np.float32) * (1 - halo)
    ink_f = ink.astype(np.float32)[:, :, None] / 255
    return (out * (1 - ink_f) + 255 * ink_f).round().astype(np.uint8)


def parts_overlay(image: np.ndarray, parts: np.ndarray, names: Sequence[str], alpha: float = 0.45) -> np.ndarray:
    """Part classes ``int [H, W]`` over ``image uint8 [H, W, 3]`` in fixed colours (class i: ``palette`` colour
    i + 1, the same in every image), with a legend of ``names`` in the top-left corner."""
    import cv2
    out = overlay(image, parts, alpha=alpha, background=True)
    colours = palette(len(names) + 1)[1:]
    scale = max(1, image.shape[0] // 256)
    for i, name in enumerate(names):
        y = (8 + 14 * i) * scale
        cv2.rectangle(out, (4 * scale, y), (14 * scale, y + 10 * scale), tuple(int(c) for c in colours[i]), -1)
        cv2.putText(out, f"{i} {name}", (18 * scale, y + 9 * scale), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale,
                    (255, 255, 255), scale, cv2.LINE_AA)
    return out
