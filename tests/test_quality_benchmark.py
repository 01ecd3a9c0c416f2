"""benchmarks/quality.py on the known-truth shapes generator: the method is exact there, the prior is not."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import stylemix
from stylemix import io
from stylemix.config import SegmentConfig

from conftest import base_styles

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
SEEDS = list(range(6))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def G():
    return stylemix.load_generator("shapes")


@pytest.fixture(scope="module")
def gt_folder(G, tmp_path_factory) -> Path:
    """Exact ground truth of SEEDS in the shared eval folder's layout (seedSSSS_mask.png, 255 = foreground)."""
    folder = tmp_path_factory.mktemp("gt")
    for seed in SEEDS:
        ws = base_styles(G, seed)
        io.write_png(folder / f"seed{seed:04d}_mask.png", G.truth(ws)["foreground"][0].astype(np.uint8) * 255)
    return folder


@pytest.fixture(scope="module")
def scored(quality, G, gt_folder):
    gts = quality.load_gt(gt_folder, SEEDS)
    cases = quality.score_seeds(G, SEEDS, SegmentConfig(variants=8), gts)
    quality.add_average_mask(cases, gts)
    return cases, gts, quality.summaries(cases)


def test_method_is_exact_and_beats_the_prior(scored):
    _, _, summary = scored
    assert summary["method"]["miou"] >= 0.99
    assert summary["method"]["images"] == len(SEEDS)
    assert summary["average_mask"]["miou"] < summary["method"]["miou"] - 0.02


def test_every_row_is_scored(scored):
    cases, _, summary = scored
    assert set(summary) == {"method", "rgb_kmeans", "feature_kmeans", "oracle_k2", "oracle_best_k2",
                            "average_mask"}
    for c in cases:
        assert set(c.scores) == set(summary)
    # On shapes the clusters are the regions, so the oracle and the one-hot features are exact too.
    assert summary["oracle_k2"]["miou"] >= 0.99 and summary["oracle_best_k2"]["miou"] >= 0.99
    assert summary["feature_kmeans"]["miou"] >= 0.99


def test_oracle_at_configured_k(quality, G, scored):
    _, gts, _ = scored
    image = stylemix.segment(G, 0, config=stylemix.SegmentConfig(variants=8)).image
    masks = quality.oracle_masks(G, 0, image, gts[0], SegmentConfig(variants=8, clusters=3).resolve(G))
    assert sorted(masks) == ["oracle_best_k2", "oracle_best_k3", "oracle_k2", "oracle_k3"]
    for mask in masks.values():
        assert mask.shape == image.shape[:2] and mask.dtype == bool


def test_best_assignment_beats_majority_vote_on_miou(quality):
    # Two clusters, both mostly foreground: the vote calls everything foreground (bg IoU 0, mIoU 0.375), the best
    # assignment (mIoU 0.46) keeps cluster 1 as background.
    fg_count, count = np.array([90, 60]), np.array([100, 100])
    assert (fg_count > count / 2).tolist() == [True, True]
    assert quality.best_assignment(fg_count, count).tolist() == [True, False]


def test_to_gt_size_votes_by_area(quality):
    mask = np.zeros((8, 8), bool)
    mask[:4, :3] = True  # a 4x4 block 3/4 foreground, its neighbour 0
    small = quality.to_gt_size(mask, (2, 2))
    assert small.tolist() == [[True, False], [False, False]]
    assert quality.to_gt_size(small, (8, 8)).sum() == 16  # upsampling: nearest


def test_missing_ground_truth_is_a_clear_error(quality, gt_folder):
    with pytest.raises(stylemix.StylemixError, match="no ground truth for seed"):
        quality.load_gt(gt_folder, [0, 99])


def test_cli_writes_report_and_sheet(quality, gt_folder, tmp_path):
    from click.testing import CliRunner
    out = tmp_path / "res" / "q.json"
    args = ["--network", "shapes", "--seeds", "0-5", "--limit", "3", "-n", "4", "-k", "3",
            "--gt", str(gt_folder), "--out", str(out), "--worst", "2"]
    result = CliRunner().invoke(quality.main, args)
    assert result.exit_code == 0, result.output
    assert "published, other protocol" in result.output
    report = json.loads(out.read_text())
    assert report["seeds"] == [0, 1, 2] and report["settings"]["clusters"] == 3
    assert set(report["summary"]) >= {"method", "oracle_k2", "oracle_k3", "average_mask"}
    assert report["stylemix"] == stylemix.__version__
    sheet = io.read_png(out.with_name("q_worst.png"))
    assert sheet.shape[1] == 3 * 130 + 2 and sheet.shape[0] == 2 * 130 + 2  # 3 tiles x 2 seeds, 128 px + pad
    # Deterministic: a rerun gives the same scores (timings aside).
    CliRunner().invoke(quality.main, args)
    rerun = json.loads(out.read_text())["per_seed"]
    assert {s: v["scores"] for s, v in rerun.items()} == {s: v["scores"] for s, v in report["per_seed"].items()}
