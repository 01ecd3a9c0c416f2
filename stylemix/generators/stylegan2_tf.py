"""TensorFlow StyleGAN2 networks (NVlabs/stylegan2, stylegan2-ada TF) as stylemix StyleGAN2 generators.

A TensorFlow network pickle holds ``dnnlib.tflib.network.Network`` objects, read by
:mod:`stylemix.generators.pickles` as :class:`~stylemix.generators.pickles.TFNetworkRecord` (the build module source
they carry is never run). The generator is built from the moving average ``Gs``: its ``static_kwargs`` give the
configuration and its variables the weights, mapped to NVIDIA's PyTorch layout the way NVIDIA's converter
(``legacy.py`` of stylegan2-ada-pytorch / stylegan3) does:

* kwargs as the converter reads them, with its defaults; ``truncation_psi``, ``truncation_cutoff``,
  ``style_mixing_prob``, ``structure``, ``conditioning`` and ``fused_modconv`` are ignored (TensorFlow's ``G_main``
  would truncate by default; the converted generator does not), any other unknown key is refused;
* ``conv_clamp`` is ``None`` unless the kwargs give one (TensorFlow StyleGAN2 had no clamp);
* dense weights are transposed, conv weights go from ``[kh, kw, in, out]`` to ``[out, in, kh, kw]``, the up-sampling
  convs (``Conv0_up``, resnet ``Skip``) are also flipped in both spatial axes, ``mod_bias`` gets the ``+ 1`` that
  TensorFlow adds at run time, ``noise{i}`` feed the layers' constant noise, ``dlatent_avg`` is ``w_avg``;
* widths come from the variables' shapes, so a hidden mapping width (``mapping_fmaps``) or label embedding width
  other than ``w_dim`` is read as TensorFlow ran it.

Refused with one line: state versions below 4, the original StyleGAN2 conditional mapping (``LabelConcat``), the
``orig`` architecture (configs A-D), non-``lrelu`` activations.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch

from stylemix.errors import GeneratorLoadError
from stylemix.generators.pickles import TFNetworkRecord
from stylemix.generators.stylegan2 import ARCHITECTURES, StyleGAN2Generator, block_resolutions
from stylemix.generators.stylegan2_formats import load_checked

__all__ = ["TF_IGNORED_KWARGS", "TF_KWARGS", "generator_from_tf_network", "tf_pairs", "tf_static_kwargs", "tf_variables"]

# static kwarg -> default, as NVIDIA's converter reads them
TF_KWARGS: dict[str, Any] = {
    "latent_size": 512, "label_size": 0, "dlatent_size": 512, "resolution": 1024, "num_channels": 3,
    "fmap_base": 16384, "fmap_max": 512, "num_fp16_res": 0, "conv_clamp": None, "architecture": "skip",
    "resample_kernel": [1, 3, 3, 1], "use_noise": True, "nonlinearity": "lrelu", "mapping_layers": 8,
    "label_fmaps": None, "mapping_fmaps": None, "mapping_nonlinearity": "lrelu", "mapping_lrmul": 0.01,
    "w_avg_beta": 0.995,
}
TF_IGNORED_KWARGS = ("truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure", "conditioning",
                     "fused_modconv")


def generator_from_tf_network(net: TFNetworkRecord, *, source: str = "TensorFlow pickle",
                              conv_clamp: float | None | str = "auto") -> StyleGAN2Generator:
    """A TensorFlow StyleGAN2 ``G_main`` network (``Gs``) -> :class:`StyleGAN2Generator` (``family="stylegan2-tf"``).

    Args:
        net: the ``Gs`` record, with ``mapping`` and ``synthesis`` components.
        source: the file name, for messages.
        conv_clamp: ``"auto"`` takes the kwargs' value (``None`` unless given); a number or ``None`` overrides it.
    """
    if int(net.version) < 4:
        raise GeneratorLoadError(f"{source}: TensorFlow network state version {net.version}; only versions 4 "
                                 "(StyleGAN2) and 5 (StyleGAN2-ADA) are supported")
    kw = _read_kwargs(net.static_kwargs, source)
    variables = net.all_variables()
    if "mapping/LabelConcat/weight" in variables:
        raise GeneratorLoadError(f"{source}: a conditional generator with the original StyleGAN2 label layout "
                                 "(mapping/LabelConcat), which has no PyTorch counterpart; only StyleGAN2-ADA's "
                                 "LabelEmbed layout is supported")
    if any(k.startswith("synthesis/ToRGB_lod") for k in variables) or kw["architecture"] == "orig":
        raise GeneratorLoadError(f"{source}: a TensorFlow generator with the 'orig' architecture (per-lod ToRGB), "
                                 f"which stylemix does not support; only {' and '.join(ARCHITECTURES)} are")
    for key in ("nonlinearity", "mapping_nonlinearity"):
        if kw[key] != "lrelu":
            raise GeneratorLoadError(f"{source}: {key}={kw[key]!r}; only 'lrelu' is supported")
    if kw["architecture"] not in ARCHITECTURES:
        raise GeneratorLoadError(f"{source}: unknown architecture {kw['architecture']!r}")
    if kw["resample_kernel"] is None:
        raise GeneratorLoadError(f"{source}: resample_kernel=None (box filter) is not supported")
    resolution, c_dim = int(kw["resolution"]), int(kw["label_size"])
    try:
        resolutions = block_resolutions(resolution)
    except ValueError as exc:
        raise GeneratorLoadError(f"{source}: {exc}") from None
    pairs = list(tf_pairs(resolutions, int(kw["mapping_layers"]), kw["architecture"], bool(kw["use_noise"]),
                          c_dim > 0))

    def width(tf_key: str, axis: int) -> int | None:
        v = variables.get(tf_key)
        return int(np.shape(v)[axis]) if v is not None and np.ndim(v) > axis else None

    channels = {r: width(f"synthesis/{r}x{r}/{'Conv' if r == 4 else 'Conv1'}/weight", 3) for r in resolutions}
    if None in channels.values():
        missing = next(r for r, c in channels.items() if c is None)
        raise GeneratorLoadError(f"{source}: TensorFlow variable 'synthesis/{missing}x{missing}/"
                                 f"{'Conv' if missing == 4 else 'Conv1'}/weight' is missing or not 4-D "
                                 f"(static kwargs say resolution {resolution})")
    mapping_layers = int(kw["mapping_layers"])
    config = dict(z_dim=int(kw["latent_size"]), c_dim=c_dim, w_dim=int(kw["dlatent_size"]), resolution=resolution,
                  img_channels=int(kw["num_channels"]), channels=channels, mapping_layers=mapping_layers,
                  mapping_lr_multiplier=float(kw["mapping_lrmul"]),
                  embed_features=width("mapping/LabelEmbed/weight", 1) if c_dim else None,
                  layer_features=width("mapping/Dense0/weight", 1) if mapping_layers > 1 else None,
                  conv_clamp=kw["conv_clamp"] if conv_clamp == "auto" else conv_clamp, use_noise=bool(kw["use_noise"]),
                  resample_filter=tuple(kw["resample_kernel"]), architecture=kw["architecture"], family="stylegan2-tf")
    try:
        G = StyleGAN2Generator(**config)
    except ValueError as exc:
        raise GeneratorLoadError(f"{source}: these TensorFlow kwargs do not form a StyleGAN2 generator ({exc})"
                                 ) from None
    # The FIR filters are not TensorFlow variables: the new generator's own (built from resample_kernel) stay.
    sd = {k: v for k, v in G.state_dict().items() if k.endswith("resample_filter")}
    renamed = {}
    for nv_key, tf_key, kind in pairs:
        renamed[nv_key] = tf_key
        if tf_key in variables:  # absent ones are reported by load_checked under their TensorFlow names
            sd[nv_key] = _to_nvidia(variables[tf_key], kind, tf_key, source)
    load_checked(G, sd, source, renamed)
    return G.eval().requires_grad_(False)


def _read_kwargs(static_kwargs: dict[str, Any], source: str) -> dict[str, Any]:
    unknown = [k for k in static_kwargs if k not in TF_KWARGS and k not in TF_IGNORED_KWARGS]
    if unknown:
        raise GeneratorLoadError(f"{source}: unknown TensorFlow kwarg {unknown[0]!r} in the generator's static "
                                 "kwargs (NVIDIA's converter refuses it too)")
    kw = dict(TF_KWARGS)
    kw.update({k: v for k, v in static_kwargs.items() if k in TF_KWARGS and v is not None})
    return kw


def tf_pairs(resolutions: list[int], mapping_layers: int, architecture: str, use_noise: bool, conditional: bool
             ) -> Iterator[tuple[str, str, str]]:
    """``(NVIDIA name, TensorFlow variable, kind)`` for every converted tensor; ``kind`` names the reshape."""
    yield "mapping.w_avg", "dlatent_avg", "same"
    if conditional:
        yield "mapping.embed.weight", "mapping/LabelEmbed/weight", "dense"
        yield "mapping.embed.bias", "mapping/LabelEmbed/bias", "same"
    for i in range(mapping_layers):
        yield f"mapping.fc{i}.weight", f"mapping/Dense{i}/weight", "dense"
        yield f"mapping.fc{i}.bias", f"mapping/Dense{i}/bias", "same"
    yield "synthesis.b4.const", "synthesis/4x4/Const/const", "const"

    def layer(nv: str, tf: str, conv_kind: str, noise_index: int | None) -> Iterator[tuple[str, str, str]]:
        yield f"{nv}.weight", f"{tf}/weight", conv_kind
        yield f"{nv}.bias", f"{tf}/bias", "same"
        yield f"{nv}.affine.weight", f"{tf}/mod_weight", "dense"
        yield f"{nv}.affine.bias", f"{tf}/mod_bias", "mod_bias"
        if noise_index is not None and use_noise:
            yield f"{nv}.noise_strength", f"{tf}/noise_strength", "scalar"
            yield f"{nv}.noise_const", f"synthesis/noise{noise_index}", "noise"

    for res in resolutions:
        log2 = int(math.log2(res))
        tf, nv = f"synthesis/{res}x{res}", f"synthesis.b{res}"
        if res == 4:
            yield from layer(f"{nv}.conv1", f"{tf}/Conv", "conv", 0)
        else:
            yield from layer(f"{nv}.conv0", f"{tf}/Conv0_up", "conv_up", 2 * log2 - 5)
            yield from layer(f"{nv}.conv1", f"{tf}/Conv1", "conv", 2 * log2 - 4)
            if architecture == "resnet":
                yield f"{nv}.skip.weight", f"{tf}/Skip/weight", "conv_up"
        if architecture == "skip" or res == resolutions[-1]:
            yield from layer(f"{nv}.torgb", f"{tf}/ToRGB", "conv", None)


def _to_nvidia(value: Any, kind: str, tf_key: str, source: str) -> torch.Tensor:
    """A TensorFlow variable (array or numpy scalar) -> the NVIDIA tensor of ``kind``."""
    a = np.asarray(value)
    ndim = {"dense": 2, "const": 4, "conv": 4, "conv_up": 4, "noise": 4, "scalar": 0, "same": 1, "mod_bias": 1}[kind]
    if a.ndim != ndim or not np.issubdtype(a.dtype, np.floating):
        raise GeneratorLoadError(f"{source}: TensorFlow variable {tf_key!r} has shape {list(a.shape)} and dtype "
                                 f"{a.dtype}; expected a {ndim}-D float array")
    if kind == "dense":
        a = a.T
    elif kind == "const":
        a = a[0]
    elif kind == "conv":
        a = a.transpose(3, 2, 0, 1)
    elif kind == "conv_up":  # TensorFlow's up-sampling conv is a true convolution; NVIDIA's transposed conv flips
        a = a[::-1, ::-1].transpose(3, 2, 0, 1)
    elif kind == "noise":
        a = a[0, 0]
    elif kind == "mod_bias":
        a = a + np.float32(1)
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _to_tf(t: torch.Tensor, kind: str) -> Any:
    a = t.detach().cpu().numpy().astype(np.float32)
    if kind == "dense":
        return np.ascontiguousarray(a.T)
    if kind == "const":
        return a[None]
    if kind == "conv":
        return np.ascontiguousarray(a.transpose(2, 3, 1, 0))
    if kind == "conv_up":
        return np.ascontiguousarray(a.transpose(2, 3, 1, 0)[::-1, ::-1])
    if kind == "noise":
        return a[None, None]
    if kind == "mod_bias":
        return a - np.float32(1)
    if kind == "scalar":
        return np.float32(a)  # a TensorFlow session returns 0-d variables as numpy scalars
    return a


def tf_variables(G: StyleGAN2Generator) -> dict[str, dict[str, Any]]:
    """``G``'s weights as TensorFlow StyleGAN2 variables: ``{"": Gs's own, "mapping": ..., "synthesis": ...}``.

    The inverse of the mapping in :func:`generator_from_tf_network` (``mod_bias - 1`` rounds, so a round trip is
    exact to about 1e-7); with :func:`tf_static_kwargs` it describes a ``G_main`` network.
    """
    sd = G.state_dict()
    out: dict[str, dict[str, Any]] = {"": {"lod": np.float32(0)}, "mapping": {}, "synthesis": {}}
    for nv_key, tf_key, kind in tf_pairs(G.synthesis.block_resolutions, G.mapping.num_layers,
                                         G.synthesis.architecture, G.use_noise, G.c_dim > 0):
        scope, _, rest = tf_key.partition("/")
        if scope in ("mapping", "synthesis"):
            out[scope][rest] = _to_tf(sd[nv_key], kind)
        else:
            out[""][tf_key] = _to_tf(sd[nv_key], kind)
    return out


def tf_static_kwargs(G: StyleGAN2Generator) -> dict[str, Any]:
    """Static kwargs of a TensorFlow ``G_main`` equivalent to ``G`` (channels must follow NVIDIA's table)."""
    res = G.resolution
    m = G.mapping
    kw = dict(num_channels=G.img_channels, resolution=res, label_size=G.c_dim, latent_size=G.z_dim,
              dlatent_size=G.w_dim, mapping_layers=m.num_layers, mapping_fmaps=m.layer_features,
              mapping_lrmul=m.lr_multiplier, fmap_base=G.channels[res] * res // 2,
              fmap_max=max(G.channels.values()), architecture=G.synthesis.architecture, use_noise=G.use_noise)
    if G.c_dim:
        kw["label_fmaps"] = m.embed_features
    if G.conv_clamp is not None:
        kw["conv_clamp"] = G.conv_clamp
    return kw
