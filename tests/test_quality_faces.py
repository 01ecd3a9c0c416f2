"""Quality on real faces, in CI: the default generator's masks of eight development seeds against the shared
person/background pseudo ground truth (../shared/eval/mobilestylegan-ffhq, MediaPipe selfie segmentation at 256 px),
under both arithmetics of the variant stack, with the packaged part bank deciding the foreground.

The bars sit a little below the default's figures on these seeds, so the rounding of another CPU kind or of
bfloat16 passes (docs/method.md, "Reproducibility": masks agree on 99.99 % of their pixels) and a real regression
does not: a boundary without matting (``boundary="features"``) crosses the trimap bar, ``boundary="cascade"`` both,
and the per-image consensus in place of the bank the mIoU bar.
benchmarks/quality.py scores seeds 0-99 (docs/benchmarks.md, "Quality"); this is its eight-seed tripwire.
"""

from __future__ import annotations

import numpy as np
import pytest

import stylemix
from stylemix import io, metrics
from stylemix.errors import GeneratorLoadError

SEEDS = list(range(8))
MIOU_BAR = 0.925
TRIMAP_BAR = 0.64


@pytest.fixture(scope="module")
def faces(shared):
    folder = shared / "eval" / "mobilestylegan-ffhq"
    if not folder.is_dir():
        pytest.skip(f"no ground truth folder {folder}")
    try:
        G = stylemix.load_generator()
    except GeneratorLoadError as exc:
        pytest.skip(f"the default generator is not installed: {exc}")
    return G, {s: io.read_png(folder / f"seed{s:04d}_mask.png") > 127 for s in SEEDS}


def to_gt_size(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area reduction with a > 1/2 vote, as the ground truth's images were reduced (benchmarks/quality.py)."""
    import cv2
    return cv2.resize(mask.astype(np.float32), shape[::-1], interpolation=cv2.INTER_AREA) > 0.5


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_default_pipeline_quality_on_real_faces(faces, one_thread, precision):
    """Both arithmetics of the variant stack hold the bars (``auto`` picks one by the CPU), with the packaged bank
    deciding the foreground on every CPU kind."""
    G, gts = faces
    per = {}
    for seg in stylemix.segment_many(G, SEEDS, config=stylemix.SegmentConfig(precision=precision)):
        assert seg.meta["foreground_from"] == "part bank (fine)", seg.meta["foreground_from"]
        assert seg.meta["settings"]["precision"] == precision
        per[seg.seed] = metrics.mask_scores(to_gt_size(seg.foreground, gts[seg.seed].shape), gts[seg.seed])
    summary = metrics.summarize(per)
    report = f"mIoU {summary['miou']:.4f}, trimap IoU {summary['trimap_iou']:.4f}, per seed " + \
        ", ".join(f"{s}: {per[s]['miou']:.3f}" for s in SEEDS)
    assert summary["miou"] >= MIOU_BAR, report
    assert summary["trimap_iou"] >= TRIMAP_BAR, report
