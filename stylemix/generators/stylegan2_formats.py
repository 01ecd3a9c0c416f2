"""StyleGAN2 generators from the layouts people download, and back, without running code from the files.

Readers for one family each; :mod:`stylemix.generators.files` detects the file format and calls them:

* NVIDIA network pickles (``network-snapshot-*.pkl`` of stylegan2-ada-pytorch / stylegan3, and the output of their
  ``legacy.py`` conversion), read as records by :mod:`stylemix.generators.pickles`: the ``G_ema`` weights and
  constructor kwargs are taken from its recorded state and a
  :class:`~stylemix.generators.stylegan2.StyleGAN2Generator` is built from them (:func:`generator_from_record`).
* rosinality checkpoints (``{'g_ema', 'latent_avg'}`` from ``convert_weight.py``, or ``train.py``'s
  ``{'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args', 'ada_aug_p'}``) and bare rosinality state dicts, read with
  ``torch.load(weights_only=True)`` and converted to NVIDIA's layout (:func:`generator_from_checkpoint`).
* bare NVIDIA-layout state dicts (``G.state_dict()``, ``.pt``/``.pth``), also ``weights_only``.

Everything architectural (resolution, channels per block, mapping depth, ``z_dim``/``w_dim``/``c_dim``, skip or
resnet blocks) is inferred from tensor names and shapes; anything else is a
:class:`~stylemix.errors.GeneratorLoadError` with a one-line reason.
"""

from __future__ import annotations

import copy
import math
import os
import re
from typing import Any, Mapping

import numpy as np
import torch

from stylemix.errors import GeneratorLoadError
from stylemix.generators.pickles import PersistentRecord
from stylemix.generators.stylegan2 import ARCHITECTURES, StyleGAN2Generator, make_resample_filter

__all__ = ["StateDict", "estimate_w_avg", "flatten_record", "generator_from_checkpoint",
           "generator_from_nvidia_state_dict", "generator_from_record", "generator_from_rosinality_state_dict",
           "infer_nvidia_config", "load_checked", "load_stylegan2_file", "nvidia_state_dict", "record_init_kwargs",
           "rosinality_checkpoint", "rosinality_to_nvidia_state_dict", "save_nvidia_state_dict",
           "save_rosinality_checkpoint"]

StateDict = dict[str, torch.Tensor]

_DEFAULT_LR_MULTIPLIER = 0.01  # both reference codes; not recoverable from a bare state dict
_NVIDIA_CONV_CLAMP = 256.0  # NVIDIA's SynthesisBlock default when the file does not say otherwise
_W_AVG_SAMPLES = 4096  # as rosinality's generate.py (mean_latent(4096)) when a checkpoint has no latent_avg


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def load_stylegan2_file(path: str | os.PathLike, *, conv_clamp: float | None | str = "auto") -> Any:
    """Load a generator file; kept for callers of the StyleGAN2-only loader. See
    :func:`stylemix.generators.files.load_network_file`, which reads every supported format."""
    from stylemix.generators.files import load_network_file
    return load_network_file(path, conv_clamp=conv_clamp)


# ----------------------------------------------------------------------------------------------------------------
# NVIDIA network pickles (records from stylemix.generators.pickles)


def generator_from_record(record: PersistentRecord, *, source: str = "network pickle",
                          conv_clamp: float | None | str = "auto") -> StyleGAN2Generator:
    """A StyleGAN2 ``Generator`` record (``G_ema`` of a snapshot) -> generator, from its recorded weights and kwargs."""
    if record.class_name != "Generator":
        raise GeneratorLoadError(f"{source}: G_ema is a {record.class_name!r}, not a StyleGAN2 Generator")
    sd = flatten_record(record, source)
    kwargs = record_init_kwargs(record)
    hints = _record_hints(record, kwargs, source)
    recorded_clamp = hints.pop("conv_clamp")
    clamp = recorded_clamp if conv_clamp == "auto" else conv_clamp
    return generator_from_nvidia_state_dict(sd, conv_clamp=clamp, source=source, init_kwargs=kwargs, **hints)


def flatten_record(record: PersistentRecord, source: str = "network pickle", prefix: str = "",
                   out: StateDict | None = None) -> StateDict:
    """Nested records -> one ``{dotted.name: tensor}`` state dict (persistent buffers only, like ``state_dict()``)."""
    out = {} if out is None else out
    state = record.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for key, value in list((state.get("_parameters") or {}).items()) + [
            (k, v) for k, v in (state.get("_buffers") or {}).items() if k not in skip]:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise GeneratorLoadError(f"{source}: {prefix}{key} is a {type(value).__name__}, not a tensor")
        out[prefix + key] = value.detach()
    for key, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise GeneratorLoadError(f"{source}: submodule {prefix}{key} is not a network record")
        flatten_record(child, source, f"{prefix}{key}.", out)
    return out


def record_init_kwargs(record: PersistentRecord) -> dict[str, Any]:
    """Constructor kwargs, flattening stylegan2-ada-pytorch's nested ``synthesis_kwargs`` into stylegan3's style."""
    kwargs = dict(record.state.get("_init_kwargs") or {})
    positional = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
    kwargs.update(zip(positional, record.state.get("_init_args") or ()))
    kwargs.update(dict(kwargs.pop("synthesis_kwargs", None) or {}))
    return kwargs


def _record_hints(record: PersistentRecord, kwargs: dict[str, Any], source: str) -> dict[str, Any]:
    """Facts a state dict cannot tell: ``conv_clamp``, the mapping's lr multiplier, the block architecture.

    Read from the layers' own recorded attributes first (what the network really ran with), then from the kwargs.
    """
    def state(*path: str) -> dict[str, Any]:
        rec = record.child(*path)
        return rec.state if rec is not None else {}

    clamp = state("synthesis", "b4", "conv1").get("conv_clamp", kwargs.get("conv_clamp", _NVIDIA_CONV_CLAMP))
    architecture = state("synthesis", "b4").get("architecture", kwargs.get("architecture", "skip"))
    if architecture not in ARCHITECTURES:
        raise GeneratorLoadError(f"{source}: StyleGAN2 generator with architecture {architecture!r}: only "
                                 f"{' and '.join(map(repr, ARCHITECTURES))} are supported")
    fc0 = state("mapping", "fc0")
    lr = fc0.get("bias_gain", (kwargs.get("mapping_kwargs") or {}).get("lr_multiplier", _DEFAULT_LR_MULTIPLIER))
    return {"conv_clamp": None if clamp is None else float(clamp), "mapping_lr_multiplier": float(lr)}


# ----------------------------------------------------------------------------------------------------------------
# torch.save checkpoints


def generator_from_checkpoint(obj: Any, *, source: str = "checkpoint", conv_clamp: float | None | str = "auto"
                              ) -> StyleGAN2Generator:
    """A ``torch.load``-ed object -> generator, by recognising the checkpoint family from its keys."""
    if not isinstance(obj, Mapping):
        raise GeneratorLoadError(f"{source}: unrecognised checkpoint ({type(obj).__name__}); expected a rosinality "
                                 "checkpoint or an NVIDIA StyleGAN2 state dict")
    if isinstance(obj.get("g_ema"), Mapping):
        G = generator_from_rosinality_state_dict(obj["g_ema"], obj.get("latent_avg"), source=source)
        return _with_clamp(G, conv_clamp)
    if isinstance(obj.get("G_ema"), Mapping):  # NVIDIA state dicts saved next to others
        obj = obj["G_ema"]
    elif isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if _is_rosinality_state_dict(obj):
        return _with_clamp(generator_from_rosinality_state_dict(obj, None, source=source), conv_clamp)
    if _is_nvidia_state_dict(obj):
        clamp = _NVIDIA_CONV_CLAMP if conv_clamp == "auto" else conv_clamp
        return generator_from_nvidia_state_dict(dict(obj), conv_clamp=clamp, source=source)
    raise GeneratorLoadError(f"{source}: unknown checkpoint family (keys: {_key_list(obj)}); expected an NVIDIA "
                             "network pickle, a rosinality checkpoint with 'g_ema' or an NVIDIA-layout state dict")


def _with_clamp(G: StyleGAN2Generator, conv_clamp: float | None | str) -> StyleGAN2Generator:
    if conv_clamp == "auto" or conv_clamp == G.conv_clamp:
        return G
    rebuilt = StyleGAN2Generator(**{**G.config(), "conv_clamp": conv_clamp})
    rebuilt.load_state_dict(G.state_dict())
    rebuilt.w_avg_source = G.w_avg_source
    return rebuilt


def _is_nvidia_state_dict(sd: Mapping[str, Any]) -> bool:
    return any(str(k).startswith("synthesis.b4.") for k in sd) and any(str(k).startswith("mapping.") for k in sd)


def _is_rosinality_state_dict(sd: Mapping[str, Any]) -> bool:
    return "input.input" in sd and "conv1.conv.weight" in sd


# ----------------------------------------------------------------------------------------------------------------
# NVIDIA layout


def infer_nvidia_config(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, Any]:
    """Constructor kwargs of :class:`StyleGAN2Generator` from NVIDIA-layout names and shapes.

    Inferred: mapping depth and widths, ``z_dim``, ``c_dim`` (from ``mapping.embed``), ``w_dim``, block resolutions
    and channels, image channels, noise inputs, the FIR filter size and the block architecture (``resnet`` when
    ``synthesis.bR.skip`` convolutions exist, else ``skip``). Not inferable: the mapping lr multiplier
    (assumed 0.01) and ``conv_clamp`` (not stored in weights).
    """
    def shape(key: str) -> tuple[int, ...]:
        t = sd.get(key)
        if not isinstance(t, torch.Tensor):
            raise GeneratorLoadError(f"{source}: missing tensor {key!r}; these weights do not form a StyleGAN2 "
                                     "generator")
        return tuple(t.shape)

    num_layers = 0
    while f"mapping.fc{num_layers}.weight" in sd:
        num_layers += 1
    if num_layers == 0:
        raise GeneratorLoadError(f"{source}: no mapping layers (mapping.fc0.weight); not a StyleGAN2 generator")
    fc0, last = shape("mapping.fc0.weight"), shape(f"mapping.fc{num_layers - 1}.weight")
    if len(fc0) != 2 or len(last) != 2:
        raise GeneratorLoadError(f"{source}: mapping weights must be 2-D, got {list(fc0)} / {list(last)}")
    c_dim = embed = 0
    if "mapping.embed.weight" in sd:
        embed, c_dim = shape("mapping.embed.weight")
    z_dim = fc0[1] - embed
    found = (re.match(r"synthesis\.b(\d+)\.", str(k)) for k in sd)
    resolutions = sorted({int(m.group(1)) for m in found if m})
    if not resolutions:
        raise GeneratorLoadError(f"{source}: no synthesis blocks (synthesis.bR.*); not a StyleGAN2 generator")
    resolution = resolutions[-1]
    expected = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)] if resolution >= 4 else []
    if resolutions != expected:
        raise GeneratorLoadError(f"{source}: synthesis blocks {resolutions} are not the sequence 4, 8, ..., "
                                 f"{resolution}; not a StyleGAN2 generator")
    channels = {r: shape(f"synthesis.b{r}.conv1.weight")[0] for r in resolutions}
    filter_size = shape("synthesis.b4.resample_filter")[-1] if "synthesis.b4.resample_filter" in sd else 4
    # resnet blocks add a 1x1 skip convolution and have a ToRGB in the last block only.
    architecture = "resnet" if any(re.fullmatch(r"synthesis\.b\d+\.skip\.weight", str(k)) for k in sd) else "skip"
    return dict(z_dim=z_dim, c_dim=c_dim, w_dim=last[0], resolution=resolution,
                img_channels=shape(f"synthesis.b{resolution}.torgb.weight")[0], channels=channels,
                mapping_layers=num_layers, embed_features=embed or None,
                layer_features=fc0[0] if num_layers > 1 else None, use_noise="synthesis.b4.conv1.noise_const" in sd,
                resample_filter=(1,) * filter_size, architecture=architecture)


def generator_from_nvidia_state_dict(sd: Mapping[str, torch.Tensor], *, conv_clamp: float | None = _NVIDIA_CONV_CLAMP,
                                     mapping_lr_multiplier: float = _DEFAULT_LR_MULTIPLIER,
                                     family: str = "stylegan2", source: str = "state dict",
                                     init_kwargs: Mapping[str, Any] | None = None,
                                     renamed: Mapping[str, str] | None = None) -> StyleGAN2Generator:
    """Build a generator whose architecture is inferred from ``sd`` and load ``sd`` into it (all keys, all shapes).

    ``init_kwargs`` (from a pickle) are cross-checked against the inferred shapes; ``renamed`` maps NVIDIA names
    back to the file's own names for error messages.
    """
    config = infer_nvidia_config(sd, source)
    if init_kwargs:
        for key, ours in (("z_dim", "z_dim"), ("c_dim", "c_dim"), ("w_dim", "w_dim"),
                          ("img_resolution", "resolution"), ("img_channels", "img_channels")):
            if key in init_kwargs and int(init_kwargs[key]) != config[ours]:
                raise GeneratorLoadError(f"{source}: recorded {key}={init_kwargs[key]} but the weights imply "
                                         f"{config[ours]}")
    try:
        G = StyleGAN2Generator(**config, conv_clamp=conv_clamp, mapping_lr_multiplier=mapping_lr_multiplier,
                               family=family)
    except ValueError as exc:
        raise GeneratorLoadError(f"{source}: these weights do not form a StyleGAN2 generator ({exc})") from None
    load_checked(G, sd, source, renamed or {})
    return G


def load_checked(G: StyleGAN2Generator, sd: Mapping[str, torch.Tensor], source: str,
                  renamed: Mapping[str, str]) -> None:
    """``G.load_state_dict(sd)`` with one clear line naming the first missing, unexpected or mis-shaped tensor."""
    expected = G.state_dict()
    where = f"{source} (resolution {G.resolution}, {G.mapping.num_layers} mapping layers)"

    def file_name(k: str) -> str:
        return renamed.get(k, k)

    missing = [k for k in expected if k not in sd]
    if missing:
        raise GeneratorLoadError(f"{where}: missing {file_name(missing[0])!r}"
                                 + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                                 + "; these weights do not form a StyleGAN2 generator")
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        raise GeneratorLoadError(f"{where}: unexpected tensor {file_name(unexpected[0])!r}"
                                 + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
                                 + "; not a StyleGAN2 skip generator")
    for k, ref in expected.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor):
            raise GeneratorLoadError(f"{where}: {file_name(k)!r} is a {type(t).__name__}, not a tensor")
        if t.shape != ref.shape:
            raise GeneratorLoadError(f"{where}: {file_name(k)!r} has shape {list(t.shape)}, a StyleGAN2 generator "
                                     f"needs {list(ref.shape)} there")
        if not t.is_floating_point():
            raise GeneratorLoadError(f"{where}: {file_name(k)!r} has dtype {t.dtype}, expected floating point")
    G.load_state_dict({k: sd[k].to(torch.float32) for k in expected})


def nvidia_state_dict(G: StyleGAN2Generator) -> StateDict:
    """``G``'s weights in NVIDIA's layout (the keys of the official ``Generator.state_dict()``)."""
    return {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}


def save_nvidia_state_dict(G: StyleGAN2Generator, path: str | os.PathLike) -> None:
    """Write ``G`` as a bare NVIDIA-layout state dict (``torch.save``); :func:`load_stylegan2_file` reads it back."""
    torch.save(nvidia_state_dict(G), path)


# ----------------------------------------------------------------------------------------------------------------
# rosinality layout


def _rosinality_pairs(resolutions: list[int], mapping_layers: int, use_noise: bool) -> list[tuple[str, str, str]]:
    """``(rosinality name, NVIDIA name, reshape kind)`` for every tensor both layouts share."""
    pairs = []
    for k in range(mapping_layers):  # style.0 is the parameter-free PixelNorm
        pairs += [(f"style.{k + 1}.weight", f"mapping.fc{k}.weight", "same"),
                  (f"style.{k + 1}.bias", f"mapping.fc{k}.bias", "same")]
    pairs.append(("input.input", "synthesis.b4.const", "lead1"))

    def conv(ros: str, nv: str, noise_index: int) -> list[tuple[str, str, str]]:
        out = [(f"{ros}.conv.weight", f"{nv}.weight", "lead1"),
               (f"{ros}.conv.modulation.weight", f"{nv}.affine.weight", "same"),
               (f"{ros}.conv.modulation.bias", f"{nv}.affine.bias", "same"),
               (f"{ros}.activate.bias", f"{nv}.bias", "same")]
        if use_noise:
            out += [(f"{ros}.noise.weight", f"{nv}.noise_strength", "scalar"),
                    (f"noises.noise_{noise_index}", f"{nv}.noise_const", "lead2")]
        return out

    def torgb(ros: str, nv: str) -> list[tuple[str, str, str]]:
        return [(f"{ros}.conv.weight", f"{nv}.weight", "lead1"),
                (f"{ros}.conv.modulation.weight", f"{nv}.affine.weight", "same"),
                (f"{ros}.conv.modulation.bias", f"{nv}.affine.bias", "same"),
                (f"{ros}.bias", f"{nv}.bias", "rgb_bias")]

    pairs += conv("conv1", "synthesis.b4.conv1", 0) + torgb("to_rgb1", "synthesis.b4.torgb")
    for k, res in enumerate(resolutions[1:]):
        pairs += conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0", 2 * k + 1)
        pairs += conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", 2 * k + 2)
        pairs += torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
    return pairs


def _to_nvidia(t: torch.Tensor, kind: str) -> torch.Tensor:
    """rosinality tensor -> NVIDIA shape: drop leading singleton axes, scalar noise strength, ``[3]`` ToRGB bias."""
    if kind == "lead1":
        return t[0] if t.ndim >= 1 and t.shape[0] == 1 else t.reshape(-1)  # bad shapes surface in load_checked
    if kind == "lead2":
        return t[0, 0] if t.ndim == 4 and t.shape[:2] == (1, 1) else t.reshape(-1)
    if kind == "scalar":
        return t.reshape([]) if t.numel() == 1 else t
    if kind == "rgb_bias":
        return t.reshape(-1) if t.ndim == 4 else t
    return t


def _to_rosinality(t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "lead1":
        return t.unsqueeze(0)
    if kind == "lead2":
        return t[None, None]
    if kind == "scalar":
        return t.reshape([1])
    if kind == "rgb_bias":
        return t.reshape(1, -1, 1, 1)
    return t


def rosinality_to_nvidia_state_dict(sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                                    source: str = "rosinality checkpoint"
                                    ) -> tuple[StateDict, dict[str, str]]:
    """rosinality ``g_ema`` state dict -> (NVIDIA-layout state dict, NVIDIA name -> rosinality name).

    The size and mapping depth come from the key names; channels and dims stay in the tensors and are inferred by
    :func:`infer_nvidia_config`. The FIR ``kernel`` buffers (``[1,3,3,1]`` outer product ×4 for up-sampling)
    become NVIDIA's normalised ``resample_filter``. ``mapping.w_avg`` is ``latent_avg`` or zeros.
    """
    mapping_layers = 0
    while f"style.{mapping_layers + 1}.weight" in sd:
        mapping_layers += 1
    num_convs = 0
    while f"convs.{num_convs}.conv.weight" in sd:
        num_convs += 1
    if mapping_layers == 0 or num_convs % 2:
        raise GeneratorLoadError(f"{source}: rosinality keys do not form a generator ({mapping_layers} style "
                                 f"layers, {num_convs} convs)")
    resolutions = [2 ** i for i in range(2, num_convs // 2 + 3)]
    use_noise = "conv1.noise.weight" in sd
    out: StateDict = {}
    renamed: dict[str, str] = {}
    for ros, nv, kind in _rosinality_pairs(resolutions, mapping_layers, use_noise):
        renamed[nv] = ros
        if ros in sd:  # absent ones are reported by load_checked under their rosinality names
            out[nv] = _to_nvidia(sd[ros], kind)
    known = {ros for ros, _, _ in _rosinality_pairs(resolutions, mapping_layers, use_noise)}
    kernels = [sd[k] for k in sd if k.endswith(".kernel")]
    extra = [k for k in sd if k not in known and not k.endswith(".kernel")]
    if extra:
        raise GeneratorLoadError(f"{source}: unexpected tensor {extra[0]!r}; not a rosinality StyleGAN2 generator")
    # Every NVIDIA layer carries the same filter; rosinality stores it pre-multiplied by the up-sampling gain.
    f = kernels[0] / kernels[0].sum() if kernels else make_resample_filter((1, 3, 3, 1))
    if f.ndim != 2:
        raise GeneratorLoadError(f"{source}: FIR kernel has shape {list(kernels[0].shape)}, expected 2-D")
    for res in resolutions:
        out[f"synthesis.b{res}.resample_filter"] = f.clone()
        for layer in (("conv1",) if res == 4 else ("conv0", "conv1")):
            out[f"synthesis.b{res}.{layer}.resample_filter"] = f.clone()
    w_dim = sd[f"style.{mapping_layers}.weight"].shape[0]
    out["mapping.w_avg"] = torch.zeros([w_dim]) if latent_avg is None else latent_avg.reshape(-1)
    return out, renamed


def generator_from_rosinality_state_dict(sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                                         source: str = "rosinality checkpoint") -> StyleGAN2Generator:
    """rosinality ``g_ema`` (+ ``latent_avg [style_dim]``) -> generator without ``conv_clamp`` (rosinality has none).

    Without ``latent_avg`` (train.py checkpoints), ``w_avg`` is estimated as the mean of 4096 mapped latents from a
    fixed seed, as rosinality's ``generate.py`` does, so truncation still works; ``describe()['w_avg']`` says so.
    """
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise GeneratorLoadError(f"{source}: latent_avg is a {type(latent_avg).__name__}, not a tensor")
    nv, renamed = rosinality_to_nvidia_state_dict(sd, latent_avg, source)
    renamed["mapping.w_avg"] = "latent_avg"
    G = generator_from_nvidia_state_dict(nv, conv_clamp=None, family="rosinality", source=source,
                                         renamed=renamed)
    if latent_avg is None:
        G.mapping.w_avg.copy_(estimate_w_avg(G))
        G.w_avg_source = f"estimated ({_W_AVG_SAMPLES} samples, seed 0)"
    return G


@torch.no_grad()
def estimate_w_avg(G: StyleGAN2Generator, num_samples: int = _W_AVG_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Mean mapping output ``[w_dim]`` over ``num_samples`` latents ``RandomState(seed).randn`` (unconditional
    generators; conditional ones average over labels drawn uniformly from the same stream).

    Computed by a float64 copy of the mapping network and rounded to float32, from NumPy's legacy generator (the
    same numbers on every machine): the estimate is the same everywhere, though it stays out of the generator's
    id (``derived_state``) as every buffer computed at load does."""
    rs = np.random.RandomState(seed)
    z = torch.from_numpy(rs.randn(num_samples, G.z_dim)).double()
    c = None
    if G.c_dim:
        c = torch.nn.functional.one_hot(torch.from_numpy(rs.randint(G.c_dim, size=num_samples)), G.c_dim).double()
    mapping = copy.deepcopy(G.mapping).cpu().double()
    return mapping(z, c)[:, 0].mean(dim=0).float()


def rosinality_checkpoint(G: StyleGAN2Generator) -> dict[str, Any]:
    """``{'g_ema': state_dict, 'latent_avg': [w_dim]}`` in rosinality's layout (as its ``convert_weight.py``).

    Raises:
        ValueError: what rosinality's ``Generator`` cannot express: labels, ``z_dim``/widths different from
            ``style_dim``, lr multiplier other than 0.01, no noise inputs, other than 3 image channels. Its lack of
            ``conv_clamp`` is not checked: a clamp that never triggers changes nothing.
    """
    m = G.mapping
    problems = [msg for bad, msg in (
        (G.c_dim > 0, "conditional (c_dim > 0)"),
        (G.z_dim != G.w_dim or m.layer_features != G.w_dim, "z_dim and mapping widths must equal w_dim"),
        (abs(m.lr_multiplier - _DEFAULT_LR_MULTIPLIER) > 1e-12, "mapping lr multiplier must be 0.01"),
        (not G.use_noise, "needs noise inputs"),
        (G.img_channels != 3, "needs 3 image channels")) if bad]
    if problems:
        raise ValueError("rosinality's Generator cannot represent this network: " + "; ".join(problems))
    nv = nvidia_state_dict(G)
    ros: StateDict = {}
    for ros_key, nv_key, kind in _rosinality_pairs(G.synthesis.block_resolutions, m.num_layers, True):
        ros[ros_key] = _to_rosinality(nv[nv_key], kind)
    up_kernel = nv["synthesis.b4.resample_filter"] * 4  # rosinality stores the ×2 up-sampling gain in the kernel
    for k, _ in enumerate(G.synthesis.block_resolutions[1:]):
        ros[f"convs.{2 * k}.conv.blur.kernel"] = up_kernel.clone()
        ros[f"to_rgbs.{k}.upsample.kernel"] = up_kernel.clone()
    return {"g_ema": ros, "latent_avg": nv["mapping.w_avg"].clone()}


def save_rosinality_checkpoint(G: StyleGAN2Generator, path: str | os.PathLike) -> None:
    """Write ``G`` as a rosinality ``{'g_ema', 'latent_avg'}`` checkpoint (see :func:`rosinality_checkpoint`)."""
    torch.save(rosinality_checkpoint(G), path)


# ----------------------------------------------------------------------------------------------------------------


def _key_list(obj: Mapping[Any, Any], limit: int = 8) -> str:
    keys = [str(k) for k in list(obj)[:limit]]
    return ", ".join(keys) + (", ..." if len(obj) > limit else "") if keys else "none"
