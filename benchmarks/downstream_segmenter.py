"""The segmenter every downstream row trains, and how it trains and predicts: only the labels differ between rows.

LR-ASPP MobileNetV3-Large (torchvision, no pretrained weights) or a small U-Net; a seeded augmentation (flip,
affine, colour; with ``strong`` also white balance, blur and noise); cross-entropy plus soft Dice; AdamW with a
one-cycle schedule; batch-norm statistics recomputed over training images before evaluation; a flip-averaged
prediction at :func:`predict_size`. :func:`train_row` is the loop, the same for ``downstream.py``'s rows and
``downstream_trials.py``'s trials; docs/downstream.md says how each choice was made.

Arrays: images ``uint8 [N, S, S, 3]``; labels ``uint8 [N, S, S]`` with 0 = background, 1 = foreground and
:data:`IGNORE` left out of the loss, or ``float32 [N, S, S]`` foreground probabilities (soft labels).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from stylemix.errors import StylemixError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IGNORE = 255  # label value left out of the loss
AUGMENTS = ("basic", "strong", "paste")  # TrainConfig.augment: the CLI's choices and run()'s check
LOSSES = ("ce", "ce+dice")


# ---------------------------------------------------------------------------------------------------------------
# Arrays at the training size


def area_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """``bool [H, W]`` -> ``bool [size, size]``: foreground where more than half of the pixel's area is."""
    import cv2
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape == (size, size):
        return mask > 0.5
    interp = cv2.INTER_AREA if mask.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(mask, (size, size), interpolation=interp) > 0.5


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """``uint8 [H, W, 3]`` -> ``uint8 [size, size, 3]`` (area reduction, bilinear enlargement)."""
    import cv2
    if image.shape[:2] == (size, size):
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


# ---------------------------------------------------------------------------------------------------------------
# Networks, augmentation, loss, training and prediction


class SmallUNet(nn.Module):
    """A four-level U-Net (``width`` channels at full resolution, doubling per level), BN + ReLU."""

    def __init__(self, width: int = 16, classes: int = 2) -> None:
        super().__init__()
        c = [width * 2 ** i for i in range(5)]

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.down = nn.ModuleList([block(3, c[0])] + [block(c[i], c[i + 1]) for i in range(4)])
        self.up = nn.ModuleList([block(c[i + 1] + c[i], c[i]) for i in range(4)])
        self.head = nn.Conv2d(c[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, H, W]`` (H, W multiples of 16) -> logits ``[B, classes, H, W]``."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in range(3, -1, -1):
            x = F.interpolate(x, size=skips[i].shape[2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], 1))
        return self.head(x)


class LRASPP(nn.Module):
    """torchvision's LR-ASPP on MobileNetV3-Large, no pretrained weights, returning the logits tensor."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large
        self.net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


MODELS: dict[str, Callable[[], nn.Module]] = {"lraspp": LRASPP, "unet": SmallUNet}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What every row is trained with: only the labels differ between rows."""

    model: str = "lraspp"
    size: int = 192
    epochs: float = 20.0
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    bn_batches: int = 20  # training batches whose statistics replace the running ones before evaluation
    augment: str = "strong"  # "basic", "strong" (+ tint, blur, noise) or "paste" (strong after paste_backgrounds)
    loss: str = "ce+dice"  # "ce", or cross-entropy plus the soft Dice loss of both classes


def standardise(x: torch.Tensor) -> torch.Tensor:
    """``float [B, 3, H, W]`` in [0, 1] -> ImageNet mean/std (the same for training and test)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def normalise(images: torch.Tensor) -> torch.Tensor:
    """``uint8 [B, H, W, 3]`` -> standardised ``float [B, 3, H, W]`` (channels-last in memory)."""
    return channels_last(standardise(images.permute(0, 3, 1, 2).float() / 255))


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory order, the layout oneDNN's CPU convolutions run fastest on."""
    return x.contiguous(memory_format=torch.channels_last)


def build_model(cfg: TrainConfig, device: torch.device) -> nn.Module:
    """A fresh ``cfg.model`` on ``device``, its weights channels-last like its inputs."""
    return MODELS[cfg.model]().to(device, memory_format=torch.channels_last)


def paste_backgrounds(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
                      p: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Put the foreground of a fraction ``p`` of the batch in front of another image of the batch.

    Args:
        x: ``float [B, 3, H, W]``; y: ``long [B, H, W]`` (0, 1, ``IGNORE``).

    Returns:
        ``x`` and ``y`` where each chosen image keeps its foreground (label 1) over the other image's pixels; those
        pixels are labelled background where the other image's label is background and :data:`IGNORE` where it
        is foreground (the other person shows there, and is not this label's subject). The seam is softened by a
        3 x 3 blur of the foreground. A generated face sits on the background the generator drew for it; real
        photos pair faces with backgrounds of any kind, so the network learns the person's outline, not which
        backgrounds go with which faces.
    """
    b = x.shape[0]
    if b < 2:
        return x, y
    shift = int(torch.randint(1, b, (1,), generator=gen))
    src = torch.roll(torch.arange(b), shift)
    chosen = (torch.rand(b, generator=gen) < p).to(x.device).view(b, 1, 1)
    fg = (y == 1).float()[:, None]
    alpha = F.avg_pool2d(F.pad(fg, (1, 1, 1, 1), mode="replicate"), 3, 1)
    pasted = x * alpha + x[src] * (1 - alpha)
    other = torch.where(y[src] == 1, IGNORE, 0)
    label = torch.where((y == 1) | (y == IGNORE), y, other)
    return torch.where(chosen[:, None], pasted, x), torch.where(chosen, label, y)


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
            strong: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Generic photometric and geometric augmentation of a batch, the same for every row.

    Args:
        x: ``float [B, 3, H, W]`` in [0, 1]; y: ``long [B, H, W]`` labels (``IGNORE`` kept as is), or ``float
            [B, H, W]`` foreground probabilities (soft labels, resampled bilinearly).
        gen: the CPU generator every random draw comes from.
        strong: also a white-balance gain of +-15 % per channel, a 3 x 3 binomial blur for 30 % of the images and
            Gaussian noise (sigma up to 0.04): real photos are tinted, soft and grainy where the generator's are
            clean.

    Returns:
        The augmented ``x`` (still in [0, 1]) and ``y``. Flip, scale 0.85-1.15, rotation +-10 degrees,
        shift +-6 %, brightness/contrast/saturation +-30 %, greyscale for 15 % of the images: real photos are
        greyscale, lit and framed in ways the generator's images are not.
    """
    b = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(b, generator=gen) * (hi - lo) + lo).to(x.device)

    angle, scale = u(-10, 10) * math.pi / 180, u(0.85, 1.15)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0).to(x.device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, u(-0.06, 0.06)], 1),
                         torch.stack([sin * flip, cos, u(-0.06, 0.06)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Reflection fills the border as FFHQ's reflect padding does, for the image and its labels alike.
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    soft = y.is_floating_point()
    y = F.grid_sample(y[:, None].float(), grid, mode="bilinear" if soft else "nearest", padding_mode="reflection",
                      align_corners=False)[:, 0]
    y = y if soft else y.long()
    grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = grey + (x - grey) * u(0.7, 1.3).view(b, 1, 1, 1)  # saturation
    x = torch.where((torch.rand(b, generator=gen) < 0.15).to(x.device).view(b, 1, 1, 1), grey.expand_as(x), x)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.7, 1.3).view(b, 1, 1, 1) + mean  # contrast
    x = x * u(0.7, 1.3).view(b, 1, 1, 1)  # brightness
    if strong:
        x = x.clamp(0, 1) * (1 + (torch.rand(b, 3, 1, 1, generator=gen) - 0.5) * 0.3).to(x.device)
        blur = (torch.rand(b, generator=gen) < 0.3).to(x.device)
        kernel = torch.tensor([1.0, 2.0, 1.0], device=x.device)
        kernel = (kernel[:, None] * kernel[None]) / 16
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)
        x = torch.where(blur.view(b, 1, 1, 1), blurred, x)
        noise = torch.randn(x.shape, generator=gen).to(x.device)
        x = x + noise * (torch.rand(b, 1, 1, 1, generator=gen) * 0.04).to(x.device)
    return x.clamp(0, 1), y


def dice_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss of ``logits [B, 2, H, W]`` against ``y long [B, H, W]``, the mean over both classes and images.

    Pixels labelled :data:`IGNORE` count for neither class; a ``float`` ``y`` is the foreground probability. It
    scores the overlap the benchmark reports (IoU), where cross-entropy alone spends its effort on pixels already
    right.
    """
    soft = y.is_floating_point()
    valid = torch.ones_like(y, dtype=logits.dtype) if soft else (y != IGNORE).float()
    targets = (1 - y, y) if soft else ((y == 0).float(), (y == 1).float())
    prob = torch.softmax(logits, 1)
    total = logits.new_zeros(())
    for cls in (0, 1):
        p, t = prob[:, cls] * valid, targets[cls] * valid
        total = total + (1 - (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)).mean()
    return total / 2


def recompute_bn(model: nn.Module, images: np.ndarray, cfg: TrainConfig, device: torch.device) -> None:
    """Replace every BN layer's running statistics by their plain average over ``cfg.bn_batches`` training batches.

    Args:
        images: ``uint8 [N, S, S, 3]`` training images (un-augmented: the test photos are not augmented).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    order = np.random.default_rng(cfg.seed + 1).permutation(len(images))
    with torch.no_grad():
        for k in range(min(cfg.bn_batches, math.ceil(len(images) / cfg.batch))):
            idx = np.sort(order[k * cfg.batch:(k + 1) * cfg.batch])
            model(normalise(torch.from_numpy(images[idx]).to(device)))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    model.eval()


def predict_size(size: int, scale: float = 7 / 6) -> int:
    """The input size a model trained at ``size`` predicts at: ``scale`` times it, a multiple of 16 (by default
    7/6: 224 for 192).

    LR-ASPP's logits are an eighth of its input, bilinearly enlarged: a larger input gives a finer grid along the
    boundary, while a much larger one shows the network faces bigger than it learnt. 7/6 was chosen on held-out
    generated images and then checked on the real photos (docs/downstream.md, "Prediction size").
    """
    return 16 * round(size * scale / 16)


def predict(model: nn.Module, images: np.ndarray, size: int, device: torch.device, batch: int = 16,
            out_size: int | None = None, flip: bool = True) -> np.ndarray:
    """Foreground probability ``float32 [N, out, out]`` of ``images uint8 [N, H, W, 3]`` at input size ``size``.

    Images are resized to ``size`` (area), logits bilinearly to ``out_size`` (default ``H``). With ``flip`` the
    probability is the mean over the image and its mirror image (the mirror's prediction mirrored back): a face
    is as likely mirrored, and the mean cancels the errors the two do not share.
    """
    out_size = out_size or images.shape[1]
    model.eval()
    probs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = normalise(torch.from_numpy(np.stack([resize_image(im, size)
                                                     for im in images[start:start + batch]])).to(device))
            views = [(x, False), (channels_last(x.flip(3)), True)] if flip else [(x, False)]
            batch_probs = []
            for view, mirrored in views:
                logits = F.interpolate(model(view), (out_size, out_size), mode="bilinear", align_corners=False)
                p = torch.softmax(logits, 1)[:, 1]
                batch_probs.append(p.flip(2) if mirrored else p)
            probs.append(torch.stack(batch_probs).mean(0).float().cpu().numpy())
    return np.concatenate(probs)


def train_row(row: str, images: np.ndarray, labels: np.ndarray, keep: np.ndarray, steps: int, cfg: TrainConfig,
              device: torch.device, progress: Callable[[int, str], None] | None = None,
              on_step: Callable[[nn.Module, int], None] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train one segmenter from scratch.

    Args:
        images: ``uint8 [N, S, S, 3]``; labels: ``uint8 [N, S, S]`` (0, 1, :data:`IGNORE`), or ``float32 [N, S, S]``
            foreground probabilities (soft labels: cross-entropy and Dice against the probability).
        keep: ``bool [N]`` the images this row trains on (all but the filtered ones).
        steps: optimiser steps (the same for every row, whatever ``keep`` leaves).
        progress: called with the steps done and the last loss as text after each step (a progress line).
        on_step: called with the model and the step number after each optimiser step (the trials' weight averages).

    Returns:
        The model (train mode, its BN statistics the running ones: :func:`recompute_bn` replaces them) and a log:
        seconds, steps, images, losses by tenth of the run.
    """
    if cfg.augment == "paste" and labels.dtype.kind == "f":
        raise StylemixError("--augment paste needs hard labels (0, 1, 255), not foreground probabilities")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    idx_all = np.flatnonzero(keep)
    rng = np.random.default_rng(cfg.seed)
    order: list[int] = []
    losses, window = [], []
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        if len(order) < cfg.batch:  # a new pass over the kept images, in a seeded order
            order += list(rng.permutation(idx_all))
        idx, order = np.sort(order[:cfg.batch]), order[cfg.batch:]
        x = torch.from_numpy(images[idx]).to(device).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(labels[idx]).to(device)
        y = y.float() if y.is_floating_point() else y.long()
        if cfg.augment == "paste":
            x, y = paste_backgrounds(x, y, gen)
        x, y = augment(x, y, gen, strong=cfg.augment in ("strong", "paste"))
        logits = model(channels_last(standardise(x)))
        if y.is_floating_point():
            loss = F.cross_entropy(logits, torch.stack([1 - y, y], 1))
        else:
            loss = F.cross_entropy(logits, y, ignore_index=IGNORE)
        if cfg.loss == "ce+dice":
            loss = loss + dice_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(model, step)
        last = loss.item()
        window.append(last)
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            losses.append(round(float(np.mean(window)), 4))
            window = []
        if progress is not None:
            progress(step + 1, f"loss {last:.3f}")
    return model, {"seconds": round(time.perf_counter() - t0, 1), "steps": steps, "images": int(keep.sum()),
                   "loss_by_tenth": losses}


