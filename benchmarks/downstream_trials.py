"""The trials that chose downstream.py's trainer recipe: one configuration per call, one JSON line out.

    python benchmarks/downstream_trials.py --name base --steps 297 --cache out-downstream/cache
    python benchmarks/downstream_trials.py --name strong_dice --steps 1200 --aug strong --loss dice
    python benchmarks/downstream_trials.py --name teacher --labels teacher --steps 1200 --aug strong --loss dice

It trains LR-ASPP on the arrays a downstream run cached (``stylemix-192-*.npz`` and ``teacher-192-*.npz``: 1,000
seeds, the first 950 trained on, the last 50 held out) with one torch thread, and scores it on the real-face set
with and without the flip-averaged prediction. The photos are split in two halves by sorted name (A: the 1st,
3rd, ...; B: the 2nd, 4th, ...): choices were made on A and confirmed on B.

Each trial trains with downstream.py's own ``train_row`` and predicts with its ``predict``; the options map to
``TrainConfig`` (``--aug base|strong|paste`` to ``augment``, ``--loss ce|dice`` to ``ce`` or ``ce+dice``). The
figures in docs/downstream.md came from this script at commit 48034dd, which trained with its own copy of that
loop (all but the last two trials of its table, which ran on this version); a rerun today moves them by
run-to-run noise (float rounding, about 0.015 on 10 photos).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import downstream as d  # noqa: E402

CPU = torch.device("cpu")
TRAIN = 950  # the first 950 of the cached 1,000 seeds; the rest are held out


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """``uint8 [N, S, S]`` 0/1 labels -> ``[N, size, size]`` by the area vote."""
    return np.stack([(cv2.resize(lab.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0.5)
                     .astype(np.uint8) for lab in labels])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="the trial's name in the results file")
    p.add_argument("--labels", default="stylemix", choices=["stylemix", "teacher"])
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--steps", type=int, default=297)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--loss", default="ce", choices=["ce", "dice"], help="dice: cross-entropy plus soft Dice")
    p.add_argument("--aug", default="base", choices=["base", "strong", "paste"])
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
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

    cfg = d.TrainConfig(model="lraspp", size=args.size, batch=args.batch, lr=args.lr, weight_decay=args.wd,
                        seed=args.seed, augment={"base": "basic"}.get(args.aug, args.aug),
                        loss="ce+dice" if args.loss == "dice" else "ce")
    model, log = d.train_row(args.name, images[:TRAIN], labels[:TRAIN], np.ones(TRAIN, bool), args.steps, cfg, CPU)
    d.recompute_bn(model, images[:TRAIN], cfg, CPU)
    held = d.held_out_scores(d.predict(model, images[TRAIN:], args.size, CPU, flip=False), teacher[TRAIN:])
    real = d.load_real(Path(args.real))
    photos = np.stack([r["img"] for r in real.values()])
    plain = d.predict(model, photos, args.size, CPU, out_size=256, flip=False)
    averaged = d.predict(model, photos, args.size, CPU, out_size=256)
    record = {"name": args.name, **vars(args), "secs": log["seconds"], "loss_end": log["loss_by_tenth"][-1],
              "held_vs_teacher_miou": round(held["miou"], 4)}
    for tag, probs in (("plain", plain), ("flip", averaged)):
        scores = d.score_real({n: q > 0.5 for n, q in zip(real, probs)}, real, ("mask",))["vs_mask"]["per_photo"]
        per = [scores[n]["miou"] for n in real]
        record[f"real_{tag}"] = {"A": round(float(np.mean(per[0::2])), 4), "B": round(float(np.mean(per[1::2])), 4),
                                 "all": round(float(np.mean(per)), 4), "per": [round(v, 3) for v in per]}
    print(json.dumps(record), flush=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
