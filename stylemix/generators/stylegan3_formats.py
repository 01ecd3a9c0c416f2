"""StyleGAN3 generators from NVIDIA's files: a network pickle's ``G_ema`` record with its kwargs, or a bare state dict.

:mod:`stylemix.generators.files` detects the file format and calls :func:`generator_from_record` or
:func:`generator_from_state_dict`. The official ``init_kwargs`` are translated to :class:`StyleGAN3Generator`'s
(:func:`stylegan3_config`); a state dict without them has them inferred from its names and shapes, checked against its
stored filters (:func:`infer_stylegan3_config`). Anything else is a :class:`~stylemix.errors.GeneratorLoadError` with
a one-line reason.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import numpy as np
import torch

from stylemix.errors import GeneratorLoadError
from stylemix.generators.stylegan2_formats import flatten_record, record_init_kwargs
from stylemix.generators.stylegan3 import StyleGAN3Generator
from stylemix.generators.stylegan3_filters import synthesis_schedule

__all__ = ["generator_from_record", "generator_from_state_dict", "infer_stylegan3_config", "stylegan3_config",
           "stylegan3_from_state_dict"]

# NVlabs synthesis kwargs that map one-to-one onto ours; img_resolution and mapping_kwargs are translated.
_SYNTHESIS_KWARGS = ("channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
                     "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res", "conv_kernel",
                     "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp", "magnitude_ema_beta")
_MAPPING_KWARGS = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier"}
_IGNORED_MAPPING_KWARGS = ("w_avg_beta",)  # training-only


def stylegan3_config(init_kwargs: Mapping[str, Any], source: str = "StyleGAN3 kwargs") -> dict[str, Any]:
    """Official ``Generator`` kwargs (``config.json`` ``init_kwargs`` or a pickle's record) -> ours.

    Raises:
        GeneratorLoadError: a kwarg the official StyleGAN3 generator does not take (naming it).
    """
    kw = dict(init_kwargs)
    out: dict[str, Any] = {}
    for key in ("z_dim", "c_dim", "w_dim", "img_channels"):
        if key in kw:
            out[key] = _plain(kw.pop(key))
    if "img_resolution" in kw:
        out["resolution"] = _plain(kw.pop("img_resolution"))
    for key, value in dict(kw.pop("mapping_kwargs", None) or {}).items():
        if key in _MAPPING_KWARGS:
            out[_MAPPING_KWARGS[key]] = _plain(value)
        elif key not in _IGNORED_MAPPING_KWARGS:
            raise GeneratorLoadError(f"{source}: unknown StyleGAN3 mapping argument {key!r}")
    for key in _SYNTHESIS_KWARGS:
        if key in kw:
            out[key] = _plain(kw.pop(key))
    if kw:
        raise GeneratorLoadError(f"{source}: unknown StyleGAN3 generator argument {sorted(kw)[0]!r}")
    missing = [k for k in ("z_dim", "c_dim", "w_dim", "resolution", "img_channels") if k not in out]
    if missing:
        raise GeneratorLoadError(f"{source}: StyleGAN3 kwargs lack {missing[0]!r}")
    return out


def stylegan3_from_state_dict(sd: Mapping[str, torch.Tensor], init_kwargs: Mapping[str, Any] | None, *,
                              conv_clamp: float | None | str = "auto", source: str = "state dict"
                              ) -> StyleGAN3Generator:
    """Build the generator ``init_kwargs`` describe (NVlabs names) and load ``sd`` (NVlabs keys) into it.

    Args:
        sd: ``G.state_dict()`` of the official module (``weights.pt``, or a pickle's flattened record).
        init_kwargs: the official ``G.init_kwargs``; ``None`` infers them (:func:`infer_stylegan3_config`).
        conv_clamp: ``"auto"`` takes the kwargs' value (default 256), a number or ``None`` overrides it.

    Returns:
        The generator in eval mode, fp32, on CPU.

    Raises:
        GeneratorLoadError: unknown kwargs, or a tensor missing, unexpected, mis-shaped or not floating point.
    """
    config = infer_stylegan3_config(sd, source) if init_kwargs is None else stylegan3_config(init_kwargs, source)
    if conv_clamp != "auto":
        config["conv_clamp"] = conv_clamp
    try:
        G = StyleGAN3Generator(**config)
    except (ValueError, TypeError) as exc:
        raise GeneratorLoadError(f"{source}: these kwargs do not form a StyleGAN3 generator ({exc})") from None
    expected = G.state_dict()
    where = f"{source} ({G.family}, {G.resolution} px)"
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    for what, keys in (("missing", missing), ("unexpected tensor", unexpected)):
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            raise GeneratorLoadError(f"{where}: {what} {keys[0]!r}{more}; the weights do not match the recorded "
                                     "configuration")
    for k, ref in expected.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.shape != ref.shape:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise GeneratorLoadError(f"{where}: {k!r} is {got}, expected a float tensor of shape {list(ref.shape)}")
    G.load_state_dict({k: sd[k].detach().to(torch.float32) for k in expected})
    return G.eval().requires_grad_(False)


def generator_from_record(record: Any, *, source: str = "network pickle",
                          conv_clamp: float | None | str = "auto") -> StyleGAN3Generator:
    """A StyleGAN3 ``Generator`` record of an NVIDIA pickle (``G_ema``) -> generator, from its weights and kwargs.

    The record was classified as StyleGAN3 by its state (:func:`stylemix.generators.pickles.classify_network`).
    """
    return stylegan3_from_state_dict(flatten_record(record, source), record_init_kwargs(record),
                                     conv_clamp=conv_clamp, source=source)


def generator_from_state_dict(sd: Mapping[str, torch.Tensor], *, source: str = "state dict",
                              conv_clamp: float | None | str = "auto") -> StyleGAN3Generator:
    """A bare NVlabs StyleGAN3 state dict -> generator, its kwargs inferred from names and shapes."""
    return stylegan3_from_state_dict(sd, None, conv_clamp=conv_clamp, source=source)


def _plain(value: Any) -> Any:
    """numpy scalars (as pickles hold them) -> Python numbers; everything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def infer_stylegan3_config(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, Any]:
    """Constructor kwargs of :class:`StyleGAN3Generator` for a bare NVlabs state dict (no recorded kwargs).

    Read from names and shapes: mapping depth, ``z_dim``/``c_dim``/``w_dim``, layer count, resolution, channels,
    margin, kernel size and whether the down filters are radial; ``channel_base``/``channel_max`` are chosen to
    reproduce every layer's channels. The progression's defaults (first cutoff and stopband, last stopband, two
    critical layers) are assumed and then *checked*: the filters designed from the result must equal the stored
    ones, else the file needs its kwargs. ``conv_clamp`` is not stored in weights and gets NVIDIA's default 256.

    Raises:
        GeneratorLoadError: names or shapes that do not form a StyleGAN3 generator, or a non-default progression.
    """
    def fail(why: str) -> GeneratorLoadError:
        return GeneratorLoadError(f"{source}: {why}; pass the generator's init kwargs (a network pickle records them)")

    mapping_layers = 0
    while f"mapping.fc{mapping_layers}.weight" in sd:
        mapping_layers += 1
    layers = sorted((int(m.group(1)), int(m.group(2)), int(m.group(3)))
                    for m in {re.match(r"synthesis\.L(\d+)_(\d+)_(\d+)\.weight$", str(k)) for k in sd} if m)
    if not mapping_layers or len(layers) < 4 or [i for i, _, _ in layers] != list(range(len(layers))) \
            or "synthesis.input.freqs" not in sd:
        raise fail("not a StyleGAN3 state dict (mapping.fcK, synthesis.input.*, synthesis.L{i}_{size}_{channels})")
    c_dim = embed = 0
    if "mapping.embed.weight" in sd:
        embed, c_dim = sd["mapping.embed.weight"].shape
    num_layers, (_, resolution, img_channels) = len(layers) - 1, layers[-1]
    channels = [ch for _, _, ch in layers[:-1]]
    first = sd[f"synthesis.L0_{layers[0][1]}_{layers[0][2]}.weight"]
    radial = any(k.endswith(".down_filter") and sd[k].ndim == 2 for k in sd)
    config = dict(z_dim=int(sd["mapping.fc0.weight"].shape[1] - embed), c_dim=int(c_dim),
                  w_dim=int(sd[f"mapping.fc{mapping_layers - 1}.weight"].shape[0]), resolution=resolution,
                  img_channels=img_channels, mapping_layers=mapping_layers, num_layers=num_layers,
                  conv_kernel=int(first.shape[-1]), use_radial_filters=radial)
    defaults = synthesis_schedule(resolution, img_channels, channel_base=1, channel_max=1, num_layers=num_layers)
    config["margin_size"] = (layers[0][1] - int(defaults["sampling_rates"][0])) // 2
    # channels_i = rint(min(base / 2 / cutoff_i, max)): max is the largest, each unsaturated layer bounds base.
    cutoffs = defaults["cutoffs"][:-1]
    channel_max = max(channels)
    low, high = 0.0, math.inf
    for ch, fc in zip(channels, cutoffs):
        if ch < channel_max:
            low, high = max(low, 2 * fc * (ch - 0.5)), min(high, 2 * fc * (ch + 0.5))
        else:
            low = max(low, 2 * fc * (channel_max - 0.5))
    if math.isinf(high):
        high = 2 * low
    powers = [2 ** p for p in range(40) if low <= 2 ** p <= high]
    config["channel_base"] = powers[0] if powers else math.ceil(low)
    config["channel_max"] = channel_max
    try:
        G = StyleGAN3Generator(**config)
    except ValueError as exc:
        raise fail(f"these weights do not form a StyleGAN3 generator ({exc})") from None
    built = G.state_dict()
    for k, v in built.items():
        stored = sd.get(k)
        if not isinstance(stored, torch.Tensor) or stored.shape != v.shape:
            raise fail(f"{k!r} does not match a StyleGAN3 generator with the default progression")
        if k.endswith("_filter") and not torch.allclose(stored.to(torch.float32), v, atol=1e-6):
            raise fail(f"the stored {k!r} is not the default progression's filter")
    return config
