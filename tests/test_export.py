"""Tests for stylemix/export/ and ``stylemix export``: formats, resume under SIGKILL, refusal, filter, shards, Ray.

Every export uses the 64 px shapes generator with 4 variants (about 0.1 s a seed) so the whole file stays short;
the kill tests run the CLI in subprocesses, which dominates their time (importing torch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import stylemix
from stylemix import export as ex
from stylemix.errors import StylemixError
from stylemix.export import distributed
from stylemix.identity import generator_id
from stylemix.io import compact_seeds, file_sha256

REPO = Path(__file__).resolve().parents[1]
OPTS = {"variants": 4}
CLI_OPTS = ["--network", "shapes", "-n", "4"]

# Runs the CLI, but SIGKILLs itself at the n-th durability event: after an fsync (data on disk, nothing renamed
# yet, or a manifest line written) or just before an os.replace (a temp file left behind). Counting events instead
# of sleeping puts the kills at exact, repeatable points.
KILL_AT_EVENT = """
import os, signal, sys
n, count = int(sys.argv[1]), [0]
real_replace, real_fsync = os.replace, os.fsync
def tick():
    count[0] += 1
    if count[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
def replace(*args, **kwargs):
    tick()
    return real_replace(*args, **kwargs)
def fsync(fd):
    real_fsync(fd)
    tick()
os.replace, os.fsync = replace, fsync
from stylemix.cli import main
main(sys.argv[2:], prog_name="stylemix")
"""


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) -> its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    e.pop("WORLD_SIZE", None)
    return e


@pytest.fixture(scope="module")
def G():
    return stylemix.load_generator("shapes")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, G) -> dict[str, Path]:
    """Uninterrupted exports of seeds 0-5 in each format (what every other way of exporting must reproduce)."""
    root = tmp_path_factory.mktemp("ref")
    out = {}
    for fmt in ex.FORMATS:
        ex.export_dataset("shapes", "0-5", root / fmt, format=fmt, **OPTS)
        out[fmt] = root / fmt
    return out


# ---------------------------------------------------------------------------------------------------------------
# helpers


def test_compact_seeds_inverts_parse_seeds():
    from stylemix.io import parse_seeds
    assert compact_seeds([5, 0, 1, 2, 9, 10]) == "0-2,5,9-10"
    assert parse_seeds(compact_seeds([3, 7, 8, 100])) == [3, 7, 8, 100]
    assert compact_seeds([]) == ""


def test_parse_shard(monkeypatch):
    assert ex.parse_shard("1/4") == (1, 4)
    assert ex.parse_shard("0/1") is None
    with pytest.raises(StylemixError, match="shard index"):
        ex.parse_shard("4/4")
    with pytest.raises(StylemixError, match="bad shard"):
        ex.parse_shard("1-4")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ex.parse_shard("auto") is None
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert ex.parse_shard("auto") == (2, 3)


def test_shard_seeds_partition():
    seeds = list(range(23))
    parts = [ex.shard_seeds(seeds, i, 4) for i in range(4)]
    assert sorted(sum(parts, [])) == seeds
    assert parts[1] == [1, 5, 9, 13, 17, 21]


def test_palette_png_round_trip():
    from PIL import Image
    from stylemix.io import encode_palette_png
    import io as _io
    ids = np.random.default_rng(0).integers(0, 5, (7, 9)).astype(np.uint8)
    data = encode_palette_png(ids, ex.mask_palette())
    img = Image.open(_io.BytesIO(data))
    assert img.mode == "P" and img.size == (9, 7)
    np.testing.assert_array_equal(np.array(img), ids)
    assert encode_palette_png(ids, ex.mask_palette()) == data


# ---------------------------------------------------------------------------------------------------------------
# formats


def test_png_format(reference, G):
    from PIL import Image
    root = reference["png"]
    names = sorted(p.name for p in (root / "images" / "train").iterdir())
    assert names == [f"seed{s:04d}.png" for s in range(6)]
    assert names == sorted(p.name for p in (root / "masks" / "train").iterdir())
    for s in (0, 3):
        seg = stylemix.segment(G, s, config=stylemix.SegmentConfig(**OPTS))
        mask = Image.open(root / "masks" / "train" / f"seed{s:04d}.png")
        assert mask.mode == "P"
        np.testing.assert_array_equal(np.array(mask), seg.foreground.astype(np.uint8))
        np.testing.assert_array_equal(np.array(Image.open(root / "images" / "train" / f"seed{s:04d}.png")), seg.image)
    card = json.loads((root / "dataset.json").read_text())
    assert card["complete"] and card["seeds"] == "0-5" and card["format"] == "png"
    assert card["classes"] == {"0": "background", "1": "foreground"}
    assert card["settings"]["variants"] == 4 and card["generator"]["source"] == "shapes"
    assert card["generator"]["id"] == generator_id(G)
    assert card["arithmetic"] == {"precision": "float32", "device": "cpu"}
    assert card["counts"]["written"] == 6 and card["counts"]["skipped"] == 0
    lines = (root / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == list(range(6))
    rec = json.loads(lines[2])
    assert rec["digest"] == card["digest"]
    import hashlib
    for rel, digest in rec["files"].items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest


def test_png_multiclass_ranks_clusters(tmp_path):
    from PIL import Image
    from stylemix.generators.shapes import ShapesGenerator
    G = ShapesGenerator(parts=True).eval()
    ex.export_dataset(G, "0-1", tmp_path, format="png", clusters=3, **OPTS)
    seg = stylemix.segment(G, 0, config=stylemix.SegmentConfig(clusters=3, **OPTS))
    mask = np.array(Image.open(tmp_path / "masks" / "train" / "seed0000.png"))
    assert set(np.unique(mask)) <= {0, 1, 2}
    # rank 0 is the most background-like cluster: the image border, where the shapes generator has no object
    assert mask[0, 0] == 0 and mask[0, -1] == 0
    assert mask[32, 32] == 2 and (mask[seg.foreground] > 0).all()
    card = json.loads((tmp_path / "dataset.json").read_text())
    assert card["classes"] == {"0": "rank0", "1": "rank1", "2": "rank2"}
    assert card["generator"]["source"] is None  # a generator object, identified by its weights
    assert card["generator"]["id"]


def test_coco_format(reference, G):
    from pycocotools.coco import COCO
    root = reference["coco"]
    coco = COCO(str(root / "annotations" / "instances_train.json"))
    assert sorted(coco.getImgIds()) == list(range(6))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["foreground"]
    for s in (0, 4):
        seg = stylemix.segment(G, s, config=stylemix.SegmentConfig(**OPTS))
        info = coco.loadImgs(s)[0]
        assert (root / "images" / "train" / info["file_name"]).is_file() and (info["height"], info["width"]) == (64, 64)
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=s))  # the whole foreground is one instance
        assert isinstance(ann["segmentation"], list) and ann["iscrowd"] == 0  # polygons by default
        assert ann["area"] == seg.foreground.sum()
        m = coco.annToMask(ann).astype(bool)  # polygons follow the boundary pixels' centres: a little smaller
        assert (m & seg.foreground).sum() / (m | seg.foreground).sum() > 0.85 and not (m & ~seg.foreground).any()


def _import_ultralytics(cfg_dir: Path):
    # Settings are read once, at import: offline, no pip installs, config outside the home folder.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cfg_dir))
    return pytest.importorskip("ultralytics")


def test_yolo_format_passes_ultralytics_checker(reference, G, tmp_path):
    import shutil
    _import_ultralytics(tmp_path / "yolo-config")
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset
    root = tmp_path / "yolo"
    shutil.copytree(reference["yolo"], root)  # ultralytics writes a label cache into the dataset
    data = check_det_dataset(str(root / "data.yaml"))
    assert data["nc"] == 1 and data["names"] == {0: "foreground"}
    assert Path(data["train"]) == (root / "images" / "train").resolve()
    ds = YOLODataset(img_path=data["train"], data=data, task="segment", imgsz=64, augment=False, hyp=get_cfg(),
                     batch_size=1, rect=False, stride=32, pad=0.0)
    assert len(ds) == 6
    sample = ds[0]
    assert sample["cls"].shape[0] >= 1 and sample["masks"].sum() > 0
    # the polygons redraw the foreground: IoU with the segmentation
    import cv2
    seg = stylemix.segment(G, 0, config=stylemix.SegmentConfig(**OPTS))
    drawn = np.zeros((64, 64), np.uint8)
    for poly in ds.labels[0]["segments"]:
        cv2.fillPoly(drawn, [np.round(poly * 64).astype(np.int32)], 1)
    inter, union = (drawn.astype(bool) & seg.foreground).sum(), (drawn.astype(bool) | seg.foreground).sum()
    assert inter / union > 0.9


def test_detector_instances_set_classes(tmp_path):
    from stylemix.detect import Detections
    names = {0: "person", 1: "bicycle", 2: "dog"}

    def boxes(image):  # one box around the middle object of the shapes generator, class "dog"
        return Detections([[8, 8, 56, 56]], [2], [0.9], names)
    boxes.names = names
    for fmt in ("coco", "yolo"):
        ex.export_dataset("shapes", "0-1", tmp_path / fmt, format=fmt, detector=boxes, **OPTS)
    doc = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in doc["categories"]] == ["person", "bicycle", "dog"]
    assert {a["category_id"] for a in doc["annotations"]} == {3}
    assert "2: \"dog\"" in (tmp_path / "yolo" / "data.yaml").read_text()
    assert (tmp_path / "yolo" / "labels" / "train" / "seed0000.txt").read_text().startswith("2 ")
    card = json.loads((tmp_path / "coco" / "dataset.json").read_text())
    assert card["instances"]["detector"] == "boxes" and card["instances"]["names"]["2"] == "dog"


# ---------------------------------------------------------------------------------------------------------------
# parts datasets (a part bank's classes)

BANK_SETTINGS = dict(n_parts=3, prototypes=8, signature_variants=8)


@pytest.fixture(scope="module")
def parts_G():
    from stylemix.generators.shapes import ShapesGenerator
    return ShapesGenerator(parts=True, coupling=0.3).eval()


@pytest.fixture(scope="module")
def parts_bank(parts_G):
    from stylemix.parts import PartSettings, discover
    return discover(parts_G, range(100, 108), settings=PartSettings(**BANK_SETTINGS),
                    config=stylemix.SegmentConfig(variants=8))


def test_parts_export_holds_the_bank_classes_in_every_format(tmp_path, parts_G, parts_bank):
    from PIL import Image
    for fmt in ex.FORMATS:
        ex.export_dataset(parts_G, "0-2", tmp_path / fmt, format=fmt, parts=parts_bank, **OPTS)
    names = parts_bank.class_names
    png = tmp_path / "png"
    for s in (0, 2):
        seg = stylemix.segment(parts_G, s, parts=parts_bank, config=stylemix.SegmentConfig(**OPTS))
        np.testing.assert_array_equal(np.array(Image.open(png / "masks" / "train" / f"seed{s:04d}.png")), seg.parts)
    for fmt in ex.FORMATS:
        card = json.loads((tmp_path / fmt / "dataset.json").read_text())
        assert card["classes"] == {str(i): n for i, n in enumerate(names)}
        assert card["parts"]["sha256"] == file_sha256(tmp_path / fmt / "parts.parts")
        assert [r["name"] for r in card["parts"]["classes"]] == names
        assert (tmp_path / fmt / "parts.classes.csv").is_file()
    doc = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in doc["categories"]] == names
    assert {a["category_id"] for a in doc["annotations"]} <= {1, 2, 3} and doc["annotations"]
    yaml = (tmp_path / "yolo" / "data.yaml").read_text()
    assert all(f'{i}: "{n}"' in yaml for i, n in enumerate(names))
    labels = (tmp_path / "yolo" / "labels" / "train" / "seed0001.txt").read_text().splitlines()
    assert labels and {int(line.split()[0]) for line in labels} <= {0, 1, 2}


def test_parts_k_fits_on_the_first_seeds_resumes_and_refuses_another_bank(tmp_path, parts_G, parts_bank):
    from stylemix.parts import PartBank, PartSettings
    settings = PartSettings(**BANK_SETTINGS)
    ref = tmp_path / "ref"
    ex.export_dataset(parts_G, "0-5", ref, format="png", parts=settings, **OPTS)
    stored = PartBank.load(ref / "parts.parts", parts_G)
    assert stored.fit_seeds == "0-5" and stored.n_parts == 3  # fewer seeds than DISCOVER_SEEDS: all of them
    assert (ref / "parts.class00.png").is_file()  # contact sheets to name the classes by
    # shards (each fits the same bank on the same first seeds) merge to the single run, byte for byte
    out = tmp_path / "sharded"
    ex.export_dataset(parts_G, "0-5", out, format="png", parts=settings, shard="0/2", **OPTS)
    (out / "masks" / "train" / "seed0002.png").unlink()  # a lost file is redone on resume
    ex.export_dataset(parts_G, "0-5", out, format="png", parts=settings, shard="0/2", resume=True, **OPTS)
    ex.export_dataset(parts_G, "0-5", out, format="png", parts=settings, shard="1/2", **OPTS)
    assert tree(out) == tree(ref)
    with pytest.raises(StylemixError, match="another part bank") as e:
        ex.export_dataset(parts_G, "0-5", out, format="png", parts=parts_bank, resume=True, **OPTS)
    assert "\n" not in str(e.value)
    ex.export_dataset(parts_G, "0-1", tmp_path / "plain", format="png", **OPTS)
    with pytest.raises(StylemixError, match="was exported with no part bank"):
        ex.export_dataset(parts_G, "0-1", tmp_path / "plain", format="png", parts=parts_bank, resume=True, **OPTS)
    with pytest.raises(StylemixError, match="cannot be combined"):
        ex.export_dataset(parts_G, "0-1", tmp_path / "both", parts=parts_bank, detector=lambda im: None, **OPTS)
    assert not (tmp_path / "both").exists()


@pytest.mark.parametrize("args,message", [
    (["--parts", "missing.parts"], "no part bank at"),
    (["--parts", "1"], "at least 2 parts"),
    (["-k", "3", "--alpha"], "--alpha needs two-way masks"),
])
def test_cli_bad_parts_or_alpha_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "never"
    p = subprocess.run([sys.executable, "-m", "stylemix.cli", "export", *CLI_OPTS, "--seeds", "0-1", "--outdir",
                        str(out), *args], capture_output=True, text=True, env=env(), cwd=REPO)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], p.stderr
    assert not out.exists()


def test_parts_k_on_the_command_line_survives_kills(tmp_path):
    # K = 2 parts on the plain shapes generator; kills land in the bank's files (8 events), the card, a seed
    from click.testing import CliRunner
    from stylemix.cli import main
    extra = ("--parts", "2")
    ref = tmp_path / "ref"
    r = CliRunner().invoke(main, ["export", *CLI_OPTS, "--seeds", "0-3", "--outdir", str(ref), *extra])
    assert r.exit_code == 0, r.output
    out = tmp_path / "killed"
    codes = [run_killed_at(n, out, "png", "0-3", extra) for n in (3, 9, 12)]
    assert codes == [-signal.SIGKILL] * 3
    r = CliRunner().invoke(main, ["export", *CLI_OPTS, "--seeds", "0-3", "--outdir", str(out), "--resume", *extra])
    assert r.exit_code == 0, r.output
    assert tree(out) == tree(ref)


# ---------------------------------------------------------------------------------------------------------------
# the quality filter, refusals


def test_min_margin_skips_and_records(tmp_path, G):
    margins = {s: stylemix.segment(G, s,
                                   config=stylemix.SegmentConfig(**OPTS)).meta["foreground_margin"] for s in range(6)}
    cut = float(np.median(list(margins.values())))
    low = sorted(s for s, m in margins.items() if m < cut)
    assert low, "the median should leave some seeds below"
    ex.export_dataset(G, "0-5", tmp_path, format="png", min_margin=cut, **OPTS)
    records = {r["seed"]: r for r in ex.read_manifest(tmp_path / "manifest.jsonl")}
    assert sorted(records) == list(range(6))
    for s in low:
        assert "skipped" in records[s] and "files" not in records[s]
        assert records[s]["foreground_margin"] == margins[s]
        assert not (tmp_path / "images" / "train" / f"seed{s:04d}.png").exists()
    kept = sorted(set(range(6)) - set(low))
    assert sorted(int(p.stem[4:]) for p in (tmp_path / "images" / "train").iterdir()) == kept
    card = json.loads((tmp_path / "dataset.json").read_text())
    assert card["counts"]["skipped"] == len(low) and card["skipped_seeds"] == compact_seeds(low)


def test_refuses_other_settings_and_reruns(tmp_path):
    ex.export_dataset("shapes", "0-1", tmp_path, format="png", **OPTS)
    with pytest.raises(StylemixError, match="already holds this export"):
        ex.export_dataset("shapes", "0-1", tmp_path, format="png", **OPTS)
    with pytest.raises(StylemixError, match="other settings"):
        ex.export_dataset("shapes", "0-1", tmp_path, format="png", resume=True, variants=5)
    with pytest.raises(StylemixError, match="other settings"):
        ex.export_dataset("shapes", "0-1", tmp_path, format="yolo", resume=True, **OPTS)
    with pytest.raises(StylemixError, match="seeds"):
        ex.export_dataset("shapes", "0-2", tmp_path, format="png", resume=True, **OPTS)
    # the refusals wrote nothing; a finished export resumes as a no-op
    assert ex.export_dataset("shapes", "0-1", tmp_path, format="png", resume=True, **OPTS)["exported"] == 0
    # batch size does not change results, so it is not part of the digest
    ex.export_dataset("shapes", "0-1", tmp_path, format="png", resume=True, batch_size=2, **OPTS)
    summary = ex.export_dataset("shapes", "0-1", tmp_path, format="yolo", overwrite=True, **OPTS)
    assert summary["complete"] and not (tmp_path / "masks").exists()
    assert json.loads((tmp_path / "dataset.json").read_text())["format"] == "yolo"


def test_refuses_partial_export_with_other_settings(tmp_path):
    # a partial export: one record, no final card
    ex.export_dataset("shapes", "0-3", tmp_path, format="png", shard="0/4", **OPTS)
    assert not json.loads((tmp_path / "dataset.json").read_text())["complete"]
    with pytest.raises(StylemixError, match="other settings"):
        ex.export_dataset("shapes", "0-3", tmp_path, format="png", shard="1/4", variants=6)


def test_cli_error_is_one_line(tmp_path):
    from click.testing import CliRunner
    from stylemix.cli import main
    runner = CliRunner()
    args = ["export", *CLI_OPTS, "--seeds", "0-1", "--outdir", str(tmp_path), "--format", "coco"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "dataset complete: 2 images" in first.output
    again = runner.invoke(main, args[:-2] + ["--format", "png", "--resume"])
    assert again.exit_code == 1
    assert again.output.strip().startswith("Error:") and "other settings" in again.output
    assert len(again.output.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------
# crash safety


def run_killed_at(n: int, outdir: Path, fmt: str, seeds: str = "0-5", extra: tuple[str, ...] = ()) -> int:
    args = [*CLI_OPTS, "--seeds", seeds, "--outdir", str(outdir), "--format", fmt, "--resume", *extra]
    proc = subprocess.run([sys.executable, "-c", KILL_AT_EVENT, str(n), "export", *args], env=env(),
                          capture_output=True, cwd=REPO, timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.decode()[-2000:]
    return proc.returncode


def test_sigkill_at_many_points_then_resume_is_byte_identical(tmp_path, reference):
    # Each run resumes the last and dies at its n-th event. With 4 events a seed (temp fsync, rename, folder
    # fsync, manifest line) the runs die: before the first card's rename; after seed 0's folder fsync but before
    # its line; after its line; before seed 1's rename; after seed 3's folder fsync; mid-seed 5; before the
    # sorted manifest's rename; before the final card's rename. (test_sigkill_at_every_event, slow, tries all.)
    kills = [2, 5, 4, 2, 11, 9, 6, 6]
    codes = [run_killed_at(n, tmp_path, "coco") for n in kills]
    assert codes == [-signal.SIGKILL] * len(kills)
    card = json.loads((tmp_path / "dataset.json").read_text())
    assert not card["complete"] and len(ex.read_manifest(tmp_path / "manifest.jsonl")) == 6
    assert list(tmp_path.rglob(".*.tmp"))  # litter of the killed writes, which the resume clears
    ex.export_dataset("shapes", "0-5", tmp_path, format="coco", resume=True, **OPTS)
    assert tree(tmp_path) == tree(reference["coco"])


def test_external_sigkill_after_manifest_lines(tmp_path, reference):
    # A real kill from outside at an unplanned moment: as soon as N manifest lines are on disk. On a loaded machine
    # the export can finish before the kill lands; that run proves nothing, so the folder is cleared and the kill
    # tried again (a few times at most).
    import shutil
    manifest = tmp_path / "manifest.jsonl"

    def run_and_kill(lines: int) -> int:
        args = ["export", *CLI_OPTS, "--seeds", "0-5", "--outdir", str(tmp_path), "--format", "yolo", "--resume"]
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from stylemix.cli import main; "
                                 "main(sys.argv[1:], prog_name='stylemix')", *args], env=env(), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_bytes().count(b"\n") >= lines:
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return manifest.read_bytes().count(b"\n") if manifest.exists() else 0

    for _ in range(5):
        done = run_and_kill(1)
        if done < 6:
            break
        shutil.rmtree(tmp_path)
        tmp_path.mkdir()
    assert 0 < done < 6
    assert not json.loads((tmp_path / "dataset.json").read_text())["complete"]
    assert run_and_kill(done + 1) > 0  # a second kill of the resumed run (it may have finished: then it is done)
    ex.export_dataset("shapes", "0-5", tmp_path, format="yolo", resume=True, **OPTS)
    assert tree(tmp_path) == tree(reference["yolo"])


def test_torn_manifest_line_and_lost_file_are_redone(tmp_path, reference):
    ex.export_dataset("shapes", "0-5", tmp_path, format="png", shard="0/2", **OPTS)
    manifest = tmp_path / "manifest-shard0-of-2.jsonl"
    with open(manifest, "ab") as f:
        f.write(b'{"seed": 1, "dig')  # a line cut short by a kill: never acknowledged
    (tmp_path / "masks" / "train" / "seed0002.png").unlink()  # a record whose file is gone is not done
    (tmp_path / "images" / "train" / ".seed0004.png.x.tmp").write_bytes(b"junk")  # a killed atomic write
    ex.export_dataset("shapes", "0-5", tmp_path, format="png", shard="0/2", resume=True, **OPTS)
    assert (tmp_path / "masks" / "train" / "seed0002.png").exists()
    ex.export_dataset("shapes", "0-5", tmp_path, format="png", shard="1/2", **OPTS)
    assert tree(tmp_path) == tree(reference["png"])


def test_alpha_export_is_recorded_and_resumes_byte_identical(tmp_path):
    from PIL import Image
    ref = tmp_path / "ref"
    ex.export_dataset("shapes", "0-3", ref, format="yolo", alpha=True, **OPTS)
    card = json.loads((ref / "dataset.json").read_text())
    assert card["alpha"] is True and card["complete"]
    records = ex.read_manifest(ref / "manifest.jsonl")
    assert all(f"alpha/train/seed{r['seed']:04d}_alpha.png" in r["files"] for r in records)
    seg = stylemix.segment(stylemix.load_generator("shapes"), 2, config=stylemix.SegmentConfig(**OPTS))
    matte = np.array(Image.open(ref / "alpha" / "train" / "seed0002_alpha.png"))
    assert matte.dtype == np.uint8 and np.array_equal(matte >= 128, seg.foreground)
    assert 0 < ((matte > 0) & (matte < 255)).sum()  # soft at the boundary, not a copy of the mask
    # killed at points inside the alpha files' writes (3 files a seed: 10 events), then resumed
    out = tmp_path / "killed"
    codes = [run_killed_at(n, out, "yolo", "0-3", ("--alpha",)) for n in (2, 7, 5, 13)]
    assert codes == [-signal.SIGKILL] * 4
    ex.export_dataset("shapes", "0-3", out, format="yolo", alpha=True, resume=True, **OPTS)
    assert tree(out) == tree(ref)
    with pytest.raises(StylemixError, match="other settings"):  # the matte is part of the digest
        ex.export_dataset("shapes", "0-3", out, format="yolo", resume=True, **OPTS)
    with pytest.raises(StylemixError, match="--alpha needs two-way masks"):
        ex.export_dataset("shapes", "0-3", tmp_path / "k3", format="png", alpha=True, clusters=3, **OPTS)
    assert not (tmp_path / "k3").exists()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_sigkill_at_every_event(tmp_path, reference, fmt):
    """Exhaustive: a fresh export killed at its n-th event, for every n, then resumed in-process."""
    n = 1
    while True:
        out = tmp_path / f"kill{n}"
        rc = run_killed_at(n, out, fmt)
        if rc == 0:
            break
        ex.export_dataset("shapes", "0-5", out, format=fmt, resume=True, **OPTS)
        assert tree(out) == tree(reference[fmt]), f"killed at event {n}"
        n += 1
    assert n > 20


def test_writer_threads_change_no_byte_and_errors_arrive_in_order(tmp_path, reference, monkeypatch):
    ex.export_dataset("shapes", "0-5", tmp_path / "inline", format="png", writer_threads=0, **OPTS)
    assert tree(tmp_path / "inline") == tree(reference["png"])  # the reference encoded on writer threads
    real = distributed.encode_seed

    def failing(seg, *args, **kwargs):
        if seg.seed == 3:
            raise StylemixError("could not encode seed 3")
        return real(seg, *args, **kwargs)
    monkeypatch.setattr(distributed, "encode_seed", failing)
    out = tmp_path / "failed"
    with pytest.raises(StylemixError, match="seed 3"):
        ex.export_dataset("shapes", "0-5", out, format="png", **OPTS)
    assert [r["seed"] for r in ex.read_manifest(out / "manifest.jsonl")] == [0, 1, 2]  # those before it, committed
    monkeypatch.setattr(distributed, "encode_seed", real)
    ex.export_dataset("shapes", "0-5", out, format="png", resume=True, **OPTS)
    assert tree(out) == tree(reference["png"])


# ---------------------------------------------------------------------------------------------------------------
# scale: shards and Ray


def test_shards_merge_to_the_single_run(tmp_path, reference):
    first = ex.export_dataset("shapes", "0-5", tmp_path, format="coco", shard="1/3", **OPTS)
    assert not first["complete"] and first["exported"] == 2 and first["pending"] == 4
    assert (tmp_path / "manifest-shard1-of-3.jsonl").exists()
    with pytest.raises(StylemixError, match="not exported yet"):
        ex.finalize(tmp_path)
    ex.export_dataset("shapes", "0-5", tmp_path, format="coco", shard="0/3", **OPTS)
    os.environ.pop("WORLD_SIZE", None)
    last = ex.export_dataset("shapes", "0-5", tmp_path, format="coco", shard=(2, 3), **OPTS)
    assert last["complete"]  # the shard that completes the set merges
    assert not list(tmp_path.glob("manifest-shard*"))
    assert tree(tmp_path) == tree(reference["coco"])


def test_merge_command(tmp_path, reference):
    from click.testing import CliRunner
    from stylemix.cli import main
    for i in range(2):
        ex.export_dataset("shapes", "0-5", tmp_path, format="yolo", shard=f"{i}/2", **OPTS)
    # a merge with nothing left to do is idempotent
    result = CliRunner().invoke(main, ["export", "--merge", "--outdir", str(tmp_path)])
    assert result.exit_code == 0 and "merged 6 images" in result.output
    assert tree(tmp_path) == tree(reference["yolo"])


def test_ray_export_equals_single_process(tmp_path, reference):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        summary = ex.export_dataset("shapes", "0-5", tmp_path, format="coco", ray=True, workers=2, batch_seeds=2,
                                    **OPTS)
    finally:
        ray.shutdown()
    assert summary["complete"] and summary["exported"] == 6
    assert tree(tmp_path) == tree(reference["coco"])


# ---------------------------------------------------------------------------------------------------------------
# a real trainer on a real generator


@pytest.mark.slow
def test_yolo_trains_on_stylegan2_export(tmp_path, shared):
    """The documented check (docs/export.md): export 64 seeds of the 32 px StyleGAN2 fixture, train 1 epoch."""
    pkl = shared / "fixtures" / "stylegan2" / "nvidia_small" / "network-snapshot.pkl"
    ds = tmp_path / "DS"
    e = env()
    e.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_CONFIG_DIR=str(tmp_path / "yolo-config"))
    subprocess.run([sys.executable, "-c", "from stylemix.cli import main; main(prog_name='stylemix')", "export",
                    "--network", str(pkl), "--seeds", "0-63", "--format", "yolo", "--outdir", str(ds)],
                   env=e, check=True, cwd=REPO, timeout=1200)
    pytest.importorskip("ultralytics")
    proc = subprocess.run(["yolo", "segment", "train", f"data={ds / 'data.yaml'}", "epochs=1", "imgsz=32",
                           "model=yolov8n-seg.yaml", "device=cpu", "workers=0", "plots=False", "amp=False",
                           f"project={tmp_path / 'runs'}", "name=train"],
                          env=e, capture_output=True, text=True, cwd=tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "runs" / "train" / "weights" / "last.pt").is_file()
    assert "Downloading" not in proc.stdout + proc.stderr


def test_manifest_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b'{"seed": 0}\n{"seed": 1}\n{"seed": 2, "sta')
    assert [r["seed"] for r in ex.read_manifest(path)] == [0, 1]


def test_manifest_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b'{"seed": 0}\n{"seed": 1, "sta\n{"seed": 2}\n')
    with pytest.raises(StylemixError, match="corrupt: line 2"):
        ex.read_manifest(path)


def test_export_masks_follow_segment_auto_foreground_and_its_bank_is_in_the_digest(tmp_path):
    """An export of the default generator makes the masks `stylemix segment` makes (the shipped bank's foreground,
    parts="auto"), names that bank in the card, and `parts="none"` is the consensus with another digest."""
    from PIL import Image
    face = stylemix.load_generator("mobilestylegan-ffhq")
    opts = dict(variants=8, consensus=(2, 3))
    ex.export_dataset(face, [5], tmp_path / "auto", format="png", **opts)
    ex.export_dataset(face, [5], tmp_path / "none", format="png", parts="none", **opts)
    card = json.loads((tmp_path / "auto" / ex.CARD).read_text())
    other = json.loads((tmp_path / "none" / ex.CARD).read_text())
    assert card["foreground_bank"]["source"] == "auto: default" and card["foreground_bank"]["sha256"]
    assert "foreground_bank" not in other and card["digest"] != other["digest"]
    for name, parts in (("auto", "auto"), ("none", "none")):
        seg = stylemix.segment(face, 5, parts=parts, config=stylemix.SegmentConfig(**opts))
        mask = np.asarray(Image.open(tmp_path / name / "masks" / "train" / "seed0005.png"))
        np.testing.assert_array_equal(mask > 0, seg.foreground)
