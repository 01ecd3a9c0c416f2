"""Class-consistent parts and the bank's foreground on the default generator (docs/benchmarks.md, Parts).

Protocol of ``../shared/eval/mobilestylegan-ffhq-parts`` (README there): banks fitted on seeds that are never
scored (``--fit``, default 200-399), scored on ``--seeds`` (0-99) and on each of ``--splits`` (0-49, where choices
are made, and 50-99, where they are confirmed); each 1024 px part map is reduced to 256 px by the block mode, the
confusion is accumulated over the whole set (and over each split), one Hungarian matching per label set and set of
seeds at K = the number of classes and a many-to-one mapping at 2K; per-class IoU, mIoU, pixel accuracy. All banks
share one collection of the fit images (and one set of prototypes per cue setting), so the rows differ only in what
they name. Foreground, against the person ground truth of ``../shared/eval/mobilestylegan-ffhq`` (mean over images,
finished as ``segment()`` does with the ``features`` boundary, as benchmarks/quality.py): the bank's fine
prototypes (the default), its classes, the per-image consensus of the seed's own variants (``parts="none"``), the
consensus of the bank's shared signature stack (what a bank's step computes when a mode needs one) and the means.

    python benchmarks/parts.py                      # -> benchmarks/results/parts.json, default bank in --bank-out
    python benchmarks/parts.py --cache /tmp/parts_cache          # the same, keeping each seed's renders for reruns
    python benchmarks/parts.py --fit 200-203 --seeds 0-1 --out /tmp/parts_smoke.json --no-ablation   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stylemix  # noqa: E402
from stylemix.config import SegmentConfig  # noqa: E402
from stylemix.io import parse_seeds  # noqa: E402
from stylemix.metrics import mask_scores  # noqa: E402
from stylemix.parts import bank as part_bank  # noqa: E402
from stylemix.parts import cues as part_cues  # noqa: E402
from stylemix.parts import descriptors as part_maths  # noqa: E402
from stylemix.parts import fit as part_fit  # noqa: E402
from stylemix.render import style_latents  # noqa: E402
from stylemix.segment import boundary_features  # noqa: E402
from stylemix.stages import (finish_labels, finish_probability, foreground_probability, kmeans_seed,  # noqa: E402
                             min_pixels)

PARTS_GT = ROOT.parent / "shared" / "eval" / "mobilestylegan-ffhq-parts"
PERSON_GT = ROOT.parent / "shared" / "eval" / "mobilestylegan-ffhq"
SETS = {"coarse4": 4, "coarse5": 5, "coarse6": 6, "fine": 12}
# (feature, signature, position) weights: which cues the descriptor uses (the last is the default).
CUES = {"features only": (1.0, 0.0, 0.0), "signature only": (0.0, 1.0, 0.0), "position only": (0.0, 0.0, 1.0),
        "features + signature": (1.0, 1.0, 0.0), "features + position": (1.0, 0.0, 0.5),
        "features + signature + position": (1.0, 1.0, 0.5)}


def block_mode(labels: np.ndarray, size: int, k: int) -> np.ndarray:
    """``int [H, W]`` -> ``[size, size]``: the most frequent id of each block (lowest id on ties)."""
    f = labels.shape[0] // size
    onehot = labels.reshape(size, f, size, f)[None] == np.arange(k)[:, None, None, None, None]
    return onehot.sum((2, 4)).argmax(0).astype(np.int32)


def confusion(pred: np.ndarray, gt: np.ndarray, k: int, g: int) -> np.ndarray:
    return np.bincount(pred.ravel().astype(np.int64) * g + gt.ravel(), minlength=k * g).reshape(k, g)


def scores(C: np.ndarray, mode: str) -> dict:
    """Per-class IoU, mIoU (GT classes present) and pixel accuracy of confusion ``C [K, G]``."""
    from scipy.optimize import linear_sum_assignment
    K, G = C.shape
    if mode == "hungarian":
        rows, cols = linear_sum_assignment(-C)
        mapping = dict(zip(rows.tolist(), cols.tolist()))
    else:
        mapping = {a: int(C[a].argmax()) for a in range(K)}
    merged = np.zeros((G, G), np.int64)
    for a, b in mapping.items():
        merged[b] += C[a]
    tp = np.diag(merged).astype(np.float64)
    gt = C.sum(0)
    iou = tp / np.maximum(gt + merged.sum(1) - tp, 1)
    return {"miou": round(float(iou[gt > 0].mean()), 4), "pixel_accuracy": round(float(tp.sum() / C.sum()), 4),
            "iou": [round(float(x), 4) for x in iou], "mapping": {str(a): b for a, b in mapping.items()}}


def cached_render(cache: str | None):
    """:func:`stylemix.parts.fit.bank_image`, its results kept per seed under ``cache`` (``seedSSSS.npz``) when given,
    so that a rerun (or another method on the same renders) does not render again."""
    if not cache:
        return part_fit.bank_image

    def render(G, seed, cfg, latents, crossovers, image=True):  # the image is always kept in the cache
        path = Path(cache) / f"{seed:04d}.npz"
        if path.is_file():
            d = np.load(path)
            r = cfg.analysis_resolution
            return d["F"], d["S"], d["prob"], d["image"], part_maths.positions(r, r)
        F, S, prob, image, pos = part_fit.bank_image(G, seed, cfg, latents, crossovers)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(str(path) + ".tmp.npz", F=F, S=S, prob=prob, image=image)
        Path(str(path) + ".tmp.npz").replace(path)
        return F, S, prob, image, pos

    return render


def signature_consensus(S: np.ndarray, seed: int, cfg: SegmentConfig, variants: int) -> np.ndarray:
    """The consensus foreground probability ``[r, r]`` of the bank's shared signature stack, from the pixels'
    standardised signatures ``S [r*r, N*D]`` (:func:`stylemix.parts.descriptors.raw_cues`): standardising is
    idempotent, so the stack rebuilt from them gives :func:`~stylemix.stages.foreground_probability` the vectors
    of the rendered stack (checked equal on seeds 0-4)."""
    r = cfg.analysis_resolution
    stack = (np.asarray(S, np.float32) * np.float32(np.sqrt(S.shape[1]))).reshape(r, r, variants, -1)
    prob, _, _, _ = foreground_probability(np.ascontiguousarray(stack.transpose(2, 3, 0, 1)), kmeans_seed(seed),
                                           consensus=cfg.consensus, foreground_rule=cfg.foreground_rule,
                                           frame_penalty=cfg.frame_penalty, **cfg.kmeans_options())
    return np.asarray(prob, np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", default="200-399")
    ap.add_argument("--seeds", default="0-99")
    ap.add_argument("--splits", default="0-49;50-99",
                    help="subsets of --seeds scored on their own as well (';' between them): choices are made on the "
                         "first and confirmed on the others")
    ap.add_argument("--prototypes", type=int, default=part_bank.PartSettings.prototypes)
    ap.add_argument("--signature-variants", type=int, default=part_bank.PartSettings.signature_variants,
                    help="shared variants of every pixel's signature (the stack segment() reads with the bank)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "parts.json"))
    ap.add_argument("--bank-out", default=None, help="also save the K = 4 bank here (with its sheets)")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=None, help="keep each seed's renders (bank_image) here and reuse them")
    ap.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="the variant stacks' arithmetic (SegmentConfig.precision); the packaged bank was fitted "
                         "in float32: --precision float32 refits it byte for byte")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    G = stylemix.load_generator("mobilestylegan-ffhq").eval()
    cfg = SegmentConfig(precision=a.precision).resolve(G)
    crossovers = tuple(int(c) for c in cfg.crossover)
    base = part_bank.PartSettings(prototypes=a.prototypes, signature_variants=a.signature_variants)
    fit_seeds, test_seeds = parse_seeds(a.fit), parse_seeds(a.seeds)
    # Every part row is scored on the whole of --seeds and on each split, one Hungarian matching per set.
    subsets = {a.seeds: set(test_seeds)}
    subsets.update({spec: set(parse_seeds(spec)) & set(test_seeds) for spec in a.splits.split(";") if spec.strip()})
    render = cached_render(a.cache)
    samples = part_fit.collect(G, fit_seeds, base, cfg, crossovers, render=render)
    t_fit = time.time()
    ks = sorted({k for k in SETS.values()} | {2 * k for k in SETS.values()})
    banks = {}
    for name, (wf, ws, wp) in CUES.items():
        if a.no_ablation and name != "features + signature + position":
            continue
        s = dataclasses.replace(base, feature_weight=wf, signature_weight=ws, position_weight=wp)
        first = part_fit.fit(samples, dataclasses.replace(s, n_parts=4), cfg, crossovers, G)
        for k in ks if name == "features + signature + position" else [4, 5]:
            banks[(name, k)] = part_fit.regroup(first, samples, k)
    default = "features + signature + position"
    shipped = banks[(default, 4)]
    # The merge's own ablation on the default prototypes: Ward alone (the merge before the lower band), and Ward
    # of the feature block (PartSettings.merge_cue).
    no_band = dataclasses.replace(shipped, settings=dataclasses.replace(shipped.settings, lower_band=0.5))
    by_features = dataclasses.replace(shipped, settings=dataclasses.replace(shipped.settings, merge_cue="features"))
    for k in (4, 5):
        banks[("no consensus split (Ward on all prototypes)", k)] = part_fit.regroup(shipped, samples, k,
                                                                              consensus_split=False)
        banks[("Ward alone, no lower band", k)] = part_fit.regroup(no_band, samples, k)
        banks[("Ward of the feature block + lower band", k)] = part_fit.regroup(by_features, samples, k)
    # The SiS-like baseline with the same fit / test split: one k-means of the L2-normalised base features.
    from stylemix.cluster import KMeans
    sis = {k: KMeans(k, n_init=3, random_state=0).fit(samples.F).cluster_centers_ for k in (4, 5, 6)}
    t_banks = time.time()
    if a.bank_out:
        banks[(default, 4)].save(a.bank_out)
    latents = part_cues.signature_latents(G, base)
    # The default bank's maps are finished as segment() does (guided at 1024 px, then the block mode to 256 px);
    # the cue ablation compares every bank with plain nearest upsampling of the 32 px classes (a guided finish of
    # 20 maps per image at 1024 px would take an hour here), the default's rows included.
    conf = {(sub, key): np.zeros((b.n_parts, 19), np.int64) for key, b in banks.items() if key[0] == default
            for sub in subsets}
    conf_own = {(sub, key): np.zeros((b.n_parts, 19), np.int64) for key, b in banks.items()
                if key[0] == default and key[1] in (4, 5) for sub in subsets}
    conf_nearest = {(sub, key): np.zeros((b.n_parts, 19), np.int64) for key, b in banks.items()
                    if key[0] != default or key[1] in (4, 5) for sub in subsets}
    conf_sis = {(sub, k): np.zeros((k, 19), np.int64) for k in sis for sub in subsets}
    fg = {"fine prototypes (foreground='fine', the default: parts='auto')": [],
          "bank classes (foreground='bank', the default before session 6)": [],
          "consensus (per image, its own variants; parts='none')": [],
          "consensus of the bank's signature stack": [],
          "bank classes + signature consensus, mean (combined)": [],
          "bank classes + per-image consensus, mean": []}
    for seed in test_seeds:
        F, S, prob, image, pos = render(G, seed, cfg, latents, crossovers)
        gt19 = cv2.imread(str(PARTS_GT / f"seed{seed:04d}_parts.png"), cv2.IMREAD_UNCHANGED)
        person = cv2.imread(str(PERSON_GT / f"seed{seed:04d}_mask.png"), cv2.IMREAD_UNCHANGED) > 127
        r = cfg.analysis_resolution
        within = [sub for sub, members in subsets.items() if seed in members]

        def finish(lab: np.ndarray, k: int) -> np.ndarray:
            return block_mode(finish_labels(lab, image.shape[:2], k, image, refine=cfg.refine,
                                            min_pixels=min_pixels(cfg.min_area, image.shape[:2])), 256, k)

        b = banks[(default, 4)]
        X = part_maths.descriptors(F, S, pos, b)
        cls = b.prototype_class[part_maths.nearest(X, b.prototypes)].reshape(r, r)
        bank_fg = np.asarray(b.class_foreground, np.float32)[cls]
        fine_rate = b.foreground_rate[part_maths.nearest(X, b.foreground_prototypes)].reshape(r, r)
        fine = part_maths.foreground_map(cls, b, None, fine_rate)
        with torch.inference_mode():  # the boundary stage's features, as segment() renders them
            features = boundary_features(G, style_latents(G, seed, cfg)[0], cfg, seed)
        # segment()'s two-way mask with the default foreground (the fine prototypes): the part maps take their
        # background from it (every bank of the default cues shares the fine prototypes and their rates).
        mask = finish_probability(np.asarray(fine, np.float32), image.shape[:2], image, refine=cfg.refine,
                                  boundary=cfg.boundary, features=features,
                                  min_pixels=min_pixels(cfg.min_area, image.shape[:2]))
        for key, b in banks.items():
            X = part_maths.descriptors(F, S, pos, b)
            cls = b.prototype_class[part_maths.nearest(X, b.prototypes)].reshape(r, r)
            if key[0] == default:  # the bank segment() uses: its maps as segment() makes them
                parts = part_maths.descriptor_parts(X, b, (r, r))
                full = part_maths.with_background(finish_labels(parts, image.shape[:2], b.n_parts, image,
                                                                refine=cfg.refine, min_pixels=min_pixels(
                                                                    cfg.min_area, image.shape[:2])), mask)
                c = confusion(block_mode(full, 256, b.n_parts), gt19, b.n_parts, 19)
                for sub in within:
                    conf[(sub, key)] += c
                if key[1] in (4, 5):  # the map before it took the mask's background: each pixel's nearest prototype
                    c = confusion(finish(cls, b.n_parts), gt19, b.n_parts, 19)
                    for sub in within:
                        conf_own[(sub, key)] += c
            if key[0] != default or key[1] in (4, 5):  # the ablation table: every bank, one cheap upsampling
                c = confusion(np.kron(cls, np.ones((256 // r, 256 // r), np.int32)), gt19, b.n_parts, 19)
                for sub in within:
                    conf_nearest[(sub, key)] += c
        for k, centres in sis.items():
            c = confusion(finish(part_maths.nearest(F, centres).reshape(r, r), k), gt19, k, 19)
            for sub in within:
                conf_sis[(sub, k)] += c
        sig = signature_consensus(S, seed, cfg, banks[(default, 4)].settings.signature_variants)
        for name, p in zip(fg, (fine, bank_fg, prob, sig, 0.5 * (bank_fg + sig), 0.5 * (bank_fg + prob))):
            full = finish_probability(np.asarray(p, np.float32), image.shape[:2], image, refine=cfg.refine,
                                      boundary=cfg.boundary, features=features,
                                      min_pixels=min_pixels(cfg.min_area, image.shape[:2]))
            small = cv2.resize(full.astype(np.float32), (256, 256), interpolation=cv2.INTER_AREA) > 0.5
            fg[name].append(mask_scores(small, person))
    manifest = json.loads((PARTS_GT / "manifest.json").read_text())
    luts = {s: np.asarray(manifest["label_sets"][s]["lut_from_19"]) for s in SETS}
    rows = []
    own = {(sub, (f"{name}: nearest prototype of all, own background", k)): C19
           for (sub, (name, k)), C19 in conf_own.items()}
    for upsampling, confs in (("guided 1024 px + block mode", conf), ("guided 1024 px + block mode", own),
                              ("nearest (ablation)", conf_nearest)):
        for (sub, (name, k)), C19 in confs.items():
            for lset, n in SETS.items():
                C = np.stack([C19[:, luts[lset] == g].sum(1) for g in range(n)], 1)
                if k == n:
                    rows.append({"method": name, "upsampling": upsampling, "seeds": sub, "set": lset, "K": k,
                                 "matching": "hungarian", **scores(C, "hungarian")})
                if k == 2 * n:
                    rows.append({"method": name, "upsampling": upsampling, "seeds": sub, "set": lset, "K": k,
                                 "matching": "many-to-one", **scores(C, "many-to-one")})
    for (sub, k), C19 in conf_sis.items():
        lset = [s for s, n in SETS.items() if n == k][0]  # SiS-like: the coarse sets
        C = np.stack([C19[:, luts[lset] == g].sum(1) for g in range(k)], 1)
        rows.append({"method": "SiS-like: k-means of base 32 px features, fitted on --fit",
                     "upsampling": "guided 1024 px + block mode", "seeds": sub, "set": lset, "K": k,
                     "matching": "hungarian", **scores(C, "hungarian")})
    fg_summary = {name: {m: round(float(np.mean([x[m] for x in v])), 4) for m in v[0]} for name, v in fg.items()}
    for name, v in fg.items():
        for sub, members in subsets.items():  # the splits: how much a set of 50 moves the means
            if sub != a.seeds and members:
                fg_summary[name][f"miou_{sub}"] = round(float(np.mean([x["miou"] for sd, x in zip(test_seeds, v)
                                                                        if sd in members])), 4)
        fg_summary[name]["median_miou"] = round(float(np.median([x["miou"] for x in v])), 4)
    result = {"command": " ".join(sys.argv), "fit_seeds": a.fit, "seeds": a.seeds,
              "settings": part_bank.settings_dict(base), "segment": cfg.as_dict(), "rows": rows, "foreground": fg_summary,
              "foreground_miou_per_seed": {name: {str(sd): round(x["miou"], 4) for sd, x in zip(test_seeds, v)}
                                           for name, v in fg.items()},
              "default_bank_table": banks[(default, 4)].table(),
              "confusion_19": {f"{name}, K={k}": C19.tolist() for (sub, (name, k)), C19 in conf.items()
                               if sub == a.seeds},
              "version": stylemix.__version__,
              "elapsed_s": {"collect": round(t_fit - t0, 1), "fit": round(t_banks - t_fit, 1),
                            "score": round(time.time() - t_banks, 1)}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    for r in rows:
        print(f"{r['method'][:48]:48s} {r['upsampling'][:7]:7s} {r['seeds']:6s} {r['set']:8s} K={r['K']:2d} "
              f"{r['matching']:11s} "
              f"mIoU {r['miou']:.3f} "
              f"acc {r['pixel_accuracy']:.3f} {r['iou']}")
    for name, v in fg_summary.items():
        print(f"fg/bg {name:64s} {v}")


if __name__ == "__main__":
    main()
