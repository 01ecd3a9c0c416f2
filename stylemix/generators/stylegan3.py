"""A StyleGAN3 (alias-free) generator, T and R configurations, in plain torch, written for stylemix.

Parameters and buffers live in NVIDIA's layout (``mapping.fc0.weight``, ``synthesis.input.freqs``,
``synthesis.L3_52_512.magnitude_ema``, ...), so ``G.state_dict()`` is key-for-key the ``state_dict()`` of the
official ``training/networks_stylegan3.py`` ``Generator`` built with the same keyword arguments. The mapping network
and truncation are StyleGAN2's (:mod:`stylemix.generators.stylegan2`); only the synthesis is new.

Everything per layer (cutoff, stopband, sampling rate, size, channels, up/down factors, filter taps, padding) follows
from the constructor arguments through :func:`synthesis_schedule` and :func:`layer_specs`, which apply the formulas of
the paper's Appendix F the way the official code does (float64 numpy), and the low-pass filters are designed with
scipy's Kaiser-windowed ``firwin`` or, for R's down-sampling, a windowed jinc (:func:`design_lowpass_filter`). Loading
weights overwrites the filters anyway; designing them identically is what lets a freshly built network match.

Numerics are those of the official reference (non-CUDA) ops in fp32, with one deliberate difference: the
pre-normalisation of the styles before demodulation divides by their mean square *per sample*, not over the whole
batch. Demodulation cancels that factor up to the ``1e-8`` epsilon, so the two agree to rounding (about 1e-6 on the
fixtures), and a variant renders the same whatever batch it is rendered in.

Style slots: slot 0 drives the Fourier-feature input, slot ``i + 1`` drives layer ``L{i}`` (the last one is ToRGB);
no slot drives two layers. A layer's *sampling rate* ``s`` is the side of its grid over the image area; its feature
map has ``s + 2 * margin`` pixels per side (the last two layers none), and the central ``s x s`` of it are aligned
with the image's pixel grid at that rate. See docs/generators.md for the table.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylemix.errors import GeneratorLoadError, StylemixError
from stylemix.vectors import project_channels
from stylemix.generators.base import GeneratorBase, StyleLayout, resize_image
from stylemix.generators.stylegan2 import DEMOD_EPS, NOISE_MODES, FullyConnected, MappingNetwork, _broadcast

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------------------------
# Layer schedule (all derived from the constructor arguments)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Everything one synthesis layer needs that is not a weight (official attribute names)."""

    index: int
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # x0, x1, y0, y1 of the filtered leaky ReLU; negative values crop

    @property
    def margin(self) -> int:
        """Pixels of the output outside the image area on each side."""
        return (self.out_size - self.out_sampling_rate) // 2


def synthesis_schedule(resolution: int, img_channels: int, *, channel_base: int = 32768, channel_max: int = 512,
                       num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                       first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                       margin_size: int = 10) -> dict[str, np.ndarray]:
    """Per-entry quantities ``[num_layers + 1]`` (float64) of the geometric cutoff/stopband progression.

    Returns ``cutoffs``, ``stopbands``, ``sampling_rates``, ``half_widths``, ``sizes`` and ``channels``; entry 0 also
    describes the Fourier input, entry ``i`` the output of layer ``L{i}``.
    """
    if num_layers <= num_critical:
        raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
    last_cutoff = resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = resolution  # the last two layers drop the margin (L{N-1} crops it)
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels)


def layer_specs(schedule: Mapping[str, np.ndarray], *, num_critical: int = 2, conv_kernel: int = 3,
                filter_size: int = 6, lrelu_upsampling: int = 2, use_radial_filters: bool = False
                ) -> list[LayerSpec]:
    """The ``num_layers + 1`` layers (the last is ToRGB) of a :func:`synthesis_schedule`."""
    rates, sizes = schedule["sampling_rates"], schedule["sizes"]
    cutoffs, half_widths, channels = schedule["cutoffs"], schedule["half_widths"], schedule["channels"]
    n = len(rates) - 1
    specs = []
    for idx in range(n + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == n
        in_rate, out_rate = int(rates[prev]), int(rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else lrelu_upsampling)  # leaky ReLU at 2x the rate
        up, down = tmp_rate // in_rate, tmp_rate // out_rate
        if in_rate * up != tmp_rate or out_rate * down != tmp_rate:
            raise ValueError(f"layer {idx}: sampling rates {in_rate} -> {tmp_rate} -> {out_rate} are not integer "
                             "multiples")
        up_taps = filter_size * up if up > 1 and not is_torgb else 1
        down_taps = filter_size * down if down > 1 and not is_torgb else 1
        kernel = 1 if is_torgb else conv_kernel
        in_size, out_size = int(sizes[prev]), int(sizes[idx])
        # Padding that keeps sample positions symmetric about the centre (paper, Appendix C.3).
        total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        padding = (lo, total - lo, lo, total - lo)
        out_ch = int(channels[idx])
        specs.append(LayerSpec(
            index=idx, name=f"L{idx}_{out_size}_{out_ch}", is_torgb=is_torgb,
            is_critically_sampled=idx >= n - num_critical, in_channels=int(channels[prev]), out_channels=out_ch,
            in_size=in_size, out_size=out_size, in_sampling_rate=in_rate, out_sampling_rate=out_rate,
            tmp_sampling_rate=tmp_rate, in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]), conv_kernel=kernel,
            up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
            down_radial=bool(use_radial_filters) and idx < n - num_critical, padding=padding))
    return specs


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
                          ) -> torch.Tensor | None:
    """Low-pass FIR: ``[numtaps]`` separable Kaiser design, ``[numtaps, numtaps]`` radial jinc, ``None`` for 1 tap.

    Args:
        numtaps: filter length (even for every layer StyleGAN3 builds, so the jinc never meets radius 0).
        cutoff: cutoff frequency ``f_c``.
        width: transition band width (``2 * f_h``).
        fs: sampling rate the filter runs at.
        radial: the radially symmetric 2-D design (StyleGAN3-R down-sampling), sum 1.
    """
    import scipy.signal
    import scipy.special

    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               dtype=torch.float32)
    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    radius = np.hypot(*np.meshgrid(pos, pos))
    jinc = scipy.special.j1(2 * cutoff * (np.pi * radius)) / (np.pi * radius)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    jinc *= np.outer(window, window)
    jinc /= np.sum(jinc)
    return torch.as_tensor(jinc, dtype=torch.float32)


def input_transform_matrix(rotate_deg: float = 0.0, translate: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The ``[3, 3]`` float32 matrix for ``G.input_transform`` that rotates the image by ``rotate_deg`` degrees
    and translates it by ``translate`` (in image widths), as NVlabs ``gen_images.py --rotate --translate``.

    The input layer expects the inverse of the image-space transform; it is inverted in float64, then cast.
    """
    a = math.radians(float(rotate_deg))
    m = np.array([[math.cos(a), math.sin(a), float(translate[0])],
                  [-math.sin(a), math.cos(a), float(translate[1])],
                  [0.0, 0.0, 1.0]], dtype=np.float64)
    return np.linalg.inv(m).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Pure ops


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, *, up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Up-sample by zero insertion, pad (negative crops), FIR-filter, keep every ``down``-th sample.

    Args:
        x: ``[B, C, H, W]``.
        f: ``[k]`` (applied separably, along x then y, each pass scaled by ``sqrt(gain)``), ``[k, k]`` (one 2-D
            pass scaled by ``gain``), or ``None`` (identity).
        padding: ``(x0, x1, y0, y1)`` applied after the zero insertion.

    Returns:
        ``[B, C, (H*up + y0 + y1 - k + 1) // down (rounded up), ...]``, filtered as a true convolution.
    """
    b, c, h, w = x.shape
    if up > 1 and f is not None and f.ndim == 1:
        return _upsample_separable(x, f, up, padding, gain, down)
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x0, x1, y0, y1 = (int(p) for p in padding)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0):x.shape[2] - max(-y1, 0), max(-x0, 0):x.shape[3] - max(-x1, 0)]
    if f is not None:
        f = f.to(x.dtype).flip(list(range(f.ndim)))  # flipped: conv2d correlates, the op convolves
        if f.ndim == 1:
            f = f * math.sqrt(gain)
            x = F.conv2d(_nhwc(x), f.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, stride=(1, down))
            x = F.conv2d(_nhwc(x), f.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, stride=(down, 1))
            return x
        x = F.conv2d(_nhwc(x), (f * gain)[None, None].expand(c, 1, -1, -1), groups=c, stride=down)
        return x
    if gain != 1:
        x = x * gain
    return x[:, :, ::down, ::down] if down > 1 else x


def _upsample_separable(x: torch.Tensor, f: torch.Tensor, up: int, padding: Sequence[int], gain: float,
                        down: int) -> torch.Tensor:
    """:func:`upfirdn2d` for a 1-D filter and ``up > 1``, as strided transposed convolutions.

    The same products as zero insertion followed by the filter, without the ``up - 1`` zeros per sample. The
    transposed conv of a length-``n`` axis spans ``(n - 1) * up + k`` samples; the padded, zero-inserted axis
    corresponds to its window starting at ``k - 1 - p0``, ``F.pad`` (negative = crop) cuts it out.
    """
    c, k = x.shape[1], f.shape[0]
    g = (f * math.sqrt(gain)).to(x.dtype)
    x0, x1, y0, y1 = (int(p) for p in padding)
    x = F.conv_transpose2d(_nhwc(x), g.reshape(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, up), groups=c)
    x = F.conv_transpose2d(_nhwc(x), g.reshape(1, 1, k, 1).expand(c, 1, k, 1), stride=(up, 1), groups=c)
    x = F.pad(x, [x0 - (k - 1), x1 + up - k, y0 - (k - 1), y1 + up - k])
    return x[:, :, ::down, ::down] if down > 1 else x


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    # Depthwise FIR convolutions run several times faster on CPU in channels-last layout.
    return x.contiguous(memory_format=torch.channels_last)


def filtered_lrelu(x: torch.Tensor, up_filter: torch.Tensor | None, down_filter: torch.Tensor | None,
                   bias: torch.Tensor, *, up: int, down: int, padding: Sequence[int], gain: float, slope: float,
                   clamp: float | None) -> torch.Tensor:
    """Bias, ×``up`` up-sampling (FIR gain ``up**2``), leaky ReLU × ``gain``, clamp, ×``down`` down-sampling.

    ``x [B, C, H, W]`` -> ``[B, C, H', W']`` with ``H' = (H*up + y0 + y1 - (ku-1) - (kd-1) + down - 1) // down``.
    """
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d(x, up_filter, up=up, padding=padding, gain=up ** 2)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, down_filter, down=down)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool,
                     padding: int, input_gain: torch.Tensor) -> torch.Tensor:
    """StyleGAN3's modulated convolution: one image as a conv with its modulated kernel, a batch as one conv of the
    modulated activations with the shared kernel.

    Args:
        x: ``[B, I, H, W]``.
        weight: ``[O, I, k, k]``.
        styles: ``[B, I]``.
        demodulate: pre-normalise weight (per output channel) and styles (per sample), then demodulate.
        padding: zero padding on every side (``k - 1`` in StyleGAN3: the output grows by ``k - 1``).
        input_gain: scalar applied to the final weights (``rsqrt(magnitude_ema)``).

    Returns:
        ``[B, O, H + 2*padding - k + 1, ...]``.
    """
    batch, in_ch = x.shape[:2]
    out_ch, _, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
    if batch > 1:
        # Non-fused, as in stylemix.generators.stylegan2.modulated_conv2d: the activations modulated, one conv with
        # the shared kernel, the outputs scaled (norms from the styles and the kernel's squared sums); the grouped
        # conv below stays the one image's path.
        y = F.conv2d(x * styles.reshape(batch, -1, 1, 1).to(x.dtype), weight.to(x.dtype), padding=padding)
        if demodulate:
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).T + DEMOD_EPS).rsqrt()  # [B, O]
            y = y * dcoefs.reshape(batch, -1, 1, 1).to(y.dtype)
        return y * input_gain.to(y.dtype)
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # [B, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + DEMOD_EPS).rsqrt().reshape(batch, -1, 1, 1, 1)
    w = w * input_gain
    x = x.reshape(1, batch * in_ch, *x.shape[2:])
    x = F.conv2d(x, w.reshape(batch * out_ch, in_ch, kh, kw).to(x.dtype), padding=padding, groups=batch)
    return x.reshape(batch, out_ch, *x.shape[2:])


# ----------------------------------------------------------------------------------------------------------------
# Layers (names and parameter shapes match NVIDIA's so that state dicts are interchangeable)


class FourierInput(nn.Module):
    """Fourier features at the first sampling rate, rotated and translated by ``w``: ``[B, C, size, size]``."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        # Fresh networks draw frequencies from a disc of radius `bandwidth` (loading overwrites them).
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        # t = (cos, sin, tx, ty) of the per-sample transform; starts at the identity.
        self.affine = FullyConnected(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))  # user transform, inverse, in image coordinates
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """``w [B, w_dim]`` -> ``[B, C, size, size]``."""
        batch = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # a pure rotation: (cos, sin) on the unit circle
        rot = torch.eye(3, device=w.device).repeat(batch, 1, 1)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        shift = torch.eye(3, device=w.device).repeat(batch, 1, 1)
        shift[:, 0, 2], shift[:, 1, 2] = -t[:, 2], -t[:, 3]
        m = rot @ shift @ self.transform.unsqueeze(0)  # [B, 3, 3]
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ m[:, :2, 2:]).squeeze(2)  # [B, C]
        freqs = freqs @ m[:, :2, :2]  # [B, C, 2]
        # A user transform can push frequencies past the band; fade them out before they alias.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        pos = (torch.arange(self.size, device=w.device, dtype=torch.float32) + 0.5 - self.size / 2) \
            / self.sampling_rate  # pixel centres, 0 at the image centre, in image widths
        fx, fy = freqs[..., 0].reshape(batch, 1, 1, -1), freqs[..., 1].reshape(batch, 1, 1, -1)
        x = pos.reshape(1, 1, -1, 1) * fx + pos.reshape(1, -1, 1, 1) * fy  # [B, H, W, C]
        x = torch.sin((x + phases.reshape(batch, 1, 1, -1)) * (2 * math.pi)) * amplitudes.reshape(batch, 1, 1, -1)
        x = x @ (self.weight / math.sqrt(self.channels)).t()  # [B, H, W, C]
        return x.permute(0, 3, 1, 2)


class AliasFreeLayer(nn.Module):
    """Modulated conv, then the filtered leaky ReLU that changes the sampling rate (ToRGB: linear, no filters)."""

    def __init__(self, w_dim: int, spec: LayerSpec, *, conv_clamp: float | None) -> None:
        super().__init__()
        self.spec, self.conv_clamp = spec, conv_clamp
        self.affine = FullyConnected(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, spec.conv_kernel,
                                                spec.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))  # mean square of the input, tracked in training
        # None registers no buffer, as in the official module: 1-tap filters are absent from the state dict.
        self.register_buffer("up_filter", design_lowpass_filter(
            spec.up_taps, spec.in_cutoff, 2 * spec.in_half_width, spec.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            spec.down_taps, spec.out_cutoff, 2 * spec.out_half_width, spec.tmp_sampling_rate, spec.down_radial))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x [B, in_channels, in_size, in_size]``, ``w [B, w_dim]`` -> ``[B, out_channels, out_size, out_size]``."""
        s = self.spec
        styles = self.affine(w)
        if s.is_torgb:
            styles = styles * (1 / math.sqrt(s.in_channels * s.conv_kernel ** 2))
        x = modulated_conv2d(x, self.weight, styles, demodulate=not s.is_torgb, padding=s.conv_kernel - 1,
                             input_gain=self.magnitude_ema.rsqrt())
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=s.up_factor, down=s.down_factor,
                              padding=s.padding, gain=1.0 if s.is_torgb else LRELU_GAIN,
                              slope=1.0 if s.is_torgb else LRELU_SLOPE, clamp=self.conv_clamp)


@dataclasses.dataclass
class AliasFreeState:
    """What :meth:`AliasFreeSynthesis.prefix` hands to the suffix.

    Attributes:
        crossover: the prefix ran every step whose slot is ``< crossover``.
        step: steps already run; step 0 is the Fourier input (slot 0), step ``i + 1`` is layer ``L{i}`` (slot
            ``i + 1``), so steps and slots coincide.
        x: output of the last step run, ``[B, C, size, size]`` (None before the first).
    """

    crossover: int
    step: int
    x: torch.Tensor | None


class AliasFreeSynthesis(nn.Module):
    """``ws [B, num_ws, w_dim]`` -> ``img [B, img_channels, R, R]``: Fourier input, ``num_layers`` layers, ToRGB."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int, *, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: float | None = 256.0) -> None:
        super().__init__()
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.num_ws = num_layers + 2
        self.output_scale = output_scale
        schedule = synthesis_schedule(resolution, img_channels, channel_base=channel_base, channel_max=channel_max,
                                      num_layers=num_layers, num_critical=num_critical, first_cutoff=first_cutoff,
                                      first_stopband=first_stopband, last_stopband_rel=last_stopband_rel,
                                      margin_size=margin_size)
        self.specs = layer_specs(schedule, num_critical=num_critical, conv_kernel=conv_kernel,
                                 filter_size=filter_size, lrelu_upsampling=lrelu_upsampling,
                                 use_radial_filters=use_radial_filters)
        self.input = FourierInput(w_dim, int(schedule["channels"][0]), int(schedule["sizes"][0]),
                                  schedule["sampling_rates"][0], schedule["cutoffs"][0])
        self.input_cutoff = float(schedule["cutoffs"][0])
        self.layer_names = [s.name for s in self.specs]
        for spec in self.specs:
            setattr(self, spec.name, AliasFreeLayer(w_dim, spec, conv_clamp=conv_clamp))

    def layer(self, index: int) -> AliasFreeLayer:
        return getattr(self, self.layer_names[index])

    def slot_sampling_rates(self) -> tuple[int, ...]:
        """Per slot, the sampling rate of the step it drives (the input's, then each layer's output rate)."""
        return (int(self.input.sampling_rate),) + tuple(s.out_sampling_rate for s in self.specs)

    def slot_cutoffs(self) -> tuple[float, ...]:
        """Per slot, the cutoff frequency (bandwidth, cycles per image) of the step's output."""
        return (self.input_cutoff,) + tuple(s.out_cutoff for s in self.specs)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` -> ``img [B, img_channels, R, R]`` (raw float). ``noise_mode`` is checked and
        ignored: StyleGAN3 has no noise inputs."""
        return self.suffix(self.prefix(ws, 0, noise_mode), ws, noise_mode=noise_mode)

    def prefix(self, ws: torch.Tensor, crossover: int, noise_mode: str = "const") -> AliasFreeState:
        """Run the steps driven by slots ``[0, crossover)`` of ``ws [B, num_ws, w_dim]``."""
        self._check_ws(ws, noise_mode)
        if not 0 <= crossover <= self.num_ws:
            raise ValueError(f"crossover must lie in [0, {self.num_ws}], got {crossover}")
        return self._run(AliasFreeState(int(crossover), 0, None), ws, int(crossover))

    def prefixes(self, ws: torch.Tensor, crossovers: Sequence[int], noise_mode: str = "const"
                 ) -> dict[int, AliasFreeState]:
        """:meth:`prefix` at each crossover in one pass: each state continues from the next smaller one."""
        self._check_ws(ws, noise_mode)
        states: dict[int, AliasFreeState] = {}
        state = AliasFreeState(0, 0, None)
        for c in sorted({int(c) for c in crossovers}):
            if not 0 <= c <= self.num_ws:
                raise ValueError(f"crossover must lie in [0, {self.num_ws}], got {c}")
            state = self._run(dataclasses.replace(state, crossover=c), ws, c)
            states[c] = state
        return states

    def suffix(self, state: AliasFreeState, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Finish ``ws [N, num_ws, w_dim]`` from ``state`` (batch 1 broadcasts) -> ``img [N, img_channels, R, R]``."""
        self._check_ws(ws, noise_mode)
        x = self._run(state, ws, self.num_ws).x
        x = _broadcast(x, ws.shape[0])
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)

    def feature_step(self, resolution: int) -> int:
        """The step whose output :meth:`features_from` returns at ``resolution``: the last non-ToRGB layer whose
        sampling rate is at most ``resolution`` (the first layer when none is that coarse)."""
        below = [s.index for s in self.specs[:-1] if s.out_sampling_rate <= resolution]
        return (below[-1] if below else 0) + 1

    def features_from(self, state: AliasFreeState, ws: torch.Tensor, resolution: int, noise_mode: str = "const"
                      ) -> torch.Tensor:
        """Feature maps of ``ws [N, num_ws, w_dim]`` at ``resolution``, continuing from ``state``:
        ``[N, C, resolution, resolution]``.

        The layer of :meth:`feature_step` runs, its margin is cropped (leaving its ``s x s`` image area) and the
        map is area-resized to ``resolution`` when ``s`` differs. A state already past that layer holds no features
        there, but then they depend on kept slots only: they are computed once, for one row, and broadcast.
        """
        self._check_ws(ws, noise_mode)
        step = self.feature_step(int(resolution))
        n, stop = ws.shape[0], step + 1
        if state.step > stop:
            state, ws = AliasFreeState(0, 0, None), ws[:1]
        return self._feature_map(_broadcast(self._run(state, ws, stop).x, n), step, int(resolution))

    def suffix_features(self, state: AliasFreeState, ws: torch.Tensor, resolutions: Sequence[int],
                        noise_mode: str = "const") -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """:meth:`suffix` that keeps, on the way, :meth:`features_from` at each of ``resolutions`` whose layer lies
        at or after ``state``: ``(img [N, C_img, R, R], {r: [N, C, r, r]})``, the values of the renders apart."""
        self._check_ws(ws, noise_mode)
        n, feats = ws.shape[0], {}
        for step, r in sorted((self.feature_step(int(r)), int(r)) for r in set(resolutions)):
            if state.step > step + 1:
                continue  # the layer ran inside the prefix: the caller renders it
            state = self._run(state, ws, step + 1)
            feats[r] = self._feature_map(_broadcast(state.x, n), step, r)
        return self.suffix(state, ws, noise_mode), feats

    def _feature_map(self, x: torch.Tensor, step: int, resolution: int) -> torch.Tensor:
        """Step ``step``'s output ``x`` with its margin cropped (its ``s x s`` image area), area-resized to
        ``resolution`` when ``s`` differs."""
        spec = self.specs[step - 1]
        m = spec.margin
        return resize_image(x[:, :, m:m + spec.out_sampling_rate, m:m + spec.out_sampling_rate], resolution)

    def _run(self, state: AliasFreeState, ws: torch.Tensor, stop: int) -> AliasFreeState:
        """Run steps ``[state.step, stop)``; a new state (``state`` is left untouched for reuse)."""
        x = state.x
        ws = ws.to(torch.float32)
        for step in range(state.step, stop):
            w = ws[:, step]
            if step == 0:
                x = self.input(w)
            else:
                x = self.layer(step - 1)(_broadcast(x, ws.shape[0]), w)
        return AliasFreeState(state.crossover, max(stop, state.step), x)

    def _check_ws(self, ws: torch.Tensor, noise_mode: str) -> None:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")


# ----------------------------------------------------------------------------------------------------------------
# The generator


def stylegan3_layout(slot_rates: Sequence[int], slot_cutoffs: Sequence[float], resolution: int,
                     crossover: int | None = None) -> StyleLayout:
    """Style layout of a StyleGAN3 synthesis: slot resolutions are sampling rates, groups and the default
    crossover follow the bandwidth.

    A StyleGAN2 layer at ``r`` px carries detail up to ``r / 2`` cycles per image; a StyleGAN3 layer carries
    detail up to its cutoff, while its sampling rate is oversampled for the transition band. So the StyleGAN2 rules
    are applied to ``2 * cutoff``: coarse up to 8, middle up to 32, and the default crossover keeps the slots up to
    ``min(16, resolution // 2)`` (see :func:`stylemix.generators.stylegan2.default_crossover`).
    """
    detail = [2 * c for c in slot_cutoffs]
    n = len(detail)
    coarse_end = max(1, sum(1 for d in detail if d <= 8))
    middle_end = max(coarse_end, sum(1 for d in detail if d <= 32))
    groups = {"coarse": (0, coarse_end), "middle": (coarse_end, middle_end), "fine": (middle_end, n)}
    if crossover is None:
        bound = min(16, resolution // 2)
        crossover = min(max(sum(1 for d in detail if d <= bound + 1e-9), 1), n - 1)
    return StyleLayout(tuple(int(r) for r in slot_rates), groups, int(crossover))


class StyleGAN3Generator(GeneratorBase):
    """StyleGAN3 (alias-free, T or R configuration) with NVIDIA's module names; ``G.mapping``/``G.synthesis``.

    Args:
        z_dim, c_dim, w_dim: latent, label and intermediate latent sizes (``c_dim > 0`` adds ``mapping.embed``).
        resolution: output size, a power of two.
        img_channels: output channels.
        channel_base, channel_max: channels ``rint(min(channel_base / 2 / cutoff, channel_max))`` per layer
            (train.py doubles both for ``stylegan3-r``).
        mapping_layers, mapping_lr_multiplier: depth of the mapping MLP (2 in StyleGAN3) and its lr multiplier.
        num_layers: synthesis layers excluding the input and ToRGB (``num_ws = num_layers + 2``).
        num_critical: critically sampled layers at the end.
        first_cutoff, first_stopband, last_stopband_rel: ends of the geometric cutoff/stopband progression.
        margin_size: pixels kept around the image area in the intermediate layers.
        output_scale: factor on the ToRGB output.
        conv_kernel: 3 (T) or 1 (R).
        filter_size: FIR taps per unit of up/down factor.
        lrelu_upsampling: oversampling of the leaky ReLU.
        use_radial_filters: radially symmetric down-sampling filters outside the critical layers (R).
        conv_clamp: clamp of every layer's output, ToRGB included (``None``: none).
        magnitude_ema_beta, num_fp16_res: training and CUDA settings, recorded and otherwise ignored (fp32 here).
        crossover: default crossover of :attr:`style_layout` (see :func:`stylegan3_layout`).
    """

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, resolution: int = 1024, *,
                 img_channels: int = 3, channel_base: int = 32768, channel_max: int = 512, mapping_layers: int = 2,
                 mapping_lr_multiplier: float = 0.01, num_layers: int = 14, num_critical: int = 2,
                 first_cutoff: float = 2, first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                 margin_size: int = 10, output_scale: float = 0.25, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: float | None = 256.0,
                 magnitude_ema_beta: float = 0.999, num_fp16_res: int = 4, crossover: int | None = None) -> None:
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"StyleGAN3 resolution must be a power of two >= 4, got {resolution}")
        self._config = dict(
            z_dim=int(z_dim), c_dim=int(c_dim), w_dim=int(w_dim), resolution=int(resolution),
            img_channels=int(img_channels), channel_base=int(channel_base), channel_max=int(channel_max),
            mapping_layers=int(mapping_layers), mapping_lr_multiplier=float(mapping_lr_multiplier),
            num_layers=int(num_layers), num_critical=int(num_critical), first_cutoff=float(first_cutoff),
            first_stopband=float(first_stopband), last_stopband_rel=float(last_stopband_rel),
            margin_size=int(margin_size), output_scale=float(output_scale), conv_kernel=int(conv_kernel),
            filter_size=int(filter_size), lrelu_upsampling=int(lrelu_upsampling),
            use_radial_filters=bool(use_radial_filters),
            conv_clamp=None if conv_clamp is None else float(conv_clamp),
            magnitude_ema_beta=float(magnitude_ema_beta), num_fp16_res=int(num_fp16_res))
        cfg = self._config
        self.synthesis = AliasFreeSynthesis(
            cfg["w_dim"], cfg["resolution"], cfg["img_channels"], channel_base=cfg["channel_base"],
            channel_max=cfg["channel_max"], num_layers=cfg["num_layers"], num_critical=cfg["num_critical"],
            first_cutoff=cfg["first_cutoff"], first_stopband=cfg["first_stopband"],
            last_stopband_rel=cfg["last_stopband_rel"], margin_size=cfg["margin_size"],
            output_scale=cfg["output_scale"], conv_kernel=cfg["conv_kernel"], filter_size=cfg["filter_size"],
            lrelu_upsampling=cfg["lrelu_upsampling"], use_radial_filters=cfg["use_radial_filters"],
            conv_clamp=cfg["conv_clamp"])
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg["z_dim"], cfg["c_dim"], cfg["w_dim"], self.num_ws,
                                      num_layers=cfg["mapping_layers"], lr_multiplier=cfg["mapping_lr_multiplier"])
        self.z_dim, self.c_dim, self.w_dim, self.resolution = cfg["z_dim"], cfg["c_dim"], cfg["w_dim"], resolution
        self.img_channels, self.conv_clamp = cfg["img_channels"], cfg["conv_clamp"]
        self.family = "stylegan3-r" if cfg["use_radial_filters"] else "stylegan3-t"
        self.style_layout = stylegan3_layout(self.synthesis.slot_sampling_rates(), self.synthesis.slot_cutoffs(),
                                             resolution, crossover)

    def config(self) -> dict[str, Any]:
        """JSON-able constructor keyword arguments: ``StyleGAN3Generator(**G.config())`` followed by
        ``load_state_dict(G.state_dict())`` rebuilds ``G`` exactly (the filters are buffers and load too)."""
        return {**self._config, "crossover": self.style_layout.default_crossover}

    @property
    def input_transform(self) -> np.ndarray:
        """The Fourier input's user transform, float32 ``[3, 3]`` (a copy of ``synthesis.input.transform``).

        It maps output-image coordinates back to the input's: use :func:`input_transform_matrix` to rotate or
        translate the image. Assigning a numpy array or tensor ``[3, 3]`` writes the buffer.
        """
        return self.synthesis.input.transform.detach().cpu().numpy().copy()

    @input_transform.setter
    def input_transform(self, value: np.ndarray | torch.Tensor) -> None:
        m = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value,
                                       dtype=np.float32))
        if m.shape != (3, 3):
            raise StylemixError(f"input_transform must be [3, 3], got {list(m.shape)}")
        with torch.no_grad():
            self.synthesis.input.transform.copy_(m)

    def synthesis_prefix(self, ws: torch.Tensor, crossover: int, noise_mode: str = "const") -> AliasFreeState:
        """Run the input and the layers driven only by slots ``[0, crossover)`` of ``ws [B, num_ws, w_dim]``."""
        return self.synthesis.prefix(ws, crossover, noise_mode=noise_mode)

    def synthesis_prefixes(self, ws: torch.Tensor, crossovers: list[int], noise_mode: str = "const"
                           ) -> dict[int, AliasFreeState]:
        """:meth:`synthesis_prefix` at each crossover in one pass."""
        return self.synthesis.prefixes(ws, crossovers, noise_mode=noise_mode)

    def synthesis_suffix(self, state: Any, ws: torch.Tensor, resolution: int | None = None,
                         noise_mode: str = "const") -> torch.Tensor:
        """Finish ``ws [N, num_ws, w_dim]`` from a prefix ``state`` -> ``img [N, 3, r, r]``.

        StyleGAN3 has no partial RGB image below its last layer, so a lower ``resolution`` renders in full and
        area-downsamples (the ``features`` descriptor is the early exit).
        """
        if not isinstance(state, AliasFreeState):  # e.g. GeneratorBase's FullSynthesisState
            state = AliasFreeState(0, 0, None)
        return resize_image(self.synthesis.suffix(state, ws, noise_mode=noise_mode), resolution)

    def features(self, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
        """Feature maps ``[B, C, r, r]`` of the last layer sampled at ``r`` or coarser, margin cropped."""
        return self.synthesis.features_from(AliasFreeState(0, 0, None), ws, resolution, noise_mode=noise_mode)

    def synthesis_suffix_features(self, state: Any, ws: torch.Tensor, resolutions: list[int],
                                  noise_mode: str = "const") -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """:meth:`synthesis_suffix` at full resolution with :meth:`features` at ``resolutions`` taken on the way:
        ``(img [N, 3, R, R], {r: [N, C, r, r]})``, only the layers the suffix runs (the caller renders the others,
        :func:`stylemix.render.synthesis_suffix_features`)."""
        if not isinstance(state, AliasFreeState):  # e.g. GeneratorBase's FullSynthesisState
            state = AliasFreeState(0, 0, None)
        img, feats = self.synthesis.suffix_features(state, ws, resolutions, noise_mode=noise_mode)
        return img.contiguous(), {r: f.contiguous() for r, f in feats.items()}

    def features_suffix(self, state: Any, ws: torch.Tensor, resolution: int, feature_dim: int | None = None,
                        noise_mode: str = "const") -> torch.Tensor:
        """:meth:`features` of ``ws [N, num_ws, w_dim]`` continuing from a prefix ``state`` (batch 1 broadcasts),
        optionally projected by :func:`stylemix.vectors.project_channels`: ``[N, D, r, r]``."""
        if not isinstance(state, AliasFreeState):
            state = AliasFreeState(0, 0, None)
        feats = self.synthesis.features_from(state, ws, resolution, noise_mode=noise_mode)
        if feature_dim is not None:
            feats = project_channels(feats, feature_dim)
        return feats.contiguous()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        layers = [{"name": "input", "w": 0, "sampling_rate": int(self.synthesis.input.sampling_rate),
                   "size": self.synthesis.input.size, "channels": self.synthesis.input.channels,
                   "cutoff": round(self.synthesis.input_cutoff, 3)}]
        layers += [{"name": s.name, "w": s.index + 1, "sampling_rate": s.out_sampling_rate, "size": s.out_size,
                    "channels": s.out_channels, "cutoff": round(s.out_cutoff, 3)} for s in self.synthesis.specs]
        info.update({
            "mapping_layers": self.mapping.num_layers,
            "conv_kernel": self._config["conv_kernel"],
            "radial_filters": self._config["use_radial_filters"],
            "conv_clamp": self.conv_clamp,
            "noise_inputs": False,
            "input_transform": self.input_transform.tolist(),
            "layers": layers,
            "parameters": sum(p.numel() for p in self.parameters()),
        })
        return info


# ----------------------------------------------------------------------------------------------------------------
# Loading from NVIDIA's layout

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
    from stylemix.generators.stylegan2_formats import flatten_record, record_init_kwargs
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
    import re

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
