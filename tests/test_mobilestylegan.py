"""MobileStyleGAN FFHQ: the torch port against OpenVINO running the same IR, and against the eval set.

Needs the ``random-face`` wheel (weights) and, for the parity tests, ``openvino``; each test skips with the reason
when one is missing. A 1024 px render costs ~0.5 s per image per core, so only a few seeds are rendered.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stylemix.errors import GeneratorLoadError
from stylemix.generators import Generator, load_generator, resize_image
from stylemix.generators import mobilestylegan as msg

EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "mobilestylegan-ffhq"
PARITY_SEEDS = (0, 1, 2)
OV_ATOL = 1e-3  # max |torch - OpenVINO f32| on [-1, 1] images


def seed_z(seed: int) -> torch.Tensor:
    """The eval convention: ``RandomState(seed).randn(1, 512)`` as float32."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, 512).astype(np.float32))


def to_uint8_256(img: torch.Tensor) -> np.ndarray:
    """The manifest's conversion: truncating uint8, then ``cv2.INTER_AREA`` to 256 px.

    ``img [1, 3, H, W]`` -> ``uint8 [256, 256, 3]``.
    """
    import cv2
    u8 = np.clip((img[0].permute(1, 2, 0).numpy() + 1) * 127.5, 0, 255).astype(np.uint8)
    return cv2.resize(u8, (256, 256), interpolation=cv2.INTER_AREA)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G() -> msg.MobileStyleGANGenerator:
    try:
        return load_generator("mobilestylegan-ffhq")
    except GeneratorLoadError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def renders(G: msg.MobileStyleGANGenerator) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """``seed -> (ws [1, 23, 512], img [1, 3, 1024, 1024])`` for the parity seeds, rendered once."""
    out = {}
    with torch.no_grad():
        for seed in PARITY_SEEDS:
            ws = G.mapping(seed_z(seed))
            out[seed] = ws, G.synthesis(ws)
    return out


class OpenVINOReference:
    """The wheel's IR in OpenVINO, forced to f32; the synthesis rebuilt with one input per style slot.

    The IR has a single ``style`` input feeding all 23 modulation MatMuls. For w+ parity each MatMul's input is
    rewired to its own Parameter ``style_k`` (k = the slot of :data:`msg.SLOT_MODULES` whose weight it multiplies),
    with openvino's graph API; the original ``style`` input still feeds the graph's shape computations only. Extra
    outputs expose two intermediate feature maps, to check :meth:`features` channel order.
    """

    FEATURE_BIASES = {4: "m.conv1.bias", 64: "m.layers.3.conv2.bias"}

    def __init__(self, ir_dir: Path) -> None:
        import openvino as ov
        import openvino.opset13 as ops
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
        self.mapping = core.compile_model(core.read_model(str(ir_dir / "MappingNetwork.xml")), "CPU", config)
        model = core.read_model(str(ir_dir / "SynthesisNetwork.xml"))
        (style,) = model.get_parameters()
        slot_of = {f"{name}.modulation.weight": k for k, name in enumerate(msg.SLOT_MODULES)}
        slot_params = [ops.parameter([1, 512], ov.Type.f32, name=f"style_{k}") for k in range(len(slot_of))]
        rewired = 0
        for target in list(style.output(0).get_target_inputs()):
            node = target.get_node()
            if node.get_type_name() == "MatMul":
                weight = node.input_value(1).get_node().get_friendly_name()
                target.replace_source_output(slot_params[slot_of[weight]].output(0))
                rewired += 1
        assert rewired == len(slot_params), f"rewired {rewired} modulation inputs, expected {len(slot_params)}"
        results = list(model.get_results())
        for resolution, bias_name in self.FEATURE_BIASES.items():
            (add,) = [op for op in model.get_ops() if op.get_type_name() == "Add"
                      and op.input_value(1).get_node().get_friendly_name() == bias_name]
            (prelu,) = [t.get_node() for t in add.output(0).get_target_inputs()]
            results.append(ops.result(prelu.output(0)))
        wplus = ov.Model(results, [style, *slot_params], "SynthesisNetworkWPlus")
        self.synthesis = core.compile_model(wplus, "CPU", config)

    def map(self, z: np.ndarray) -> np.ndarray:
        """``z [1, 512] -> w [1, 512]``."""
        return self.mapping([z])[0]

    def synthesize(self, ws: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """``ws [1, 23, 512]`` -> ``(img [1, 3, 1024, 1024], {resolution: features [1, C, r, r]})``."""
        out = self.synthesis([ws[:, 0], *(ws[:, k] for k in range(ws.shape[1]))])
        feats = {r: out[k + 1] for k, r in enumerate(self.FEATURE_BIASES)}
        return out[0], feats


@pytest.fixture(scope="module")
def ov_ref(G: msg.MobileStyleGANGenerator) -> OpenVINOReference:
    pytest.importorskip("openvino", reason="openvino is needed for the parity tests (pip install openvino)")
    return OpenVINOReference(msg.find_ir_dir())


# --- loading --------------------------------------------------------------------------------------------------


def test_missing_wheel_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(msg.importlib.metadata, "distribution", not_installed)
    with pytest.raises(GeneratorLoadError, match=r"pip install --no-deps random-face==2021\.7\.21\.1"):
        msg.find_ir_dir()


def test_ir_files_are_the_eval_sets(G: msg.MobileStyleGANGenerator) -> None:
    manifest_path = EVAL_DIR / "manifest.json"
    if not manifest_path.is_file():
        pytest.skip(f"no eval manifest at {manifest_path}")
    expected = json.loads(manifest_path.read_text())["generator_file_sha256"]
    ir_dir = msg.find_ir_dir()
    for name, sha in expected.items():
        assert hashlib.sha256((ir_dir / name).read_bytes()).hexdigest() == sha, name


def test_protocol_and_layout(G: msg.MobileStyleGANGenerator) -> None:
    assert isinstance(G, Generator)
    assert (G.z_dim, G.w_dim, G.c_dim, G.num_ws, G.resolution) == (512, 512, 0, 23, 1024)
    assert G.family == "mobilestylegan"
    layout = G.style_layout
    assert layout.num_ws == 23 and layout.default_crossover == type(G).DEFAULT_CROSSOVER
    assert layout.slot_resolutions == (4, *[8 << i for i in range(7) for _ in range(3)], 1024)
    assert layout.groups == {"coarse": (0, 4), "middle": (4, 10), "fine": (10, 23)}
    assert G.describe()["num_ws"] == 23


# --- mapping --------------------------------------------------------------------------------------------------


def test_mapping_matches_eval_w(G: msg.MobileStyleGANGenerator) -> None:
    w_path = EVAL_DIR / "w.npy"
    if not w_path.is_file():
        pytest.skip(f"no eval latents at {w_path}")
    w_ref = np.load(w_path)
    z = torch.cat([seed_z(seed) for seed in range(len(w_ref))])
    with torch.no_grad():
        ws = G.mapping(z)
    assert ws.shape == (len(w_ref), 23, 512)
    assert torch.equal(ws[:, 0], ws[:, -1])
    np.testing.assert_allclose(ws[:, 0].numpy(), w_ref, rtol=0, atol=1e-5)


def test_mapping_matches_openvino(G: msg.MobileStyleGANGenerator, ov_ref: OpenVINOReference) -> None:
    for seed in (3, 17):
        z = seed_z(seed)
        with torch.no_grad():
            w = G.mapping(z)[:, 0].numpy()
        np.testing.assert_allclose(w, ov_ref.map(z.numpy()), rtol=0, atol=1e-5)


def test_truncation_towards_w_avg(G: msg.MobileStyleGANGenerator) -> None:
    z = seed_z(5)
    with torch.no_grad():
        ws = G.mapping(z)
        assert torch.allclose(G.mapping(z, truncation_psi=0.0), G.w_avg.expand(1, 23, 512))
        half = G.mapping(z, truncation_psi=0.5, truncation_cutoff=7)
    assert torch.allclose(half[:, :7], (ws[:, :7] + G.w_avg) / 2, atol=1e-6)
    assert torch.equal(half[:, 7:], ws[:, 7:])
    assert torch.isfinite(G.w_avg).all() and G.w_avg.shape == (512,)


# --- synthesis: parity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", PARITY_SEEDS)
def test_synthesis_matches_openvino(seed: int, renders: dict, ov_ref: OpenVINOReference) -> None:
    ws, img = renders[seed]
    ref, _ = ov_ref.synthesize(ws.numpy())
    assert img.shape == (1, 3, 1024, 1024)
    assert np.abs(img.numpy() - ref).max() <= OV_ATOL


def test_mixed_wplus_matches_openvino(G: msg.MobileStyleGANGenerator, renders: dict,
                                      ov_ref: OpenVINOReference) -> None:
    """Two w+ mixes: a crossover mix, and slots drawn at random from three seeds (every slot must matter)."""
    (ws_a, _), (ws_b, _), (ws_c, _) = (renders[s] for s in PARITY_SEEDS)
    crossover_mix = torch.cat([ws_a[:, :7], ws_b[:, 7:]], dim=1)
    pick = torch.from_numpy(np.random.RandomState(0).randint(0, 3, size=23))
    slot_mix = torch.stack([ws_a, ws_b, ws_c])[pick, :, torch.arange(23)].permute(1, 0, 2)
    for ws in (crossover_mix, slot_mix):
        with torch.no_grad():
            img = G.synthesis(ws)
            feats = {r: G.features(ws, r) for r in OpenVINOReference.FEATURE_BIASES}
        ref, ref_feats = ov_ref.synthesize(ws.numpy())
        assert np.abs(img.numpy() - ref).max() <= OV_ATOL
        for r, f in feats.items():
            assert f.shape == ref_feats[r].shape
            np.testing.assert_allclose(f.numpy(), ref_feats[r], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("seed", PARITY_SEEDS)
def test_images_match_eval_pngs(seed: int, renders: dict) -> None:
    import cv2
    png = EVAL_DIR / f"seed{seed:04d}_img.png"
    if not png.is_file():
        pytest.skip(f"no eval image at {png}")
    ref = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    diff = np.abs(to_uint8_256(renders[seed][1]).astype(int) - ref.astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3  # a handful of pixels sit on a rounding boundary


# --- hooks ----------------------------------------------------------------------------------------------------


def test_prefix_suffix_equals_synthesis(G: msg.MobileStyleGANGenerator, renders: dict) -> None:
    ws_a, _ = renders[PARITY_SEEDS[0]]
    others = torch.cat([renders[s][0] for s in PARITY_SEEDS[1:]])
    with torch.no_grad():
        for crossover in (0, 4, 13, 23):
            variants = torch.cat([ws_a[:, :crossover].expand(len(others), -1, -1), others[:, crossover:]], dim=1)
            state = G.synthesis_prefix(ws_a, crossover)
            assert state.hidden.shape[0] == 1
            img = G.synthesis_suffix(state, variants)
            assert img.shape == (2, 3, 1024, 1024)
            # equal up to float rounding: conv kernels pick different blockings for batch 1 and batch 2
            torch.testing.assert_close(img, G.synthesis(variants), rtol=0, atol=1e-4)
        # the state is reusable: a second suffix from the same prefix gives the same images
        state = G.synthesis_prefix(ws_a, 7)
        first = G.synthesis_suffix(state, ws_a)
        assert torch.equal(first, G.synthesis_suffix(state, ws_a))
    torch.testing.assert_close(first, renders[PARITY_SEEDS[0]][1], rtol=0, atol=1e-5)


def test_early_exit_is_the_downsampled_image(G: msg.MobileStyleGANGenerator, renders: dict) -> None:
    ws, full = renders[PARITY_SEEDS[0]]
    state = G.synthesis_prefix(ws, G.style_layout.default_crossover)
    with torch.no_grad():
        for resolution in (512, 128):
            img = G.synthesis_suffix(state, ws, resolution=resolution)
            assert img.shape == (1, 3, resolution, resolution)
            torch.testing.assert_close(img, resize_image(full, resolution), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="power of two"):
        G.synthesis_suffix(state, ws, resolution=300)


def test_features(G: msg.MobileStyleGANGenerator, renders: dict) -> None:
    ws = torch.cat([renders[s][0] for s in PARITY_SEEDS[:2]])
    with torch.no_grad():
        for resolution, channels in ((4, 512), (8, 512), (32, 512), (128, 256)):
            f = G.features(ws, resolution)
            assert f.shape == (2, channels, resolution, resolution) and f.is_contiguous()
            assert torch.isfinite(f).all()
        plain = G.features(ws, 16)
        torch.testing.assert_close(G.features(ws[1:], 16), plain[1:], rtol=0, atol=1e-5)
        assert not torch.equal(G.features(ws, 16, noise_mode="none"), plain)
        assert G.features(ws, 16, noise_mode="random").shape == plain.shape
    with pytest.raises(ValueError, match="features exist at"):
        G.features(ws, 1024)
    with pytest.raises(ValueError, match="noise_mode"):
        G.features(ws, 8, noise_mode="bogus")


def test_features_suffix_shares_prefixes(G: msg.MobileStyleGANGenerator, renders: dict) -> None:
    from stylemix.vectors import project_channels
    base = renders[PARITY_SEEDS[0]][0]
    other = renders[PARITY_SEEDS[1]][0]
    with torch.no_grad():
        states = G.synthesis_prefixes(base, [10, 4, 7, 15])
        assert sorted(states) == [4, 7, 10, 15]
        for c, state in states.items():
            torch.testing.assert_close(state.hidden, G.synthesis_prefix(base, c).hidden, rtol=0, atol=1e-6)
            mixed = torch.cat([base, base])
            mixed[1, c:] = other[0, c:]  # variant 0 is the base, variant 1 takes other's fine styles
            for resolution in (16, 64):
                want = G.features(mixed, resolution)
                torch.testing.assert_close(G.features_suffix(state, mixed, resolution), want, rtol=0, atol=1e-4)
                torch.testing.assert_close(G.features_suffix(state, mixed, resolution, feature_dim=16),
                                           project_channels(want, 16), rtol=1e-4, atol=1e-4)


def test_inverse_haar_in_bfloat16_is_the_same_transform(G: msg.MobileStyleGANGenerator) -> None:
    """The bfloat16 path (one small matmul per pixel quad) sums what the transposed conv sums: on bfloat16 inputs,
    whose products by the +-1/2 taps are exact, both agree to the float32 result's last bit of bfloat16."""
    idwt = G.synthesis_network.idwt
    bands = torch.randn(2, 16, 5, 7).bfloat16().contiguous(memory_format=torch.channels_last)
    want = idwt(bands.float())
    got = idwt(bands)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape == (2, 4, 10, 14)
    torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-2)
    assert (got.float() - want).abs().max() <= want.abs().max() * 2 ** -7


def test_bfloat16_variants_declared_and_close(G: msg.MobileStyleGANGenerator, renders: dict) -> None:
    from stylemix import render
    from stylemix.config import SegmentConfig
    assert G.variant_precision == "bfloat16"
    stacks = []
    for precision in ("float32", "bfloat16"):
        cfg = SegmentConfig(variants=8, precision=precision).resolve(G)
        with torch.no_grad():
            base, mixed, crossovers = render.style_latents(G, PARITY_SEEDS[0], cfg)
            states = G.synthesis_prefixes(base, sorted(set(crossovers.tolist())))
            stacks.append(render.variant_stack(G, states, mixed, crossovers, cfg))
    err = (stacks[1] - stacks[0]).norm() / stacks[0].norm()
    assert stacks[1].dtype == torch.float32 and 0 < err < 0.02


def test_synthesis_suffix_features_is_bit_equal_to_separate_renders(G: msg.MobileStyleGANGenerator,
                                                                     renders: dict) -> None:
    """The base image's feature maps taken during its synthesis are the values the boundary stage and the part bank
    rendered separately before (features from the start, or from a shallower prefix), bit for bit, and the image
    is synthesis_suffix's."""
    from stylemix import render
    ws = renders[PARITY_SEEDS[0]][0]
    with torch.inference_mode():
        states = G.synthesis_prefixes(ws, [4, 5, 6, 7])
        image, feats = G.synthesis_suffix_features(states[7], ws, [4, 32, 64])
        assert sorted(feats) == [32, 64]  # 4 px lies before the state: left to the caller
        assert torch.equal(image, G.synthesis_suffix(states[7], ws))
        for r in (32, 64):
            assert torch.equal(feats[r], render.image_features(G, ws, r))
            assert torch.equal(feats[r], G.features_suffix(states[4], ws, r, None))
        image2, all_feats = render.synthesis_suffix_features(G, states[7], ws, [4, 64])
        assert torch.equal(image2, image) and sorted(all_feats) == [4, 64]
        assert torch.equal(all_feats[4], render.image_features(G, ws, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(G: msg.MobileStyleGANGenerator, renders: dict, no_tf32: None) -> None:
    ws, img = renders[PARITY_SEEDS[0]]
    G_cuda = load_generator("mobilestylegan-ffhq", device="cuda")
    with torch.no_grad():
        out = G_cuda.synthesis(ws.cuda()).cpu()
    assert (out - img).abs().max() <= OV_ATOL
