"""benchmarks/downstream.py: the whole chain (export, train from scratch, score on real photos) on a handful of
seeds; its scoring and label helpers, the segmenter's pieces (downstream_segmenter.py) and the teacher
(downstream_teacher.py) on known values."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import downstream  # noqa: E402
import downstream_segmenter as segmenter  # noqa: E402
import downstream_teacher as teacher  # noqa: E402

from stylemix import io, metrics  # noqa: E402


def test_valid_scores_match_mask_scores_when_every_pixel_is_valid():
    rng = np.random.default_rng(0)
    gt = np.zeros((40, 40), bool)
    gt[8:30, 10:28] = True
    pred = gt ^ (rng.random(gt.shape) < 0.05)
    assert downstream.valid_scores(pred, gt, np.ones_like(gt)) == pytest.approx(metrics.mask_scores(pred, gt))


def test_valid_scores_leave_out_the_padding():
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    pred = gt.copy()
    pred[:, :3] = True  # wrong only in the first three columns
    valid = np.ones_like(gt)
    valid[:, :3] = False
    assert downstream.valid_scores(pred, gt, valid)["miou"] == 1.0
    assert downstream.valid_scores(pred, gt, np.ones_like(gt))["miou"] < 1.0


def test_ignore_band_marks_the_boundary_only():
    labels = np.zeros((1, 32, 32), np.uint8)
    labels[0, 8:24, 8:24] = 1
    out = downstream.ignore_band(labels, 2)
    assert out[0, 16, 16] == 1 and out[0, 0, 0] == 0
    assert out[0, 8, 16] == segmenter.IGNORE and out[0, 6, 16] == segmenter.IGNORE
    assert (out != segmenter.IGNORE).sum() > 0.5 * out.size


def test_augment_keeps_ignored_labels_and_shapes():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    y = torch.zeros(3, 32, 32, dtype=torch.long)
    y[:, 10:20, 10:20] = 1
    y[:, 0, :] = segmenter.IGNORE
    for strong in (False, True):
        xa, ya = segmenter.augment(x, y, gen, strong=strong)
        assert xa.shape == x.shape and ya.shape == y.shape
        assert 0 <= float(xa.min()) and float(xa.max()) <= 1
        assert set(np.unique(ya.numpy())) <= {0, 1, segmenter.IGNORE}


def test_augment_is_seeded():
    x, y = torch.rand(4, 3, 32, 32), torch.zeros(4, 32, 32, dtype=torch.long)
    a = segmenter.augment(x, y, torch.Generator().manual_seed(3), strong=True)[0]
    b = segmenter.augment(x, y, torch.Generator().manual_seed(3), strong=True)[0]
    c = segmenter.augment(x, y, torch.Generator().manual_seed(4), strong=True)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_paste_backgrounds_keeps_each_foreground_and_ignores_the_other_person():
    x = torch.stack([torch.full((3, 16, 16), 0.2), torch.full((3, 16, 16), 0.8)])
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[0, 4:12, 4:12] = 1  # image 0: a square in the middle
    y[1, :, :8] = 1  # image 1: its left half
    xp, yp = segmenter.paste_backgrounds(x, y, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(yp[0, 4:12, 4:12], y[0, 4:12, 4:12])  # its own foreground stays
    assert (yp[0, 0, 0] == segmenter.IGNORE) and (yp[0, 0, 15] == 0)  # image 1's person / background behind it
    assert float(xp[0, 0, 8, 8]) == pytest.approx(0.2) and float(xp[0, 0, 0, 15]) == pytest.approx(0.8)
    same = segmenter.paste_backgrounds(x, y, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(same[0], x) and torch.equal(same[1], y)


def test_dice_loss_scores_overlap_and_skips_ignored_pixels():
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[:, 4:12, 4:12] = 1
    right = torch.stack([(y == 0).float(), (y == 1).float()], 1) * 20  # confident and right
    assert float(segmenter.dice_loss(right, y)) < 0.01
    assert float(segmenter.dice_loss(-right, y)) > 0.95
    wrong_corner = right.clone()
    wrong_corner[:, :, :2, :2] *= -1
    ignored = y.clone()
    ignored[:, :2, :2] = segmenter.IGNORE
    assert float(segmenter.dice_loss(wrong_corner, y)) > 0.01
    assert float(segmenter.dice_loss(wrong_corner, ignored)) < 0.01


def test_soft_labels_are_foreground_probabilities():
    """Float labels (the matte's soft labels) score like the hard ones where they are 0 or 1, move with the image
    under augmentation, and stay probabilities."""
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[:, 4:12, 4:12] = 1
    logits = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(segmenter.dice_loss(logits, y.float()), segmenter.dice_loss(logits, y))
    half = y.float() * 0.5
    assert not torch.allclose(segmenter.dice_loss(logits, half), segmenter.dice_loss(logits, y))

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    x_hard, y_hard = segmenter.augment(x, y, torch.Generator().manual_seed(2), strong=True)
    x_soft, y_soft = segmenter.augment(x, y.float(), torch.Generator().manual_seed(2), strong=True)
    assert torch.equal(x_hard, x_soft) and y_soft.is_floating_point()
    assert float(y_soft.min()) >= 0 and float(y_soft.max()) <= 1
    assert float(((y_soft > 0.5).long() != y_hard).float().mean()) < 0.1  # the same shape, up to its edge


def test_flip_averaged_prediction_mirrors_with_the_image():
    """Averaging over the mirror image makes the prediction of a mirrored photo the mirrored prediction, even for
    a network that is not mirror-symmetric itself."""
    torch.manual_seed(0)
    model = segmenter.build_model(segmenter.TrainConfig(model="unet"), torch.device("cpu")).eval()
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    mirrored = images[:, :, ::-1].copy()
    p = segmenter.predict(model, images, 32, torch.device("cpu"))
    q = segmenter.predict(model, mirrored, 32, torch.device("cpu"))
    assert p.shape == (2, 32, 32)
    np.testing.assert_allclose(q, p[:, :, ::-1], atol=1e-5)
    plain = segmenter.predict(model, mirrored, 32, torch.device("cpu"), flip=False)
    assert np.abs(plain - p[:, :, ::-1]).max() > 1e-3


def test_predict_size_is_a_little_larger_multiple_of_16():
    for size in (64, 128, 192, 256, 512):
        px = segmenter.predict_size(size)
        assert px % 16 == 0 and size < px <= size * 1.25
    assert segmenter.predict_size(192) == 224


def test_train_row_reports_every_step():
    """``on_step`` sees the model after each optimiser step, in order (the trials' weight averages hang on it), and
    ``progress`` the steps done with the last loss (the chain's progress lines)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = (rng.random((4, 32, 32)) > 0.5).astype(np.uint8)
    seen: list[int] = []
    lines: list[tuple[int, str]] = []
    cfg = segmenter.TrainConfig(model="unet", size=32, batch=2, augment="basic", loss="ce")
    segmenter.train_row("t", images, labels, np.ones(4, bool), 3, cfg, torch.device("cpu"),
                        progress=lambda done, status: lines.append((done, status)),
                        on_step=lambda model, step: seen.append(step))
    assert seen == [0, 1, 2]
    assert [done for done, _ in lines] == [1, 2, 3] and all(status.startswith("loss ") for _, status in lines)


def test_weight_average_starts_late_and_decays():
    """decay 1 is the plain mean of the weights from ``start`` on; decay 0.5 halves towards each new step."""
    import downstream_trials
    model = torch.nn.Linear(2, 1)
    mean, ema = downstream_trials.WeightAverage(1.0, start=2), downstream_trials.WeightAverage(0.5, start=2)
    for step in range(6):
        with torch.no_grad():
            model.weight.fill_(float(step))
        mean.update(model, step)
        ema.update(model, step)
    for average, expected in ((mean, 3.5), (ema, 4.125)):  # (2+3+4+5)/4; 2 -> 2.5 -> 3.25 -> 4.125
        average.load_into(model)
        assert torch.allclose(model.weight, torch.full((1, 2), expected))


def test_progress_writes_whole_lines(capsys):
    p = downstream.Progress("stage", 4, "seeds", every=1e9)
    p.begin(1)
    p.update(2)
    p.update(4)
    p.update(4)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[stage] 1/4 seeds already done"
    assert len(err) == 2 and err[1].startswith("[stage] 4/4 seeds (")


def test_bad_real_folder_is_one_line(tmp_path):
    with pytest.raises(downstream.StylemixError, match="does not exist"):
        downstream.load_real(tmp_path / "nope")
    (tmp_path / "a_img.png").write_bytes(b"")
    with pytest.raises(downstream.StylemixError, match="lacks a_mask.png"):
        downstream.load_real(tmp_path)


def test_teacher_reproduces_the_real_face_sets_parts(tmp_path):
    """The re-declared face parser takes every tensor of the checkpoint (strict) and gives, with the set's own
    protocol (main head at 512 px, 2 x 2 mean-pooled logits, argmax), exactly the set's ``_parts``."""
    if not (downstream.DEFAULT_CACHE / teacher.TEACHER_ARCHIVE).is_file():
        pytest.skip(f"{teacher.TEACHER_ARCHIVE} is not in {downstream.DEFAULT_CACHE} (the benchmark downloads it)")
    shared = downstream.DEFAULT_REAL
    if not shared.is_dir():
        pytest.skip("no shared real-face set")
    net = teacher.load_teacher(downstream.DEFAULT_CACHE, torch.device("cpu"))
    name = "facerec-biden-0"
    img = io.read_png(shared / f"{name}_img512.png")
    with torch.inference_mode():
        logits = net(segmenter.normalise(torch.from_numpy(img[None])))
    parts = torch.nn.functional.avg_pool2d(logits, 2).argmax(1)[0].numpy()
    assert np.array_equal(parts, io.read_png(shared / f"{name}_parts.png"))


@pytest.fixture
def two_photos(tmp_path: Path) -> Path:
    shared = downstream.DEFAULT_REAL
    if not shared.is_dir():
        pytest.skip("no shared real-face set")
    real = tmp_path / "real"
    real.mkdir()
    for name in ("facerec-biden-0", "facexlib-test2-0"):
        for kind in ("img", "mask", "person", "valid"):
            shutil.copy(shared / f"{name}_{kind}.png", real / f"{name}_{kind}.png")
    return real


def test_whole_chain_on_a_handful_of_seeds(tmp_path: Path, two_photos: Path, one_thread):
    """Export 5 seeds twice, train every label row at 64 px, score on two real photos; then resume from the cache."""
    rows = ["stylemix", "consensus", "ignore_band", "min_margin", "mediapipe"]
    if (downstream.DEFAULT_CACHE / teacher.TEACHER_ARCHIVE).is_file():
        rows.insert(2, "teacher")
    cfg = segmenter.TrainConfig(model="lraspp", size=64, epochs=40, batch=4, seed=0, bn_batches=2)
    kwargs = dict(seeds="0-4", work=tmp_path / "work", real_dir=two_photos, out=tmp_path / "res.json", rows=rows,
                  cfg=cfg, val=1, ignore_px=1, margin_quantile=0.25, network=None, threads=1, device="cpu",
                  cache=downstream.DEFAULT_CACHE, predictions=tmp_path / "pred", command="test", quiet=True)
    report = downstream.run(**kwargs)

    written = json.loads((tmp_path / "res.json").read_text())
    assert sorted(written["rows"]) == sorted(rows)
    assert (tmp_path / "res.png").is_file() and (tmp_path / "work" / "weights" / "stylemix.pt").is_file()
    for row in rows:
        for name in ("facerec-biden-0", "facexlib-test2-0"):
            pred = io.read_png(tmp_path / "pred" / row / f"{name}_pred.png")
            assert pred.shape == (256, 256) and set(np.unique(pred)) <= {0, 255}
    # An empty mask scores a foreground IoU of 0 and a full one a background IoU of 0: the chain has to learn
    # something to beat both.
    scores = report["rows"]["stylemix"]["real"]["vs_mask"]["mean"]
    print({k: round(v, 3) for k, v in scores.items()})
    assert scores["fg_iou"] > 0.2 and scores["bg_iou"] > 0.2
    assert report["rows"]["min_margin"]["train"]["images"] == 3  # the lowest quarter of 4 training seeds left out
    assert report["rows"]["mediapipe"]["real"]["vs_mask"]["mean"]["miou"] > 0.8
    assert report["predict_size"] == segmenter.predict_size(64)
    digests = {row: report["rows"][row]["labels_sha256"] for row in rows if row != "mediapipe"}
    assert digests["min_margin"] == digests["stylemix"] != digests["ignore_band"]  # keep differs, labels do not

    again = downstream.run(**kwargs)  # everything cached: the same scores, no training
    assert again["rows"]["stylemix"]["real"] == report["rows"]["stylemix"]["real"]

    # The cached arrays and teacher labels are all a rerun needs: without the exports nothing is rendered again,
    # and the report still names the part bank that decided the export's foreground.
    for name in ("export-stylemix", "export-consensus"):
        shutil.rmtree(tmp_path / "work" / name)
    third = downstream.run(**kwargs)
    assert not (tmp_path / "work" / "export-stylemix").exists()
    assert third["rows"]["stylemix"]["real"] == report["rows"]["stylemix"]["real"]
    assert third["default_export_foreground_bank"] == report["default_export_foreground_bank"]
    assert third["images_sha256"] == report["images_sha256"]

    # With two threads the rows train at once, one process and one thread each: the same weights as one after the
    # other on one thread, so a row's score does not depend on the rows beside it.
    shutil.rmtree(tmp_path / "work" / "weights")
    together = downstream.run(**{**kwargs, "threads": 2, "rows": ["stylemix", "consensus", "mediapipe"]})
    assert together["stages_s"]["train_all_s"] > 0
    for row in ("stylemix", "consensus"):
        assert together["rows"][row]["train"]["threads"] == 1
        assert together["rows"][row]["real"] == report["rows"][row]["real"]


def test_unknown_row_is_refused(tmp_path: Path, two_photos: Path):
    with pytest.raises(downstream.StylemixError, match="unknown row"):
        downstream.run(seeds="0-4", work=tmp_path, real_dir=two_photos, out=tmp_path / "r.json", rows=["nope"],
                       cfg=segmenter.TrainConfig(), val=1, ignore_px=1, margin_quantile=0.2, network=None,
                       threads=1, device="cpu", cache=tmp_path, predictions=None, command="")


@pytest.mark.slow
def test_yolo_trains_from_an_export_and_scores_real_photos(tmp_path: Path, two_photos: Path, one_thread):
    """benchmarks/downstream_yolo.py's chain on 8 shapes seeds: the YOLO dataset written from the export without
    rendering, one epoch of YOLOv8n-seg from scratch at 64 px, one 256 px mask per real photo."""
    pytest.importorskip("ultralytics")
    import downstream_yolo
    from stylemix import export as ex

    ex.export_dataset("shapes", "0-7", tmp_path / "export", "png", variants=4, val_fraction=0.5, progress=False)
    yaml = downstream_yolo.yolo_dataset(tmp_path / "export", tmp_path / "yolo-ds", val=2)
    assert len((tmp_path / "yolo-ds" / "train.txt").read_text().splitlines()) == 6
    assert yaml.read_text().endswith('names:\n  0: "foreground"\n')  # the export's class name
    held = (tmp_path / "yolo-ds" / "val.txt").read_text().splitlines()
    assert [Path(p).name for p in held] == ["seed0006.png", "seed0007.png"]  # by seed, whatever the export's split
    weights = downstream_yolo.train(yaml, tmp_path / "yolo", epochs=1, imgsz=64, batch=4, seed=0)
    assert weights.is_file()
    real = downstream.load_real(two_photos)
    preds = downstream_yolo.predict(weights, {n: r["img"] for n, r in real.items()}, imgsz=64, conf=0.25)
    assert sorted(preds) == sorted(real)
    assert all(p.shape == (256, 256) and p.dtype == bool for p in preds.values())
    scores = downstream.score_real(preds, real)
    assert 0.0 <= scores["vs_mask"]["mean"]["miou"] <= 1.0

    with pytest.raises(downstream.StylemixError, match="leave nothing to train on"):
        downstream_yolo.yolo_dataset(tmp_path / "export", tmp_path / "yolo-ds", val=8)  # resumed, not rewritten
    with pytest.raises(downstream.StylemixError):
        downstream_yolo.yolo_dataset(tmp_path / "no-export", tmp_path / "yolo-ds3", val=2)
