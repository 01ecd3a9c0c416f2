"""The trials that chose downstream.py's trainer recipe: one configuration per call, one JSON line out.

    python benchmarks/downstream_trials.py --name base --steps 297 --cache out-downstream/cache
    python benchmarks/downstream_trials.py --name strong_dice --steps 1200 --aug strong --loss dice
    python benchmarks/downstream_trials.py --name teacher --labels teacher --steps 1200 --aug strong --loss dice
    python benchmarks/downstream_trials.py --name ema --steps 1188 --aug strong --loss dice --ema 0.99,0.998,1
    python benchmarks/downstream_trials.py --name more --steps 1188 --aug strong --loss dice --more EXPORT

It trains LR-ASPP on the arrays a downstream run cached (``stylemix-192-*.npz`` and ``teacher-192-*.npz``: 1,000
seeds, the first 950 trained on, the last 50 held out) with one torch thread, and scores it on the real-face set
with and without the flip-averaged prediction. The photos are split in two halves by sorted name (A: the 1st,
3rd, ...; B: the 2nd, 4th, ...): choices were made on A and confirmed on B.

Each trial trains with ``downstream_segmenter.train_row`` (what downstream.py's rows train with) and predicts
with its ``predict``; the options map to ``TrainConfig`` (``--aug base|strong|paste`` to ``augment``, ``--loss
ce|dice`` to ``ce`` or ``ce+dice``). The first six trials of docs/downstream.md's table came from this script at
commit 48034dd, which trained with its own copy of that loop, and a rerun moves them by run-to-run noise (about
0.015 on 10 photos); the later ones ran on this version, and a rerun on the same CPU model (one thread) gives the
same digits. ``--ema`` scores weight averages of the same run beside its weights; ``--more`` adds another
export's seeds to the training images. ``real_flip`` is the flip-averaged prediction at the training size (the
trials' figure before the prediction size changed), ``real_predict`` the same at
``downstream_segmenter.predict_size`` (224 px for 192), the benchmark's now.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import downstream as d  # noqa: E402
import downstream_segmenter as seg  # noqa: E402

from stylemix import io  # noqa: E402

CPU = torch.device("cpu")
TRAIN = 950  # the first 950 of the cached 1,000 seeds; the rest are held out


class WeightAverage:
    """An exponential moving average of a model's weights over the last two thirds of its training.

    From step ``start`` on, :meth:`update` folds the model's floating-point state (weights and BN statistics) into
    the average: a plain mean until it spans ``1 / (1 - decay)`` steps, then exponential with ``decay`` (``decay``
    1 keeps the plain mean, stochastic weight averaging). The weights of the last steps of a short run still
    follow the noise of their last batches; their average sits nearer the middle of the basin they circle.
    """

    def __init__(self, decay: float, start: int) -> None:
        self.decay, self.start = decay, start
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, model: torch.nn.Module, step: int) -> None:
        if step < self.start:
            return
        current = {k: v.detach() for k, v in model.state_dict().items() if v.is_floating_point()}
        n = step - self.start
        if self.state is None:
            self.state = {k: v.clone() for k, v in current.items()}
            return
        keys = list(self.state)
        torch._foreach_lerp_([self.state[k] for k in keys], [current[k] for k in keys],
                             1 - min(self.decay, 1 - 1 / (n + 1)))

    def load_into(self, model: torch.nn.Module) -> None:
        """Replace ``model``'s floating-point state by the average (a no-op before any :meth:`update`)."""
        if self.state is not None:
            model.load_state_dict(self.state, strict=False)


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """``uint8 [N, S, S]`` 0/1 labels -> ``[N, size, size]`` by the area vote."""
    return np.stack([(cv2.resize(lab.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0.5)
                     .astype(np.uint8) for lab in labels])


def soft_labels(export: Path, n: int, size: int) -> np.ndarray:
    """Seeds 0..n-1's mattes (``alpha/train/seedSSSS_alpha.png`` of a ``--alpha`` export) -> ``float32 [n, size,
    size]`` foreground probabilities (area mean), cached beside the export."""
    cache = export / f"alpha-{size}.npy"
    if cache.is_file():
        return np.load(cache)
    alpha = np.stack([cv2.resize(io.read_png(export / "alpha" / "train" / f"{io.stem(s)}_alpha.png")
                                 .astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_AREA)
                      for s in range(n)])
    np.save(cache, alpha)
    return alpha


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="the trial's name in the results file")
    p.add_argument("--labels", default="stylemix", choices=["stylemix", "teacher", "alpha"],
                   help="alpha: soft labels, the matte of --alpha-export (the stylemix masks' own boundary stage)")
    p.add_argument("--alpha-export", default="", help="a png export of the same seeds with --alpha")
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--steps", type=int, default=297)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--loss", default="ce", choices=["ce", "dice"], help="dice: cross-entropy plus soft Dice")
    p.add_argument("--aug", default="base", choices=["base", "strong", "paste"])
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ema", default="", help="comma-separated decays (1: the plain mean) of weight averages over "
                                              "the last two thirds of the steps, each scored beside the trained "
                                              "weights of the same run")
    p.add_argument("--cache", default="out-downstream/cache", help="a downstream run's WORK/cache")
    p.add_argument("--more", default="", help="a finished png export (stylemix export --parts auto, other seeds): "
                                              "its images and masks join the 950 training images (the more-seeds "
                                              "trial); arrays cached beside it")
    p.add_argument("--more-count", type=int, default=0, help="only the first N seeds of --more (default: all)")
    p.add_argument("--predict-size", type=int, default=0,
                   help="also score at this input size (default: downstream_segmenter.predict_size of --size)")
    p.add_argument("--real", default=str(d.DEFAULT_REAL))
    p.add_argument("--results", default="downstream_trials.jsonl", help="JSON lines, one per trial, appended")
    args = p.parse_args()
    torch.set_num_threads(1)
    predict_px = args.predict_size or seg.predict_size(args.size)

    cached = np.load(next(Path(args.cache).glob("stylemix-192-*.npz")))
    teacher = np.load(next(Path(args.cache).glob("teacher-192-*.npz")))["labels"]
    images, labels = cached["images"], {"stylemix": cached["labels"], "teacher": teacher}.get(args.labels)
    if args.labels == "alpha":
        if not args.alpha_export or args.size != 192 or args.more:
            p.error("--labels alpha takes --alpha-export, at 192 px, without --more")
        labels = soft_labels(Path(args.alpha_export), len(images), 192)
    train = TRAIN
    if args.more:
        if args.labels != "stylemix" or args.size != 192:
            p.error("--more takes stylemix's labels at 192 px")
        export = Path(args.more)
        seeds = sorted(d.export_records(export))
        more = d.load_arrays(export, seeds, 192, export / "arrays-192.npz", with_images=True)
        if args.more_count:
            seeds = seeds[:args.more_count]
            more = {k: more[k][:args.more_count] for k in ("images", "labels")}
        images = np.concatenate([images[:TRAIN], more["images"], images[TRAIN:]])
        labels = np.concatenate([labels[:TRAIN], more["labels"], labels[TRAIN:]])
        teacher = np.concatenate([teacher[:TRAIN], np.zeros_like(more["labels"]), teacher[TRAIN:]])
        train = TRAIN + len(seeds)
    if args.size != 192:
        images = np.stack([cv2.resize(im, (args.size, args.size), interpolation=cv2.INTER_AREA) for im in images])
        labels, teacher = resize_labels(labels, args.size), resize_labels(teacher, args.size)

    cfg = seg.TrainConfig(model="lraspp", size=args.size, batch=args.batch, lr=args.lr, weight_decay=args.wd,
                          seed=args.seed, augment={"base": "basic"}.get(args.aug, args.aug),
                          loss="ce+dice" if args.loss == "dice" else "ce")
    start = args.steps // 3  # past the learning rate's peak: earlier weights are far from where the run ends
    averages = [WeightAverage(float(v), start) for v in args.ema.split(",") if v]

    def update(model: torch.nn.Module, step: int) -> None:
        for average in averages:
            average.update(model, step)

    model, log = seg.train_row(args.name, images[:train], labels[:train], np.ones(train, bool), args.steps, cfg, CPU,
                               progress=d.Progress(f"train {args.name}", args.steps, "steps").update,
                               on_step=update if averages else None)
    record = {"name": args.name, **vars(args), "cpu": d.cpu_name(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "secs": log["seconds"], "loss_end": log["loss_by_tenth"][-1]}
    real = d.load_real(Path(args.real))
    photos = np.stack([r["img"] for r in real.values()])
    models = {"": model}
    for average in averages:
        models[f"_ema{average.decay}"] = copy.deepcopy(model)
        average.load_into(models[f"_ema{average.decay}"])
    for suffix, net in models.items():
        seg.recompute_bn(net, images[:train], cfg, CPU)
        held = d.held_out_scores(seg.predict(net, images[train:], args.size, CPU, flip=False), teacher[train:])
        record[f"held_vs_teacher_miou{suffix}"] = round(held["miou"], 4)
        plain = seg.predict(net, photos, args.size, CPU, out_size=256, flip=False)
        averaged = seg.predict(net, photos, args.size, CPU, out_size=256)
        larger = seg.predict(net, photos, predict_px, CPU, out_size=256)
        for tag, probs in (("plain", plain), ("flip", averaged), ("predict", larger)):
            scores = d.score_real({n: q > 0.5 for n, q in zip(real, probs)}, real, ("mask",))["vs_mask"]["per_photo"]
            per = [scores[n]["miou"] for n in real]
            record[f"real_{tag}{suffix}"] = {"A": round(float(np.mean(per[0::2])), 4),
                                             "B": round(float(np.mean(per[1::2])), 4),
                                             "all": round(float(np.mean(per)), 4), "per": [round(v, 3) for v in per]}
    print(json.dumps(record), flush=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
