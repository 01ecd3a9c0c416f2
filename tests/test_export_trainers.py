"""Tests for what a trainer needs of an export: output size, the val split, several formats in one run or converted
from an export, COCO polygons, the class name, plain progress lines in a log, and the shard message.

Exports use the 64 px shapes generator with 4 variants and 2-4 seeds, as tests/test_export.py does.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import stylemix
from stylemix import export as ex
from stylemix.errors import StylemixError
from stylemix.export.formats import join_polygons, resize_ids
from stylemix.export.progress import LogProgress, progress_bar

OPTS = {"variants": 4, "progress": False}
VAL = {"val_fraction": 0.5}  # seeds 0, 1 and 3 of 0-3 fall in val (a hash of the seed)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def G():
    return stylemix.load_generator("shapes")


@pytest.fixture(scope="module")
def every_format(tmp_path_factory) -> Path:
    """Seeds 0-3 in png, COCO and YOLO at once, at 32 px, half of them held out, the class named ``blob``."""
    out = tmp_path_factory.mktemp("all") / "DS"
    ex.export_dataset("shapes", "0-3", out, "png,coco,yolo", size=32, class_name="blob", **VAL, **OPTS)
    return out


# ---------------------------------------------------------------------------------------------------------------
# size


def test_resize_ids_votes_by_area_and_keeps_classes():
    ids = np.array([[0, 0, 2, 2],
                    [0, 1, 2, 1],
                    [1, 1, 0, 0],
                    [1, 0, 0, 3]], np.uint8)
    np.testing.assert_array_equal(resize_ids(ids, (2, 2)), [[0, 2], [1, 0]])
    tie = np.array([[0, 1], [1, 0]], np.uint8)
    assert resize_ids(tie, (1, 1))[0, 0] == 0  # a tie goes to the lower id
    assert resize_ids(ids, (4, 4)) is ids


def test_size_resizes_images_masks_and_labels(every_format, G):
    from PIL import Image
    from pycocotools.coco import COCO
    seg = stylemix.segment(G, 2, config=stylemix.SegmentConfig(variants=4))
    fg = resize_ids(seg.foreground.astype(np.uint8), (32, 32)).astype(bool)
    image = np.array(Image.open(every_format / "images" / "train" / "seed0002.png"))
    assert image.shape == (32, 32, 3)
    mask = np.array(Image.open(every_format / "masks" / "train" / "seed0002.png"))
    np.testing.assert_array_equal(mask, fg.astype(np.uint8))
    coco = COCO(str(every_format / "annotations" / "instances_train.json"))
    assert coco.loadImgs(2)[0]["height"] == 32
    (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=2))
    ys, xs = np.nonzero(fg)
    assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert ann["area"] == fg.sum()
    card = json.loads((every_format / ex.CARD).read_text())
    assert card["size"] == 32 and card["layout"] == ex.LAYOUT_VERSION


def test_size_is_in_the_digest(tmp_path):
    ex.export_dataset("shapes", "0-1", tmp_path, "png", size=32, **OPTS)
    with pytest.raises(StylemixError, match="other settings"):
        ex.export_dataset("shapes", "0-1", tmp_path, "png", size=48, resume=True, **OPTS)
    for bad, message in ((dict(size=0), "--size"), (dict(val_fraction=1.0), "--val-fraction"),
                         (dict(coco_masks="mesh"), "--coco-masks"), (dict(class_name=" "), "--class-name")):
        with pytest.raises(StylemixError, match=message):
            ex.export_dataset("shapes", "0-1", tmp_path / "never", "coco", **bad, **OPTS)
    assert not (tmp_path / "never").exists()


def test_matte_stays_on_the_resized_mask(tmp_path):
    from PIL import Image
    ex.export_dataset("shapes", "0-1", tmp_path, "png", size=40, alpha=True, **OPTS)
    for s in (0, 1):
        matte = np.array(Image.open(tmp_path / "alpha" / "train" / f"seed{s:04d}_alpha.png"))
        mask = np.array(Image.open(tmp_path / "masks" / "train" / f"seed{s:04d}.png"))
        assert matte.shape == (40, 40) and np.array_equal(matte >= 128, mask > 0)


# ---------------------------------------------------------------------------------------------------------------
# the val split


def test_split_is_a_hash_of_the_seed():
    assert [s for s in range(4) if ex.seed_split(s, 0.5) == "val"] == [0, 1, 3]
    assert all(ex.seed_split(s, 0.0) == "train" for s in range(50))
    share = np.mean([ex.seed_split(s, 0.1) == "val" for s in range(4000)])
    assert 0.08 < share < 0.12


def test_every_format_holds_the_val_split(every_format):
    from pycocotools.coco import COCO
    val = ["seed0000.png", "seed0001.png", "seed0003.png"]
    assert sorted(p.name for p in (every_format / "images" / "val").iterdir()) == val
    assert sorted(p.name for p in (every_format / "masks" / "val").iterdir()) == val
    assert sorted(p.name for p in (every_format / "labels" / "val").iterdir()) == [v[:-3] + "txt" for v in val]
    assert [p.name for p in (every_format / "images" / "train").iterdir()] == ["seed0002.png"]
    yaml = (every_format / "data.yaml").read_text()
    assert "train: images/train\nval: images/val\n" in yaml and '0: "blob"' in yaml
    assert sorted(COCO(str(every_format / "annotations" / "instances_val.json")).getImgIds()) == [0, 1, 3]
    card = json.loads((every_format / ex.CARD).read_text())
    assert card["counts"]["val"] == 3 and card["counts"]["train"] == 1
    assert card["classes"]["png"] == {"0": "background", "1": "blob"} and card["classes"]["yolo"] == {"0": "blob"}


def test_ultralytics_reads_the_val_split(every_format, tmp_path):
    import os
    import shutil
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))
    pytest.importorskip("ultralytics")
    from ultralytics.data.utils import check_det_dataset
    root = tmp_path / "DS"
    shutil.copytree(every_format, root)  # ultralytics writes label caches into the dataset
    data = check_det_dataset(str(root / "data.yaml"))
    assert Path(data["val"]) == (root / "images" / "val").resolve() and data["names"] == {0: "blob"}


def test_sharded_split_export_equals_the_single_run(tmp_path, every_format):
    out = tmp_path / "DS"
    for shard in ("1/2", "0/2"):
        ex.export_dataset("shapes", "0-3", out, "png,coco,yolo", size=32, class_name="blob", shard=shard, **VAL,
                          **OPTS)
    assert tree(out) == tree(every_format)


def test_resuming_an_old_layout_is_one_clear_line(tmp_path):
    ex.export_dataset("shapes", "0-1", tmp_path, "png", shard="0/2", **OPTS)
    card = json.loads((tmp_path / ex.CARD).read_text())
    (tmp_path / ex.CARD).write_text(json.dumps({**card, "layout": 2}))
    for call in (lambda: ex.export_dataset("shapes", "0-1", tmp_path, "png", shard="1/2", resume=True, **OPTS),
                 lambda: ex.finalize(tmp_path)):
        with pytest.raises(StylemixError, match="layout 2") as e:
            call()
        assert "\n" not in str(e.value) and "--overwrite" in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# several formats, conversion, COCO masks


def test_convert_equals_the_direct_export(tmp_path, every_format):
    direct = tmp_path / "direct"
    ex.export_dataset("shapes", "0-3", direct, "coco,yolo", size=32, class_name="blob", **VAL, **OPTS)
    converted = tmp_path / "converted"
    summary = ex.convert_export(every_format, converted, "yolo,coco", run=ex.RunOptions(progress=False))
    assert summary["complete"] and summary["exported"] == 4
    assert tree(converted) == tree(direct)
    again = ex.convert_export(every_format, converted, "coco,yolo", run=ex.RunOptions(resume=True, progress=False))
    assert again["exported"] == 0


def test_convert_refuses_what_it_cannot_read(tmp_path, every_format):
    ex.export_dataset("shapes", "0-1", tmp_path / "coco", "coco", **OPTS)
    with pytest.raises(StylemixError, match="holds no png masks"):
        ex.convert_export(tmp_path / "coco", tmp_path / "out", "yolo")
    ex.export_dataset("shapes", "0-1", tmp_path / "half", "png", shard="0/2", **OPTS)
    with pytest.raises(StylemixError, match="not complete"):
        ex.convert_export(tmp_path / "half", tmp_path / "out", "yolo")
    with pytest.raises(StylemixError, match="another folder"):
        ex.convert_export(every_format, every_format, "yolo")
    assert not (tmp_path / "out").exists()


def test_cli_from_writes_rle_and_refuses_seeds(tmp_path, every_format):
    from click.testing import CliRunner
    from pycocotools import mask as mask_utils
    from stylemix.cli import main
    out = tmp_path / "rle"
    r = CliRunner().invoke(main, ["export", "--from", str(every_format), "--format", "coco", "--coco-masks", "rle",
                                  "--outdir", str(out)])
    assert r.exit_code == 0 and "converted 4 seeds" in r.output, r.output
    from PIL import Image
    doc = json.loads((out / "annotations" / "instances_val.json").read_text())
    for ann in doc["annotations"]:  # RLE: exactly the mask
        mask = np.array(Image.open(every_format / "masks" / "val" / f"seed{ann['image_id']:04d}.png"))
        np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]), mask)
    r = CliRunner().invoke(main, ["export", "--from", str(every_format), "--seeds", "0-1", "--outdir",
                                  str(tmp_path / "never")])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1
    assert not (tmp_path / "never").exists()


def test_coco_polygons_are_what_torchvision_and_detectron2_read(every_format):
    from pycocotools import mask as mask_utils
    from PIL import Image
    doc = json.loads((every_format / "annotations" / "instances_val.json").read_text())
    assert doc["annotations"]
    for ann in doc["annotations"]:
        polys = ann["segmentation"]
        assert isinstance(polys, list) and all(len(p) >= 6 and len(p) % 2 == 0 for p in polys)
        drawn = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, 32, 32))).astype(bool)
        mask = np.array(Image.open(every_format / "masks" / "val" / f"seed{ann['image_id']:04d}.png")) > 0
        assert (drawn & mask).sum() / (drawn | mask).sum() > 0.8


def test_join_polygons_makes_one_outline_of_pieces():
    import cv2
    a = np.array([[2, 2], [8, 2], [8, 8], [2, 8]], float)
    b = np.array([[20, 20], [28, 20], [28, 28], [20, 28]], float)
    joined = join_polygons([a, b])
    drawn = np.zeros((32, 32), np.uint8)
    cv2.fillPoly(drawn, [np.round(joined).astype(np.int32)], 1)
    both = np.zeros_like(drawn)
    cv2.fillPoly(both, [a.astype(np.int32), b.astype(np.int32)], 1)
    assert (drawn >= both).all()  # every piece filled
    assert drawn.sum() - both.sum() < 40  # plus a one-pixel join, no area between the pieces


# ---------------------------------------------------------------------------------------------------------------
# progress in a log, the shard message


def test_progress_lines_in_a_log():
    stream, now = io.StringIO(), [0.0]
    with LogProgress(100, initial=20, desc="export png", stream=stream, clock=lambda: now[0]) as bar:
        for _ in range(10):  # 10 seeds in 5 s: two lines at 5 % steps
            now[0] += 0.5
            bar.update(1)
        now[0] += 40  # a slow seed: a line after 30 s, whatever the step
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["export png: 25/100 seeds, 2 img/s, eta 38 s", "export png: 30/100 seeds, 2 img/s, eta 35 s"]
    assert lines[2].startswith("export png: 31/100 seeds, 0.24 img/s, eta 5 min") and len(lines) == 3
    assert isinstance(progress_bar(10, 0, "x", None, stream=io.StringIO()), LogProgress)  # not a terminal
    assert not isinstance(progress_bar(10, 0, "x", False, stream=io.StringIO()), LogProgress)


def test_first_shard_says_the_others_are_not_written_yet(tmp_path):
    from click.testing import CliRunner
    from stylemix.cli import main
    args = ["export", "--network", "shapes", "-n", "4", "--seeds", "0-3", "--outdir", str(tmp_path)]
    r = CliRunner().invoke(main, [*args, "--shard", "0/2"])
    assert r.exit_code == 0, r.output
    assert "shard 0/2 done; 2 seeds of other shards (1/2) not written yet: run the remaining shards, the last " \
           "one to finish merges" in r.output
    assert "missing" not in r.output
    r = CliRunner().invoke(main, [*args, "--shard", "1/2"])
    assert r.exit_code == 0 and "dataset complete: 4 images" in r.output, r.output
