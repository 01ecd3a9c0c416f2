"""Seconds per seed of fitting a part bank (``stylemix.discover``) beside segmenting the same seeds, in one process.

    python benchmarks/discover_speed.py --seeds 1000-1015          # the default generator, torch's thread count
    python benchmarks/discover_speed.py --seeds 1000-1015 --threads 1

Rows, each on the same seeds after one warm-up seed, interleaved ``--repeats`` times (medians reported):
``segment`` (``segment_many`` with the defaults: the packaged bank's foreground), ``segment, --parts none`` (the
per-image consensus), ``discover: render and sample`` (``parts.collect`` with every image: what the first 16 seeds of
a fit cost, whose images go on the contact sheets) and ``discover: collect, seeds past the sheets``
(``sheet_seeds=0``: every later seed, whose full-resolution image is not rendered); then ``parts.fit`` once (PCA,
prototypes, merge: paid once per bank, not per seed). Prints a table and writes ``--out`` (JSON) with the CPU model
and the date.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch

import stylemix
from stylemix import io
from stylemix.identity import cpu_model


@click.command()
@click.option("--network", default=None, help="Generator (default: mobilestylegan-ffhq).")
@click.option("--seeds", default="1000-1015", help="Seeds timed (NVlabs ranges).")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's).")
@click.option("--repeats", type=int, default=3, help="Timings per row (interleaved); the median is reported.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="JSON results.")
def main(network: str | None, seeds: str, threads: int | None, repeats: int, out: str | None) -> None:
    import dataclasses

    from stylemix.config import SegmentConfig
    from stylemix.parts import PartSettings
    from stylemix.parts.fit import collect, fit
    if threads is not None:
        torch.set_num_threads(threads)
    seed_list = io.parse_seeds(seeds)
    G = stylemix.load_generator(network)
    list(stylemix.segment_many(G, seed_list[:1]))  # warm-up: first-call allocations, the packaged bank's load
    settings = PartSettings()
    cfg = dataclasses.replace(SegmentConfig(), clusters=2, descriptor="features").resolve(G)
    crossovers = tuple(int(c) for c in np.atleast_1d(cfg.crossover))  # as discover picks them
    jobs = {"segment": lambda: list(stylemix.segment_many(G, seed_list)),
            "segment, --parts none": lambda: list(stylemix.segment_many(G, seed_list, parts="none")),
            "discover: render and sample (collect)": lambda: collect(G, seed_list, settings, cfg, crossovers),
            "discover: collect, seeds past the sheets": lambda: collect(G, seed_list, settings, cfg, crossovers,
                                                                        sheet_seeds=0)}
    times: dict[str, list[float]] = {name: [] for name in jobs}
    samples = None
    for _ in range(repeats):  # the rows interleaved, so that a change of the machine's load reaches all of them
        for name, job in jobs.items():
            t = time.perf_counter()
            got = job()
            times[name].append((time.perf_counter() - t) / len(seed_list))
            samples = got if name.startswith("discover") else samples
    rows = {name: float(np.median(v)) for name, v in times.items()}
    t = time.perf_counter()
    fit(samples, settings, cfg, crossovers, G)
    fit_s = time.perf_counter() - t
    result = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(),
              "seeds": seeds, "repeats": repeats, "s_per_seed": {k: round(v, 4) for k, v in rows.items()},
              "all_s_per_seed": {k: [round(x, 4) for x in v] for k, v in times.items()},
              "discover: fit (once per bank), s": round(fit_s, 3)}
    for name, v in rows.items():
        click.echo(f"{name:<42} {v:8.3f} s/seed  ({v / rows['segment']:.2f}x segment)")
    click.echo(f"{'discover: fit (once per bank)':<42} {fit_s:8.3f} s   [{result['cpu']}, "
               f"{result['threads']} threads, {result['date']}]")
    if out:
        Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
