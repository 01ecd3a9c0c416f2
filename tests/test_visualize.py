"""Pictures (stylemix.visualize): fixed colours per id, overlays that leave the background alone, sheets of tiles."""

import numpy as np
import pytest

from stylemix import visualize


def test_palette_is_fixed_black_first_and_cycles():
    p = visualize.palette(40)
    assert p.shape == (40, 3) and p.dtype == np.uint8 and p[0].tolist() == [0, 0, 0]
    n = len(visualize.PALETTE) - 1
    np.testing.assert_array_equal(p[1:1 + n], visualize.PALETTE[1:])
    np.testing.assert_array_equal(p[1 + n], p[1])  # cycled past the table, never back to black
    assert visualize.colorize(np.array([[0, 2]])).tolist() == [[[0, 0, 0], visualize.PALETTE[2].tolist()]]


def test_overlay_tints_labels_and_leaves_background():
    image = np.full((32, 32, 3), 100, np.uint8)
    labels = np.zeros((32, 32), np.int32)
    labels[8:24, 8:24] = 1
    out = visualize.overlay(image, labels, alpha=0.5, contours=False)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[labels == 0], image[labels == 0])
    want = (0.5 * 100 + 0.5 * visualize.PALETTE[1].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out[16, 16], want)
    outlined = visualize.overlay(image, labels, alpha=0.5)
    assert (outlined != out).any() and (outlined[16, 16] == out[16, 16]).all()  # contours on the edge only
    every = visualize.overlay(image, labels, alpha=0.5, contours=False, background=True)
    assert (every[labels == 0] != image[labels == 0]).any()  # parts mode: id 0 is a part too


def test_draw_boxes_and_contact_sheet_shapes():
    image = np.zeros((64, 64, 3), np.uint8)
    out = visualize.draw_boxes(image, np.array([[4, 4, 30, 30]], np.float32), ["1 cat 0.90"], [3])
    assert out[4, 10].tolist() == visualize.PALETTE[3].tolist() and not image.any()  # a copy, colour of id 3
    sheet = visualize.contact_sheet([image, np.zeros((16, 16), np.uint8), image], columns=2, tile=32, pad=2,
                                    captions=["a", "", "c"])
    assert sheet.shape == (2 * 34 + 2, 2 * 34 + 2, 3) and sheet.dtype == np.uint8
    assert (sheet[-34:, -34:] == 255).all()  # the empty fourth cell stays white


def test_caption_outline_hugs_the_text():
    grey = np.full((128, 128, 3), 128, np.uint8)
    sheet = visualize.contact_sheet([grey], columns=1, tile=128, pad=0, captions=["stylemix 0.95"])
    cols_white = np.flatnonzero((sheet > 200).all(2).any(0))
    cols_dark = np.flatnonzero((sheet < 60).all(2).any(0))
    assert cols_white.size and cols_dark.size
    # the black outline ends within its one-pixel halo of the white text, not a glyph further on
    assert cols_dark.max() <= cols_white.max() + 2 and cols_dark.min() >= cols_white.min() - 2


@pytest.mark.parametrize("names", [["hair", "face"], ["a", "b", "c", "d"]])
def test_parts_overlay_colours_each_class(names):
    image = np.full((64, 64, 3), 50, np.uint8)
    parts = np.repeat(np.arange(64) * len(names) // 64, 64).reshape(64, 64).astype(np.int32)
    out = visualize.parts_overlay(image, parts, names)
    assert out.shape == image.shape and (out[-1, 32] != image[-1, 32]).any()


def test_parts_overlay_colours_a_class_the_same_in_every_image():
    image = np.zeros((64, 64, 3), np.uint8)
    a = np.zeros((64, 64), np.int32)
    a[40:, 40:] = 2
    b = np.full((64, 64), 2, np.int32)
    oa = visualize.parts_overlay(image, a, ["bg", "x", "y"])
    ob = visualize.parts_overlay(image, b, ["bg", "x", "y"])
    assert np.array_equal(oa[60, 60], ob[60, 60])  # class 2 away from the legend and the contours
