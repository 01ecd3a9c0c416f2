"""Contact sheets of a bank: per class, and for the fine foreground, the first images with it highlighted, so a
person can name the classes by looking."""

from __future__ import annotations

import numpy as np

from stylemix.parts.bank import PartBank
from stylemix.parts.descriptors import descriptor_classes, descriptor_foreground, descriptors, foreground_map, nearest

__all__ = ["class_sheets", "foreground_sheet"]


def class_sheets(bank: PartBank, data: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                 tile: int = 128) -> list[np.ndarray]:
    """Per class, a contact sheet of the given images with the class highlighted (the rest dimmed), 4 columns,
    captioned with the seed and the class's share of that image."""
    import cv2
    from stylemix.visualize import contact_sheet, palette
    colours = palette(bank.n_parts + 1)[1:]
    sheets = []
    r = bank.analysis_resolution
    for k in range(bank.n_parts):
        tiles, captions = [], []
        for seed, image, F, S, pos in data:
            cls = bank.prototype_class[nearest(descriptors(F, S, pos, bank), bank.prototypes)].reshape(r, r)
            small = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32)
            on = cv2.resize((cls == k).astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST) > 0
            out = small * 0.35
            out[on] = 0.6 * small[on] + 0.4 * colours[k]
            tiles.append(out.astype(np.uint8))
            captions.append(f"{seed}: {100 * on.mean():.0f}%")
        sheet = contact_sheet(tiles, 4, captions, tile=tile)
        title = np.full((24, sheet.shape[1], 3), 255, np.uint8)
        fg = "fg" if bank.class_foreground[k] else "bg"
        cv2.putText(title, f"class {k}: {bank.class_names[k]} ({fg})", (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    tuple(int(c) for c in colours[k]), 1, cv2.LINE_AA)
        sheets.append(np.concatenate([title, sheet]))
    return sheets


def foreground_sheet(bank: PartBank, data: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                     tile: int = 128) -> np.ndarray:
    """A contact sheet of the fine foreground (``foreground="fine"`` before the boundary stage) on the given
    images: foreground at full colour, background dimmed, captioned with the seed and its foreground share."""
    import cv2
    from stylemix.visualize import contact_sheet
    r = bank.analysis_resolution
    tiles, captions = [], []
    for seed, image, F, S, pos in data:
        X = descriptors(F, S, pos, bank)
        cls, fine = descriptor_classes(X, bank, (r, r)), descriptor_foreground(X, bank, (r, r))
        fg = foreground_map(cls, bank, None, fine) > 0.5
        small = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32)
        on = cv2.resize(fg.astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST) > 0
        out = small * 0.3
        out[on] = small[on]
        tiles.append(out.astype(np.uint8))
        captions.append(f"{seed}: {100 * on.mean():.0f}%")
    sheet = contact_sheet(tiles, 4, captions, tile=tile)
    title = np.full((24, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(title, f"fine foreground ({len(bank.foreground_prototypes)} prototypes)", (4, 17),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, sheet])
