"""A StyleGAN2 generator (mapping network + skip-architecture synthesis) in plain torch, written for stylemix.

Parameters live in NVIDIA's layout (``mapping.fc0.weight``, ``synthesis.b8.conv0.affine.bias``, ...), so
``G.state_dict()`` of a :class:`StyleGAN2Generator` is key-for-key the ``state_dict()`` of NVIDIA's
``training/networks_stylegan2.py`` ``Generator``. rosinality checkpoints are converted to this layout when loaded
(:mod:`stylemix.generators.stylegan2_formats`); there is one forward implementation for both families.

The numerics follow NVIDIA's reference (non-CUDA) code paths in fp32: fused (grouped) modulated convolutions,
transposed-conv-then-FIR up-sampling, ``lerp`` truncation and ``conv_clamp``. See ``docs/generators.md``.

Style slots: block ``R`` (4, 8, ..., resolution) reads three consecutive slots, and neighbouring blocks overlap by one:
the ToRGB of block ``R`` uses the same slot as ``conv0`` of block ``2R``. Unrolled, the layers run in the order of
:attr:`SynthesisNetwork.steps`, whose slot indices never decrease, which is what makes the prefix/suffix split a
simple cut of that list.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylemix.vectors import project_channels
from stylemix.generators.base import GeneratorBase, StyleLayout, resize_image, truncate

__all__ = ["ARCHITECTURES", "DEMOD_EPS", "LRELU_GAIN", "LRELU_SLOPE", "NOISE_MODES", "FullyConnected",
           "MappingNetwork", "NoiseMode", "SkipLayer", "Step", "StyleGAN2Generator", "SynthesisBlock",
           "SynthesisLayer", "SynthesisNetwork", "SynthesisState", "ToRGBLayer", "bias_act", "block_resolutions",
           "broadcast_batch", "default_crossover", "fir_filter2d", "make_resample_filter", "modulated_conv2d",
           "normalize_2nd_moment", "nvidia_channels", "rosinality_channels", "upsample2d"]

NoiseMode = Literal["const", "random", "none"]
NOISE_MODES: tuple[str, ...] = ("const", "random", "none")
# Block architectures of NVIDIA's generator: "skip" (config F, every block adds its ToRGB to an up-sampled image)
# and "resnet" (residual blocks with a 1x1 skip convolution, one ToRGB at the end). "orig" (configs A-D) is not here.
ARCHITECTURES: tuple[str, ...] = ("skip", "resnet")

# leaky ReLU slope and the gain that keeps its output at unit variance (He et al.), as in both reference codes.
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


# ----------------------------------------------------------------------------------------------------------------
# Channel tables


def block_resolutions(resolution: int) -> list[int]:
    """``[4, 8, ..., resolution]``; ``resolution`` must be a power of two >= 4."""
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"StyleGAN2 resolution must be a power of two >= 4, got {resolution}")
    return [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]


def nvidia_channels(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """NVIDIA's table ``{res: min(channel_base // res, channel_max)}`` for every block resolution."""
    return {r: min(channel_base // r, channel_max) for r in block_resolutions(resolution)}


def rosinality_channels(resolution: int, channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's table: 512 up to 32 px, then ``16384 * channel_multiplier // res`` (256*m at 64 px, ...)."""
    return {r: 512 if r <= 32 else 16384 * channel_multiplier // r for r in block_resolutions(resolution)}


# ----------------------------------------------------------------------------------------------------------------
# Pure ops


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x [B, D]`` scaled to unit mean square per row (NVIDIA's ``normalize_2nd_moment``, rosinality's PixelNorm)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def make_resample_filter(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR taps ``[k]`` -> normalised 2-D filter ``[k, k]`` summing to 1."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def fir_filter2d(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int, int, int], gain: float = 1.0) -> torch.Tensor:
    """Depthwise FIR filter of ``x [B, C, H, W]`` with ``f [k, k]`` after zero padding ``(x0, x1, y0, y1)``.

    Returns ``[B, C, H + y0 + y1 - k + 1, W + x0 + x1 - k + 1]``. The filter is flipped so that this is a true
    convolution, as in NVIDIA's ``upfirdn2d`` (the StyleGAN filters are symmetric, so it only matters for others).
    """
    channels = x.shape[1]
    x = F.pad(x, list(pad))
    weight = (f * gain).to(x.dtype).flip([0, 1])[None, None].repeat(channels, 1, 1, 1)
    return F.conv2d(x, weight, groups=channels)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """×2 up-sampling ``x [B, C, H, W]`` -> ``[B, C, 2H, 2W]``: zero insertion, then FIR ``f [k, k]``, gain 4."""
    b, c, h, w = x.shape
    up = x.new_zeros([b, c, 2 * h, 2 * w])
    up[:, :, ::2, ::2] = x
    k = f.shape[-1]
    p0, p1 = (k + 1) // 2, (k - 2) // 2  # (2, 1) for the 4-tap filter: keeps the output centred at 2H
    return fir_filter2d(up, f, (p0, p1, p0, p1), gain=4.0)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     up: bool = False, resample_filter: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution: one image as a conv with its modulated kernel, a batch as one conv of the
    modulated activations with the shared kernel.

    Args:
        x: input ``[B, I, H, W]``.
        weight: raw (un-scaled) kernel ``[O, I, k, k]``, ``k`` odd.
        styles: per-sample input-channel scales ``[B, I]``.
        demodulate: rescale each output filter to unit norm (``+1e-8`` on the un-scaled norm, NVIDIA's convention).
        up: ×2 up-sampling: transposed conv (stride 2, un-flipped kernel) followed by the FIR ``resample_filter``.
        resample_filter: ``[f, f]`` normalised filter, needed when ``up``.

    Returns:
        ``[B, O, H, W]`` (``[B, O, 2H, 2W]`` when ``up``).
    """
    batch, in_ch, height, width = x.shape
    out_ch, _, kh, kw = weight.shape
    if up and resample_filter is None:
        raise ValueError("an up-sampling modulated conv needs a resample_filter")
    if batch > 1:
        # NVIDIA's non-fused form: modulate the activations, one conv with the shared kernel, demodulate the
        # outputs, whose norms come from the styles and the kernel's squared sums ([B, I] @ [I, O]) without the
        # per-sample kernels. The same products summed in another order (~3e-7 apart); for a batch (the variants)
        # faster on a CPU than the grouped conv of per-sample kernels, which stays the one image's path.
        kernel = (weight.transpose(0, 1) if up else weight).to(x.dtype)  # conv_transpose2d wants [in, out, k, k]
        y = _conv(x * styles.reshape(batch, -1, 1, 1).to(x.dtype), kernel, up, resample_filter)
        if not demodulate:
            return y
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).T + DEMOD_EPS).rsqrt()  # [B, O]
        return y * dcoefs.reshape(batch, -1, 1, 1).to(y.dtype)
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # [B, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt().reshape(batch, -1, 1, 1, 1)
    # The batch goes into the channel axis so that one grouped conv applies a different kernel per sample.
    x = x.reshape(1, batch * in_ch, height, width)
    if up:
        w = w.transpose(1, 2).reshape(batch * in_ch, out_ch, kh, kw)  # conv_transpose2d wants [in, out/groups, k, k]
    else:
        w = w.reshape(batch * out_ch, in_ch, kh, kw)
    x = _conv(x, w.to(x.dtype), up, resample_filter, groups=batch)
    return x.reshape(batch, out_ch, *x.shape[2:])


def _conv(x: torch.Tensor, w: torch.Tensor, up: bool, resample_filter: torch.Tensor | None, groups: int = 1
          ) -> torch.Tensor:
    """``x [B, I, H, W]`` convolved with ``w`` (``[O, I/groups, k, k]``; up-sampling: ``[I, O/groups, k, k]``, a
    transposed conv at stride 2 followed by the FIR ``resample_filter``, NVIDIA's padding), ``k`` odd."""
    kw = w.shape[-1]
    if not up:
        return F.conv2d(x, w, padding=kw // 2, groups=groups)
    x = F.conv_transpose2d(x, w, stride=2, groups=groups)  # [B, O, 2H + k - 2, ...]
    fw = resample_filter.shape[-1]
    # NVIDIA's padding for "pad k//2, up 2, then filter": trims the transposed conv's border back to 2H.
    p0 = kw // 2 + (fw + 1) // 2 - (kw - 1)
    p1 = kw // 2 + (fw - 2) // 2 - (kw - 2)
    if min(p0, p1) < 0:
        raise ValueError(f"unsupported kernel/filter sizes for up-sampling: kernel {kw}, filter {fw}")
    return fir_filter2d(x, resample_filter, (p0, p1, p0, p1), gain=4.0)


def bias_act(x: torch.Tensor, bias: torch.Tensor, *, lrelu: bool, clamp: float | None, gain: float = 1.0
             ) -> torch.Tensor:
    """``x [B, C, ...] + bias [C]``, then optionally ``leaky_relu(0.2) * sqrt(2)``, times ``gain``, then
    ``clamp(±clamp * gain)`` (NVIDIA scales the clamp with the gain)."""
    x = x + bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if lrelu:
        x = F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)
    elif gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp * gain, clamp * gain)
    return x


# ----------------------------------------------------------------------------------------------------------------
# Layers (names and parameter shapes match NVIDIA's so that state dicts are interchangeable)


class FullyConnected(nn.Module):
    """Equalised-learning-rate linear layer: ``y = x @ (W * lr/sqrt(in)).T + b * lr``, optional leaky ReLU.

    ``weight [out, in]`` and ``bias [out]`` are stored divided by ``lr_multiplier`` (that is what the learning-rate
    trick means), so the effective values are recovered at run time.
    """

    def __init__(self, in_features: int, out_features: int, *, lrelu: bool = False, lr_multiplier: float = 1.0,
                 bias_init: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.lrelu = lrelu
        self.lr_multiplier = lr_multiplier
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, in]`` -> ``[B, out]``."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        if self.lr_multiplier != 1:
            b = b * self.lr_multiplier
        if not self.lrelu:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, lrelu=True, clamp=None)


class MappingNetwork(nn.Module):
    """``z [B, z_dim]`` (+ ``c [B, c_dim]``) -> ``ws [B, num_ws, w_dim]``, with truncation towards ``w_avg``."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, *, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 lr_multiplier: float = 0.01) -> None:
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ValueError("a mapping network needs z_dim > 0 or c_dim > 0")
        if num_layers < 1:
            raise ValueError(f"mapping needs at least one layer, got {num_layers}")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        self.embed_features = (w_dim if embed_features is None else embed_features) if c_dim else 0
        self.layer_features = w_dim if layer_features is None else layer_features
        self.lr_multiplier = lr_multiplier
        features = [z_dim + self.embed_features] + [self.layer_features] * (num_layers - 1) + [w_dim]
        if c_dim:
            # The label embedding trains at full rate (lr 1) and has no activation, as in NVIDIA's code.
            self.embed = FullyConnected(c_dim, self.embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnected(features[i], features[i + 1], lrelu=True,
                                                   lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """``z [B, z_dim]``, ``c [B, c_dim]`` -> ``ws [B, num_ws, w_dim]``, ``lerp(w_avg, ws, psi)`` below cutoff."""
        x = None
        if self.z_dim:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [B, {self.z_dim}], got {None if z is None else list(z.shape)}")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"c must be [B, {self.c_dim}] for this conditional generator, got "
                                 f"{None if c is None else list(c.shape)}")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = y if x is None else torch.cat([x, y], dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (optionally ×2 up), noise, bias, leaky ReLU, clamp: ``[B, I, r, r]`` -> ``[B, O, R, R]``."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, up: bool,
                 conv_clamp: float | None, use_noise: bool, resample_filter: torch.Tensor) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.resolution, self.up = in_channels, out_channels, resolution, up
        self.conv_clamp, self.use_noise = conv_clamp, use_noise
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)  # styles start at 1 = no modulation
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", resample_filter.clone())
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", gain: float = 1.0
                ) -> torch.Tensor:
        """``x [B, I, r, r]``, ``w [B, w_dim]`` -> ``[B, O, R, R]`` (``gain`` scales the activation and clamp)."""
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up,
                             resample_filter=self.resample_filter)
        if self.use_noise and noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        return bias_act(x, self.bias, lrelu=True, clamp=self.conv_clamp, gain=gain)


class SkipLayer(nn.Module):
    """The resnet block's shortcut: 1x1 conv (He-scaled, no bias) then ×2 FIR up-sampling, times ``sqrt(1/2)``:
    ``[B, I, r, r]`` -> ``[B, O, 2r, 2r]`` (NVIDIA's ``Conv2dLayer(kernel_size=1, bias=False, up=2)``)."""

    def __init__(self, in_channels: int, out_channels: int, resample_filter: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.register_buffer("resample_filter", resample_filter.clone())
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, (self.weight * self.weight_gain).to(x.dtype))
        return upsample2d(x, self.resample_filter) * math.sqrt(0.5)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 conv without demodulation: ``x [B, C, R, R]`` -> ``[B, img_channels, R, R]``."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, *, conv_clamp: float | None) -> None:
        super().__init__()
        self.in_channels, self.conv_clamp = in_channels, conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([img_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([img_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)  # He scaling, applied to the styles since there is no demod

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, lrelu=False, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: ``const`` (4 px) or ``conv0`` (up) + ``conv1``, and the ``torgb`` that feeds the skip image.

    ``architecture="resnet"``: blocks after the first add a :class:`SkipLayer` of their input to ``conv1`` (both
    scaled by ``sqrt(1/2)``), and only the last block has a ``torgb``.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int, *,
                 conv_clamp: float | None, use_noise: bool, resample_filter: torch.Tensor,
                 architecture: str = "skip", is_last: bool = False) -> None:
        super().__init__()
        self.resolution, self.in_channels, self.out_channels = resolution, in_channels, out_channels
        self.architecture = architecture
        self.register_buffer("resample_filter", resample_filter.clone())
        layer_kwargs = dict(conv_clamp=conv_clamp, use_noise=use_noise, resample_filter=resample_filter)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, up=False, **layer_kwargs)
        self.has_torgb = architecture == "skip" or is_last
        if self.has_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.residual = architecture == "resnet" and in_channels != 0
        if self.residual:
            self.skip = SkipLayer(in_channels, out_channels, resample_filter)


@dataclasses.dataclass(frozen=True)
class Step:
    """One layer of the unrolled synthesis: ``kind`` in ``const, conv0, conv1, torgb``, its block and its slot."""

    kind: str
    resolution: int
    w_index: int


@dataclasses.dataclass
class SynthesisState:
    """What :meth:`SynthesisNetwork.prefix` hands to :meth:`SynthesisNetwork.suffix`.

    Attributes:
        crossover: the prefix ran every step whose slot is ``< crossover``.
        step: number of steps of :attr:`SynthesisNetwork.steps` already run.
        x: features after the last conv run, ``[B, C, r, r]`` (None before the first).
        img: skip image after the last ToRGB run, ``[B, 3, r', r']`` (None before the first).
        images: the skip image after every completed block, by resolution, for early exits below ``img``.
        shortcut: resnet only, the current block's skip branch ``[B, C, r, r]`` between its ``conv0`` and ``conv1``.
    """

    crossover: int
    step: int
    x: torch.Tensor | None
    img: torch.Tensor | None
    images: dict[int, torch.Tensor]
    shortcut: torch.Tensor | None = None


class SynthesisNetwork(nn.Module):
    """``ws [B, num_ws, w_dim]`` -> ``img [B, img_channels, R, R]``, skip or resnet architecture, fp32."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channels: Mapping[int, int], *,
                 conv_clamp: float | None = 256.0, use_noise: bool = True,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), architecture: str = "skip") -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.architecture = architecture
        self.block_resolutions = block_resolutions(resolution)
        missing = [r for r in self.block_resolutions if r not in channels]
        if missing:
            raise ValueError(f"channels has no entry for resolutions {missing}")
        self.channels = {r: int(channels[r]) for r in self.block_resolutions}
        f = make_resample_filter(resample_filter)
        steps: list[Step] = []
        for i, res in enumerate(self.block_resolutions):
            in_ch = 0 if res == 4 else self.channels[res // 2]
            block = SynthesisBlock(in_ch, self.channels[res], w_dim, res, img_channels, conv_clamp=conv_clamp,
                                   use_noise=use_noise, resample_filter=f, architecture=architecture,
                                   is_last=res == resolution)
            setattr(self, f"b{res}", block)
            # Slots: b4 reads (0: conv1, 1: torgb); block i >= 1 reads (2i-1: conv0, 2i: conv1, 2i+1: torgb).
            # A resnet block without ToRGB leaves its slot 2i+1 to the next block's conv0 alone.
            if res == 4:
                steps += [Step("const", 4, 0), Step("conv1", 4, 0)]
            else:
                steps += [Step("conv0", res, 2 * i - 1), Step("conv1", res, 2 * i)]
            if block.has_torgb:
                steps.append(Step("torgb", res, 2 * i + 1))
        self.steps: tuple[Step, ...] = tuple(steps)
        self.num_ws = 2 * len(self.block_resolutions)

    def block(self, resolution: int) -> SynthesisBlock:
        return getattr(self, f"b{resolution}")

    def slot_resolutions(self) -> tuple[int, ...]:
        """For every slot, the highest resolution among the layers it drives (the slot's conv, else its ToRGB)."""
        res = [0] * self.num_ws
        for s in self.steps:
            res[s.w_index] = max(res[s.w_index], s.resolution)
        return tuple(res)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` -> ``img [B, img_channels, R, R]`` (raw float, not clamped to [-1, 1])."""
        return self.suffix(self.prefix(ws, 0, noise_mode=noise_mode), ws, noise_mode=noise_mode)

    def prefix(self, ws: torch.Tensor, crossover: int, noise_mode: str = "const") -> SynthesisState:
        """Run every step whose slot is ``< crossover`` on ``ws [B, num_ws, w_dim]``."""
        self._check_ws(ws, noise_mode)
        if not 0 <= crossover <= self.num_ws:
            raise ValueError(f"crossover must lie in [0, {self.num_ws}], got {crossover}")
        stop = sum(1 for s in self.steps if s.w_index < crossover)  # slots never decrease along steps
        state = SynthesisState(crossover=int(crossover), step=0, x=None, img=None, images={})
        return self._run(state, ws, stop, noise_mode)

    def prefixes(self, ws: torch.Tensor, crossovers: Sequence[int], noise_mode: str = "const"
                 ) -> dict[int, SynthesisState]:
        """:meth:`prefix` of ``ws [B, num_ws, w_dim]`` at each crossover, in one pass over the layers.

        Each state continues from the one at the next smaller crossover, so the shared layers run once; the ops and
        their inputs are those of separate prefixes, so the states are identical to them.
        """
        self._check_ws(ws, noise_mode)
        states: dict[int, SynthesisState] = {}
        state = SynthesisState(crossover=0, step=0, x=None, img=None, images={})
        for c in sorted({int(c) for c in crossovers}):
            if not 0 <= c <= self.num_ws:
                raise ValueError(f"crossover must lie in [0, {self.num_ws}], got {c}")
            stop = sum(1 for s in self.steps if s.w_index < c)
            # _run leaves its input state untouched, so the states handed out earlier stay valid.
            state = self._run(dataclasses.replace(state, crossover=c), ws, stop, noise_mode)
            states[c] = state
        return states

    def suffix(self, state: SynthesisState, ws: torch.Tensor, resolution: int | None = None,
               noise_mode: str = "const") -> torch.Tensor:
        """Finish ``ws [N, num_ws, w_dim]`` from ``state`` -> skip image ``[N, img_channels, r, r]``.

        A batch-1 state is broadcast to ``N``. ``resolution`` stops after that block's ToRGB and returns the partial
        skip image there (what NVIDIA's block returns as ``img``).
        """
        self._check_ws(ws, noise_mode)
        n = ws.shape[0]
        resolution = self.resolution if resolution is None else int(resolution)
        if resolution not in self.block_resolutions:
            raise ValueError(f"resolution must be one of {self.block_resolutions}, got {resolution}")
        if not self.block(resolution).has_torgb:  # resnet: no partial image below the last block
            return resize_image(self.suffix(state, ws, noise_mode=noise_mode), resolution)
        stop = self.steps.index(Step("torgb", resolution, self._torgb_slot(resolution))) + 1
        if state.step >= stop:  # the prefix already went past this block
            return broadcast_batch(state.images[resolution], n)
        local = SynthesisState(state.crossover, state.step, broadcast_batch(state.x, n), broadcast_batch(state.img, n),
                               {}, broadcast_batch(state.shortcut, n))
        return self._run(local, ws, stop, noise_mode).img

    def features(self, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
        """Block output ``x`` (after ``conv1``) at ``resolution``: ``[B, channels[resolution], r, r]``."""
        self._check_ws(ws, noise_mode)
        if resolution not in self.block_resolutions:
            raise ValueError(f"resolution must be one of {self.block_resolutions}, got {resolution}")
        state = SynthesisState(crossover=0, step=0, x=None, img=None, images={})
        return self._run(state, ws, self._features_stop(resolution), noise_mode, rgb=False).x

    def features_from(self, state: SynthesisState, ws: torch.Tensor, resolution: int, noise_mode: str = "const"
                      ) -> torch.Tensor:
        """:meth:`features` of ``ws [N, num_ws, w_dim]`` continuing from a prefix ``state`` (batch 1 broadcasts).

        Returns ``[N, channels[resolution], r, r]``. Only the convolutions run: the skip image is not needed for
        features. A state already past block ``resolution`` holds no features there, but then they depend on kept
        slots only, so they are computed once, for one variant, and broadcast.
        """
        self._check_ws(ws, noise_mode)
        if resolution not in self.block_resolutions:
            raise ValueError(f"resolution must be one of {self.block_resolutions}, got {resolution}")
        n, stop = ws.shape[0], self._features_stop(resolution)
        if state.step > stop:
            return broadcast_batch(self.features(ws[:1], resolution, noise_mode), n)
        local = SynthesisState(state.crossover, state.step, broadcast_batch(state.x, n), None, {},
                               broadcast_batch(state.shortcut, n))
        return broadcast_batch(self._run(local, ws, stop, noise_mode, rgb=False).x, n)

    def suffix_features(self, state: SynthesisState, ws: torch.Tensor, resolutions: Sequence[int],
                        noise_mode: str = "const") -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """:meth:`suffix` at full resolution that keeps, on the way, :meth:`features` at each of ``resolutions``
        whose block output lies at or after ``state``: ``(img [N, C_img, R, R], {r: [N, C, r, r]})``. The same
        steps on the same inputs as the two renders apart, so the same values."""
        self._check_ws(ws, noise_mode)
        n = ws.shape[0]
        local = SynthesisState(state.crossover, state.step, broadcast_batch(state.x, n), broadcast_batch(state.img, n),
                               dict(state.images), broadcast_batch(state.shortcut, n))
        feats = {}
        for r in sorted({int(r) for r in resolutions if int(r) in self.block_resolutions}):
            stop = self._features_stop(r)
            if stop < local.step:
                continue  # block r ran inside the prefix: the caller renders it
            local = self._run(local, ws, stop, noise_mode)
            feats[r] = local.x
        return self.suffix(local, ws, noise_mode=noise_mode), feats

    def _features_stop(self, resolution: int) -> int:
        """Number of steps up to and including block ``resolution``'s ``conv1``."""
        slot = 0 if resolution == 4 else 2 * self.block_resolutions.index(resolution)
        return self.steps.index(Step("conv1", resolution, slot)) + 1

    def _torgb_slot(self, resolution: int) -> int:
        return 2 * self.block_resolutions.index(resolution) + 1

    def _run(self, state: SynthesisState, ws: torch.Tensor, stop: int, noise_mode: str, rgb: bool = True
             ) -> SynthesisState:
        """Run ``steps[state.step:stop]``; returns a new state (``state`` itself is left untouched for reuse).

        ``rgb=False`` skips the ToRGB layers, for callers that want only ``x``: the returned state's skip images
        are then stale and it must not be continued.
        """
        x, img, images, shortcut = state.x, state.img, dict(state.images), state.shortcut
        ws = ws.to(torch.float32)
        for step in self.steps[state.step:stop]:
            block = self.block(step.resolution)
            w = ws[:, step.w_index]
            if step.kind == "const":
                x = block.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            elif step.kind == "conv0":
                if block.residual:
                    shortcut = block.skip(x)
                x = block.conv0(x, w, noise_mode)
            elif step.kind == "conv1" and block.residual:
                x = shortcut + block.conv1(x, w, noise_mode, gain=math.sqrt(0.5))
                shortcut = None
            elif step.kind == "conv1":
                x = block.conv1(x, w, noise_mode)
            elif rgb:
                y = block.torgb(x, w, noise_mode)
                # Out of place: img may be a broadcast view of a batch-1 prefix state.
                img = y if img is None else upsample2d(img, block.resample_filter) + y
                images[step.resolution] = img
        return SynthesisState(state.crossover, stop, x, img, images, shortcut)

    def _check_ws(self, ws: torch.Tensor, noise_mode: str) -> None:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")


def broadcast_batch(t: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """A batch-1 tensor ``[1, ...]`` viewed as ``[n, ...]``; a batch-``n`` tensor unchanged."""
    if t is None or t.shape[0] == n:
        return t
    if t.shape[0] != 1:
        raise ValueError(f"prefix state has batch {t.shape[0]}; the suffix needs batch 1 or {t.shape[0]}, got {n}")
    return t.expand(n, *t.shape[1:])


# ----------------------------------------------------------------------------------------------------------------
# The generator


def default_crossover(slot_resolutions: Sequence[int], resolution: int) -> int:
    """Slots kept by style mixing by default: those driving layers up to ``min(16, resolution // 2)`` px.

    Pose, shape and layout are settled by the coarse blocks; 16 px is where StyleGAN's "middle" styles begin to
    change features rather than arrangement, so keeping slots up to 16 px fixes the layout while colour and texture
    vary. In tiny networks (8-16 px) the bound halves so that at least the finest block stays free.
    """
    bound = min(16, resolution // 2)
    kept = sum(1 for r in slot_resolutions if r <= bound)
    return min(max(kept, 1), len(slot_resolutions) - 1)


class StyleGAN2Generator(GeneratorBase):
    """StyleGAN2 (config F, skip generator) with NVIDIA's module names; ``G.mapping`` and ``G.synthesis`` are modules.

    Args:
        z_dim: latent size (0 only for purely conditional generators).
        c_dim: label size; > 0 adds the ``mapping.embed`` layer.
        w_dim: intermediate latent size.
        resolution: output size, a power of two >= 4.
        img_channels: output channels (3).
        channel_base, channel_max: NVIDIA's table ``min(channel_base // res, channel_max)``.
        channels: an explicit ``{res: channels}`` table, overriding the two above (rosinality's, or any other).
        mapping_layers: depth of the mapping MLP.
        mapping_lr_multiplier: the mapping's learning-rate multiplier (0.01 in both reference codes); it scales
            stored weights at run time, so it must match the training value.
        embed_features, layer_features: mapping widths (default ``w_dim``).
        conv_clamp: clamp of conv/ToRGB outputs; NVIDIA's blocks default to 256, rosinality has none (``None``).
        use_noise: whether layers have noise inputs.
        resample_filter: FIR taps of the up-sampling filter.
        architecture: ``"skip"`` (config F, the released generators) or ``"resnet"`` (residual blocks, one ToRGB).
        family: where the weights came from, for reporting: ``"stylegan2"`` (NVIDIA PyTorch), ``"stylegan2-tf"``
            (NVIDIA TensorFlow) or ``"rosinality"``; the network is the same.
        crossover: default crossover of :attr:`style_layout` (see :func:`default_crossover`).
    """

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, resolution: int = 1024, *,
                 img_channels: int = 3, channel_base: int = 32768, channel_max: int = 512,
                 channels: Mapping[int, int] | None = None, mapping_layers: int = 8,
                 mapping_lr_multiplier: float = 0.01, embed_features: int | None = None,
                 layer_features: int | None = None, conv_clamp: float | None = 256.0, use_noise: bool = True,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), architecture: str = "skip",
                 family: str = "stylegan2", crossover: int | None = None) -> None:
        super().__init__()
        channels = nvidia_channels(resolution, channel_base, channel_max) if channels is None else \
            {int(k): int(v) for k, v in channels.items()}
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, channels, conv_clamp=conv_clamp,
                                          use_noise=use_noise, resample_filter=resample_filter,
                                          architecture=architecture)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, num_layers=mapping_layers,
                                      embed_features=embed_features, layer_features=layer_features,
                                      lr_multiplier=mapping_lr_multiplier)
        self.z_dim, self.c_dim, self.w_dim, self.resolution = z_dim, c_dim, w_dim, resolution
        self.img_channels, self.conv_clamp, self.use_noise, self.family = img_channels, conv_clamp, use_noise, family
        slot_res = self.synthesis.slot_resolutions()
        if crossover is None:
            crossover = default_crossover(slot_res, resolution)
        self.style_layout = StyleLayout.from_slot_resolutions(slot_res, crossover)
        self.w_avg_source = "stored"  # loaders set "estimated" when a checkpoint has no average latent

    @property
    def derived_state(self) -> tuple[str, ...]:
        """State-dict entries computed at load rather than read from the file: an estimated ``w_avg``
        (:mod:`stylemix.identity` leaves them out of the generator's id)."""
        return ("mapping.w_avg",) if self.w_avg_source.startswith("estimated") else ()

    @property
    def channels(self) -> dict[int, int]:
        """``{resolution: feature channels}`` of every block."""
        return dict(self.synthesis.channels)

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this architecture.

        Weights are not included, and neither are the FIR taps: ``resample_filter`` is a placeholder of the right
        length, since the filter itself is a buffer that ``load_state_dict`` restores.
        """
        m = self.mapping
        return dict(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, resolution=self.resolution,
                    img_channels=self.img_channels, channels=self.channels, mapping_layers=m.num_layers,
                    mapping_lr_multiplier=m.lr_multiplier, embed_features=m.embed_features or None,
                    layer_features=m.layer_features, conv_clamp=self.conv_clamp, use_noise=self.use_noise,
                    resample_filter=(1,) * self.synthesis.b4.resample_filter.shape[-1],
                    architecture=self.synthesis.architecture, family=self.family,
                    crossover=self.style_layout.default_crossover)

    def synthesis_prefix(self, ws: torch.Tensor, crossover: int, noise_mode: str = "const") -> SynthesisState:
        """Run every layer driven only by slots ``[0, crossover)`` of ``ws [B, num_ws, w_dim]``, once."""
        return self.synthesis.prefix(ws, crossover, noise_mode=noise_mode)

    def synthesis_suffix(self, state: Any, ws: torch.Tensor, resolution: int | None = None,
                         noise_mode: str = "const") -> torch.Tensor:
        """Finish ``ws [N, num_ws, w_dim]`` from a prefix ``state`` -> skip image ``[N, 3, r, r]``."""
        if not isinstance(state, SynthesisState):  # e.g. GeneratorBase's FullSynthesisState
            state = self.synthesis.prefix(ws, 0, noise_mode=noise_mode)
        return self.synthesis.suffix(state, ws, resolution=resolution, noise_mode=noise_mode)

    def features(self, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
        """Feature maps ``x [B, C, r, r]`` that block ``resolution`` outputs (its ``conv1``)."""
        return self.synthesis.features(ws, resolution, noise_mode=noise_mode)

    def synthesis_suffix_features(self, state: Any, ws: torch.Tensor, resolutions: list[int],
                                  noise_mode: str = "const") -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """:meth:`synthesis_suffix` at full resolution with :meth:`features` at ``resolutions`` taken on the way:
        ``(img [N, 3, R, R], {r: [N, C, r, r]})``, only the blocks the suffix runs (the caller renders the others,
        :func:`stylemix.render.synthesis_suffix_features`)."""
        if not isinstance(state, SynthesisState):  # e.g. GeneratorBase's FullSynthesisState
            state = self.synthesis.prefix(ws, 0, noise_mode=noise_mode)
        img, feats = self.synthesis.suffix_features(state, ws, resolutions, noise_mode=noise_mode)
        return img.contiguous(), {r: f.contiguous() for r, f in feats.items()}

    def synthesis_prefixes(self, ws: torch.Tensor, crossovers: list[int], noise_mode: str = "const"
                           ) -> dict[int, SynthesisState]:
        """:meth:`synthesis_prefix` at each crossover in one pass: each state continues from the previous one."""
        return self.synthesis.prefixes(ws, crossovers, noise_mode=noise_mode)

    def features_suffix(self, state: Any, ws: torch.Tensor, resolution: int, feature_dim: int | None = None,
                        noise_mode: str = "const") -> torch.Tensor:
        """:meth:`features` of ``ws [N, num_ws, w_dim]`` continuing from a prefix ``state`` (batch 1 broadcasts),
        optionally projected by :func:`stylemix.vectors.project_channels` to ``feature_dim`` channels:
        ``[N, D, r, r]``, ``r`` a block resolution. Runs only the convolutions from the state up to block ``r``.
        """
        if not isinstance(state, SynthesisState):  # e.g. GeneratorBase's FullSynthesisState
            state = SynthesisState(crossover=0, step=0, x=None, img=None, images={})
        feats = self.synthesis.features_from(state, ws, resolution, noise_mode=noise_mode)
        if feature_dim is not None:
            feats = project_channels(feats, feature_dim)
        return feats.contiguous()  # a state past block r gives a broadcast view

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({
            "architecture": self.synthesis.architecture,
            "mapping_layers": self.mapping.num_layers,
            "channels": {str(r): c for r, c in self.channels.items()},
            "conv_clamp": self.conv_clamp,
            "noise_inputs": self.use_noise,
            "w_avg": self.w_avg_source,
            "parameters": sum(p.numel() for p in self.parameters()),
        })
        return info
