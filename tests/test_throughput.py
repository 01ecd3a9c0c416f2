"""Throughput plumbing: one variant stack per image when a part bank is active, and its results."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import stylemix
from stylemix import parts, stages
from stylemix.generators.shapes import ShapesGenerator
from stylemix.parts import step
from stylemix.parts import PartStep, discover

SEEDS = [0, 3, 7]


@pytest.fixture(scope="module")
def G():
    return ShapesGenerator(parts=True, coupling=0.3).eval()


@pytest.fixture(scope="module")
def bank(G, one_thread):
    return discover(G, range(100, 110), n_parts=3, settings=parts.PartSettings(prototypes=8, signature_variants=8),
                    config=stylemix.SegmentConfig(variants=8))


def _no_second_stack(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the bank's step rendered its own signature stack")
    monkeypatch.setattr(step, "image_cues", refuse)


def _assert_same(a, b, *fields: str) -> None:
    for name in fields:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)

def test_the_bank_stack_is_the_image_stack(G, bank, monkeypatch):
    """With a bank whose signature stack has the image stack's shape, one stack is rendered per image and nothing
    is clustered for a two-way mask; the masks and parts are those of the two-stack pipeline, in any batch."""
    with monkeypatch.context() as m:
        m.setattr(PartStep, "shares_stack", lambda self, cfg: False)
        two_stacks = [stylemix.segment(G, s, parts=bank, config=stylemix.SegmentConfig(variants=8)) for s in SEEDS]
    _no_second_stack(monkeypatch)

    def no_kmeans(*args, **kwargs):
        raise AssertionError("a consensus was clustered that nothing reads")
    monkeypatch.setattr(stages, "KMeans", no_kmeans)
    for batch_size in (1, 3):
        one = list(stylemix.segment_many(G, SEEDS, parts=bank,
                                         config=stylemix.SegmentConfig(variants=8, batch_size=batch_size)))
        for a, b in zip(two_stacks, one):
            _assert_same(a, b, "labels", "parts", "image")
            assert "consensus_agreement" not in b.meta and 0 <= b.meta["foreground_margin"] <= 1
    # The bank's variants count, not the image's, when nothing reads the image's stack.
    fewer = stylemix.segment(G, SEEDS[0], parts=bank, config=stylemix.SegmentConfig(variants=5))
    np.testing.assert_array_equal(fewer.labels, two_stacks[0].labels)


def test_a_consensus_reading_bank_clusters_the_one_stack(G, bank, monkeypatch):
    combined = dataclasses.replace(bank, settings=dataclasses.replace(bank.settings, foreground="combined"))
    _no_second_stack(monkeypatch)
    segs = list(stylemix.segment_many(G, SEEDS, parts=combined,
                                      config=stylemix.SegmentConfig(variants=8, batch_size=3)))
    alone = [stylemix.segment(G, s, parts=combined, config=stylemix.SegmentConfig(variants=8)) for s in SEEDS]
    for a, b in zip(alone, segs):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert 0 <= b.meta["consensus_agreement"] <= 1
        assert len(b.meta["crossovers"]) == bank.settings.signature_variants
    monkeypatch.undo()
    # Another variant count than the bank's: the image renders its own variants again (and the bank its stack).
    own = stylemix.segment(G, SEEDS[0], parts=combined, config=stylemix.SegmentConfig(variants=6))
    assert len(own.meta["crossovers"]) == 6


def test_generators_without_a_bank_keep_their_own_variants(G):
    seg = stylemix.segment(G, 3, config=stylemix.SegmentConfig(variants=8))
    none = stylemix.segment(G, 3, parts="none", config=stylemix.SegmentConfig(variants=8))
    np.testing.assert_array_equal(seg.labels, none.labels)
    assert seg.meta == {**none.meta, "timing_s": seg.meta["timing_s"]} and "consensus_agreement" in seg.meta


def test_the_base_features_are_taken_during_its_synthesis(G, bank, monkeypatch):
    """A generator with ``synthesis_suffix_features`` gives the boundary stage and the bank their base features
    from the base image's own synthesis (no separate render); the results are those of one without the hook."""
    import importlib

    from stylemix import render
    segment = importlib.import_module("stylemix.segment")  # the module (stylemix.segment is the function)

    class Hooked(ShapesGenerator):
        calls = 0

        def synthesis_suffix_features(self, state, ws, resolutions, noise_mode="const"):
            Hooked.calls += 1
            image = self.synthesis_suffix(state, ws, None, noise_mode=noise_mode)
            return image, {r: self.features(ws, r, noise_mode=noise_mode) for r in resolutions}

    hooked = Hooked(parts=True, coupling=0.3).eval()
    plain = [stylemix.segment(G, s, parts=bank, config=stylemix.SegmentConfig(variants=8)) for s in SEEDS]

    def refuse(*args, **kwargs):
        raise AssertionError("the base features were rendered a second time")
    monkeypatch.setattr(segment, "image_features", refuse)
    monkeypatch.setattr(render, "image_features", refuse)
    monkeypatch.setattr(bank, "generator", {**bank.generator, "id": None})  # Hooked has no generator id
    monkeypatch.setattr(parts.PartBank, "check_generator", lambda self, G: None)
    for batch_size in (1, 3):
        segs = list(stylemix.segment_many(hooked, SEEDS, parts=bank,
                                          config=stylemix.SegmentConfig(variants=8, batch_size=batch_size)))
        for a, b in zip(plain, segs):
            _assert_same(a, b, "labels", "parts", "alpha")
    assert Hooked.calls == 2 * len(SEEDS)


def test_export_throughput_benchmark_reports_every_ratio(tmp_path):
    """benchmarks/export_throughput.py on the shapes generator (seconds): every row timed, each ratio against its
    reference, and the stricter references (generation without a file, one image per call) beside them."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "export_throughput.py"
    out = tmp_path / "t.json"
    r = subprocess.run([sys.executable, str(script), "--network", "shapes", "--seeds", "0-1", "--batch-sizes", "2",
                        "--repeat", "1", "--no-n16", "--out", str(out)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {"generate + save", "generate one image", "generate one image, no file", "segment one image",
            "export, batch 2", "segment_many, batch 2"} <= set(rows)
    seg, export = rows["segment one image"], rows["export, batch 2"]
    for row, refs in ((seg, ("generate one image", "generate one image, no file")),
                      (export, ("generate + save", "generate one image"))):
        for ref in refs:
            assert row["ratio_to_" + ref] == pytest.approx(row["median_s"] / rows[ref]["median_s"])


@pytest.mark.parametrize("with_bank", [True, False])
def test_a_batch_finishes_side_by_side_into_the_same_bytes(G, bank, monkeypatch, with_bank):
    """With two torch threads the images of a batch are finished on two threads (segment.finish_workers), and give
    exactly the masks, mattes and parts of one image at a time; with one torch thread they finish on one."""
    import importlib
    import threading
    import torch
    segment_module = importlib.import_module("stylemix.segment")  # the module: stylemix.segment is the function
    spec = bank if with_bank else "none"
    alone = [stylemix.segment(G, s, parts=spec, config=stylemix.SegmentConfig(variants=8)) for s in SEEDS]
    names = set()
    finish = segment_module._finish_image

    def spy(*args, **kwargs):
        names.add(threading.current_thread().name)
        return finish(*args, **kwargs)
    monkeypatch.setattr(segment_module, "_finish_image", spy)
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            names.clear()
            batch = list(stylemix.segment_many(G, SEEDS, parts=spec,
                                               config=stylemix.SegmentConfig(variants=8, batch_size=3)))
            assert len(names) == threads and all(n.startswith("stylemix-finish") for n in names) == (threads > 1)
            for a, b in zip(alone, batch):
                _assert_same(a, b, "labels", "alpha", "image", *(("parts",) if with_bank else ()))
    finally:
        torch.set_num_threads(before)


def test_finish_benchmark_checks_its_outputs_against_the_stored_ones(tmp_path):
    """benchmarks/finish.py on the shapes generator: a second run on the stored inputs reproduces the stored
    outputs (--check passes), and a stored output changed by one pixel makes --check fail."""
    import os
    import pickle
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "finish.py"
    inputs = tmp_path / "in.pkl"

    def run():
        return subprocess.run([sys.executable, str(script), "--network", "shapes", "--seeds", "0-1", "--repeat", "1",
                               "--inputs", str(inputs), "--check"], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    for _ in range(2):  # captures and stores, then reads the stored inputs
        r = run()
        assert r.returncode == 0, r.stderr[-2000:]
    stored = pickle.loads(inputs.read_bytes())
    stored[1]["labels"][0, 0] ^= 1
    inputs.write_bytes(pickle.dumps(stored))
    r = run()
    assert r.returncode != 0 and "differ" in r.stderr


def test_segment_stages_benchmark_accounts_for_the_call(tmp_path):
    """benchmarks/segment_stages.py on the shapes generator: the stages the pipeline reaches are timed, they fit
    inside the call (two seeds: the medians are means, so the stages' sum cannot exceed the call's), and the ratio
    and the budget are what the medians give."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "segment_stages.py"
    out = tmp_path / "s.json"
    r = subprocess.run([sys.executable, str(script), "--network", "shapes", "--seeds", "0-1", "--parts", "none",
                        "--out", str(out)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    ms = result["median_ms"]
    assert {"variant stack", "consensus k-means and votes", "finish (boundary, cleaning)",
            "base image and its feature maps"} <= set(ms)
    assert ms["other (segment less its stages)"] >= 0
    assert result["ratio_segment_to_generation"] == pytest.approx(ms["segment"] / ms["generate one image, no file"])
    base = ms["base image and its feature maps"] + ms.get("prefix states of the crossovers", 0.0)
    assert result["own_work_budget_ms"] == pytest.approx(1.25 * ms["generate one image, no file"] - base)
