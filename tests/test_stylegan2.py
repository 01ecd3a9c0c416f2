"""StyleGAN2: parity with the official generators' outputs, format round trips, prefix/suffix, safe loading."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from stylemix.errors import GeneratorLoadError
from stylemix.generators.base import Generator, GeneratorBase
from stylemix.generators.stylegan2 import (StyleGAN2Generator, normalize_2nd_moment, nvidia_channels,
                                           rosinality_channels, upsample2d)
from stylemix.generators.stylegan2_formats import (load_stylegan2_file, nvidia_state_dict, rosinality_checkpoint,
                                                   save_nvidia_state_dict, save_rosinality_checkpoint)

FIXTURES = Path(__file__).parents[1].parent / "shared" / "fixtures" / "stylegan2"
NVIDIA = FIXTURES / "nvidia_small"
ROSINALITY = FIXTURES / "rosinality_small"
needs_fixtures = pytest.mark.skipif(not (NVIDIA / "expected.npz").is_file() or
                                    not (ROSINALITY / "expected.npz").is_file(),
                                    reason=f"StyleGAN2 fixtures not found under {FIXTURES}")

WS_ATOL = 1e-5
IMG_ATOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


def max_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def roll_mix(ws: torch.Tensor, cut: int) -> torch.Tensor:
    """``ws [B, N, D]`` with slots ``[cut:]`` of sample i taken from sample (i+1) % B (the fixtures' ``ws_mix``)."""
    mixed = ws.clone()
    mixed[:, cut:] = ws.roll(-1, dims=0)[:, cut:]
    return mixed


def capture(G: torch.nn.Module, names: list[str]) -> tuple[dict[str, torch.Tensor], Callable[[], None]]:
    """Forward hooks storing each named submodule's output; returns (outputs, remove)."""
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(G.named_modules())
    handles = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: outputs.__setitem__(n, out.detach().clone())) for n in names]
    return outputs, lambda: [h.remove() for h in handles]


# ----------------------------------------------------------------------------------------------------------------
# Parity with the official generators


def nvidia_outputs(G: StyleGAN2Generator, E: Any, clamp1: StyleGAN2Generator) -> dict[str, torch.Tensor]:
    """Every array of nvidia_small/expected.npz, recomputed with our generator."""
    z = torch.from_numpy(E["z"])
    c = torch.from_numpy(E["c"]) if "c" in E else None
    n, half = G.num_ws, G.num_ws // 2
    fc_names = [f"mapping.fc{i}" for i in range(G.mapping.num_layers)] + (["mapping.embed"] if G.c_dim else [])
    trace, remove = capture(G, fc_names)
    out = {"z": z, "ws": G.mapping(z, c)}
    remove()
    out.update({f"trace.{k}": v for k, v in trace.items()})
    if c is not None:
        out["c"] = c
    out["ws_trunc"] = G.mapping(z, c, truncation_psi=0.7)
    out["ws_trunc_cutoff"] = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=half)
    out["ws_mix"] = roll_mix(out["ws"], half)
    for key in ("", "_trunc", "_trunc_cutoff", "_mix"):
        out[f"img{key}"] = G.synthesis(out[f"ws{key}"], noise_mode="const")
    out["img_noise_none"] = G.synthesis(out["ws"], noise_mode="none")
    out["img_convclamp1"] = clamp1.synthesis(out["ws"], noise_mode="const")
    # Batch-1 layer trace; block outputs come from our own hooks for features and early exit.
    w0 = out["ws"][0:1]
    layer_names = []
    for r in G.synthesis.block_resolutions:
        for layer in (("conv1", "torgb") if r == 4 else ("conv0", "conv1", "torgb")):
            layer_names += [f"synthesis.b{r}.{layer}", f"synthesis.b{r}.{layer}.affine"]
    trace, remove = capture(G, layer_names)
    G.synthesis(w0)
    remove()
    for name, value in trace.items():
        if not name.endswith(".conv1"):  # NVIDIA's trace records conv1 as the block's x
            out[f"trace.{name}"] = value
    for r in G.synthesis.block_resolutions:
        out[f"trace.synthesis.b{r}.x"] = G.features(w0, r)
        out[f"trace.synthesis.b{r}.img"] = G.synthesis_suffix(G.synthesis_prefix(w0, 0), w0, resolution=r)
    return out


def rosinality_outputs(G: StyleGAN2Generator, E: Any) -> dict[str, torch.Tensor]:
    """Every array of rosinality_small/expected.npz, recomputed with our generator."""
    z = torch.from_numpy(E["z"])
    fc_names = [f"mapping.fc{i}" for i in range(G.mapping.num_layers)]
    trace, remove = capture(G, fc_names)
    out = {"z": z, "ws": G.mapping(z)}
    remove()
    out["trace.style.0"] = normalize_2nd_moment(z)
    out.update({f"trace.style.{i + 1}": trace[name] for i, name in enumerate(fc_names)})
    out["ws_trunc"] = G.mapping(z, truncation_psi=0.7)  # lerp; rosinality's a + t*(b - a) differs by ~1e-7
    out["ws_mix"] = roll_mix(out["ws"], G.num_ws // 2)
    for key in ("", "_trunc", "_mix"):
        out[f"img{key}"] = G.synthesis(out[f"ws{key}"])
    out["img_noise_zero"] = G.synthesis(out["ws"], noise_mode="none")
    w0 = out["ws"][0:1]
    names = {"synthesis.b4.conv1": "conv1", "synthesis.b4.torgb.affine": "to_rgb1.conv.modulation",
             "synthesis.b4.conv1.affine": "conv1.conv.modulation"}
    for k, r in enumerate(G.synthesis.block_resolutions[1:]):
        for i, layer in enumerate(("conv0", "conv1")):
            names[f"synthesis.b{r}.{layer}"] = f"convs.{2 * k + i}"
            names[f"synthesis.b{r}.{layer}.affine"] = f"convs.{2 * k + i}.conv.modulation"
        names[f"synthesis.b{r}.torgb.affine"] = f"to_rgbs.{k}.conv.modulation"
    trace, remove = capture(G, list(names))
    G.synthesis(w0)
    remove()
    out.update({f"trace.{names[k]}": v for k, v in trace.items()})
    # rosinality's ToRGB output is the accumulated skip image: our early exit at that block.
    state = G.synthesis_prefix(w0, 0)
    out["trace.to_rgb1"] = G.synthesis_suffix(state, w0, resolution=4)
    for k, r in enumerate(G.synthesis.block_resolutions[1:]):
        out[f"trace.to_rgbs.{k}"] = G.synthesis_suffix(state, w0, resolution=r)
    return out


def assert_parity(ours: dict[str, torch.Tensor], E: Any) -> dict[str, float]:
    assert sorted(ours) == sorted(E.files), "every expected array must be recomputed"
    diffs = {k: max_diff(ours[k], E[k]) for k in E.files}
    bad = {k: d for k, d in diffs.items() if d > (WS_ATOL if k.startswith(("ws", "z", "c")) else IMG_ATOL)}
    assert not bad, bad
    return diffs


@needs_fixtures
@pytest.mark.parametrize("filename", ["weights.pt", "network-snapshot.pkl", "network-snapshot-p2.pkl",
                                      "network-snapshot-p3.pkl"])
@torch.no_grad()
def test_nvidia_parity(filename: str) -> None:
    G = load_stylegan2_file(NVIDIA / filename)
    assert G.family == "stylegan2" and G.conv_clamp == 256
    clamp1 = load_stylegan2_file(NVIDIA / filename, conv_clamp=1.0)
    E = np.load(NVIDIA / "expected.npz")
    diffs = assert_parity(nvidia_outputs(G, E, clamp1), E)
    assert diffs["ws"] == 0 and diffs["img"] < 1e-5


@needs_fixtures
@torch.no_grad()
def test_rosinality_parity() -> None:
    G = load_stylegan2_file(ROSINALITY / "checkpoint.pt")
    assert G.family == "rosinality" and G.conv_clamp is None
    assert G.channels == {4: 64, 8: 64, 16: 64, 32: 64}
    E = np.load(ROSINALITY / "expected.npz")
    diffs = assert_parity(rosinality_outputs(G, E), E)
    assert diffs["ws"] == 0 and diffs["img"] < 1e-5


@needs_fixtures
def test_pickle_module_src_is_not_executed() -> None:
    # The fixture's embedded module source raises when executed; loading works only because it never is.
    data = (NVIDIA / "network-snapshot.pkl").read_bytes()
    assert b"raise RuntimeError" in data
    G = load_stylegan2_file(NVIDIA / "network-snapshot.pkl")
    sd = torch.load(NVIDIA / "weights.pt", weights_only=True)
    assert all(torch.equal(v, sd[k]) for k, v in G.state_dict().items())  # G_ema, not the perturbed G


@needs_fixtures
@torch.no_grad()
def test_rosinality_and_nvidia_layouts_are_equivalent(tmp_path: Path) -> None:
    # NVIDIA weights written as a rosinality checkpoint reproduce NVIDIA's images (rosinality has no clamp)...
    G = load_stylegan2_file(NVIDIA / "weights.pt")
    save_rosinality_checkpoint(G, tmp_path / "as_rosinality.pt")
    R = load_stylegan2_file(tmp_path / "as_rosinality.pt")
    assert R.family == "rosinality" and R.conv_clamp is None
    E = np.load(NVIDIA / "expected.npz")
    for key, ws_key in (("img", "ws"), ("img_mix", "ws_mix"), ("img_trunc_cutoff", "ws_trunc_cutoff")):
        assert max_diff(R.synthesis(torch.from_numpy(E[ws_key])), E[key]) < IMG_ATOL
    assert max_diff(R.mapping(torch.from_numpy(E["z"])), E["ws"]) == 0
    # ... and rosinality's weights written in NVIDIA's layout reproduce rosinality's images.
    G = load_stylegan2_file(ROSINALITY / "checkpoint.pt")
    save_nvidia_state_dict(G, tmp_path / "as_nvidia.pt")
    N = load_stylegan2_file(tmp_path / "as_nvidia.pt")
    E = np.load(ROSINALITY / "expected.npz")
    assert N.family == "stylegan2" and N.conv_clamp == 256
    assert max_diff(N.synthesis(torch.from_numpy(E["ws"])), E["img"]) < IMG_ATOL
    assert max_diff(N.synthesis(torch.from_numpy(E["ws_mix"])), E["img_mix"]) < IMG_ATOL


@needs_fixtures
def test_registry_loads_files() -> None:
    from stylemix.generators.registry import load_generator

    G = load_generator(str(ROSINALITY / "checkpoint.pt"))
    assert isinstance(G, StyleGAN2Generator) and isinstance(G, Generator) and not G.training


# ----------------------------------------------------------------------------------------------------------------
# Other configurations and format round trips


CONFIGS = {
    "r8_map1": dict(z_dim=32, w_dim=32, resolution=8, mapping_layers=1, channel_base=256, channel_max=32),
    "r64_map3": dict(z_dim=16, w_dim=16, resolution=64, mapping_layers=3, channel_base=512, channel_max=16),
    "r16_cond3": dict(z_dim=24, c_dim=3, w_dim=32, resolution=16, mapping_layers=2, channel_base=128,
                      channel_max=32, layer_features=40),
    "r32_ros_table": dict(z_dim=16, w_dim=16, resolution=32, mapping_layers=2,
                          channels={4: 24, 8: 24, 16: 16, 32: 8}),
}


def random_generator(seed: int, **config: Any) -> StyleGAN2Generator:
    """A generator whose every tensor (biases, noise strengths, w_avg included) is random, so nothing hides."""
    torch.manual_seed(seed)
    G = StyleGAN2Generator(**config).eval()
    with torch.no_grad():
        for name, t in G.state_dict().items():
            if name.endswith("resample_filter"):
                continue
            scale = 100.0 if name.startswith("mapping.fc") else 1.0  # stored weights are divided by lr_mul
            t.add_(0.1 * scale * torch.randn_like(t))
    return G


def inputs(G: StyleGAN2Generator, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([batch, G.z_dim], generator=gen)
    c = torch.eye(G.c_dim)[torch.arange(batch) % G.c_dim] if G.c_dim else None
    return z, c


class _FakeEasyDict(dict):
    pass


def write_nvidia_pickle(G: StyleGAN2Generator, path: Path, conv_clamp: float | None = 256, protocol: int = 4,
                        entries: dict[str, Any] | None = None, raw: tuple[str, ...] = ()) -> None:
    """A network-snapshot-style pickle of ``G`` (persistent-object records, poisoned module_src), written without
    NVIDIA's code: stand-in modules named like NVIDIA's are registered only while pickling. ``entries`` are added
    to the snapshot dict; submodules of the classes named in ``raw`` are pickled as plain torch modules."""
    persistence = types.ModuleType("torch_utils.persistence")
    dnnlib_util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta: dict) -> Any:  # never called: the loader supplies its own
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = persistence.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    _FakeEasyDict.__module__, _FakeEasyDict.__qualname__ = dnnlib_util.__name__, "EasyDict"
    dnnlib_util.EasyDict = _FakeEasyDict

    class Record:
        def __init__(self, meta: dict) -> None:
            self.meta = meta

        def __reduce__(self) -> tuple:
            return _reconstruct_persistent_obj, (self.meta,)

    def record(module: torch.nn.Module, extra: dict[str, Any]) -> Record:
        state = {"training": False, "_parameters": OrderedDict(module._parameters),
                 "_buffers": OrderedDict(module._buffers), "_non_persistent_buffers_set": set(),
                 "_modules": {k: m if type(m).__name__ in raw else record(m, {})
                              for k, m in module._modules.items()}, "_init_args": ()}
        state.update(extra)
        return Record({"type": "class", "version": 6, "module_src": "raise RuntimeError('executed')\n",
                       "class_name": type(module).__name__.replace("StyleGAN2", ""), "state": state})

    G_ema = record(G, {"_init_kwargs": _FakeEasyDict(z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim,
                                                     img_resolution=G.resolution, img_channels=3,
                                                     mapping_kwargs=_FakeEasyDict(num_layers=G.mapping.num_layers),
                                                     synthesis_kwargs=_FakeEasyDict(conv_clamp=conv_clamp))})
    G_ema.meta["class_name"] = "Generator"
    stand_ins = {"torch_utils": types.ModuleType("torch_utils"), "dnnlib": types.ModuleType("dnnlib"),
                 persistence.__name__: persistence, dnnlib_util.__name__: dnnlib_util}
    added = [name for name in stand_ins if name not in sys.modules]
    assert len(added) == len(stand_ins), "real NVIDIA modules are imported; the stand-ins would shadow them"
    sys.modules.update(stand_ins)
    try:
        with open(path, "wb") as fh:
            pickle.dump({"G": G_ema, "D": None, "G_ema": G_ema, "augment_pipe": None,
                         "training_set_kwargs": _FakeEasyDict(resolution=G.resolution), **(entries or {})}, fh,
                        protocol=protocol)
    finally:
        for name in added:
            del sys.modules[name]


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@torch.no_grad()
def test_round_trips(config: str, tmp_path: Path) -> None:
    G = random_generator(1, **CONFIGS[config])
    z, c = inputs(G)
    ws = G.mapping(z, c, truncation_psi=0.6, truncation_cutoff=G.num_ws // 2)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, G.resolution, G.resolution)
    save_nvidia_state_dict(G, tmp_path / "nvidia.pt")
    write_nvidia_pickle(G, tmp_path / "snapshot.pkl")
    files = ["nvidia.pt", "snapshot.pkl"]
    if not G.c_dim and G.z_dim == G.w_dim:
        save_rosinality_checkpoint(G, tmp_path / "rosinality.pt")
        files.append("rosinality.pt")
    else:
        with pytest.raises(ValueError, match="rosinality"):
            rosinality_checkpoint(G)
    for name in files:
        H = load_stylegan2_file(tmp_path / name)
        assert (H.z_dim, H.c_dim, H.w_dim, H.num_ws, H.resolution) == (G.z_dim, G.c_dim, G.w_dim, G.num_ws,
                                                                        G.resolution), name
        assert H.channels == G.channels and H.mapping.num_layers == G.mapping.num_layers, name
        assert torch.equal(H.mapping(z, c, truncation_psi=0.6, truncation_cutoff=G.num_ws // 2), ws), name
        assert max_diff(H.synthesis(ws), img) < IMG_ATOL, name
    if "rosinality.pt" in files:  # layout conversion is lossless both ways
        ros = torch.load(tmp_path / "rosinality.pt", weights_only=True)
        back = nvidia_state_dict(load_stylegan2_file(tmp_path / "rosinality.pt"))
        assert all(torch.equal(back[k], v) for k, v in nvidia_state_dict(G).items())
        assert ros["g_ema"]["input.input"].shape == (1, G.channels[4], 4, 4)


@torch.no_grad()
def test_rosinality_train_checkpoint_estimates_w_avg(tmp_path: Path) -> None:
    G = random_generator(2, **CONFIGS["r8_map1"])
    g_ema = rosinality_checkpoint(G)["g_ema"]
    torch.save({"g": g_ema, "d": {"convs.0.0.weight": torch.zeros(1)}, "g_ema": g_ema,
                "g_optim": {"state": {}, "param_groups": []}, "d_optim": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(size=8, n_mlp=1, latent=32, channel_multiplier=2), "ada_aug_p": 0.1},
               tmp_path / "train.pt")
    H = load_stylegan2_file(tmp_path / "train.pt")
    assert H.describe()["w_avg"].startswith("estimated")
    z, _ = inputs(G)
    assert max_diff(H.synthesis(H.mapping(z)), G.synthesis(G.mapping(z))) < IMG_ATOL
    assert H.mapping(z, truncation_psi=0.5).abs().sum() > 0


@torch.no_grad()
def test_legacy_torch_format_and_plain_pickle(tmp_path: Path) -> None:
    G = random_generator(8, **CONFIGS["r8_map1"])
    z, _ = inputs(G)
    torch.save(nvidia_state_dict(G), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with open(tmp_path / "plain.pkl", "wb") as fh:  # a state dict pickled directly, no torch.save
        pickle.dump(rosinality_checkpoint(G), fh)
    for name in ("legacy.pt", "plain.pkl"):
        H = load_stylegan2_file(tmp_path / name)
        assert max_diff(H(z), G(z)) < IMG_ATOL, name


@torch.no_grad()
def test_pickle_records_conv_clamp(tmp_path: Path) -> None:
    G = random_generator(3, **CONFIGS["r8_map1"])
    write_nvidia_pickle(G, tmp_path / "fp32.pkl", conv_clamp=None)
    assert load_stylegan2_file(tmp_path / "fp32.pkl").conv_clamp is None


def test_channel_tables() -> None:
    assert nvidia_channels(1024) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64,
                                     1024: 32}
    assert rosinality_channels(1024, 2) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128,
                                            512: 64, 1024: 32}
    assert rosinality_channels(256, 1) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    G = StyleGAN2Generator(z_dim=8, w_dim=8, resolution=4, mapping_layers=1, channel_max=8)
    assert G.num_ws == 2 and G.style_layout.default_crossover == 1
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Generator(resolution=48)


# ----------------------------------------------------------------------------------------------------------------
# Style mixing hooks


def hook_generators() -> list[tuple[str, StyleGAN2Generator]]:
    gens = [("r64_map3", random_generator(4, **CONFIGS["r64_map3"]))]
    if (NVIDIA / "weights.pt").is_file():
        gens.append(("nvidia_small", load_stylegan2_file(NVIDIA / "weights.pt")))
    return gens


@torch.no_grad()
def test_style_layout() -> None:
    G = random_generator(4, **CONFIGS["r64_map3"])
    layout = G.style_layout
    assert layout.slot_resolutions == (4, 8, 8, 16, 16, 32, 32, 64, 64, 64)
    assert layout.default_crossover == 5  # slots driving layers up to 16 px
    big = StyleGAN2Generator(z_dim=4, w_dim=4, resolution=1024, mapping_layers=1, channel_max=4)
    assert big.num_ws == 18 and big.style_layout.default_crossover == 5
    assert big.style_layout.groups == {"coarse": (0, 3), "middle": (3, 7), "fine": (7, 18)}
    info = G.describe()
    assert info["mapping_layers"] == 3 and info["channels"]["64"] == 8 and info["style_groups"]["coarse"] == [0, 3]


@torch.no_grad()
def test_prefix_suffix_match_full_synthesis() -> None:
    for label, G in hook_generators():
        z, c = inputs(G, batch=4, seed=5)
        ws = G.mapping(z, c)
        assert torch.equal(G.synthesis_suffix(G.synthesis_prefix(ws, 0), ws), G.synthesis(ws))
        for crossover in range(G.num_ws + 1):
            variants = ws.clone()
            variants[:, :crossover] = ws[:1, :crossover]  # variants share the first sample's kept slots
            state = G.synthesis_prefix(ws[:1], crossover)
            full = G.synthesis(variants)
            assert max_diff(G.synthesis_suffix(state, variants), full) < IMG_ATOL, (label, crossover)
            # Early exit at every block equals the skip image there, rebuilt from features and ToRGB layers.
            skip = None
            for r in G.synthesis.block_resolutions:
                block = G.synthesis.block(r)
                rgb = block.torgb(G.features(variants, r), variants[:, G.synthesis._torgb_slot(r)])
                skip = rgb if skip is None else upsample2d(skip, block.resample_filter) + rgb
                early = G.synthesis_suffix(state, variants, resolution=r)
                assert max_diff(early, skip) < IMG_ATOL, (label, crossover, r)


@torch.no_grad()
def test_features_suffix_matches_fallback() -> None:
    for label, G in hook_generators():
        z, c = inputs(G, batch=4, seed=6)
        ws = G.mapping(z, c)
        for crossover in range(G.num_ws + 1):
            variants = ws.clone()
            variants[:, :crossover] = ws[:1, :crossover]
            state = G.synthesis_prefix(ws[:1], crossover)
            for r in G.synthesis.block_resolutions:
                for dim in (None, 3, 64):  # 64: more than any block has, so no projection
                    want = GeneratorBase.features_suffix(G, state, variants, r, dim)
                    got = G.features_suffix(state, variants, r, dim)
                    assert got.is_contiguous() and max_diff(got, want) < WS_ATOL, (label, crossover, r, dim)
        # A state of another adapter (the base class's) is ignored, as the fallback ignores every state.
        full = GeneratorBase.synthesis_prefix(G, ws, 3)
        assert max_diff(G.features_suffix(full, ws, 16, 3), GeneratorBase.features_suffix(G, full, ws, 16, 3)) \
            < WS_ATOL


@torch.no_grad()
def test_synthesis_suffix_features_is_bit_equal_to_separate_renders() -> None:
    """The base image's feature maps taken while it is finished from a prefix are those rendered apart, bit for
    bit, and the image is the suffix's; blocks inside the prefix are left to the caller, which renders them."""
    from stylemix import render
    for label, G in hook_generators():
        z, c = inputs(G, batch=1, seed=8)
        ws = G.mapping(z, c)
        blocks = G.synthesis.block_resolutions
        for crossover in (0, G.style_layout.default_crossover, G.num_ws):
            state = G.synthesis_prefix(ws, crossover)
            image, feats = G.synthesis_suffix_features(state, ws, list(blocks))
            assert torch.equal(image, G.synthesis_suffix(state, ws)), (label, crossover)
            assert set(feats) == {r for r in blocks if G.synthesis._features_stop(r) >= state.step}
            for r, f in feats.items():
                assert torch.equal(f, G.features(ws, r)), (label, crossover, r)
            image2, every = render.synthesis_suffix_features(G, state, ws, list(blocks))
            assert torch.equal(image2, image) and sorted(every) == sorted(blocks)
            assert all(torch.equal(every[r], G.features(ws, r)) for r in blocks), (label, crossover)


@torch.no_grad()
def test_synthesis_prefixes_equal_separate_prefixes() -> None:
    for label, G in hook_generators():
        z, c = inputs(G, batch=4, seed=7)
        ws = G.mapping(z, c)
        c0 = G.style_layout.default_crossover
        for crossovers in ([c0 + 3, c0 - 3, c0, c0], list(range(G.num_ws + 1))):
            states = G.synthesis_prefixes(ws[:1], crossovers)
            assert sorted(states) == sorted(set(crossovers))
            for crossover, state in states.items():
                alone = G.synthesis_prefix(ws[:1], crossover)
                assert (state.crossover, state.step, sorted(state.images)) == \
                    (alone.crossover, alone.step, sorted(alone.images)), (label, crossover)
                variants = ws.clone()
                variants[:, :crossover] = ws[:1, :crossover]
                for r in G.synthesis.block_resolutions:
                    assert torch.equal(G.synthesis_suffix(state, variants, r),
                                       G.synthesis_suffix(alone, variants, r)), (label, crossover, r)
                    assert torch.equal(G.features_suffix(state, variants, r, 3),
                                       G.features_suffix(alone, variants, r, 3)), (label, crossover, r)
        with pytest.raises(ValueError, match="crossover"):
            G.synthesis_prefixes(ws[:1], [1, G.num_ws + 1])


@torch.no_grad()
def test_noise_modes_and_inputs() -> None:
    G = random_generator(6, **CONFIGS["r16_cond3"])
    z, c = inputs(G)
    ws = G.mapping(z, c)
    assert not torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
    assert not torch.equal(G.synthesis(ws, noise_mode="none"), G.synthesis(ws))
    assert torch.equal(G(z, c), G.synthesis(ws))
    cut = G.mapping(z, c, truncation_psi=0.3, truncation_cutoff=2)
    assert torch.equal(cut[:, 2:], ws[:, 2:])
    assert torch.equal(cut[:, :2], G.mapping.w_avg.lerp(ws[:, :2], 0.3))
    with pytest.raises(ValueError, match="c must be"):
        G.mapping(z)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(ws[:, :3])


# ----------------------------------------------------------------------------------------------------------------
# Errors


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_forbidden_global_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"G_ema": _Evil(marker)}))
    with pytest.raises(GeneratorLoadError, match=rf"forbidden global '{os.system.__module__}\.system'"):
        load_stylegan2_file(tmp_path / "evil.pkl")
    torch.save({"g_ema": _Evil(marker)}, tmp_path / "evil.pt")  # the same inside torch's zip format
    with pytest.raises(GeneratorLoadError, match=rf"forbidden global '{os.system.__module__}\.system'"):
        load_stylegan2_file(tmp_path / "evil.pt")
    assert not marker.exists()


@needs_fixtures
@pytest.mark.parametrize("source", ["nvidia_small/weights.pt", "nvidia_small/network-snapshot.pkl",
                                    "rosinality_small/checkpoint.pt"])
def test_truncated_files(source: str, tmp_path: Path) -> None:
    data = (FIXTURES / source).read_bytes()
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    with pytest.raises(GeneratorLoadError, match="truncated"):
        load_stylegan2_file(tmp_path / "cut")


def test_unknown_family_and_garbage(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(GeneratorLoadError, match="unknown checkpoint family"):
        load_stylegan2_file(tmp_path / "other.pt")
    torch.save({"synthesis.input.freqs": torch.zeros(3), "mapping.fc0.weight": torch.zeros(2, 2)},
               tmp_path / "sg3.pt")
    with pytest.raises(GeneratorLoadError, match="StyleGAN3"):
        load_stylegan2_file(tmp_path / "sg3.pt")
    (tmp_path / "text.pkl").write_bytes(b"hello, not a network")
    with pytest.raises(GeneratorLoadError, match="not a readable"):
        load_stylegan2_file(tmp_path / "text.pkl")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(GeneratorLoadError, match="empty"):
        load_stylegan2_file(tmp_path / "empty.pt")


def test_bad_shapes(tmp_path: Path) -> None:
    G = random_generator(7, **CONFIGS["r8_map1"])
    sd = nvidia_state_dict(G)
    sd["synthesis.b8.conv0.weight"] = torch.zeros(32, 16, 3, 3)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(GeneratorLoadError, match=r"'synthesis\.b8\.conv0\.weight' has shape \[32, 16, 3, 3\]"):
        load_stylegan2_file(tmp_path / "bad.pt")
    del sd["synthesis.b8.conv0.weight"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(GeneratorLoadError, match=r"missing 'synthesis\.b8\.conv0\.weight'"):
        load_stylegan2_file(tmp_path / "missing.pt")
    ckpt = rosinality_checkpoint(G)
    ckpt["g_ema"]["convs.1.conv.modulation.weight"] = torch.zeros(5, 32)
    torch.save(ckpt, tmp_path / "bad_ros.pt")  # reported under rosinality's own name
    with pytest.raises(GeneratorLoadError, match=r"'convs\.1\.conv\.modulation\.weight' has shape \[5, 32\]"):
        load_stylegan2_file(tmp_path / "bad_ros.pt")
    sd = nvidia_state_dict(G)
    sd["synthesis.b32.conv1.weight"] = torch.zeros(8, 8, 3, 3)  # a gap: 4, 8, 32
    torch.save(sd, tmp_path / "gap.pt")
    with pytest.raises(GeneratorLoadError, match="not the sequence"):
        load_stylegan2_file(tmp_path / "gap.pt")


@pytest.mark.parametrize("up, demodulate", [(False, True), (True, True), (False, False)])
def test_batched_modulated_conv_is_each_samples(up: bool, demodulate: bool) -> None:
    """A batch takes NVIDIA's non-fused form (modulated activations, the shared kernel), one image the grouped conv of
    its own kernel: the same convolution to float rounding, in both StyleGAN generations."""
    from stylemix.generators import stylegan3
    from stylemix.generators.stylegan2 import modulated_conv2d
    g = torch.Generator().manual_seed(3)
    x, weight, styles = torch.randn(4, 6, 9, 9, generator=g), torch.randn(5, 6, 3, 3, generator=g), \
        torch.randn(4, 6, generator=g)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = (f[:, None] * f[None, :]) / 64
    batched = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, resample_filter=f)
    alone = torch.cat([modulated_conv2d(x[i:i + 1], weight, styles[i:i + 1], demodulate=demodulate, up=up,
                                        resample_filter=f) for i in range(4)])
    assert batched.shape == alone.shape == (4, 5, 18 if up else 9, 18 if up else 9)
    assert max_diff(batched, alone) < 1e-6 * alone.abs().max()  # float32 rounding of sums of 54 products
    if not up:
        gain = torch.tensor(0.7)
        batched = stylegan3.modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=2, input_gain=gain)
        alone = torch.cat([stylegan3.modulated_conv2d(x[i:i + 1], weight, styles[i:i + 1], demodulate=demodulate,
                                                      padding=2, input_gain=gain) for i in range(4)])
        assert batched.shape == (4, 5, 11, 11) and max_diff(batched, alone) < 1e-6 * alone.abs().max()
