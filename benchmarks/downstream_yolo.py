"""Downstream with the trainer most users run: ultralytics ``yolo segment train`` on stylemix's YOLO export.

    python benchmarks/downstream_yolo.py --work out-downstream                    # after benchmarks/downstream.py
    python benchmarks/downstream_yolo.py --work out-downstream --epochs 3 --out /tmp/y.json

It takes the finished default export of a downstream run (``WORK/export-stylemix``: the same seeds, images and
masks as the ``stylemix`` row), writes it as a YOLO dataset without rendering (``stylemix export --from``), trains
YOLOv8n-seg **from scratch** (``yolov8n-seg.yaml``, ultralytics' default hyper-parameters and augmentation: what
``yolo segment train`` does for a user with no pretrained weights offline) on the same training seeds as the
semantic rows (the last ``--val`` held out), then scores it on the real photos like downstream.py's rows: the
union of the instance masks with confidence >= ``--conf`` is the foreground, at 256 px, over the ``_valid``
pixels, against ``_mask`` and ``_person``.

Writes ``--out`` (JSON: settings, seconds, per-photo and mean scores, CPU, date, command) and the contact sheet
beside it (``<stem>.png``); the weights stay in ``WORK/yolo/train/weights``.
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import downstream as d  # noqa: E402
import downstream_segmenter as seg  # noqa: E402
from stylemix import export as ex  # noqa: E402
from stylemix import io  # noqa: E402
from stylemix.errors import StylemixError  # noqa: E402


def yolo_dataset(export: Path, out: Path, val: int) -> Path:
    """``export`` written as a YOLO dataset in ``out`` (no rendering, resumed where ``out`` holds it already), with
    a ``data-benchmark.yaml`` training on all seeds but the last ``val`` and validating on those. Returns that
    yaml's path."""
    ex.convert_export(export, out, "yolo", run=ex.RunOptions(resume=True, progress=False))
    images = sorted((out / "images").rglob("seed*.png"), key=lambda p: int(p.stem.removeprefix("seed")))
    if len(images) <= val:
        raise StylemixError(f"{len(images)} image(s) in {os.fspath(out)!r} leave nothing to train on with --val {val}")
    lists = {"train": images[:-val], "val": images[-val:]}
    for split, paths in lists.items():
        (out / f"{split}.txt").write_text("".join(f"{p.resolve()}\n" for p in paths))
    yaml = out / "data-benchmark.yaml"
    names = (out / "data.yaml").read_text().partition("names:")[2]  # the export's classes, as it names them
    yaml.write_text(f"path: {out.resolve()}\ntrain: train.txt\nval: val.txt\nnames:{names}")
    return yaml


def train(yaml: Path, project: Path, epochs: int, imgsz: int, batch: int, seed: int) -> Path:
    """YOLOv8n-seg from scratch on ``yaml``; returns the last weights' path.

    On the CPU ultralytics chooses the threads itself, as it does for a user: ``os.cpu_count() - 1`` torch threads
    (one on 2 cores) and data loading in the main process.
    """
    # Ultralytics reads these once, at import: offline, no pip installs, settings inside the work folder.
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_CONFIG_DIR=os.fspath(project / "config"))
    from ultralytics import YOLO
    model = YOLO("yolov8n-seg.yaml", task="segment")
    model.train(data=os.fspath(yaml), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu",
                seed=seed, deterministic=True, plots=False, amp=False, cache="ram", val=False,
                project=os.fspath(project), name="train", exist_ok=True, verbose=False)
    return project / "train" / "weights" / "last.pt"


def predict(weights: Path, photos: dict[str, np.ndarray], imgsz: int, conf: float) -> dict[str, np.ndarray]:
    """``{NAME: bool [256, 256]}``: the union of the instance masks of ``weights`` on each ``uint8 [H, W, 3]``."""
    from ultralytics import YOLO
    model = YOLO(os.fspath(weights), task="segment")
    out = {}
    for name, img in photos.items():
        result = model.predict(img[:, :, ::-1].copy(), imgsz=imgsz, conf=conf, retina_masks=True, verbose=False,
                               device="cpu")[0]
        fg = np.zeros(img.shape[:2], bool)
        if result.masks is not None:
            fg = result.masks.data.cpu().numpy().astype(bool).any(0)
        out[name] = seg.area_mask(fg, d.SCORE_SIZE)
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--work", default=os.fspath(d.DEFAULT_WORK), type=click.Path(file_okay=False),
              help="The work folder of a finished benchmarks/downstream.py run (its export-stylemix).")
@click.option("--val", type=int, default=50, help="Seeds held out (the last of the export), as in downstream.py.")
@click.option("--epochs", type=int, default=15, help="Training epochs.")
@click.option("--imgsz", type=int, default=256, help="Training and prediction size (a multiple of 32).")
@click.option("--batch", type=int, default=16, help="Batch size.")
@click.option("--conf", type=float, default=0.25, help="Confidence of the instances that make the foreground.")
@click.option("--seed", type=int, default=0, help="Training seed.")
@click.option("--real", "real_dir", default=os.fspath(d.DEFAULT_REAL), type=click.Path(file_okay=False),
              help="Real photos, as for downstream.py.")
@click.option("--out", default=os.fspath(d.REPO / "benchmarks" / "results" / "downstream_yolo.json"),
              type=click.Path(dir_okay=False), help="Results JSON; the contact sheet goes beside it.")
def main(work: str, val: int, epochs: int, imgsz: int, batch: int, conf: float, seed: int, real_dir: str,
         out: str) -> None:
    """Train YOLOv8n-seg from scratch on a downstream run's export and score it on real photos."""
    try:
        if epochs < 1 or imgsz % 32 or imgsz < 32 or batch < 1 or val < 1:
            raise StylemixError("--epochs, --batch and --val must be >= 1 and --imgsz a multiple of 32")
        real = d.load_real(Path(real_dir))
        work_dir = Path(work)
        yaml = yolo_dataset(work_dir / "export-stylemix", work_dir / "yolo-stylemix", val)
        t0 = time.perf_counter()
        weights = train(yaml, work_dir / "yolo", epochs, imgsz, batch, seed)
        seconds = time.perf_counter() - t0
        threads = torch.get_num_threads()  # what ultralytics set for training
        preds = predict(weights, {n: r["img"] for n, r in real.items()}, imgsz, conf)
    except StylemixError as exc:
        raise click.ClickException(str(exc)) from None
    scores = d.score_real(preds, real)
    report = {
        "benchmark": "downstream_yolo",
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": d.cpu_name(),
        "torch": torch.__version__,
        "model": "yolov8n-seg.yaml (from scratch)",
        "epochs": epochs, "imgsz": imgsz, "batch": batch, "conf": conf, "seed": seed, "torch_threads": threads,
        "train_images": len((work_dir / "yolo-stylemix" / "train.txt").read_text().splitlines()),
        "train_s": round(seconds, 1),
        "real": scores,
    }
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(out_path, report)
    io.write_png(out_path.with_suffix(".png"), d.contact_sheet(real, {"yolo": preds}, {"yolo": scores}))
    mean = scores["vs_mask"]["mean"]
    click.echo(f"yolo from scratch, {epochs} epochs at {imgsz} px: mIoU {mean['miou']:.3f} (fg {mean['fg_iou']:.3f}, "
               f"bg {mean['bg_iou']:.3f}) vs _mask; train {seconds:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
