"""A StyleGAN3 generator (alias-free, T and R configurations) in plain torch, written for stylemix.

Parameters and buffers live in NVIDIA's layout (``mapping.fc0.weight``, ``synthesis.input.freqs``,
``synthesis.L3_52_512.magnitude_ema``, ...), so ``G.state_dict()`` is key-for-key the ``state_dict()`` of the
official ``training/networks_stylegan3.py`` ``Generator`` built with the same keyword arguments. The mapping network
and truncation are StyleGAN2's (:mod:`stylemix.generators.stylegan2`); only the synthesis is new. Its layer schedule,
filter design and resampling ops are in :mod:`stylemix.generators.stylegan3_filters`; reading NVIDIA's files and
kwargs is :mod:`stylemix.generators.stylegan3_formats`.

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
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylemix.errors import StylemixError
from stylemix.vectors import project_channels
from stylemix.generators.base import GeneratorBase, StyleLayout, resize_image
from stylemix.generators.stylegan2 import (DEMOD_EPS, LRELU_GAIN, LRELU_SLOPE, NOISE_MODES, FullyConnected,
                                           MappingNetwork, broadcast_batch)
from stylemix.generators.stylegan3_filters import (LayerSpec, design_lowpass_filter, filtered_lrelu, layer_specs,
                                                   synthesis_schedule)

__all__ = ["AliasFreeLayer", "AliasFreeState", "AliasFreeSynthesis", "FourierInput", "StyleGAN3Generator",
           "input_transform_matrix", "modulated_conv2d", "stylegan3_layout"]


# ----------------------------------------------------------------------------------------------------------------
# Pure functions


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
        x = broadcast_batch(x, ws.shape[0])
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
        return self._feature_map(broadcast_batch(self._run(state, ws, stop).x, n), step, int(resolution))

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
            feats[r] = self._feature_map(broadcast_batch(state.x, n), step, r)
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
                x = self.layer(step - 1)(broadcast_batch(x, ws.shape[0]), w)
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
