"""Tests for stylemix/outputs.py: the per-seed files, the matte, the background writer."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import stylemix
from stylemix import io
from stylemix.errors import StylemixError
from stylemix.outputs import alpha_image, ordered_map, seed_files, write_seed


@pytest.fixture(scope="module")
def G():
    return stylemix.load_generator("shapes")


@pytest.fixture(scope="module")
def seg(G):
    return stylemix.segment(G, 5, config=stylemix.SegmentConfig(variants=4))


def test_write_seed_layout_and_values(tmp_path, seg):
    paths = write_seed(seg, tmp_path, alpha=True, meta={"note": 1})
    assert [p.name for p in paths] == ["seed0005.png", "seed0005_mask.png", "seed0005_overlay.png", "seed0005.json",
                                       "seed0005_alpha.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    np.testing.assert_array_equal(io.read_png(tmp_path / "seed0005.png"), seg.image)
    np.testing.assert_array_equal(io.read_png(tmp_path / "seed0005_mask.png"), seg.foreground * 255)
    meta = json.loads((tmp_path / "seed0005.json").read_text())
    assert meta["note"] == 1 and meta["seed"] == 5


def test_alpha_matte_agrees_with_the_mask(seg):
    assert seg.alpha.dtype == np.float32 and seg.alpha.shape == seg.foreground.shape
    assert 0 <= seg.alpha.min() and seg.alpha.max() <= 1
    np.testing.assert_array_equal(seg.alpha > 0.5, seg.foreground)
    u8 = alpha_image(seg)
    np.testing.assert_array_equal(u8 >= 128, seg.foreground)
    tie = type(seg)(seg.seed, seg.image, seg.labels, seg.foreground, seg.meta,
                    alpha=np.where(seg.foreground, seg.alpha, np.float32(0.5)))
    np.testing.assert_array_equal(alpha_image(tie) >= 128, seg.foreground)  # round(127.5) = 128 stays background


def test_alpha_is_refused_without_a_matte(G):
    parts = stylemix.segment(G, 1, config=stylemix.SegmentConfig(variants=4, clusters=3))
    assert parts.alpha is None
    with pytest.raises(StylemixError, match="no alpha matte"):
        seed_files(parts, alpha=True)


def test_ordered_map_matches_inline_and_keeps_order():
    items = list(range(40))
    slow = lambda x: (threading.current_thread().name, x * x)  # noqa: E731
    threaded = [v for _, v in ordered_map(slow, items, threads=3, queue=2)]
    assert threaded == [x * x for x in items] == [v for _, v in ordered_map(slow, items, threads=0)]
    assert any(name.startswith("stylemix-writer") for name, _ in ordered_map(slow, items, threads=2))


def test_ordered_map_errors_arrive_in_order():
    def fn(x):
        if x == 3:
            raise StylemixError("bad item 3")
        return x
    got = []
    with pytest.raises(StylemixError, match="bad item 3"):
        for v in ordered_map(fn, range(10), threads=2):
            got.append(v)
    assert got == [0, 1, 2]

    def produce():
        yield from range(4)
        raise StylemixError("producer failed")
    got = []
    with pytest.raises(StylemixError, match="producer failed"):
        for v in ordered_map(lambda x: x, produce(), threads=2):
            got.append(v)
    assert got == [0, 1, 2, 3]  # what was produced before the failure is still handed back


def test_threaded_writes_are_the_inline_bytes(tmp_path, G):
    segs = list(stylemix.segment_many(G, [0, 1, 2], config=stylemix.SegmentConfig(variants=4)))
    for threads, out in ((0, tmp_path / "inline"), (2, tmp_path / "threads")):
        out.mkdir()
        list(ordered_map(lambda seg: write_seed(seg, out, alpha=True), segs, threads=threads))
    inline = {p.name: p.read_bytes() for p in (tmp_path / "inline").iterdir()}
    assert len(inline) == 15 and inline == {p.name: p.read_bytes() for p in (tmp_path / "threads").iterdir()}
