"""Network files: every pickle protocol, TensorFlow StyleGAN2 pickles, refused families and globals, safetensors."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stylemix.errors import GeneratorLoadError
from stylemix.generators import files
from stylemix.generators.convert import convert_to_safetensors
from stylemix.generators.files import load_network_file
from stylemix.generators.pickles import PersistentRecord, TFNetworkRecord, classify_network, read_pickle
from stylemix.generators.stylegan2 import StyleGAN2Generator
from stylemix.generators.stylegan2_formats import flatten_record, nvidia_state_dict
from stylemix.generators.stylegan2_tf import tf_static_kwargs, tf_variables
from test_stylegan2 import (IMG_ATOL, WS_ATOL, capture, inputs, max_diff, nvidia_outputs,
                            random_generator, write_nvidia_pickle)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
NVIDIA = SHARED / "stylegan2" / "nvidia_small"
ROSINALITY = SHARED / "stylegan2" / "rosinality_small"
TF_SMALL = SHARED / "stylegan2_tf" / "tf_small"
SG3 = SHARED / "stylegan3"
needs_fixtures = pytest.mark.skipif(not (TF_SMALL / "expected.npz").is_file() or not (SG3 / "t_small").is_dir(),
                                    reason=f"fixtures not found under {SHARED}")

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------------------
# Writing pickles in foreign layouts (stand-in modules named like the originals exist only while pickling)


class _StandIns:
    """``sys.modules`` entries named like NVIDIA's modules, present only inside the ``with`` block."""

    def __init__(self, **modules: types.ModuleType) -> None:
        self.modules = modules

    def __enter__(self) -> None:
        clash = [m for m in self.modules if m in sys.modules]
        assert not clash, f"real modules {clash} are imported; the stand-ins would shadow them"
        sys.modules.update(self.modules)

    def __exit__(self, *exc: Any) -> None:
        for name in self.modules:
            del sys.modules[name]


class Network:
    """Pickles like ``dnnlib.tflib.network.Network``: NEWOBJ of the class, then BUILD with its state dict."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def __getstate__(self) -> dict[str, Any]:
        return self._state


def tf_network(name: str, func: str, kwargs: dict[str, Any], variables: dict[str, Any],
               components: dict[str, Network] | None = None, version: int = 4) -> Network:
    state = {"version": version, "name": name, "static_kwargs": kwargs, "components": components or {},
             "build_module_src": "open(__import__('os').environ['PICKLE_CANARY_PATH'], 'a').write('ran')\n",
             "build_func_name": func, "variables": list(variables.items())}
    if version >= 5:
        state.update(input_shapes=[[None, 1]], output_shapes=[[None, 1]], input_names=["x"], output_names=["y"])
    return Network(state)


def write_tf_pickle(path: Path, nets: Any, protocol: int = 3) -> None:
    module = types.ModuleType("dnnlib.tflib.network")
    Network.__module__, Network.__qualname__ = module.__name__, "Network"
    module.Network = Network
    with _StandIns(dnnlib=types.ModuleType("dnnlib"), **{"dnnlib.tflib": types.ModuleType("dnnlib.tflib"),
                                                          "dnnlib.tflib.network": module}):
        path.write_bytes(pickle.dumps(nets, protocol=protocol))


def tf_gs(G: StyleGAN2Generator, version: int = 4, **kwargs: Any) -> Network:
    """``G`` as the TensorFlow ``G_main`` network NVIDIA's StyleGAN2 / StyleGAN2-ADA TF code pickles."""
    var = tf_variables(G)
    static = {**tf_static_kwargs(G), "truncation_psi": 0.5, **kwargs}
    synthesis_func = "G_synthesis" if version >= 5 else "G_synthesis_stylegan2"
    return tf_network("G", "G_main", static, var[""], version=version, components={
        "synthesis": tf_network("G_synthesis", synthesis_func, static, var["synthesis"], version=version),
        "mapping": tf_network("G_mapping", "G_mapping", static, var["mapping"], version=version)})


def tf_triple(G: StyleGAN2Generator, version: int = 4, **kwargs: Any) -> tuple[Network, Network, Network]:
    """``(G, D, Gs)``: the training copy is perturbed, so converting the wrong element fails."""
    noisy = random_generator(99, **{k: v for k, v in G.config().items() if k != "family"})
    D = tf_network("D", "D_stylegan2", {"resolution": G.resolution}, {"Output/weight": np.zeros([4, 1], np.float32)})
    return tf_gs(noisy, version, **kwargs), D, tf_gs(G, version, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Pickle protocols


@needs_fixtures
@pytest.mark.parametrize("folder", ["t_small", "r_small"])
def test_stylegan3_snapshots_read_the_same_in_every_protocol(folder: str) -> None:
    # StyleGAN3 itself is built elsewhere; here every protocol must give the same record as protocol 4.
    ref = read_pickle(SG3 / folder / "network-snapshot.pkl")
    kind, record = classify_network(ref, "p4")
    assert kind == "stylegan3" and record.class_name == "Generator"
    ref_sd = flatten_record(record)
    sd = torch.load(SG3 / folder / "weights.pt", weights_only=True)
    assert sorted(ref_sd) == sorted(sd) and all(torch.equal(ref_sd[k], sd[k]) for k in sd)  # G_ema, not G
    others = sorted((SG3 / folder).glob("network-snapshot-p*.pkl"))
    assert len(others) == (3 if folder == "t_small" else 2)
    for path in others:
        obj = read_pickle(path)
        assert sorted(obj) == sorted(ref)
        kind, other = classify_network(obj, path.name)
        assert kind == "stylegan3"
        other_sd = flatten_record(other)
        assert sorted(other_sd) == sorted(ref_sd) and all(torch.equal(other_sd[k], ref_sd[k]) for k in ref_sd)
        assert_same_data(other, record, path.name)
        assert_same_data(obj["training_set_kwargs"], ref["training_set_kwargs"], path.name)


def assert_same_data(a: Any, b: Any, where: str) -> None:
    """Recursive equality of unpickled data: records, dicts, sequences, sets, tensors, numpy values."""
    if isinstance(a, PersistentRecord):
        assert isinstance(b, PersistentRecord) and a.class_name == b.class_name, where
        assert_same_data(a.state, b.state, f"{where}.{a.class_name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)), (where, list(a), list(b))
        for k in a:
            assert_same_data(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_data(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, (np.ndarray, np.generic)):
        assert type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b), where
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@torch.no_grad()
def test_every_protocol_loads(protocol: int, tmp_path: Path) -> None:
    G = random_generator(11, z_dim=16, c_dim=2, w_dim=16, resolution=16, mapping_layers=2, channel_base=64,
                         channel_max=16)
    write_nvidia_pickle(G, tmp_path / "snap.pkl", protocol=protocol,
                        entries={"extras": {"ids": frozenset({1, 2}), "blob": b"\x00\xffab", "empty": b"",
                                            "gain": np.float64(0.5), "size": np.arange(3, dtype=np.int64)}})
    obj = read_pickle(tmp_path / "snap.pkl")
    assert obj["extras"]["ids"] == frozenset({1, 2}) and obj["extras"]["blob"] == b"\x00\xffab"
    assert obj["extras"]["empty"] == b"" and obj["extras"]["gain"] == 0.5
    assert np.array_equal(obj["extras"]["size"], np.arange(3))
    H = load_network_file(tmp_path / "snap.pkl")
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in H.state_dict().items())


# ----------------------------------------------------------------------------------------------------------------
# Refused globals and families


def _evil_objects(marker: Path) -> dict[str, Any]:
    """Objects whose unpickling would run code, with the global each one names."""

    class Reduce:
        def __init__(self, fn: Any, args: tuple) -> None:
            self.fn, self.args = fn, args

        def __reduce__(self) -> tuple:
            return self.fn, self.args

    cmd = f"touch {marker}"
    return {
        f"{os.system.__module__}.system": Reduce(os.system, (cmd,)),
        "builtins.eval": Reduce(builtins.eval, (f"__import__('os').system({cmd!r})",)),
        "builtins.exec": Reduce(builtins.exec, (f"__import__('os').system({cmd!r})",)),
        "subprocess.call": Reduce(subprocess.call, (["touch", str(marker)],)),
        "builtins.getattr": Reduce(getattr, ("os", "system")),
        "builtins.__import__": Reduce(builtins.__import__, ("os",)),
    }


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_code_running_globals_are_refused_and_named(protocol: int, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for name, evil in _evil_objects(marker).items():
        for payload in (evil, {"G_ema": evil}, {"G": {"nested": [evil]}, "G_ema": None}):
            path = tmp_path / "evil.pkl"
            path.write_bytes(pickle.dumps(payload, protocol=protocol))
            with pytest.raises(GeneratorLoadError) as info:
                load_network_file(path)
            message = str(info.value)
            # protocols 0-2 write Python 2 names (__builtin__.eval, commands.call): reported as Python 3 knows them
            assert f"forbidden global '{name}'" in message and "\n" not in message, message
    assert not marker.exists()


def test_latin1_bytes_only(tmp_path: Path) -> None:
    # _codecs.encode is allowed only as protocol 2 uses it; another encoding (or a non-str) is refused.
    (tmp_path / "enc.pkl").write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00utf-8\x86R.")
    with pytest.raises(GeneratorLoadError, match="only latin-1"):
        load_network_file(tmp_path / "enc.pkl")


@torch.no_grad()
def test_unsupported_families_are_named(tmp_path: Path) -> None:
    G = random_generator(12, z_dim=8, w_dim=8, resolution=8, mapping_layers=1, channel_base=32, channel_max=8)

    def refused(name: str, obj: Any, match: str, protocol: int = 4) -> None:
        (tmp_path / name).write_bytes(pickle.dumps(obj, protocol=protocol))
        with pytest.raises(GeneratorLoadError, match=match) as info:
            load_network_file(tmp_path / name)
        assert "\n" not in str(info.value)

    # A StyleGAN-XL snapshot: its mapping projects a class embedding (embed_proj); the embedding is a plain
    # torch.nn.Embedding, a forbidden global, which the message names beside the family.
    mapping = G.mapping
    mapping.embed_proj = torch.nn.Linear(4, 8)
    mapping.embed = torch.nn.Embedding(10, 4)
    try:
        write_nvidia_pickle(G, tmp_path / "xl_records.pkl")
        write_nvidia_pickle(G, tmp_path / "xl.pkl", raw=("Embedding",))
    finally:
        del mapping.embed_proj, mapping.embed
    with pytest.raises(GeneratorLoadError, match=r"^xl_records.pkl: a StyleGAN-XL network"):
        load_network_file(tmp_path / "xl_records.pkl")
    with pytest.raises(GeneratorLoadError,
                       match=r"StyleGAN-XL.*forbidden global 'torch\.nn\.modules\.sparse\.Embedding'"):
        load_network_file(tmp_path / "xl.pkl")
    # Discriminators alone, TensorFlow or NVIDIA PyTorch.
    write_tf_pickle(tmp_path / "tf_d.pkl", tf_network("D", "D_stylegan2", {}, {}))
    with pytest.raises(GeneratorLoadError, match="TensorFlow discriminator"):
        load_network_file(tmp_path / "tf_d.pkl")
    disc = PersistentRecord("Discriminator", {"_modules": {}})
    for obj in ({"D": disc}, disc):
        with pytest.raises(GeneratorLoadError, match="discriminator"):
            classify_network(obj, "d.pkl")
    # StyleGAN (version 1) TensorFlow pickles: G_style with G_synthesis, no modulated convolutions.
    v1 = tf_network("G", "G_style", {"resolution": 8}, {"lod": np.float32(0)}, version=3, components={
        "synthesis": tf_network("G_synthesis", "G_synthesis", {}, {"4x4/Const/const": np.zeros([1, 8, 4, 4])}),
        "mapping": tf_network("G_mapping", "G_mapping", {}, {})})
    write_tf_pickle(tmp_path / "v1.pkl", (v1, v1, v1))
    with pytest.raises(GeneratorLoadError, match=r"TensorFlow StyleGAN \(version 1\)"):
        load_network_file(tmp_path / "v1.pkl")
    # Anything else.
    refused("list.pkl", [1, 2, 3], "unrecognised pickle content")
    refused("dict.pkl", {"weights": [1.0]}, "unknown checkpoint family")
    with pytest.raises(GeneratorLoadError, match="neither StyleGAN2 blocks"):
        classify_network({"G_ema": PersistentRecord("Generator", {"_modules": {
            "mapping": PersistentRecord("MappingNetwork", {}), "synthesis": PersistentRecord("Net", {})}})}, "x")


# ----------------------------------------------------------------------------------------------------------------
# TensorFlow StyleGAN2


def tf_outputs(G: StyleGAN2Generator, E: Any) -> dict[str, torch.Tensor]:
    """Every array of tf_small/expected.npz: the NVIDIA set, with conv1 layer traces, without img_convclamp1."""
    out = nvidia_outputs(G, E, G)
    del out["img_convclamp1"]
    w0 = out["ws"][0:1]
    names = [f"synthesis.b{r}.conv1" for r in G.synthesis.block_resolutions]
    trace, remove = capture(G, names)
    G.synthesis(w0)
    remove()
    out.update({f"trace.{k}": v for k, v in trace.items()})
    return out


@needs_fixtures
@torch.no_grad()
def test_tensorflow_pickle_parity() -> None:
    data = (TF_SMALL / "network-tf.pkl").read_bytes()
    assert b"PICKLE_CANARY_PATH" in data  # the stub that must never run
    G = load_network_file(TF_SMALL / "network-tf.pkl")
    assert G.family == "stylegan2-tf" and G.conv_clamp is None and G.synthesis.architecture == "skip"
    sd = torch.load(TF_SMALL / "weights.pt", weights_only=True)
    ours = G.state_dict()
    assert sorted(ours) == sorted(sd) and all(torch.equal(ours[k], sd[k]) for k in sd)  # the converter's, bit for bit
    E = np.load(TF_SMALL / "expected.npz")
    got = tf_outputs(G, E)
    assert sorted(got) == sorted(E.files)
    diffs = {k: max_diff(got[k], E[k]) for k in E.files}
    bad = {k: d for k, d in diffs.items() if d > (WS_ATOL if k.startswith(("ws", "z")) else IMG_ATOL)}
    assert not bad, bad
    assert diffs["ws"] == 0 and diffs["img"] < 1e-5
    info = G.describe()
    assert info["family"] == "stylegan2-tf" and info["sha256"] == hashlib.sha256(data).hexdigest()


TF_CONFIGS = {
    "skip_r16_map1": dict(z_dim=16, w_dim=16, resolution=16, mapping_layers=1, channel_base=128, channel_max=16,
                          conv_clamp=None),
    "resnet_r32_map3": dict(z_dim=16, w_dim=24, resolution=32, mapping_layers=3, channel_base=256, channel_max=16,
                            layer_features=40, architecture="resnet", conv_clamp=None),
    "ada_conditional_r8": dict(z_dim=12, c_dim=3, w_dim=16, resolution=8, mapping_layers=2, channel_base=64,
                               channel_max=16, embed_features=10, layer_features=20, conv_clamp=256.0),
    "resnet_r64_no_noise": dict(z_dim=8, w_dim=8, resolution=64, mapping_layers=2, channel_base=256, channel_max=8,
                                architecture="resnet", use_noise=False, conv_clamp=None),
}


@pytest.mark.parametrize("config", list(TF_CONFIGS), ids=list(TF_CONFIGS))
@torch.no_grad()
def test_tensorflow_round_trips(config: str, tmp_path: Path) -> None:
    cfg = TF_CONFIGS[config]
    G = random_generator(13, **cfg)
    version = 5 if G.c_dim else 4  # the conditional LabelEmbed layout is StyleGAN2-ADA's (state version 5)
    write_tf_pickle(tmp_path / "tf.pkl", tf_triple(G, version))
    H = load_network_file(tmp_path / "tf.pkl")
    assert H.config() == {**G.config(), "family": "stylegan2-tf"}
    assert H.conv_clamp == cfg["conv_clamp"] and H.synthesis.architecture == G.synthesis.architecture
    theirs = G.state_dict()
    for k, v in H.state_dict().items():
        assert torch.allclose(v, theirs[k], rtol=0, atol=1e-6), k  # mod_bias goes through -1 / +1
    z, c = inputs(G, batch=2)
    ws = G.mapping(z, c, truncation_psi=0.7)
    assert max_diff(H.mapping(z, c, truncation_psi=0.7), ws) < WS_ATOL
    assert max_diff(H.synthesis(ws), G.synthesis(ws)) < IMG_ATOL
    # a bare Gs (not in a tuple) is read too
    write_tf_pickle(tmp_path / "gs.pkl", tf_gs(G, version))
    assert max_diff(load_network_file(tmp_path / "gs.pkl").synthesis(ws), G.synthesis(ws)) < IMG_ATOL


@torch.no_grad()
def test_tensorflow_refusals(tmp_path: Path) -> None:
    G = random_generator(14, z_dim=8, c_dim=2, w_dim=8, resolution=8, mapping_layers=1, channel_base=32,
                         channel_max=8)

    def refused(nets: Any, match: str) -> None:
        write_tf_pickle(tmp_path / "tf.pkl", nets)
        with pytest.raises(GeneratorLoadError, match=match) as info:
            load_network_file(tmp_path / "tf.pkl")
        assert "\n" not in str(info.value)

    refused(tf_triple(G, 5, fmap_decay=1.0), "unknown TensorFlow kwarg 'fmap_decay'")
    refused(tf_triple(G, 3), "state version 3")
    concat = tf_gs(G, 4)
    mapping = concat._state["components"]["mapping"]._state
    mapping["variables"] = [(k.replace("LabelEmbed", "LabelConcat"), v) for k, v in mapping["variables"]]
    refused((concat, concat, concat), "LabelConcat")
    orig = tf_gs(G, 4)
    synthesis = orig._state["components"]["synthesis"]._state
    synthesis["variables"] = [(k.replace("8x8/ToRGB", "ToRGB_lod0"), v) for k, v in synthesis["variables"]]
    refused(orig, "'orig' architecture")
    refused(tf_gs(G, 4, nonlinearity="relu"), "only 'lrelu'")
    broken = tf_gs(G, 4)
    synthesis = broken._state["components"]["synthesis"]._state
    synthesis["variables"] = [(k, v) for k, v in synthesis["variables"] if k != "8x8/Conv1/mod_weight"]
    refused(broken, r"missing 'synthesis/8x8/Conv1/mod_weight'")


@pytest.mark.parametrize("protocol", [0, 2, 5])
@torch.no_grad()
def test_tensorflow_pickles_in_other_protocols(protocol: int, tmp_path: Path) -> None:
    G = random_generator(15, **TF_CONFIGS["skip_r16_map1"])
    write_tf_pickle(tmp_path / "tf.pkl", tf_triple(G), protocol=protocol)
    ws = G.mapping(inputs(G, batch=1)[0])
    assert max_diff(load_network_file(tmp_path / "tf.pkl").synthesis(ws), G.synthesis(ws)) < IMG_ATOL


def test_tf_record_drops_module_source() -> None:
    rec = TFNetworkRecord()
    rec.__setstate__({"version": 5, "name": "G", "build_module_src": "raise SystemExit", "variables": [("a", 1)],
                      "input_names": ["x"]})
    assert rec.variables == {"a": 1} and rec.extra == {"input_names": ["x"]}
    assert "build_module_src" not in vars(rec) and "raise" not in repr(vars(rec))


# ----------------------------------------------------------------------------------------------------------------
# safetensors


@needs_fixtures
@pytest.mark.parametrize("source", ["stylegan2/nvidia_small/network-snapshot.pkl",
                                    "stylegan2/rosinality_small/checkpoint.pt", "stylegan2_tf/tf_small/network-tf.pkl",
                                    "stylegan3/t_small/network-snapshot-p3.pkl",
                                    "stylegan3/r_small/network-snapshot-p2.pkl"])
@torch.no_grad()
def test_safetensors_conversion_is_exact(source: str, tmp_path: Path) -> None:
    from safetensors import safe_open

    from stylemix.identity import generator_id
    src = SHARED / source
    out = tmp_path / "G.safetensors"
    summary = convert_to_safetensors(src, out)
    src_sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert summary["source_sha256"] == src_sha and summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    G, H = load_network_file(src), load_network_file(out)
    assert type(H) is type(G) and H.family == G.family and H.config() == G.config()
    assert H.style_layout == G.style_layout and getattr(H, "w_avg_source", None) == getattr(G, "w_avg_source", None)
    assert generator_id(H) == generator_id(G)  # one network, one id, whatever file holds it
    z, c = inputs(G, batch=3, seed=4)
    for psi, cutoff in ((1.0, None), (0.6, G.num_ws // 2)):
        ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        assert torch.equal(H.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff), ws)
        for mode in ("const", "none"):
            assert torch.equal(H.synthesis(ws, noise_mode=mode), G.synthesis(ws, noise_mode=mode))
    with safe_open(out, framework="pt") as f:
        meta = f.metadata()
    assert meta["family"] == G.family and json.loads(meta["config"]) == json.loads(json.dumps(G.config()))
    assert meta["source_sha256"] == src_sha and meta["source_name"] == src.name
    info = H.describe()
    assert info["sha256"] == summary["sha256"] and info["converted_from"]["sha256"] == src_sha
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@torch.no_grad()
def test_safetensors_resnet_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    G = random_generator(16, **TF_CONFIGS["resnet_r32_map3"])
    torch.save(nvidia_state_dict(G), tmp_path / "G.pt")
    convert_to_safetensors(tmp_path / "G.pt", tmp_path / "G.safetensors")
    H = load_network_file(tmp_path / "G.safetensors")
    ws = G.mapping(inputs(G)[0])
    assert torch.equal(H.synthesis(ws), G.synthesis(ws)) and H.synthesis.architecture == "resnet"
    with pytest.raises(GeneratorLoadError, match="exists"):
        convert_to_safetensors(tmp_path / "G.pt", tmp_path / "G.safetensors")
    with pytest.raises(GeneratorLoadError, match=r"must end in \.safetensors"):
        convert_to_safetensors(tmp_path / "G.pt", tmp_path / "G.pkl")
    with pytest.raises(GeneratorLoadError, match="'shapes'"):
        convert_to_safetensors("shapes", tmp_path / "shapes.safetensors")
    # a failure while writing leaves neither the output nor a temporary file
    def failing(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        convert_to_safetensors(tmp_path / "G.pt", tmp_path / "new.safetensors")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G.pt", "G.safetensors"]
    # a bare state dict saved as safetensors (no stylemix metadata) is read as a state dict
    save_file({k: v.contiguous() for k, v in nvidia_state_dict(G).items()}, str(tmp_path / "bare.safetensors"))
    assert torch.equal(load_network_file(tmp_path / "bare.safetensors").synthesis(ws), G.synthesis(ws))
    # metadata naming an unknown family, or tensors that do not fit it, are refused with one line
    tensors = {k: v.contiguous() for k, v in nvidia_state_dict(G).items()}
    meta = {"format": files.SAFETENSORS_FORMAT, "format_version": "1", "family": "evil", "config": "{}",
            "style_layout": "{}"}
    save_file(tensors, str(tmp_path / "evil.safetensors"), metadata=meta)
    with pytest.raises(GeneratorLoadError, match="unknown generator family 'evil'"):
        load_network_file(tmp_path / "evil.safetensors")
    meta.update(family="stylegan2", config=json.dumps(G.config()))
    del tensors["synthesis.b8.conv1.weight"]
    save_file(tensors, str(tmp_path / "short.safetensors"), metadata=meta)
    with pytest.raises(GeneratorLoadError, match=r"missing 'synthesis\.b8\.conv1\.weight'"):
        load_network_file(tmp_path / "short.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "G.safetensors").read_bytes()[:300])
    with pytest.raises(GeneratorLoadError, match="safetensors"):
        load_network_file(tmp_path / "cut.safetensors")


@needs_fixtures
def test_cli_convert_and_info(tmp_path: Path) -> None:
    from stylemix.cli import main

    out = tmp_path / "tf.safetensors"
    r = CliRunner().invoke(main, ["convert", str(TF_SMALL / "network-tf.pkl"), str(out)])
    assert r.exit_code == 0 and "stylegan2-tf" in r.output, r.output
    r = CliRunner().invoke(main, ["info", "--network", str(out)])
    assert r.exit_code == 0, r.output
    for line in ("family: stylegan2-tf", "resolution: 32", "num_ws: 8", "c_dim: 0", "default_crossover: 5",
                 "slot_resolutions: [4, 8, 8, 16, 16, 32, 32, 32]",
                 f"sha256: {hashlib.sha256(out.read_bytes()).hexdigest()}"):
        assert line in r.output, (line, r.output)
    r = CliRunner().invoke(main, ["convert", str(TF_SMALL / "network-tf.pkl"), str(out)])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output


@needs_fixtures
def test_describe_names_family_and_file() -> None:
    for path, family in ((NVIDIA / "network-snapshot-p3.pkl", "stylegan2"),
                         (ROSINALITY / "checkpoint.pt", "rosinality"), (TF_SMALL / "network-tf.pkl", "stylegan2-tf")):
        info = load_network_file(path).describe()
        assert info["family"] == family and info["file"] == path.name
        assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert {"resolution", "num_ws", "slot_resolutions", "default_crossover", "c_dim"} <= set(info)


@needs_fixtures
@pytest.mark.parametrize("source", ["stylegan2/nvidia_small/network-snapshot-p2.pkl",
                                    "stylegan2/rosinality_small/checkpoint.pt", "stylegan2_tf/tf_small/network-tf.pkl",
                                    "stylegan3/t_small/network-snapshot-p5.pkl",
                                    "stylegan3/r_small/network-snapshot-p3.pkl"])
def test_segment_cli_on_fixture_and_its_safetensors(source: str, tmp_path: Path) -> None:
    """`stylemix segment --network F` works on each fixture file and gives the same masks from its safetensors."""
    from stylemix.cli import main

    src, converted = SHARED / source, tmp_path / "G.safetensors"
    assert CliRunner().invoke(main, ["convert", str(src), str(converted)]).exit_code == 0
    masks = []
    for network, out in ((src, tmp_path / "a"), (converted, tmp_path / "b")):
        r = CliRunner().invoke(main, ["segment", "--network", str(network), "--seeds", "0-1", "-n", "8",
                                      "--outdir", str(out)])
        assert r.exit_code == 0, r.output
        masks.append([(out / f"seed{s:04d}_mask.png").read_bytes() for s in (0, 1)])
    assert masks[0] == masks[1]
