"""At which input size should a segmenter trained at S px predict? Scores a downstream run's trained rows at
several prediction sizes (multiples of S: :data:`SCALES`), first on held-out generated faces (where the choice is
made), then on the real photos (where it is checked).

    python benchmarks/downstream_predict_size.py benchmarks/results/downstream.json    # after benchmarks/downstream.py
    python benchmarks/downstream_predict_size.py W1/downstream.json W2/downstream.json --out predict_size.json

Each argument is a finished run's report (``--out`` of downstream.py); its work folder is where the report says
the weights are, and must still hold the weights, ``cache/`` and ``export-stylemix/``.

Both image sets go through the same resizes: the held-out seeds' 1024 px images of ``WORK/export-stylemix`` are
reduced to 256 px like the real photos, then each is brought to the prediction size (``cv2.INTER_AREA``, as
``downstream_segmenter.predict`` does). Held-out predictions are scored at the training size against the
teacher's labels (the truth's definition) and the row's own labels, real ones at 256 px against ``_mask``. A "+"
joins sizes whose flip-averaged probabilities are averaged.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import downstream as d  # noqa: E402
import downstream_segmenter as seg  # noqa: E402

from stylemix import io  # noqa: E402

ROWS = ("stylemix", "consensus", "teacher")  # the rows with labels of their own in the cache
# Prediction inputs as multiples of the training size: 1, 7/6 (224 px for 192), 5/4, 4/3, the first two averaged,
# and DeepLab's multi-scale 0.75 / 1 / 1.25. Each is named by its sizes in px for the run's training size.
SCALES = ((1,), (7 / 6,), (5 / 4,), (4 / 3,), (1, 7 / 6), (3 / 4, 1, 5 / 4))


def choices(size: int) -> dict[str, list[int]]:
    """``{"192+224": [192, 224], ...}``: :data:`SCALES` in px (multiples of 16) for a run trained at ``size``."""
    sized = [[seg.predict_size(size, f) for f in scale] for scale in SCALES]
    return {"+".join(map(str, px)): px for px in sized}


def held_out(work: Path, report: dict, size: int, rows: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The held-out seeds' images ``uint8 [V, 256, 256, 3]`` and each row's labels ``uint8 [V, size, size]``."""
    seeds = io.parse_seeds(report["seeds"])[:report["train_seeds"] + report["held_out_seeds"]]
    held = seeds[report["train_seeds"]:]
    images = np.stack([seg.resize_image(io.read_png(work / "export-stylemix" / "images" / "train"
                                                    / f"{io.stem(s)}.png"), d.SCORE_SIZE) for s in held])
    labels = {}
    for row in rows:
        cached = sorted((work / "cache").glob(f"{row}-{size}-*.npz"))
        if len(cached) != 1:
            raise click.ClickException(f"expected one {row}-{size}-*.npz in {work / 'cache'}, found {len(cached)}")
        labels[row] = np.load(cached[0])["labels"][report["train_seeds"]:len(seeds)]
    return images, labels


def score_run(report_path: Path, report: dict, real: dict) -> dict[str, dict[str, dict[str, float]]]:
    """``{row: {choice: {held_vs_teacher, held_vs_own, real, real_A, real_B}}}`` for one run's weights
    (``report``: the run's JSON, read from ``report_path``)."""
    trained = [row for row in ROWS if "weights" in report["rows"].get(row, {})]
    if "teacher" not in trained:
        raise click.ClickException(f"{report_path} has no teacher row: its labels are the held-out truth here")
    work = Path(report["rows"]["teacher"]["weights"]).parent.parent
    cfg = seg.TrainConfig(**report["train_config"])
    images, labels = held_out(work, report, cfg.size, trained)
    named = choices(cfg.size)
    names = list(real)
    photos = np.stack([real[n]["img"] for n in names])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in trained:
        model = seg.build_model(cfg, torch.device("cpu"))
        model.load_state_dict(torch.load(work / "weights" / f"{row}.pt", map_location="cpu", weights_only=True))
        sizes = sorted({px for parts in named.values() for px in parts})
        held = {s: seg.predict(model, images, s, torch.device("cpu"), out_size=cfg.size) for s in sizes}
        on_real = {s: seg.predict(model, photos, s, torch.device("cpu"), out_size=d.SCORE_SIZE) for s in sizes}
        out[row] = {}
        for choice, parts in named.items():
            h = sum(held[s] for s in parts) / len(parts)
            r = sum(on_real[s] for s in parts) / len(parts)
            per = d.score_real({n: p > 0.5 for n, p in zip(names, r)}, real, ("mask",))["vs_mask"]["per_photo"]
            miou = [per[n]["miou"] for n in names]
            out[row][choice] = {"held_vs_teacher": round(d.held_out_scores(h, labels["teacher"])["miou"], 4),
                                "held_vs_own": round(d.held_out_scores(h, labels[row])["miou"], 4),
                                "real": round(float(np.mean(miou)), 4),
                                "real_A": round(float(np.mean(miou[0::2])), 4),
                                "real_B": round(float(np.mean(miou[1::2])), 4)}
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--real", "real_dir", default=str(d.DEFAULT_REAL), type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the scores as JSON here.")
def main(reports: tuple[str, ...], real_dir: str, out: str | None) -> None:
    """Print, per run and row, held-out and real mIoU at each prediction size, then the means over runs and rows."""
    torch.set_num_threads(1)
    try:
        real = d.load_real(Path(real_dir))
    except d.StylemixError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        loaded = {r: json.loads(Path(r).read_text()) for r in reports}
        sizes = {report["train_config"]["size"] for report in loaded.values()}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise click.ClickException(f"not a downstream.py report ({exc})") from None
    if len(sizes) != 1:
        raise click.ClickException(f"the runs were trained at different sizes ({sorted(sizes)}): compare one size")
    named = list(choices(sizes.pop()))
    try:
        runs = {r: score_run(Path(r), report, real) for r, report in loaded.items()}
    except (OSError, KeyError, d.StylemixError) as exc:  # a work folder without its weights, cache or export
        raise click.ClickException(f"cannot score the runs: {exc}") from None
    click.echo(f"{'run / row':<34}" + "".join(f"{c:>22}" for c in named))
    for w, rows in runs.items():
        for row, by in rows.items():
            click.echo(f"{Path(w).parent.name + ' ' + row:<34}" + "".join(
                f"{by[c]['held_vs_teacher']:>11.4f}{by[c]['real']:>11.4f}" for c in named))
    mean = {c: {k: round(float(np.mean([by[c][k] for rows in runs.values() for by in rows.values()])), 4)
                for k in ("held_vs_teacher", "held_vs_own", "real", "real_A", "real_B")} for c in named}
    click.echo(f"{'mean (held-out vs teacher, real)':<34}" + "".join(
        f"{mean[c]['held_vs_teacher']:>11.4f}{mean[c]['real']:>11.4f}" for c in named))
    if out:
        io.write_json(Path(out), {"benchmark": "downstream_predict_size", "runs": runs, "mean": mean,
                                  "cpu": d.cpu_name(), "date": datetime.date.today().isoformat(),
                                  "command": " ".join(["python", *sys.argv])})


if __name__ == "__main__":
    main()
