"""The alias-free resampling maths of StyleGAN3: the layer schedule, the low-pass filter design, and the FIR ops.

Everything per layer (cutoff, stopband, sampling rate, size, channels, up/down factors, filter taps, padding) follows
from the generator's constructor arguments through :func:`synthesis_schedule` and :func:`layer_specs`, which apply the
formulas of the paper's Appendix F the way the official code does (float64 numpy). The low-pass filters are designed
with scipy's Kaiser-windowed ``firwin`` or, for R's down-sampling, a windowed jinc (:func:`design_lowpass_filter`).
Loading weights overwrites the filters anyway; designing them identically is what lets a freshly built network match.

:func:`upfirdn2d` and :func:`filtered_lrelu` are the official reference (non-CUDA) ops of ``torch_utils/ops`` in fp32,
written as depthwise (transposed) convolutions. The network that uses them is :mod:`stylemix.generators.stylegan3`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LayerSpec", "design_lowpass_filter", "filtered_lrelu", "layer_specs", "synthesis_schedule", "upfirdn2d"]


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


# ----------------------------------------------------------------------------------------------------------------
# FIR resampling ops


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
