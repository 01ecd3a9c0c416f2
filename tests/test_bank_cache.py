"""The user's bank cache (stylemix.parts.cache) and the flow around it: parts="auto" resolving packaged -> cached ->
consensus, parts="fit", an export that fits and caches its bank, the CLI's one-line hint. On the shapes generator
(no bank is shipped for it), with fits on a few seeds (the flow's seed counts patched down)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import stylemix
from stylemix import export as ex
from stylemix.cli import BANK_HINT, main
from stylemix.errors import StylemixError
from stylemix.generators.shapes import ShapesGenerator
from stylemix.identity import generator_id
from stylemix.parts import PartBank, PartSettings, discover, fit
from stylemix.parts.cache import CACHE_ENV, cache_dir, cached_bank, cached_bank_path, settings_key, store_bank
from stylemix.parts.step import ForegroundBank

from test_parts import _Plain

OPTIONS = dict(variants=8)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own, and the flow's fits on 12 seeds (at least 8) instead of 200."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    monkeypatch.setattr(fit, "FLOW_SEEDS", 12)
    monkeypatch.setattr(fit, "MIN_FLOW_SEEDS", 8)
    monkeypatch.setattr(fit, "FIT_SEEDS", range(200, 212))
    return folder


@pytest.fixture(scope="module")
def G():
    return ShapesGenerator(parts=True, coupling=0.3).eval()


@pytest.fixture(scope="module")
def flow_bank(G, one_thread):
    """The flow's bank of G (default part settings) on 12 seeds."""
    return discover(G, range(200, 212), settings=PartSettings(), config=stylemix.SegmentConfig(variants=8))


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir() == tmp_path / "xdg" / "stylemix"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "stylemix"


def test_cache_round_trip_under_the_generator_id(G, flow_bank, cache):
    assert cached_bank(G) is None  # an empty cache: nothing, and G is not even hashed
    path = store_bank(flow_bank, G)
    assert path == cache / "banks" / generator_id(G) / f"{settings_key(PartSettings())}.parts"
    assert path.is_file() and path.with_name(path.stem + ".classes.csv").is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.stem + ".classes.csv", path.name]  # no temp files
    bank, where = cached_bank(G)
    assert where == path and bank.fit_seeds == "200-211" and bank.class_names == flow_bank.class_names
    for name in ("prototypes", "foreground_rate", "feature_basis"):
        np.testing.assert_array_equal(getattr(bank, name), PartBank.load(path, G).__dict__[name])
    # another generator's id is another folder: it finds nothing
    assert cached_bank(ShapesGenerator(parts=True, coupling=0.3, objects=2).eval()) is None
    # a damaged file is not used, and a warning names it
    path.write_bytes(b"not a bank")
    with pytest.warns(RuntimeWarning, match="cached part bank .* is not used"):
        assert cached_bank(G) is None


def test_auto_takes_the_cached_bank_on_the_second_call(G, flow_bank, cache):
    first = stylemix.segment(G, 3, config=stylemix.SegmentConfig(**OPTIONS))
    assert first.meta.foreground_from == "consensus" and first.meta.parts is None
    store_bank(flow_bank, G)
    second = stylemix.segment(G, 3, config=stylemix.SegmentConfig(**OPTIONS))
    assert second.meta.foreground_from == "part bank (fine)" and second.meta.parts["bank"] == "auto: cached"
    assert second.parts is None  # auto decides the mask only
    given = stylemix.segment(G, 3, parts=ForegroundBank(flow_bank, "given"), config=stylemix.SegmentConfig(**OPTIONS))
    np.testing.assert_array_equal(second.foreground, given.foreground)
    assert stylemix.segment(G, 3, parts="none",
                            config=stylemix.SegmentConfig(**OPTIONS)).meta.foreground_from == "consensus"
    # auto: two-way masks only
    assert stylemix.segment(G, 3, config=stylemix.SegmentConfig(clusters=3, **OPTIONS)).meta.parts is None


def test_parts_fit_fits_on_the_fixed_range_caches_and_replaces(G, flow_bank, cache):
    other = discover(G, range(300, 312), settings=PartSettings(), config=stylemix.SegmentConfig(variants=8))
    store_bank(other, G)  # a cached bank exists: fit fits anyway
    seg = stylemix.segment(G, 3, parts="fit", config=stylemix.SegmentConfig(**OPTIONS))
    assert seg.meta.parts["bank"] == "fit: seeds 200-211" and seg.meta.parts["fit_seeds"] == "200-211"
    bank, _ = cached_bank(G)
    assert bank.fit_seeds == "200-211"
    assert stylemix.segment(G, 3, config=stylemix.SegmentConfig(**OPTIONS)).meta.parts["bank"] == "auto: cached"
    with pytest.raises(StylemixError, match="clusters = 2"):
        stylemix.segment(G, 3, parts="fit", config=stylemix.SegmentConfig(clusters=3, **OPTIONS))


def test_a_plain_protocol_object_is_never_cached(G, cache):
    plain = _Plain(G)
    assert cached_bank_path(plain) is None and cached_bank(plain) is None
    with pytest.warns(RuntimeWarning, match="not cached"):
        seg = stylemix.segment(plain, 0, parts="fit", config=stylemix.SegmentConfig(**OPTIONS))
    assert seg.meta.parts["bank"].startswith("fit")
    assert not cache.exists() or not any(cache.rglob("*.parts"))
    assert stylemix.segment(plain, 0, config=stylemix.SegmentConfig(**OPTIONS)).meta.foreground_from == "consensus"


def test_export_fits_stores_and_caches_its_bank_then_the_next_export_reuses_it(G, cache, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a full fit: nothing to warn about
        ex.export_dataset(G, "0-15", tmp_path / "a", **OPTIONS)
    card = json.loads((tmp_path / "a" / ex.CARD).read_text())
    fg = card["foreground_bank"]
    assert fg["source"] == "auto: fitted on the run's first 12 seeds" and fg["fit_seeds"] == "0-11"
    stored = (tmp_path / "a" / ex.BANK).read_bytes()
    assert fg["file"] == ex.BANK and len(fg["sha256"]) == 64
    cached, path = cached_bank(G)
    assert path.read_bytes() == stored  # the dataset's copy is the cached bank
    # the masks are the bank's
    seg = stylemix.segment(G, 5, config=stylemix.SegmentConfig(**OPTIONS))
    assert seg.meta.parts["bank"] == "auto: cached"
    from PIL import Image
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / "masks" / "train" / "seed0005.png")) > 0,
                                  seg.foreground)
    # another export of the generator takes the cached bank (no fit) and has the same digest
    ex.export_dataset(G, "0-15", tmp_path / "b", **OPTIONS)
    other = json.loads((tmp_path / "b" / ex.CARD).read_text())
    assert other["foreground_bank"]["source"] == "auto: cached" and other["digest"] == card["digest"]
    # a resume with another bank in the cache keeps the dataset's own
    store_bank(discover(G, range(300, 312), settings=PartSettings(), config=stylemix.SegmentConfig(variants=8)), G)
    ex.export_dataset(G, "0-15", tmp_path / "a", resume=True, **OPTIONS)
    assert (tmp_path / "a" / ex.BANK).read_bytes() == stored
    # parts="none" takes the consensus: another digest
    ex.export_dataset(G, "0-15", tmp_path / "none", parts="none", **OPTIONS)
    assert "foreground_bank" not in json.loads((tmp_path / "none" / ex.CARD).read_text())


def test_export_with_too_few_seeds_says_why_it_takes_the_consensus(G, cache, tmp_path):
    with pytest.warns(RuntimeWarning, match="fewer than 8"):
        ex.export_dataset(G, "0-3", tmp_path / "few", **OPTIONS)
    assert "foreground_bank" not in json.loads((tmp_path / "few" / ex.CARD).read_text())
    with pytest.raises(StylemixError, match="--parts fit cannot fit a part bank: the run has 4 seeds"):
        ex.export_dataset(G, "0-3", tmp_path / "fit", parts="fit", **OPTIONS)
    with pytest.warns(RuntimeWarning, match="not cached"):  # 8..11 seeds: a bank for this dataset only
        ex.export_dataset(G, "0-9", tmp_path / "ten", **OPTIONS)
    assert json.loads((tmp_path / "ten" / ex.CARD).read_text())["foreground_bank"]["fit_seeds"] == "0-9"
    assert cached_bank(G) is None


def test_export_parts_fit_refits_even_with_a_cached_bank(G, flow_bank, cache, tmp_path):
    store_bank(flow_bank, G)  # fitted on 200-211
    ex.export_dataset(G, "20-39", tmp_path / "fit", parts="fit", **OPTIONS)
    fg = json.loads((tmp_path / "fit" / ex.CARD).read_text())["foreground_bank"]
    assert fg["source"] == "fit" and fg["fit_seeds"] == "20-31"
    assert cached_bank(G)[0].fit_seeds == "20-31"
    with pytest.raises(StylemixError, match="-k 2"):
        ex.export_dataset(G, "20-39", tmp_path / "k3", parts="fit", clusters=3, **OPTIONS)


def test_cli_segment_hints_once_then_fit_caches_and_the_next_command_uses_it(cache, tmp_path):
    def run(*args):
        r = CliRunner().invoke(main, ["segment", "--network", "shapes", "--seeds", "0", "-n", "8", *args])
        assert r.exit_code == 0, r.output
        return r

    r = run("--outdir", str(tmp_path / "a"))
    assert r.stderr.strip() == BANK_HINT
    assert json.loads((tmp_path / "a" / "seed0000.json").read_text())["foreground_from"] == "consensus"
    assert BANK_HINT not in run("--parts", "none", "--outdir", str(tmp_path / "n")).stderr
    r = run("--parts", "fit", "--outdir", str(tmp_path / "f"))
    assert "fit: seeds 200-211" in r.stderr and "cached as" in r.stderr
    r = run("--outdir", str(tmp_path / "b"))
    assert BANK_HINT not in r.stderr
    meta = json.loads((tmp_path / "b" / "seed0000.json").read_text())
    assert meta["parts"]["bank"] == "auto: cached" and meta["foreground_from"] == "part bank (fine)"
    assert not (tmp_path / "b" / "seed0000_parts.png").exists()


def test_cli_export_fits_the_bank_then_segment_uses_it(cache, tmp_path):
    r = CliRunner().invoke(main, ["export", "--network", "shapes", "--seeds", "0-15", "-n", "8",
                                  "--outdir", str(tmp_path / "DS")])
    assert r.exit_code == 0, r.output
    assert "masks: foreground from the part bank" in r.stdout and "auto: fitted on the run's first 12 seeds" in r.stdout
    assert (tmp_path / "DS" / ex.BANK).is_file()
    r = CliRunner().invoke(main, ["segment", "--network", "shapes", "--seeds", "3", "-n", "8",
                                  "--outdir", str(tmp_path / "out")])
    assert r.exit_code == 0 and BANK_HINT not in r.stderr
    assert json.loads((tmp_path / "out" / "seed0003.json").read_text())["parts"]["bank"] == "auto: cached"
