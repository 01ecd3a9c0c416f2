"""The trials that chose downstream.py's trainer recipe: one configuration per call, one JSON line out.

    python benchmarks/downstream_trials.py --name base --steps 297 --cache out-downstream/cache
    python benchmarks/downstream_trials.py --name strong_dice --steps 1200 --aug strong --loss dice
    python benchmarks/downstream_trials.py --name teacher --labels teacher --steps 1200 --aug strong --loss dice

It trains LR-ASPP on the arrays a downstream run cached (``stylemix-192-*.npz`` and ``teacher-192-*.npz``: 1,000
seeds, the first 950 trained on, the last 50 held out) with one torch thread, and scores it on the real-face set
with and without the flip-averaged prediction. The photos are split in two halves by sorted name (A: the 1st,
3rd, ...; B: the 2nd, 4th, ...): choices were made on A and confirmed on B.

The loop is downstream.py's ``train_row`` as it stood when the trials ran, before the recipe moved into
downstream.py, so the trials compare recipes downstream.py no longer has. The figures in docs/downstream.md came
from this script with downstream.py of commit 789ad90; later helpers change the float rounding, and with it the
figures by run-to-run noise (about 0.015 on 10 photos).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import downstream as d  # noqa: E402

CPU = torch.device("cpu")
TRAIN = 950  # the first 950 of the cached 1,000 seeds; the rest are held out


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """``uint8 [N, S, S]`` 0/1 labels -> ``[N, size, size]`` by the area vote."""
    return np.stack([(cv2.resize(lab.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0.5)
                     .astype(np.uint8) for lab in labels])


def dice_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The soft Dice loss of both classes as the trials computed it (downstream.dice_loss is the same sum)."""
    valid = (y != d.IGNORE).float()
    p = torch.softmax(logits, 1)[:, 1] * valid
    t = (y == 1).float() * valid
    fg = 1 - (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    pb = (1 - torch.softmax(logits, 1)[:, 1]) * valid
    tb = (y == 0).float() * valid
    bg = 1 - (2 * (pb * tb).sum((1, 2)) + 1) / (pb.sum((1, 2)) + tb.sum((1, 2)) + 1)
    return (fg + bg).mean() / 2


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, strong: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """downstream.augment's basic part, then (``strong``) white balance, blur and noise in the same draw order."""
    x, y = d.augment(x, y, gen)
    if not strong:
        return x, y
    b = x.shape[0]
    x = x * (1 + (torch.rand(b, 3, 1, 1, generator=gen) - 0.5) * 0.3)
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None]) / 16
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3), groups=3)
        x = torch.where(blur.view(b, 1, 1, 1), blurred, x)
    x = x + torch.randn(x.shape, generator=gen) * (torch.rand(b, 1, 1, 1, generator=gen) * 0.04)
    return x.clamp(0, 1), y


def train(images: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> tuple[torch.nn.Module, float, float]:
    """Train from scratch; returns the model, the seconds and the mean loss of the last 30 steps."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = {"lraspp": d.LRASPP, "unet8": lambda: d.SmallUNet(8), "unet12": lambda: d.SmallUNet(12)}[args.model]()
    if args.cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    rng = np.random.default_rng(0)
    order: list[int] = []
    losses = []
    t0 = time.perf_counter()
    model.train()
    for _ in range(args.steps):
        if len(order) < args.batch:
            order += list(rng.permutation(TRAIN))
        idx, order = np.sort(order[:args.batch]), order[args.batch:]
        x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(labels[idx]).long()
        x, y = augment(x, y, gen, strong=args.aug == "strong")
        x = d.standardise(x)
        if args.cl:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        loss = F.cross_entropy(out, y, ignore_index=d.IGNORE)
        if args.loss == "dice":
            loss = loss + dice_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return model, time.perf_counter() - t0, float(np.mean(losses[-30:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="the trial's name in the results file")
    p.add_argument("--labels", default="stylemix", choices=["stylemix", "teacher"])
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--steps", type=int, default=297)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--loss", default="ce", choices=["ce", "dice"], help="dice: cross-entropy plus soft Dice")
    p.add_argument("--aug", default="base", choices=["base", "strong"])
    p.add_argument("--model", default="lraspp", choices=["lraspp", "unet8", "unet12"])
    p.add_argument("--cl", type=int, default=1, help="1: channels-last weights and inputs")
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--cache", default="out-downstream/cache", help="a downstream run's WORK/cache")
    p.add_argument("--real", default=str(d.DEFAULT_REAL))
    p.add_argument("--results", default="downstream_trials.jsonl", help="JSON lines, one per trial, appended")
    args = p.parse_args()
    torch.set_num_threads(1)

    cached = np.load(next(Path(args.cache).glob("stylemix-192-*.npz")))
    teacher = np.load(next(Path(args.cache).glob("teacher-192-*.npz")))["labels"]
    images, labels = cached["images"], {"stylemix": cached["labels"], "teacher": teacher}[args.labels]
    if args.size != 192:
        images = np.stack([cv2.resize(im, (args.size, args.size), interpolation=cv2.INTER_AREA) for im in images])
        labels, teacher = resize_labels(labels, args.size), resize_labels(teacher, args.size)

    model, seconds, loss_end = train(images, labels, args)
    cfg = d.TrainConfig(model="lraspp", size=args.size, lr=args.lr, batch=args.batch, weight_decay=args.wd)
    d.recompute_bn(model, images[:TRAIN], cfg, CPU)
    held = d.held_out_scores(d.predict(model, images[TRAIN:], args.size, CPU, flip=False), teacher[TRAIN:])
    real = d.load_real(Path(args.real))
    photos = np.stack([r["img"] for r in real.values()])
    plain = d.predict(model, photos, args.size, CPU, out_size=256, flip=False)
    mirrored = d.predict(model, photos[:, :, ::-1].copy(), args.size, CPU, out_size=256, flip=False)[:, :, ::-1]
    record = {"name": args.name, **vars(args), "secs": round(seconds, 1), "loss_end": round(loss_end, 4),
              "held_vs_teacher_miou": round(held["miou"], 4)}
    for tag, probs in (("plain", plain), ("flip", (plain + mirrored) / 2)):
        scores = d.score_real({n: q > 0.5 for n, q in zip(real, probs)}, real, ("mask",))["vs_mask"]["per_photo"]
        per = [scores[n]["miou"] for n in real]
        record[f"real_{tag}"] = {"A": round(float(np.mean(per[0::2])), 4), "B": round(float(np.mean(per[1::2])), 4),
                                 "all": round(float(np.mean(per)), 4), "per": [round(v, 3) for v in per]}
    print(json.dumps(record), flush=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
