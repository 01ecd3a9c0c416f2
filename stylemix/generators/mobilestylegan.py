"""MobileStyleGAN FFHQ 1024 px, stylemix's embedded default generator, as torch modules.

The weights ship as two OpenVINO IR files (``MappingNetwork`` and ``SynthesisNetwork``, ``.xml`` graph + ``.bin``
constants) inside the ``random-face==2021.7.21.1`` wheel. This module reads them with the standard library and numpy
(the ``random_face`` package itself is never imported: it pulls in a UI stack at import time) and rebuilds the
network as torch modules, so it runs on any torch device and can be split for style mixing.

Network (MobileStyleGAN, Belousov 2021; the IR graph is the specification, the original repository's module names
survive as the IR constant names):

* mapping: pixel norm, then 8 x (linear, leaky ReLU 0.2, gain sqrt 2); ``z [B, 512] -> w [B, 512]``.
* synthesis: a constant ``4 x 4 x 512`` input, one modulated 3x3 conv, then 7 blocks that each double the resolution
  (8 ... 512 px): ``up`` (modulate, then read the channels as Haar wavelet bands and invert them: ``C -> C/4`` channels
  at twice the size), ``conv1`` and ``conv2`` (modulated depthwise 3x3 + pointwise convs), and finally a modulated 1x1
  ``to_img`` head on the 512 px features whose 12 channels are the Haar bands of the RGB image; their inverse wavelet
  transform is the 1024 px image. Demodulation uses fixed statistics, so it is folded into the conv weights in the IR;
  the per-layer noise is baked into the IR as constant maps (``noise_mode="const"``).

Style slots. The IR feeds one ``w`` to 23 modulation inputs; this adapter gives each of them its own slot, in the
order the forward pass consumes them, so ``ws [B, 23, 512]`` mixes per slot::

    slot 0            conv1          (4 px)
    slot 1 + 3 i      layers.i.up    (features 4*2^i px -> 8*2^i px)     i = 0 .. 6
    slot 2 + 3 i      layers.i.conv1 (8*2^i px)
    slot 3 + 3 i      layers.i.conv2 (8*2^i px)
    slot 22           layers.6.to_img (512 px features -> wavelet bands of the 1024 px image)

This differs from the original repository's w+ indexing (``style[:, 3 i + 2]`` shared by ``up`` and ``conv1``, and
seven slots for intermediate ``to_img`` heads). Those intermediate heads were pruned when the IR was exported (only
the final image was traced), so the IR has no partial images below 1024 px; see :meth:`synthesis_suffix`.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stylemix.errors import GeneratorLoadError
from stylemix.vectors import projection_matrix
from stylemix.generators.base import GeneratorBase, StyleLayout, resize_image, truncate

__all__ = ["IDWTUpsample", "IRGraph", "InverseHaar", "MappingNetwork", "MobileStyleGANGenerator", "MobileStyleGANState",
           "MobileSynthesisNetwork", "Modulation", "SLOT_MODULES", "StyledConv", "WHEEL_REQUIREMENT", "WaveletHead",
           "find_ir_dir", "load_mobilestylegan_ffhq", "quad_order"]

WHEEL_REQUIREMENT = "random-face==2021.7.21.1"
_IR_FILES = ("MappingNetwork.xml", "MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin")
_NUM_BLOCKS = 7
#: The IR module (constant-name prefix) whose modulation each style slot drives, in forward order.
SLOT_MODULES: tuple[str, ...] = (
    "m.conv1.conv",
    *(f"m.layers.{i}.{m}" for i in range(_NUM_BLOCKS) for m in ("up", "conv1.conv", "conv2.conv")),
    f"m.layers.{_NUM_BLOCKS - 1}.to_img.conv",
)
_NUM_WS = len(SLOT_MODULES)  # 23


# ---------------------------------------------------------------------------------------------------------------
# Locating and reading the IR


def find_ir_dir() -> Path:
    """The ``random_face/data`` folder of the installed ``random-face`` wheel, found through its distribution record.

    Raises:
        GeneratorLoadError: the wheel is not installed, or it lacks one of the four IR files.
    """
    try:
        dist = importlib.metadata.distribution("random-face")
    except importlib.metadata.PackageNotFoundError:
        raise GeneratorLoadError(
            "the default generator mobilestylegan-ffhq needs the weights from the random-face wheel: "
            f"pip install --no-deps {WHEEL_REQUIREMENT}") from None
    wanted = {f"random_face/data/{name}" for name in _IR_FILES}
    found = [f for f in (dist.files or []) if str(f).replace("\\", "/") in wanted]
    if len(found) != len(wanted):
        raise GeneratorLoadError(
            f"random-face {dist.version} is installed but lacks the MobileStyleGAN IR files "
            f"({', '.join(_IR_FILES)}): pip install --force-reinstall --no-deps {WHEEL_REQUIREMENT}")
    ir_dir = Path(dist.locate_file(found[0])).parent
    missing = [name for name in _IR_FILES if not (ir_dir / name).is_file()]
    if missing:
        raise GeneratorLoadError(f"random-face files missing on disk in {ir_dir}: {', '.join(missing)}; "
                                 f"pip install --force-reinstall --no-deps {WHEEL_REQUIREMENT}")
    return ir_dir


class IRGraph:
    """An OpenVINO IR (v10/v11) graph as plain Python data, enough to look up constants by graph position.

    Not an interpreter: the network is written out as torch modules below; this class only answers "which constant
    feeds this op" and "which op consumes that one", so weights are mapped by structure and by their PyTorch names.
    """

    _NP_TYPES = {"f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32, "u8": np.uint8}

    def __init__(self, xml_path: str | os.PathLike, bin_path: str | os.PathLike) -> None:
        try:
            root = ET.parse(xml_path).getroot()
            self._blob = np.fromfile(bin_path, dtype=np.uint8)
        except (OSError, ET.ParseError) as exc:
            raise GeneratorLoadError(f"cannot read OpenVINO IR {xml_path}: {exc}") from None
        self.layers: dict[int, ET.Element] = {int(l.get("id")): l for l in root.find("layers")}
        # inputs[to_layer][to_port] = (from_layer, from_port); consumers[from_layer] = [(to_layer, to_port, from_port)]
        self.inputs: dict[int, dict[int, tuple[int, int]]] = {}
        self.consumers: dict[int, list[tuple[int, int, int]]] = {}
        for e in root.find("edges"):
            src, src_port = int(e.get("from-layer")), int(e.get("from-port"))
            dst, dst_port = int(e.get("to-layer")), int(e.get("to-port"))
            self.inputs.setdefault(dst, {})[dst_port] = (src, src_port)
            self.consumers.setdefault(src, []).append((dst, dst_port, src_port))
        self._by_name = {l.get("name"): lid for lid, l in self.layers.items()}

    def type(self, lid: int) -> str:
        return self.layers[lid].get("type")

    def name(self, lid: int) -> str:
        return self.layers[lid].get("name")

    def attr(self, lid: int, key: str) -> str:
        return self.layers[lid].find("data").get(key)

    def by_name(self, name: str) -> int:
        if name not in self._by_name:
            raise GeneratorLoadError(f"OpenVINO IR has no layer {name!r}: not the expected MobileStyleGAN graph")
        return self._by_name[name]

    def const(self, lid: int) -> np.ndarray:
        """The value of Const layer ``lid`` (a copy, in its declared shape)."""
        if self.type(lid) != "Const":
            raise GeneratorLoadError(f"IR layer {self.name(lid)!r} is a {self.type(lid)}, expected a Const")
        data = self.layers[lid].find("data")
        dtype = self._NP_TYPES[data.get("element_type")]
        offset, size = int(data.get("offset")), int(data.get("size"))
        shape = tuple(int(s) for s in data.get("shape").split(",") if s.strip())
        return self._blob[offset:offset + size].view(dtype).reshape(shape).copy()

    def source(self, lid: int, port: int) -> int:
        return self.inputs[lid][port][0]

    def const_input(self, lid: int) -> np.ndarray:
        """The one constant operand of a binary op, looking through a Reshape of a constant (how biases appear)."""
        for port in sorted(self.inputs[lid]):
            src = self.source(lid, port)
            if self.type(src) == "Reshape" and self.type(self.source(src, 0)) == "Const":
                src = self.source(src, 0)
            if self.type(src) == "Const":
                return self.const(src)
        raise GeneratorLoadError(f"IR layer {self.name(lid)!r} has no constant operand")

    def other_input(self, lid: int, known: int) -> int:
        """The input of the binary op ``lid`` that is not ``known``."""
        others = [src for src, _ in self.inputs[lid].values() if src != known]
        if len(others) != 1:
            raise GeneratorLoadError(f"IR layer {self.name(lid)!r}: expected two distinct inputs")
        return others[0]

    def next(self, lid: int, op_type: str | tuple[str, ...], output: int | None = None) -> int:
        """The single consumer of ``lid`` (optionally of its ``output``-th output) whose type is ``op_type``."""
        types = (op_type,) if isinstance(op_type, str) else op_type
        # IR port ids count inputs first, so output k of a 3-input op is port 3 + k: look the id up.
        port = None if output is None else int(self.layers[lid].find("output")[output].get("id"))
        hits = [dst for dst, _, sp in self.consumers.get(lid, [])
                if self.type(dst) in types and (port is None or sp == port)]
        if len(hits) != 1:
            raise GeneratorLoadError(f"IR layer {self.name(lid)!r}: expected one {'/'.join(types)} consumer, "
                                     f"found {len(hits)}")
        return hits[0]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _scalar(a: np.ndarray) -> float:
    if a.size != 1:
        raise GeneratorLoadError(f"expected a scalar IR constant, got shape {a.shape}")
    return float(a.reshape(()))


# ---------------------------------------------------------------------------------------------------------------
# Torch modules
#
# Speed notes (CPU, where the default generator mostly runs): features are kept channels-last, which makes the
# depthwise convs 2-3x faster; activations are updated in place wherever the step owns its input; and the channels
# that an inverse DWT reads as wavelet bands are permuted at load from the IR's layout (C low channels, then C x 3
# high ones) into per-channel quads (ll, lh, hl, hh), so that each inverse DWT is one grouped transposed conv.


class InverseHaar(torch.nn.Module):
    """One level of the inverse 2-D DWT with 2-tap filters (Haar, ``db1``), as one grouped stride-2 transposed conv.

    pytorch_wavelets' ``SFB2D`` (exported into the IR as six 1-D transposed convs) computes
    ``y[2i+p, 2j+q] = ll g0c[p] g0r[q] + lh g1c[p] g0r[q] + hl g0c[p] g1r[q] + hh g1c[p] g1r[q]``; ``kernel[k]`` holds
    the 2x2 outer product for band ``k``.
    """

    def __init__(self, g0_col: np.ndarray, g1_col: np.ndarray, g0_row: np.ndarray, g1_row: np.ndarray) -> None:
        super().__init__()
        kernel = np.stack([np.outer(c, r) for c, r in ((g0_col, g0_row), (g1_col, g0_row), (g0_col, g1_row),
                                                         (g1_col, g1_row))])
        self.register_buffer("kernel", _tensor(kernel).unsqueeze(1))  # [4, 1, 2, 2]
        # The 2x2 mean of the output is ll * ll_gain when the high-pass filters sum to zero (true for Haar), which
        # lets the generator read a half-size image off the low band without the transform.
        high_sums = np.abs(kernel[1:].sum(axis=(1, 2)))
        self.ll_gain = float(kernel[0].sum() / 4) if high_sums.max() < 1e-7 else None

    def forward(self, bands: torch.Tensor) -> torch.Tensor:
        """``bands [B, 4C, H, W]``, channel ``4c + k`` = band ``k`` of channel ``c`` -> ``[B, C, 2H, 2W]``."""
        c = bands.shape[1] // 4
        if bands.dtype != torch.bfloat16:
            return F.conv_transpose2d(bands, self.kernel.repeat(c, 1, 1, 1), stride=2, groups=c)
        # oneDNN's bfloat16 grouped transposed conv runs 3-10x slower than its float32 one; the same sums as one
        # [4 x 4] matmul over each pixel's quads (channels-last: a view), then one interleaving copy.
        b, _, h, w = bands.shape
        y = bands.permute(0, 2, 3, 1).reshape(b, h, w, c, 4) @ self.kernel.reshape(4, 4).to(bands.dtype)
        return y.reshape(b, h, w, c, 2, 2).permute(0, 1, 4, 2, 5, 3).reshape(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def quad_order(channels: int) -> torch.Tensor:
    """Permutation taking MobileStyleGAN's band layout (``C`` low, then ``[C, 3]`` high) to per-channel quads.

    ``x[:, quad_order(4 C)]`` has channel ``4c + k`` = band ``k`` (ll, lh, hl, hh) of output channel ``c``.
    """
    c = channels // 4
    idx = [[ch] + [c + 3 * ch + k for k in range(3)] for ch in range(c)]
    return torch.tensor(idx).reshape(-1)


class Modulation(torch.nn.Module):
    """The per-channel style of one layer: ``(w @ weight.T + bias) * gain``; ``w [B, 512] -> [B, C, 1, 1]``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, gain: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(_tensor(weight))          # [C, 512]
        self.bias = torch.nn.Parameter(_tensor(bias).reshape(-1))  # [C]
        self.gain = gain  # 1/sqrt(fan_in) of the conv it modulates (1 for `up`, which has no conv)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = F.linear(w, self.weight, self.bias)
        return (s * self.gain if self.gain != 1.0 else s)[:, :, None, None]


def _modulate(x: torch.Tensor, s: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``x * s``, overwriting ``x`` when the caller owns it and no broadcasting over the batch is needed."""
    return x.mul_(s) if inplace and x.shape[0] == s.shape[0] else x * s


class StyledConv(torch.nn.Module):
    """Modulated conv (full ``k x k``, or depthwise 3x3 + pointwise), + noise, + bias, leaky ReLU.

    Demodulation in MobileStyleGAN divides by a norm of fixed statistics (``style_inv``), so the IR folds it into
    ``weight``; what remains per sample is the input modulation.
    """

    def __init__(self, modulation: Modulation, weight: np.ndarray, weight_dw: np.ndarray | None, noise: np.ndarray,
                 bias: np.ndarray, slope: float) -> None:
        super().__init__()
        self.modulation = modulation
        self.weight_dw = None if weight_dw is None else torch.nn.Parameter(_tensor(weight_dw).reshape(-1, 1, 3, 3))
        self.weight = torch.nn.Parameter(_tensor(weight))  # [C_out, C_in, k, k], demodulation folded in
        self.bias = torch.nn.Parameter(_tensor(bias).reshape(-1))
        self.register_buffer("noise_const", _tensor(noise).reshape(1, 1, *noise.shape[-2:]))  # strength * noise
        self.slope = slope

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", inplace: bool = False
                ) -> torch.Tensor:
        """``x [B|1, C_in, r, r]``, ``w [B, 512]`` -> ``[B, C_out, r, r]``; ``inplace`` allows overwriting ``x``."""
        x = _modulate(x, self.modulation(w), inplace)
        if self.weight_dw is not None:
            x = F.conv2d(x, self.weight_dw, padding=1, groups=x.shape[1])
        # The IR adds the noise before the bias; adding the bias inside the conv differs by float rounding only.
        x = F.conv2d(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2)
        if noise_mode != "none":
            x.add_(_noise(self.noise_const, x, noise_mode))
        return F.leaky_relu(x, self.slope, inplace=True)

    @torch.no_grad()
    def permute_outputs(self, perm: torch.Tensor) -> None:
        self.weight.copy_(self.weight[perm])
        self.bias.copy_(self.bias[perm])


def _noise(noise_const: torch.Tensor, x: torch.Tensor, noise_mode: str) -> torch.Tensor:
    """The noise term of one layer: the baked map (``const``) or fresh Gaussian noise with the baked map's RMS as its
    strength (``random``; the IR stores only ``strength * noise``, not the two apart)."""
    if noise_mode == "const":
        return noise_const
    if noise_mode == "random":
        strength = noise_const.square().mean().sqrt()
        return torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * strength
    raise ValueError(f"noise_mode must be 'const', 'none' or 'random', got {noise_mode!r}")


class IDWTUpsample(torch.nn.Module):
    """MobileStyleGAN's ``up``: modulate ``4C`` channels, read them as Haar bands, invert: ``4C @ r -> C @ 2r``.

    Expects its input in quad order (see :func:`quad_order`), so its modulation is permuted the same way at load.
    """

    def __init__(self, modulation: Modulation, idwt: InverseHaar) -> None:
        super().__init__()
        self.modulation = modulation
        self.idwt = idwt

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", inplace: bool = False
                ) -> torch.Tensor:
        return self.idwt(_modulate(x, self.modulation(w), inplace))

    @torch.no_grad()
    def permute_inputs(self, perm: torch.Tensor) -> None:
        self.modulation.weight.copy_(self.modulation.weight[perm])
        self.modulation.bias.copy_(self.modulation.bias[perm])


class WaveletHead(torch.nn.Module):
    """The final ``to_img``: modulated 1x1 conv (no demodulation) + bias -> 12 channels, the Haar bands of RGB.

    Its outputs are permuted at load into quad order, ready for :class:`InverseHaar`.
    """

    def __init__(self, modulation: Modulation, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.modulation = modulation
        self.weight = torch.nn.Parameter(_tensor(weight))  # [12, 64, 1, 1]
        self.bias = torch.nn.Parameter(_tensor(bias).reshape(-1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", inplace: bool = False
                ) -> torch.Tensor:
        """``x [B|1, 64, 512, 512]``, ``w [B, 512]`` -> bands ``[B, 12, 512, 512]`` (quad order)."""
        return F.conv2d(_modulate(x, self.modulation(w), inplace), self.weight, self.bias)

    @torch.no_grad()
    def permute_outputs(self, perm: torch.Tensor) -> None:
        self.weight.copy_(self.weight[perm])
        self.bias.copy_(self.bias[perm])


class MappingNetwork(torch.nn.Module):
    """``z [B, 512] -> w [B, 512]``: pixel norm, then ``n`` x (linear, leaky ReLU, gain)."""

    def __init__(self, eps: float, layers: list[tuple[np.ndarray, np.ndarray, float, float]]) -> None:
        super().__init__()
        self.eps = eps
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(_tensor(w)) for w, _, _, _ in layers])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(_tensor(b).reshape(-1)) for _, b, _, _ in layers])
        self.slopes = [slope for _, _, slope, _ in layers]
        self.gains = [gain for _, _, _, gain in layers]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * (z.square().mean(dim=1, keepdim=True) + self.eps).rsqrt()
        for weight, bias, slope, gain in zip(self.weights, self.biases, self.slopes, self.gains):
            x = F.leaky_relu(F.linear(x, weight, bias), slope) * gain
        return x


# ---------------------------------------------------------------------------------------------------------------
# Building the modules from the IR


def _build_mapping(g: IRGraph) -> MappingNetwork:
    """Walk the mapping IR: Parameter -> pixel norm -> 8 x (MatMul, Add, PReLU, Multiply) -> Result."""
    (param,) = [lid for lid in g.layers if g.type(lid) == "Parameter"]
    # Pixel norm in the IR: z * 1 / ((mean(z ** 2) + eps) ** 0.5); the eps is the Add's constant.
    eps = _scalar(g.const_input(g.next(g.next(g.next(param, "Power"), "ReduceMean"), "Add")))
    x = g.next(param, "Multiply")
    layers = []
    while True:
        try:
            matmul = g.next(x, "MatMul")
        except GeneratorLoadError:
            break
        if g.attr(matmul, "transpose_b") != "true":
            raise GeneratorLoadError("mapping IR: expected MatMul with transposed weights")
        weight = g.const(g.source(matmul, 1))
        add = g.next(matmul, "Add")
        prelu = g.next(add, "PReLU")
        x = g.next(prelu, "Multiply")
        layers.append((weight, g.const_input(add), _scalar(g.const_input(prelu)), _scalar(g.const_input(x))))
    if g.type(g.next(x, "Result")) != "Result" or len(layers) != 8:
        raise GeneratorLoadError(f"mapping IR: expected 8 layers ending in the output, found {len(layers)}")
    return MappingNetwork(eps, layers)


def _read_modulation(g: IRGraph, prefix: str) -> tuple[Modulation, int, int]:
    """The modulation of ``prefix``, the IR Multiply that applies it, and that Multiply's features input."""
    weight_id = g.by_name(f"{prefix}.modulation.weight")
    matmul = g.next(weight_id, "MatMul")
    add = g.next(matmul, "Add")
    bias = g.const(g.by_name(f"{prefix}.modulation.bias"))
    node = g.next(add, "Reshape")
    gain = 1.0
    scaled = [dst for dst, _, _ in g.consumers[node] if g.type(dst) == "Multiply"
              and any(g.type(src) == "Const" for src, _ in g.inputs[dst].values())]
    if scaled:  # convs scale the style by 1/sqrt(fan_in); `up` uses it as is
        node = scaled[0]
        gain = _scalar(g.const_input(node))
    apply = g.next(node, "Multiply")
    return Modulation(g.const(weight_id), bias, gain), apply, g.other_input(apply, node)


def _read_idwt(g: IRGraph, split: int) -> tuple[InverseHaar, int]:
    """The inverse DWT that starts at the VariadicSplit ``split`` (low | high bands); returns it and its output op."""
    def taps(conv_t: int) -> np.ndarray:
        k = g.const(g.source(conv_t, 1))  # [C, 1, 1, kh, kw], the same 2 taps for every channel
        return k[0].reshape(-1)

    low_up = g.next(split, "GroupConvolutionBackpropData", output=0)
    band_split = g.next(g.next(split, "Reshape", output=1), "VariadicSplit")
    lh_up, hl_up, hh_up = (g.next(g.next(band_split, "Squeeze", output=p), "GroupConvolutionBackpropData")
                           for p in (0, 1, 2))
    lo = g.next(low_up, "Add")
    hi = g.next(hl_up, "Add")
    if g.other_input(lo, low_up) != lh_up or g.other_input(hi, hl_up) != hh_up:
        raise GeneratorLoadError("IR inverse DWT is not laid out as (ll + lh, hl + hh)")
    lo_row, hi_row = g.next(lo, "GroupConvolutionBackpropData"), g.next(hi, "GroupConvolutionBackpropData")
    out = g.next(lo_row, "Add")
    if g.other_input(out, lo_row) != hi_row:
        raise GeneratorLoadError("IR inverse DWT rows are not combined as lo + hi")
    g0_col, g1_col = taps(low_up), taps(lh_up)
    if not (np.array_equal(taps(hl_up), g0_col) and np.array_equal(taps(hh_up), g1_col)):
        raise GeneratorLoadError("IR inverse DWT uses different filters for the low and high column bands")
    return InverseHaar(g0_col, g1_col, taps(lo_row), taps(hi_row)), out


def _read_styled_conv(g: IRGraph, prefix: str, modulation: Modulation, apply: int) -> tuple[StyledConv, int]:
    """``{prefix}.conv`` (modulated conv) with its noise, bias and activation; returns it and the PReLU op."""
    node = g.next(apply, ("GroupConvolution", "Convolution"))
    weight_dw = None
    if g.type(node) == "GroupConvolution":
        weight_dw = g.const(g.source(node, 1))
        node = g.next(node, "Convolution")
    weight = g.const(g.source(node, 1))
    noise_add = g.next(node, "Add")
    bias_add = g.next(noise_add, "Add")
    bias_name = g.name(g.source(bias_add, 1))
    if bias_name != f"{prefix}.bias":
        raise GeneratorLoadError(f"IR: expected {prefix}.bias after the noise, found {bias_name!r}")
    prelu = g.next(bias_add, "PReLU")
    conv = StyledConv(modulation, weight, weight_dw, g.const_input(noise_add), g.const_input(bias_add),
                      _scalar(g.const_input(prelu)))
    return conv, prelu


class MobileSynthesisNetwork(torch.nn.Module):
    """``ws [B, 23, 512] -> img [B, 3, 1024, 1024]``, as 23 style-driven steps plus a final inverse DWT.

    ``steps[k]`` is driven by slot ``k`` alone, so any prefix of the steps depends only on a prefix of the slots.
    """

    def __init__(self, const_input: np.ndarray, steps: list[torch.nn.Module], idwt: InverseHaar) -> None:
        super().__init__()
        self.const_input = torch.nn.Parameter(_tensor(const_input))  # [1, 512, 4, 4]
        self.steps = torch.nn.ModuleList(steps)
        self.idwt = idwt
        # Feature resolution after each step, and the step after which the features at r px are complete.
        self.step_resolutions: list[int] = [4] + [8 << i for i in range(_NUM_BLOCKS) for _ in range(3)] + [512]
        self.feature_step = {4: 0, **{8 << i: 3 + 3 * i for i in range(_NUM_BLOCKS)}}
        # Steps whose outputs feed an inverse DWT get their output channels in quad order; features() undoes it.
        self.quad_steps = [k for k in range(len(steps)) if isinstance(self.steps[k], IDWTUpsample)]
        self.quad_steps = [k - 1 for k in self.quad_steps] + [len(steps) - 1]
        for k in self.quad_steps:
            perm = quad_order(self.steps[k].weight.shape[0])
            self.steps[k].permute_outputs(perm)
            if k + 1 < len(steps):
                self.steps[k + 1].permute_inputs(perm)
            self.register_buffer(f"unquad_{k}", torch.argsort(perm), persistent=False)

    def start(self) -> torch.Tensor:
        """The input of step 0, ``[1, 512, 4, 4]``, channels-last."""
        return self.const_input.contiguous(memory_format=torch.channels_last)

    def run(self, x: torch.Tensor, ws: torch.Tensor, start: int, stop: int, noise_mode: str = "const"
            ) -> torch.Tensor:
        """Run steps ``[start, stop)`` on ``x`` (the output of step ``start - 1``, or :meth:`start`).

        ``x`` itself is never modified (it may be a prefix state reused for many suffixes).
        """
        for k in range(start, stop):
            x = self.steps[k](x, ws[:, k], noise_mode, inplace=k > start)
        return x

    def unquad(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """Step ``step``'s output ``x [B, C, r, r]`` in the IR's channel order."""
        return x[:, getattr(self, f"unquad_{step}")] if step in self.quad_steps else x


def _build_synthesis(g: IRGraph) -> MobileSynthesisNetwork:
    steps: list[torch.nn.Module] = []
    prev = None
    for prefix in SLOT_MODULES:
        module_name = prefix.removesuffix(".conv")
        modulation, apply, features = _read_modulation(g, prefix)
        if prev is not None and features != prev:
            raise GeneratorLoadError(f"IR: {prefix} does not consume the previous layer's output")
        if prefix.endswith(".up"):
            idwt, prev = _read_idwt(g, g.next(apply, "VariadicSplit"))
            steps.append(IDWTUpsample(modulation, idwt))
        elif prefix.endswith("to_img.conv"):
            conv = g.next(apply, "Convolution")
            bias_add = g.next(conv, "Add")
            steps.append(WaveletHead(modulation, g.const(g.source(conv, 1)), g.const_input(bias_add)))
            final_idwt, out = _read_idwt(g, g.next(bias_add, "VariadicSplit"))
            if g.type(g.next(out, "Result")) != "Result":
                raise GeneratorLoadError("IR: the final inverse DWT is not the synthesis output")
        else:
            conv, prev = _read_styled_conv(g, module_name, modulation, apply)
            steps.append(conv)
    return MobileSynthesisNetwork(g.const(g.by_name("m.input.input")), steps, final_idwt)


# ---------------------------------------------------------------------------------------------------------------
# The stylemix adapter


@dataclasses.dataclass
class MobileStyleGANState:
    """What :meth:`MobileStyleGANGenerator.synthesis_prefix` hands to the suffix.

    Attributes:
        crossover: slots ``[0, crossover)`` were consumed; the suffix runs steps ``crossover`` to 22.
        hidden: output of step ``crossover - 1`` (the constant input when ``crossover == 0``), ``[B, C, r, r]``.
    """

    crossover: int
    hidden: torch.Tensor


class MobileStyleGANGenerator(GeneratorBase):
    """MobileStyleGAN FFHQ 1024 px with NVIDIA's mapping/synthesis interface and real prefix/suffix hooks.

    ``mapping`` truncates towards ``w_avg``: the IR carries no running average, so it is the mean of the mapping over
    ``w_avg_samples`` latents ``RandomState(0).randn(w_avg_samples, 512)``, computed in float64 on the first
    truncation (``None`` until then).
    """

    #: First colour/texture slot: slots ``[0, DEFAULT_CROSSOVER)`` (conv1 and blocks 0-1, i.e. everything up to
    #: 16 px) are kept by style mixing. Chosen from ``docs/images/mobilestylegan_crossovers.png``; see
    #: ``docs/generators.md``.
    DEFAULT_CROSSOVER: int = 7
    family = "mobilestylegan"
    # Seeds 0-99 with bfloat16 variants: mIoU 0.9030 against 0.9028 in float32, 93 seeds within 1e-4 (docs/benchmarks.md)
    variant_precision = "bfloat16"

    def __init__(self, mapping: MappingNetwork, synthesis: MobileSynthesisNetwork, w_avg_samples: int = 10_000
                 ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.resolution = 512, 0, 512, _NUM_WS, 1024
        self.mapping_network = mapping
        self.synthesis_network = synthesis
        slot_resolutions = tuple(synthesis.step_resolutions[:-1]) + (self.resolution,)
        self.style_layout = StyleLayout.from_slot_resolutions(slot_resolutions, self.DEFAULT_CROSSOVER)
        self.w_avg_samples = int(w_avg_samples)
        # Computed on the first truncation, not at load, and not saved: it is no learned tensor, so it stays out of
        # the state dict and of the generator's id (stylemix.identity).
        self.register_buffer("w_avg", None, persistent=False)

    @torch.no_grad()
    def _mean_w(self, n: int, chunk: int = 2_000) -> torch.Tensor:
        """Mean mapped ``w [512]`` of ``RandomState(0).randn(n, 512)``, computed in float64 by a float64 copy of the
        mapping network and rounded to float32: float32 matmuls round differently on every CPU and GPU, float64
        ones only in digits the rounding drops, so ``w_avg`` is the same on every machine."""
        mapping = copy.deepcopy(self.mapping_network).cpu().double()
        z = np.random.RandomState(0).randn(n, self.z_dim).astype(np.float32)
        total = torch.zeros(self.w_dim, dtype=torch.float64)
        for i in range(0, n, chunk):
            total += mapping(torch.from_numpy(z[i:i + chunk]).double()).sum(dim=0)
        return (total / n).float()

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """``z [B, 512]`` -> ``ws [B, 23, 512]`` (one ``w`` repeated; ``c`` is ignored, the model is unconditional)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got {list(z.shape)}")
        device = self.mapping_network.weights[0].device
        w = self.mapping_network(z.to(device, torch.float32))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1 and self.w_avg is None:
            self.w_avg = self._mean_w(self.w_avg_samples).to(device)
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """``ws [B, 23, 512]`` -> ``img [B, 3, 1024, 1024]``, raw float, roughly in [-1, 1]."""
        return self.synthesis_suffix(self.synthesis_prefix(ws, 0, noise_mode), ws, None, noise_mode)

    def synthesis_prefix(self, ws: torch.Tensor, crossover: int, noise_mode: str = "const") -> MobileStyleGANState:
        """Run the steps driven by slots ``[0, crossover)`` of ``ws [B, 23, 512]`` (``B`` is normally 1).

        ``crossover`` may be 0 (nothing shared) up to 23 (everything but the parameter-free inverse DWT).
        """
        self._check_ws(ws)
        if not 0 <= crossover <= self.num_ws:
            raise ValueError(f"crossover must lie in [0, {self.num_ws}], got {crossover}")
        net = self.synthesis_network
        return MobileStyleGANState(int(crossover), net.run(net.start(), ws, 0, crossover, noise_mode))

    def synthesis_suffix(self, state: Any, ws: torch.Tensor, resolution: int | None = None,
                         noise_mode: str = "const") -> torch.Tensor:
        """Finish ``ws [N, 23, 512]`` from ``state`` (batch 1 broadcasts to ``N``) -> ``img [N, 3, r, r]``.

        ``ws[:, :state.crossover]`` must equal what the prefix saw (not checked, for speed). ``resolution`` below
        1024 cannot stop early in this network: the IR keeps only the final ``to_img`` head (the intermediate heads
        were pruned at export), so the image is rendered in full and area-downsampled, except at 512 px, which is
        read off the head's low band (for the Haar transform ``LL / 2`` *is* the 2x2 mean of the 1024 px image).
        """
        self._check_ws(ws)
        if not isinstance(state, MobileStyleGANState):
            raise TypeError(f"state must come from {type(self).__name__}.synthesis_prefix, got {type(state).__name__}")
        if resolution is not None and (resolution < 1 or resolution & (resolution - 1) or resolution > 1024):
            raise ValueError(f"resolution must be a power of two up to {self.resolution}, got {resolution}")
        net = self.synthesis_network
        x = state.hidden  # batch 1 broadcasts through the first modulation
        if x.shape[0] not in (1, ws.shape[0]):
            raise ValueError(f"prefix batch {x.shape[0]} cannot broadcast to {ws.shape[0]} variants")
        if state.crossover == self.num_ws:
            x = x.expand(ws.shape[0], -1, -1, -1)
        bands = net.run(x, ws, state.crossover, self.num_ws, noise_mode)  # [N, 12, 512, 512], quad order
        if resolution is not None and resolution <= 512 and net.idwt.ll_gain is not None:
            return resize_image(bands[:, 0::4] * net.idwt.ll_gain, resolution).contiguous()
        return resize_image(net.idwt(bands), resolution).contiguous()

    def synthesis_suffix_features(self, state: Any, ws: torch.Tensor, resolutions: list[int],
                                  noise_mode: str = "const") -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """:meth:`synthesis_suffix` at full resolution that keeps, on the way, the feature maps at ``resolutions``:
        ``(img [N, 3, 1024, 1024], {r: [N, C, r, r]})``, every channel in the IR's order, the values of
        :meth:`features` (the same layers on the same inputs; tested bit-equal). Only the resolutions whose layers
        the suffix runs (``state.crossover <= `` their last step ``+ 1``) are returned; the caller renders the
        others (:func:`stylemix.render.synthesis_suffix_features`)."""
        self._check_ws(ws)
        if not isinstance(state, MobileStyleGANState):
            raise TypeError(f"state must come from {type(self).__name__}.synthesis_prefix, got {type(state).__name__}")
        net = self.synthesis_network
        wanted = {net.feature_step[r]: int(r) for r in resolutions
                  if r in net.feature_step and state.crossover <= net.feature_step[r] + 1}
        x, done, feats = state.hidden, state.crossover, {}
        if x.shape[0] not in (1, ws.shape[0]):
            raise ValueError(f"prefix batch {x.shape[0]} cannot broadcast to {ws.shape[0]} variants")
        if done == self.num_ws:
            x = x.expand(ws.shape[0], -1, -1, -1)
        for step in sorted(wanted):
            # run() never modifies its input, so the kept maps stay as they were when the next segment starts
            x = net.run(x, ws, done, step + 1, noise_mode)
            feats[wanted[step]] = net.unquad(x.expand(ws.shape[0], -1, -1, -1), step).contiguous()
            done = step + 1
        bands = net.run(x, ws, done, self.num_ws, noise_mode)
        return net.idwt(bands).contiguous(), feats

    def features(self, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
        """Feature maps after the last conv at ``resolution`` (4 ... 512 px), stopping there.

        Channels: 512 for 4-64 px, 256 at 128, 128 at 256, 64 at 512. ``ws [B, 23, 512] -> [B, C, r, r]``.
        """
        self._check_ws(ws)
        net = self.synthesis_network
        if resolution not in net.feature_step:
            raise ValueError(f"features exist at {sorted(net.feature_step)} px, got {resolution}")
        step = net.feature_step[resolution]
        return net.unquad(net.run(net.start(), ws, 0, step + 1, noise_mode), step).contiguous()

    def synthesis_prefixes(self, ws: torch.Tensor, crossovers: list[int], noise_mode: str = "const"
                           ) -> dict[int, MobileStyleGANState]:
        """:meth:`synthesis_prefix` at each crossover in one pass: each state continues from the previous one."""
        self._check_ws(ws)
        net = self.synthesis_network
        states, x, done = {}, net.start(), 0
        for c in sorted({int(c) for c in crossovers}):
            if not 0 <= c <= self.num_ws:
                raise ValueError(f"crossover must lie in [0, {self.num_ws}], got {c}")
            x = net.run(x, ws, done, c, noise_mode)  # run() never modifies its input, so earlier states stay valid
            states[c], done = MobileStyleGANState(c, x), c
        return states

    def features_suffix(self, state: Any, ws: torch.Tensor, resolution: int, feature_dim: int | None = None,
                        noise_mode: str = "const") -> torch.Tensor:
        """:meth:`features` of ``ws [N, 23, 512]`` continuing from a prefix ``state`` (batch 1 broadcasts), optionally
        projected by :func:`stylemix.vectors.project_channels` to ``feature_dim`` channels: ``[N, D, r, r]``.

        The projection is applied to the channels-last, quad-ordered features with the matrix's columns permuted
        instead: un-permuting 512 channels-last channels costs more than the layers at 64 px themselves.
        """
        self._check_ws(ws)
        if not isinstance(state, MobileStyleGANState):
            raise TypeError(f"state must come from {type(self).__name__}.synthesis_prefix, got {type(state).__name__}")
        net = self.synthesis_network
        if resolution not in net.feature_step:
            raise ValueError(f"features exist at {sorted(net.feature_step)} px, got {resolution}")
        step = net.feature_step[resolution]
        if state.crossover <= step + 1:
            x = net.run(state.hidden, ws, state.crossover, step + 1, noise_mode)
        else:  # the state is past the features: they are the base's, recompute them for these styles
            x = net.run(net.start(), ws, 0, step + 1, noise_mode)
        x = x.expand(ws.shape[0], -1, -1, -1)
        channels = x.shape[1]
        if feature_dim is None or feature_dim >= channels:
            return net.unquad(x, step).contiguous()
        matrix = torch.from_numpy(projection_matrix(channels, feature_dim)).to(x)
        if step in net.quad_steps:  # unquad(x)[:, j] = x[:, unquad[j]], so column j of the matrix moves there
            matrix = matrix[:, torch.argsort(getattr(net, f"unquad_{step}"))]
        return F.conv2d(x, matrix[:, :, None, None]).contiguous()

    def _check_ws(self, ws: torch.Tensor) -> None:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(weights=f"OpenVINO IR from {WHEEL_REQUIREMENT}", w_avg=f"mean of {self.w_avg_samples} mapped z",
                    early_exit="features only (the IR has no intermediate to_img heads)")
        return info


def load_mobilestylegan_ffhq(ir_dir: str | os.PathLike | None = None, w_avg_samples: int = 10_000
                             ) -> MobileStyleGANGenerator:
    """Build :class:`MobileStyleGANGenerator` from the IR files (default: those of the installed ``random-face``).

    Args:
        ir_dir: a folder holding ``{MappingNetwork,SynthesisNetwork}.{xml,bin}``; ``None`` finds the wheel's.
        w_avg_samples: how many fixed latents (``RandomState(0)``) average into ``w_avg`` for truncation.
    """
    ir_dir = find_ir_dir() if ir_dir is None else Path(ir_dir)
    with torch.no_grad():
        mapping = _build_mapping(IRGraph(ir_dir / "MappingNetwork.xml", ir_dir / "MappingNetwork.bin"))
        synthesis = _build_synthesis(IRGraph(ir_dir / "SynthesisNetwork.xml", ir_dir / "SynthesisNetwork.bin"))
        return MobileStyleGANGenerator(mapping, synthesis, w_avg_samples)
