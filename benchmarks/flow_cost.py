"""What the bank flow costs and gives: an export that fits its own part bank against the same export with a ready one.

    python benchmarks/flow_cost.py --seeds 0-999 --out benchmarks/results/flow_cost.json
    python benchmarks/flow_cost.py --seeds 0-119 --score 0-9 --out /tmp/flow_smoke.json      # smoke check
    python benchmarks/flow_cost.py --interleaved --repeats 2 --out benchmarks/results/flow_cost_interleaved.json

One process, the default generator loaded once, a warm-up export of a few seeds, then two png exports of the
same seeds with the default settings, timed end to end (planning included, so the fit is counted):

* ``ready bank``: ``parts="auto"``, which finds the bank shipped for the generator (a hand-fitted bank:
  ``stylemix discover --seeds 200-399``);
* ``fit``: ``parts="fit"`` with an empty user bank cache (``STYLEMIX_CACHE`` set to a fresh folder): the path a
  generator without a packaged bank takes, fitting on the run's first 200 seeds, storing the bank in the dataset
  and the cache.

Then the masks of ``--score`` seeds of both exports against the person ground truth of
``../shared/eval/mobilestylegan-ffhq`` (the protocol of benchmarks/quality.py: ``INTER_AREA`` to 256 px, foreground
above one half; means over images), and whether a later ``segment`` finds the fitted bank in the cache. Writes
``--out`` (JSON: both timings, their ratio, the scores, the CPU model, the date, the command); the exports are
deleted unless ``--keep DIR``.

The two exports run one after the other, so a shared machine's load can hit them unequally. ``--interleaved``
measures the same ratio from its two parts, alternated ``--repeats`` times so that the load hits both alike: the
flow's fit alone (:func:`stylemix.parts.fit.fit_flow_bank` on the first 200 of ``--seeds``, what ``parts="fit"``
adds to an export) and a ready-bank export of ``--probe`` seeds (seconds per seed); the ratio for ``--seeds`` is
``1 + fit / (len(seeds) * seconds per seed)`` (medians).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PERSON_GT = REPO.parent / "shared" / "eval" / "mobilestylegan-ffhq"


def _scores(outdir: Path, seeds: list[int]) -> dict[str, float]:
    """Mean fg/bg scores of the export's masks of ``seeds`` against the person ground truth."""
    from stylemix.metrics import mask_scores
    rows = []
    for s in seeds:
        path = next(outdir.glob(f"masks/*/seed{s:04d}.png"))
        mask = np.asarray(Image.open(path)) > 0  # palette PNG: the pixel is the class id (cv2 would give colours)
        small = cv2.resize(mask.astype(np.float32), (256, 256), interpolation=cv2.INTER_AREA) > 0.5
        gt = cv2.imread(str(PERSON_GT / f"seed{s:04d}_mask.png"), cv2.IMREAD_UNCHANGED) > 127
        rows.append(mask_scores(small, gt))
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


@click.command()
@click.option("--seeds", default="0-999", help="Seeds exported by both rows.")
@click.option("--score", default="0-99", help="Seeds scored against the person ground truth.")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's).")
@click.option("--interleaved", is_flag=True, help="Time the fit and a probe export alternately instead.")
@click.option("--probe", default="1000-1031", help="--interleaved: seeds of the ready-bank export probe.")
@click.option("--repeats", type=int, default=2, help="--interleaved: rounds of fit and probe.")
@click.option("--keep", default=None, type=click.Path(file_okay=False), help="Keep both exports under this folder.")
@click.option("--out", default=str(REPO / "benchmarks" / "results" / "flow_cost.json"), type=click.Path(dir_okay=False))
def main(seeds: str, score: str, threads: int | None, interleaved: bool, probe: str, repeats: int, keep: str | None,
         out: str) -> None:
    from stylemix.identity import cpu_model
    from stylemix.io import parse_seeds
    if threads:
        torch.set_num_threads(threads)
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="flow_cost_"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["STYLEMIX_CACHE"] = str(root / "cache")  # read when a bank is looked up or stored, not at import
    import stylemix
    from stylemix.config import SegmentConfig
    from stylemix.export import DatasetSettings, RunOptions, export_dataset
    from stylemix.parts.cache import cached_bank
    G = stylemix.load_generator("mobilestylegan-ffhq").eval()
    run = RunOptions(progress=False)
    export_dataset(G, "1000-1007", root / "warmup", "png", SegmentConfig(), DatasetSettings(val_fraction=0.0), run)
    if interleaved:
        _interleaved(G, parse_seeds(seeds), parse_seeds(probe), repeats, root, out)
        shutil.rmtree(root, ignore_errors=True)
        return
    seconds, summaries = {}, {}
    for name, parts in (("ready bank", "auto"), ("fit", "fit")):
        t0 = time.perf_counter()
        summaries[name] = export_dataset(G, seeds, root / name.replace(" ", "_"), "png", SegmentConfig(),
                                         DatasetSettings(parts=parts, val_fraction=0.0), run)
        seconds[name] = round(time.perf_counter() - t0, 1)
        click.echo(f"{name}: {seconds[name]} s", err=True)
    found = cached_bank(G)
    fitted = summaries["fit"]["foreground_bank"]
    scored = parse_seeds(score)
    result = {
        "benchmark": "flow_cost", "command": " ".join(sys.argv), "cpu": cpu_model(), "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seeds": seeds,
        "seconds": seconds, "ratio_fit_to_ready": round(seconds["fit"] / seconds["ready bank"], 3),
        "foreground_bank": {k: v["foreground_bank"] for k, v in summaries.items()},
        "scores": {k: _scores(root / k.replace(" ", "_"), scored) for k in summaries}, "scored_seeds": score,
        "segment_finds_the_fitted_bank": bool(found and fitted and fitted.get("sha256")
                                              == hashlib.sha256(found[1].read_bytes()).hexdigest()),
        "version": stylemix.__version__}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1))
    click.echo(json.dumps({k: result[k] for k in ("seconds", "ratio_fit_to_ready", "scores",
                                                  "segment_finds_the_fitted_bank")}, indent=1))
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


def _interleaved(G, seeds: list[int], probe: list[int], repeats: int, root: Path, out: str) -> None:
    """The fit and a ready-bank probe export, alternated ``repeats`` times; the projected ratio (module docstring)."""
    import statistics

    import stylemix
    from stylemix.config import SegmentConfig
    from stylemix.export import DatasetSettings, RunOptions, export_dataset
    from stylemix.identity import cpu_model
    from stylemix.parts.fit import FLOW_SEEDS, fit_flow_bank
    cfg = SegmentConfig().resolve(G)
    fit_s, probe_s = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        fit_flow_bank(G, seeds[:FLOW_SEEDS], cfg, cache=False)
        fit_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        export_dataset(G, probe, root / f"probe{r}", "png", SegmentConfig(),
                       DatasetSettings(parts="auto", val_fraction=0.0), RunOptions(progress=False))
        probe_s.append((time.perf_counter() - t0) / len(probe))
        click.echo(f"round {r}: fit {fit_s[-1]:.1f} s, export {probe_s[-1]:.3f} s per seed", err=True)
    fit, per_seed = statistics.median(fit_s), statistics.median(probe_s)
    result = {"benchmark": "flow_cost --interleaved", "command": " ".join(sys.argv), "cpu": cpu_model(),
              "torch_threads": torch.get_num_threads(), "load_average_after": os.getloadavg(),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "fit_seeds": len(seeds[:FLOW_SEEDS]), "fit_s": [round(x, 1) for x in fit_s],
              "probe_seeds": len(probe), "export_s_per_seed": [round(x, 4) for x in probe_s],
              "projected_ratio": {"seeds": len(seeds), "fit_to_ready": round(1 + fit / (len(seeds) * per_seed), 3)},
              "version": stylemix.__version__}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1))
    click.echo(json.dumps(result["projected_ratio"]))


if __name__ == "__main__":
    main()
