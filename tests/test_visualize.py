"""Tests for stylemix/visualize.py: palettes, overlays, boxes, contact sheets (known values, shapes, dtypes)."""

from __future__ import annotations

import numpy as np

from stylemix import visualize as vis


def test_palette_is_fixed_black_first_and_cycles():
    p = vis.palette(40)
    assert p.shape == (40, 3) and p.dtype == np.uint8
    assert (p[0] == 0).all() and np.array_equal(p[1], vis.PALETTE[1])
    n = len(vis.PALETTE) - 1
    assert np.array_equal(p[1 + n], p[1])  # ids past the table reuse its colours, never black
    assert np.array_equal(vis.colorize(np.array([[0, 2]])), p[[[0, 2]]])


def test_overlay_leaves_background_untinted_and_tints_the_rest():
    image = np.full((32, 32, 3), 100, np.uint8)
    labels = np.zeros((32, 32), np.int32)
    labels[8:24, 8:24] = 1
    out = vis.overlay(image, labels, contours=False)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert (out[labels == 0] == 100).all()
    expected = (0.55 * 100 + 0.45 * vis.palette(2)[1].astype(np.float32)).astype(np.uint8)  # alpha 0.45
    assert np.abs(out[16, 16].astype(int) - expected.astype(int)).max() <= 1
    parts = vis.overlay(image, labels, contours=False, background=True)  # 0 is a real part: tinted too
    assert (parts[labels == 0] != 100).any()


def test_parts_overlay_colours_a_class_the_same_in_every_image():
    image = np.zeros((64, 64, 3), np.uint8)
    a = np.zeros((64, 64), np.int32)
    a[40:, 40:] = 2
    b = np.full((64, 64), 2, np.int32)
    oa = vis.parts_overlay(image, a, ["bg", "x", "y"])
    ob = vis.parts_overlay(image, b, ["bg", "x", "y"])
    assert np.array_equal(oa[60, 60], ob[60, 60])  # class 2 away from the legend and the contours


def test_draw_boxes_and_contact_sheet_shapes():
    image = np.zeros((40, 40, 3), np.uint8)
    boxed = vis.draw_boxes(image, np.array([[5, 5, 30, 30]]), ["a"])
    assert boxed.shape == image.shape and boxed.any() and not image.any()  # a copy, the input untouched
    sheet = vis.contact_sheet([image, np.zeros((20, 20), np.uint8), image], columns=2, captions=["x"], tile=16,
                              pad=2)
    assert sheet.shape == (2 * 18 + 2, 2 * 18 + 2, 3) and sheet.dtype == np.uint8
