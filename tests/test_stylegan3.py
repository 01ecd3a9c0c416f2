"""StyleGAN3: parity with the official generator's outputs and traces, safe loading, derived schedule, hooks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import stylemix
from stylemix.config import default_crossovers
from stylemix.errors import GeneratorLoadError, StylemixError
from stylemix.generators.pickles import classify_network, read_pickle as _read_pickle
from stylemix.generators.stylegan2_formats import load_stylegan2_file
from stylemix.generators.stylegan3 import (StyleGAN3Generator, input_transform_matrix, modulated_conv2d,
                                           stylegan3_layout)
from stylemix.generators.stylegan3_filters import layer_specs, synthesis_schedule
from stylemix.generators.stylegan3_formats import infer_stylegan3_config, stylegan3_config, stylegan3_from_state_dict
from test_stylegan2 import IMG_ATOL, WS_ATOL, max_diff

FIXTURES = Path(__file__).parents[1].parent / "shared" / "fixtures" / "stylegan3"
CONFIGS = ("t_small", "r_small")
needs_fixtures = pytest.mark.skipif(not all((FIXTURES / c / "expected.npz").is_file() for c in CONFIGS),
                                    reason=f"StyleGAN3 fixtures not found under {FIXTURES}")

pytestmark = pytest.mark.usefixtures("one_thread")


class Fixture:
    def __init__(self, name: str) -> None:
        self.dir = FIXTURES / name
        self.config = json.loads((self.dir / "config.json").read_text())
        self.sd = torch.load(self.dir / "weights.pt", weights_only=True)
        self.expected = dict(np.load(self.dir / "expected.npz"))
        self.G = stylegan3_from_state_dict(self.sd, self.config["init_kwargs"], source=name)


@pytest.fixture(scope="module", params=CONFIGS)
def fx(request) -> Fixture:
    if not (FIXTURES / request.param / "expected.npz").is_file():
        pytest.skip(f"StyleGAN3 fixtures not found under {FIXTURES}")
    return Fixture(request.param)


def small_generator(**kwargs) -> StyleGAN3Generator:
    torch.manual_seed(0)
    args = dict(z_dim=8, w_dim=8, resolution=16, channel_base=64, channel_max=8, mapping_layers=3)
    return StyleGAN3Generator(**{**args, **kwargs}).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------------
# Parity with the official generator


@needs_fixtures
def test_mapping_parity(fx: Fixture) -> None:
    z, e = torch.from_numpy(fx.expected["z"]), fx.expected
    with torch.no_grad():
        assert max_diff(fx.G.mapping(z), e["ws"]) <= WS_ATOL
        assert max_diff(fx.G.mapping(z, None, 0.7), e["ws_trunc"]) <= WS_ATOL
        assert max_diff(fx.G.mapping(z, None, 0.5, 8), e["ws_trunc_cutoff"]) <= WS_ATOL


@needs_fixtures
def test_synthesis_parity(fx: Fixture) -> None:
    e = fx.expected
    keys = ("ws", "ws_trunc", "ws_trunc_cutoff", "ws_mix")
    # One batch for all four: the style normalisation is per sample, so batching does not change the result.
    with torch.no_grad():
        imgs = fx.G.synthesis(torch.from_numpy(np.concatenate([e[k] for k in keys])))
    for k, img in zip(keys, imgs.split(len(e["z"]))):
        assert max_diff(img, e["img" + k[2:]]) <= IMG_ATOL, k
    assert fx.G(torch.from_numpy(e["z"])).shape == imgs[:4].shape


@needs_fixtures
def test_input_transform_parity(fx: Fixture) -> None:
    e, G = fx.expected, fx.G
    params = fx.config["generation"]["img_transform"]
    m = input_transform_matrix(params["rotate_degrees"], tuple(params["translate"]))
    assert m.dtype == np.float32 and np.array_equal(m, e["transform"])
    assert np.allclose(m, np.asarray(params["matrix_float64"]), atol=1e-7)
    stored = G.input_transform
    assert np.array_equal(stored, fx.sd["synthesis.input.transform"].numpy())  # perturbed, not the identity
    try:
        G.input_transform = torch.from_numpy(m)
        assert np.array_equal(G.input_transform, m)
        with torch.no_grad():
            assert max_diff(G.synthesis(torch.from_numpy(e["ws"])), e["img_transform"]) <= IMG_ATOL
    finally:
        G.input_transform = stored
    with pytest.raises(StylemixError, match=r"\[3, 3\]"):
        G.input_transform = np.eye(2)


@needs_fixtures
def test_conv_clamp_parity(fx: Fixture) -> None:
    G = stylegan3_from_state_dict(fx.sd, {**fx.config["init_kwargs"], "conv_clamp": 1.0})
    with torch.no_grad():
        assert max_diff(G.synthesis(torch.from_numpy(fx.expected["ws"])), fx.expected["img_convclamp1"]) <= IMG_ATOL


@needs_fixtures
def test_layer_traces(fx: Fixture) -> None:
    """Every mapping FC, the input, each layer's styles and output (batch 1), and the raw conv outputs."""
    e, G = fx.expected, fx.G
    traces = {k[len("trace."):]: v for k, v in e.items() if k.startswith("trace.")}
    conv_names = [k[:-len(".conv")] for k in traces if k.endswith(".conv")]
    modules = dict(G.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out.clone()))
               for n in traces if n in modules]
    handles += [modules[n].register_forward_pre_hook(lambda _m, args, n=n: inputs.__setitem__(n, args))
                for n in conv_names]
    try:
        with torch.no_grad():
            G.mapping(torch.from_numpy(e["z"]))
            outputs = {k: v for k, v in outputs.items() if k.startswith("mapping.")}  # keep the batch-4 mapping
            G.synthesis(torch.from_numpy(e["ws"][:1]))
    finally:
        for h in handles:
            h.remove()
    for n in conv_names:
        layer, (x, w) = modules[n], inputs[n]
        s = layer.spec
        styles = layer.affine(w) * (1 / np.sqrt(s.in_channels) if s.is_torgb else 1)
        with torch.no_grad():
            outputs[n + ".conv"] = modulated_conv2d(x, layer.weight, styles, demodulate=not s.is_torgb,
                                                    padding=s.conv_kernel - 1, input_gain=layer.magnitude_ema.rsqrt())
    assert len(conv_names) == 5 and set(traces) == set(outputs)
    for k, ref in traces.items():
        assert max_diff(outputs[k], ref) <= IMG_ATOL, k


@needs_fixtures
@pytest.mark.parametrize("name,protocol", [(n, p) for n in CONFIGS for p in ("", "-p2", "-p3")] + [("t_small", "-p5")])
def test_pickle_loads_g_ema_without_running_code(name: str, protocol: str, tmp_path, monkeypatch) -> None:
    canary = tmp_path / "canary"
    monkeypatch.setenv("PICKLE_CANARY_PATH", str(canary))
    monkeypatch.chdir(tmp_path)  # the stub's default canary location
    path = FIXTURES / name / f"network-snapshot{protocol}.pkl"
    G = stylemix.load_generator(str(path))
    assert isinstance(G, StyleGAN3Generator) and G.family == "stylegan3-" + name[0]
    e = np.load(FIXTURES / name / "expected.npz")
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(e["z"]))
        assert max_diff(ws, e["ws"]) <= WS_ATOL  # G_ema, not the further perturbed G
        assert max_diff(G.synthesis(ws), e["img"]) <= IMG_ATOL
    assert not canary.exists() and not list(tmp_path.iterdir())


@needs_fixtures
def test_records_are_told_apart_by_state() -> None:
    sg3 = _read_pickle(str(FIXTURES / "t_small" / "network-snapshot.pkl"))
    assert classify_network(sg3, "t_small")[0] == "stylegan3"
    with pytest.raises(GeneratorLoadError, match="discriminator"):
        classify_network(sg3["D"], "t_small D")
    sg2 = FIXTURES.parent / "stylegan2" / "nvidia_small" / "network-snapshot.pkl"
    if sg2.is_file():
        assert classify_network(_read_pickle(str(sg2)), "nvidia_small")[0] == "stylegan2"


# ----------------------------------------------------------------------------------------------------------------
# The schedule derived from the kwargs


@needs_fixtures
def test_derived_schedule_matches_official(fx: Fixture) -> None:
    derived, G = fx.config["derived"], fx.G
    assert G.synthesis.layer_names == derived["layer_names"] and G.num_ws == derived["num_ws"]
    for spec, ref in zip(G.synthesis.specs, derived["layers"]):
        assert ref["name"] == "synthesis." + spec.name
        for key in ("in_channels", "out_channels", "in_sampling_rate", "out_sampling_rate", "tmp_sampling_rate",
                    "conv_kernel", "up_factor", "down_factor", "up_taps", "down_taps", "down_radial",
                    "is_torgb", "is_critically_sampled"):
            assert getattr(spec, key) == ref[key], (spec.name, key)
        for key in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width"):
            assert getattr(spec, key) == pytest.approx(ref[key], abs=1e-12), (spec.name, key)
        assert [spec.in_size] * 2 == ref["in_size"] and [spec.out_size] * 2 == ref["out_size"]
        assert list(spec.padding) == ref["filtered_lrelu_padding_x0_x1_y0_y1"], spec.name
    # A freshly built network designs exactly the filters the official code stored.
    fresh = StyleGAN3Generator(**G.config()).state_dict()
    filters = [k for k in fresh if k.endswith("_filter")]
    assert filters and all(torch.equal(fresh[k], fx.sd[k]) for k in filters)
    assert set(fresh) == set(fx.sd)


@needs_fixtures
def test_config_round_trip_is_bit_identical(fx: Fixture) -> None:
    config = json.loads(json.dumps(fx.G.config()))
    G2 = StyleGAN3Generator(**config).eval()
    G2.load_state_dict(fx.G.state_dict())
    ws = torch.from_numpy(fx.expected["ws"][:2])
    with torch.no_grad():
        assert torch.equal(G2.synthesis(ws), fx.G.synthesis(ws))
    assert G2.config() == fx.G.config() and G2.family == fx.G.family


def test_unknown_kwargs_and_mismatched_weights_are_one_line_errors() -> None:
    base = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=64, channel_max=8)
    with pytest.raises(GeneratorLoadError, match="unknown StyleGAN3 generator argument 'architecture'"):
        stylegan3_config({**base, "architecture": "skip"})
    assert stylegan3_config({**base, "mapping_kwargs": {"num_layers": 3, "w_avg_beta": 0.99}})["mapping_layers"] == 3
    sd = small_generator(mapping_layers=2).state_dict()
    with pytest.raises(GeneratorLoadError, match="missing 'mapping.fc2.weight'"):
        stylegan3_from_state_dict(sd, {**base, "mapping_kwargs": {"num_layers": 3}})
    sd["synthesis.input.freqs"] = torch.zeros(3, 2)
    with pytest.raises(GeneratorLoadError, match="synthesis.input.freqs"):
        stylegan3_from_state_dict(sd, {**base, "mapping_kwargs": {"num_layers": 2}})


def test_conditional_and_other_resolutions_build_and_run() -> None:
    G = small_generator(c_dim=3, use_radial_filters=True, conv_kernel=1)
    assert G.family == "stylegan3-r" and "mapping.embed.weight" in G.state_dict()
    z, c = torch.randn(2, 8), torch.eye(3)[:2]
    with torch.no_grad():
        img = G(z, c)
        assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
        assert torch.equal(G(z, c), img)  # deterministic; noise_mode is ignored (no noise inputs)
        assert torch.equal(G(z, c, noise_mode="random"), img)
        assert not torch.allclose(G(z, torch.eye(3)[1:]), img)  # the label matters
    with pytest.raises(ValueError, match="c must be"):
        G(z)
    G64 = small_generator(resolution=64, num_layers=10, num_critical=2, channel_max=4)
    assert G64.num_ws == 12 and G64.synthesis.specs[-1].out_size == 64
    assert [s.out_sampling_rate for s in G64.synthesis.specs][-3:] == [64, 64, 64]
    with torch.no_grad():
        assert G64(torch.randn(1, 8)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="power of two"):
        small_generator(resolution=48)


# ----------------------------------------------------------------------------------------------------------------
# Style layout and the fast paths


@needs_fixtures
def test_describe_and_layout(fx: Fixture) -> None:
    info, layout = fx.G.describe(), fx.G.style_layout
    assert info["family"] == fx.G.family and info["resolution"] == 32 and info["num_ws"] == 16
    assert info["c_dim"] == 0 and len(info["slot_resolutions"]) == 16
    # Slot 0 drives the input (rate 16); slot i + 1 drives layer L{i}; rates never decrease.
    assert layout.slot_resolutions[0] == 16 and layout.slot_resolutions[-1] == 32
    assert list(layout.slot_resolutions) == sorted(layout.slot_resolutions)
    assert info["default_crossover"] == layout.default_crossover == 10  # slots with cutoff <= 8 at 32 px
    assert [layer["w"] for layer in info["layers"]] == list(range(16))
    assert default_crossovers(fx.G, 32) == [7, 8, 9, 10]


def test_layout_of_a_1024_px_network_matches_the_official_layers() -> None:
    schedule = synthesis_schedule(1024, 3)
    names = [s.name for s in layer_specs(schedule)]
    assert names[:5] == ["L0_36_512", "L1_36_512", "L2_52_512", "L3_52_512", "L4_84_512"]
    assert names[7:] == ["L7_276_323", "L8_276_203", "L9_532_128", "L10_1044_81", "L11_1044_51", "L12_1044_32",
                         "L13_1024_32", "L14_1024_3"]
    layout = stylegan3_layout(schedule["sampling_rates"][[0] + list(range(15))], np.r_[2.0, schedule["cutoffs"]], 1024)
    assert layout.default_crossover == 5  # input, L0..L3: cutoff <= 8, as StyleGAN2's 16 px bound keeps 5 slots


@needs_fixtures
def test_prefix_suffix_and_features_agree_with_full_synthesis(fx: Fixture) -> None:
    G, e = fx.G, fx.expected
    base = torch.from_numpy(e["ws"][:1])
    mixed = torch.from_numpy(e["ws_mix"][:3])
    with torch.no_grad():
        states = G.synthesis_prefixes(base, [7, 10])
        for c, state in states.items():
            ws = torch.cat([base.expand(3, -1, -1)[:, :c], mixed[:, c:]], dim=1)
            single = G.synthesis_prefix(base, c)
            assert single.step == state.step == c and torch.equal(single.x, state.x)
            full = G.synthesis(ws)
            assert max_diff(G.synthesis_suffix(state, ws), full) <= IMG_ATOL
            assert G.synthesis_suffix(state, ws, 16).shape == (3, 3, 16, 16)
            for r in (8, 16, 32):
                feats = G.features(ws, r)
                assert feats.shape[0] == 3 and feats.shape[2:] == (r, r)
                assert max_diff(G.features_suffix(state, ws, r), feats) <= IMG_ATOL  # batch 1 vs 3
                assert G.features_suffix(state, ws, r, feature_dim=2).shape == (3, 2, r, r)
        # Features at the analysis resolution are the margin-cropped map of the last layer sampled there.
        step = G.synthesis.feature_step(16)
        spec = G.synthesis.specs[step - 1]
        assert spec.out_sampling_rate == 16 and spec.margin == 10
        outs = {}
        h = G.synthesis.layer(step - 1).register_forward_hook(lambda _m, _i, out: outs.__setitem__("x", out))
        try:
            feats = G.features(base, 16)
        finally:
            h.remove()
        assert torch.equal(feats, outs["x"][:, :, 10:26, 10:26])


def test_synthesis_suffix_features_is_bit_equal_to_separate_renders(fx: Fixture) -> None:
    """Feature maps taken while the base image is finished from a prefix are those rendered apart, bit for bit;
    layers inside the prefix are left to the caller."""
    from stylemix import render
    G = fx.G
    base = torch.from_numpy(fx.expected["ws"][:1])
    with torch.no_grad():
        for c in (0, 7, 10):
            state = G.synthesis_prefix(base, c)
            image, feats = G.synthesis_suffix_features(state, base, [8, 16, 32])
            assert torch.equal(image, G.synthesis_suffix(state, base))
            assert set(feats) == {r for r in (8, 16, 32) if G.synthesis.feature_step(r) + 1 >= state.step}
            for r, f in feats.items():
                assert torch.equal(f, G.features(base, r)), (c, r)
            image2, every = render.synthesis_suffix_features(G, state, base, [8, 16, 32])
            assert torch.equal(image2, image) and all(torch.equal(every[r], G.features(base, r)) for r in (8, 16, 32))


@needs_fixtures
def test_segment_runs_on_the_fixture_generator(fx: Fixture) -> None:
    if fx.G.family != "stylegan3-t":
        pytest.skip("one configuration is enough for the pipeline")
    seg = stylemix.segment(fx.G, seed=0)
    assert seg.image.shape == (32, 32, 3) and seg.foreground.shape == (32, 32) and seg.foreground.dtype == bool
    assert seg.meta["settings"]["descriptor"] == "features" and seg.meta["settings"]["crossover"] == [7, 8, 9, 10]
    assert 0 < seg.foreground.mean() < 1


@needs_fixtures
@pytest.mark.parametrize("name", CONFIGS)
def test_bare_state_dict_loads_with_inferred_kwargs(name: str) -> None:
    G = stylemix.load_generator(str(FIXTURES / name / "weights.pt"))
    e = np.load(FIXTURES / name / "expected.npz")
    with torch.no_grad():
        assert max_diff(G.synthesis(torch.from_numpy(e["ws"])), e["img"]) <= IMG_ATOL
    assert G.family == "stylegan3-" + name[0]


def test_inferred_kwargs_rebuild_other_configurations() -> None:
    G = small_generator(resolution=64, c_dim=2, channel_base=1000, channel_max=16, margin_size=8, mapping_layers=4)
    inferred = StyleGAN3Generator(**infer_stylegan3_config(G.state_dict()))
    assert [s for s in inferred.synthesis.specs] == [s for s in G.synthesis.specs]
    assert (inferred.c_dim, inferred.mapping.num_layers) == (2, 4)
    odd = small_generator(first_cutoff=3)
    with pytest.raises(GeneratorLoadError, match="default progression"):
        infer_stylegan3_config(odd.state_dict())


@needs_fixtures
def test_segment_cli_rotate_translate(tmp_path) -> None:
    """`--rotate 17.5 --translate 0.15,-0.1` sets the matrix the fixture's img_transform was made with."""
    from click.testing import CliRunner

    from stylemix.cli import main

    pkl = FIXTURES / "t_small" / "network-snapshot.pkl"
    args = ["segment", "--network", str(pkl), "--seeds", "3", "-n", "4", "--rotate", "17.5",
            "--translate", "0.15,-0.1", "--outdir"]
    r = CliRunner().invoke(main, args + [str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "a" / "seed0003.json").read_text())
    expected = np.load(FIXTURES / "t_small" / "expected.npz")["transform"]
    assert np.abs(np.array(meta["input_transform"]["matrix"]) - expected).max() <= 1e-7
    plain = CliRunner().invoke(main, args[:2] + ["shapes"] + args[3:] + [str(tmp_path / "b")])
    assert plain.exit_code == 1 and "StyleGAN3" in plain.output and plain.output.count("\n") == 1, plain.output
    assert not (tmp_path / "b").exists()
    bad = CliRunner().invoke(main, ["segment", "--network", str(pkl), "--seeds", "3", "--translate", "0.1",
                                    "--outdir", str(tmp_path / "c")])
    assert bad.exit_code == 1 and "--translate" in bad.output and not (tmp_path / "c").exists(), bad.output


@needs_fixtures
def test_export_of_a_stylegan3_network(tmp_path) -> None:
    """An export hashes StyleGAN3's 0-dim buffers (magnitude_ema) and writes a complete dataset."""
    from stylemix.export import export_dataset
    from stylemix.identity import generator_id

    G = stylemix.load_generator(str(FIXTURES / "r_small" / "network-snapshot-p2.pkl"))
    assert len(generator_id(G)) == 64
    summary = export_dataset(G, "0-1", tmp_path / "DS", variants=4, progress=False)
    assert summary["complete"] and summary["card"]["counts"]["requested"] == 2
