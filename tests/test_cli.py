"""The command line: documented files and values, one-line errors, nothing partial."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from stylemix import io
from stylemix.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_segment_writes_documented_layout(tmp_path):
    out = tmp_path / "out"
    r = run("segment", "--network", "shapes", "--seeds", "0-1,5", "--outdir", str(out), "-n", "8")
    assert r.exit_code == 0, r.output
    names = sorted(os.listdir(out))
    assert names == sorted(f"seed{s:04d}{suffix}" for s in (0, 1, 5)
                           for suffix in (".png", "_mask.png", "_overlay.png", ".json"))
    mask = io.read_png(out / "seed0005_mask.png")
    assert mask.dtype == np.uint8 and mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
    assert io.read_png(out / "seed0005.png").shape == (64, 64, 3)
    meta = json.loads((out / "seed0005.json").read_text())
    assert meta["seed"] == 5 and meta["settings"]["variants"] == 8


def test_segment_alpha_writes_the_matte_beside_the_mask(tmp_path):
    r = run("segment", "--network", "shapes", "--seeds", "4", "--outdir", str(tmp_path), "-n", "4", "--alpha")
    assert r.exit_code == 0, r.output
    matte, mask = io.read_png(tmp_path / "seed0004_alpha.png"), io.read_png(tmp_path / "seed0004_mask.png")
    assert matte.dtype == np.uint8 and np.array_equal(matte >= 128, mask == 255)


def test_segment_parts_mask_holds_label_ids(tmp_path):
    r = run("segment", "--network", "shapes", "--seeds", "2", "--outdir", str(tmp_path), "-k", "3")
    assert r.exit_code == 0, r.output
    assert set(np.unique(io.read_png(tmp_path / "seed0002_mask.png"))) <= {0, 1, 2}


def test_eval_scores_known_masks(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    m = np.zeros((10, 10), np.uint8)
    m[:, :5] = 255
    io.write_png(gt / "seed0003_mask.png", m)
    p = m.copy()
    p[:, 4] = 0
    io.write_png(pred / "seed0003_mask.png", p)
    io.write_png(gt / "seed0004_mask.png", m)  # no prediction: counted as missing
    r = run("eval", "--pred", str(pred), "--gt", str(gt), "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["summary"]["fg_iou"] == pytest.approx(0.8) and res["summary"]["images"] == 1
    assert res["summary"]["missing_predictions"] == 1
    assert res["per_image"]["seed0003"]["bg_iou"] == pytest.approx(50 / 60)


@pytest.mark.parametrize("args,message", [
    (["--seeds", "5-2"], "seed range"),
    (["--seeds", "x"], "bad seed list"),
    (["--seeds", "1", "-k", "1"], "clusters must be at least 2"),
    (["--seeds", "1", "-n", "1"], "variants must be at least 2"),
    (["--seeds", "1", "--crossover", "8"], "crossover 8 out of range"),
    (["--seeds", "1", "--network", "no-such-net"], "unknown network"),
    (["--seeds", "1", "--consensus", "2,x"], "bad --consensus"),
    (["--seeds", "1", "--consensus", "2,1"], "consensus needs cluster counts of at least 2"),
    (["--seeds", "1", "-k", "3", "--alpha"], "--alpha needs two-way masks"),
    (["--seeds", "1", "--parts", "no-such.parts"], "no part bank at"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "never"
    args = ["segment", "--outdir", str(out)] + args
    if "--network" not in args:
        args += ["--network", "shapes"]
    p = subprocess.run([sys.executable, "-m", "stylemix.cli", *args], capture_output=True, text=True)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], p.stderr
    assert not out.exists()


def test_unwritable_outdir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = subprocess.run([sys.executable, "-m", "stylemix.cli", "segment", "--network", "shapes", "--seeds", "0",
                        "--outdir", str(blocker / "sub")], capture_output=True, text=True)
    assert p.returncode != 0 and p.stderr.startswith("Error: cannot create output folder")


def test_info_reports_generator_and_devices():
    r = run("info", "--network", "shapes")
    assert r.exit_code == 0
    assert "num_ws: 8" in r.output and "default_crossover: 4" in r.output and "cpu: ok" in r.output


def test_help_has_examples():
    for cmd in ("segment", "eval", "info"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Example" in r.output


def test_non_finite_truncation_is_one_line(tmp_path):
    r = run("segment", "--network", "shapes", "--seeds", "0", "--trunc", "nan", "--outdir", str(tmp_path / "o"))
    assert r.exit_code == 1 and "truncation_psi must be a finite number" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()


def test_non_finite_generator_output_stops_naming_the_seed(tmp_path, monkeypatch):
    import stylemix.generators.shapes as shapes_module

    real = shapes_module.ShapesGenerator.synthesis

    def poisoned(self, ws, noise_mode="const"):
        return real(self, ws, noise_mode=noise_mode) * float("nan")

    monkeypatch.setattr(shapes_module.ShapesGenerator, "synthesis", poisoned)
    out = tmp_path / "o"
    r = run("segment", "--network", "shapes", "--seeds", "3", "--outdir", str(out), "-n", "4", "--exact")
    assert r.exit_code == 1 and "seed 3" in r.output and "not finite" in r.output
    assert not out.exists() or not any(p.name.startswith("seed0003") for p in out.iterdir())


@pytest.mark.parametrize("command", ["segment", "export"])
def test_seed_is_the_same_option_as_seeds(tmp_path, command):
    outs = []
    for flag in ("--seeds", "--seed"):
        out = tmp_path / flag.strip("-")
        r = run(command, "--network", "shapes", flag, "1-2", "--outdir", str(out), "-n", "4")
        assert r.exit_code == 0, r.output
        outs.append(sorted(p.name for p in out.rglob("*_mask.png")) or sorted(p.name for p in out.rglob("*.png")))
    assert outs[0] == outs[1] and len(outs[0]) >= 2
