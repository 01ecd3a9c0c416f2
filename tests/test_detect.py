"""The detector loader: importing Ultralytics leaves the process's environment as it was."""

import os

import pytest

from stylemix import detect


def test_importing_ultralytics_leaves_the_environment(monkeypatch):
    pytest.importorskip("ultralytics")
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.setenv("YOLO_AUTOINSTALL", "1")  # the user's own choice is kept, not overwritten
    before = dict(os.environ)
    assert detect._import_ultralytics() is not None
    assert dict(os.environ) == before


# ---- the detector protocol: Detections, filtering, class names, thresholds ------------------------------------

import numpy as np  # noqa: E402

from stylemix.errors import StylemixError  # noqa: E402

NAMES = {0: "person", 1: "horse", 2: "dog"}


def found(boxes=((0, 0, 4, 4), (1, 1, 9, 9), (2, 2, 5, 6)), classes=(0, 1, 0), scores=(0.3, 0.9, 0.6)):
    return detect.Detections(np.array(boxes), list(classes), list(scores), NAMES)


def test_detections_normalise_their_arrays():
    d = detect.Detections([[0, 0, 1, 1]], [2.0], [0.5], {"2": "dog"})
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (1, 4)
    assert d.classes.dtype == np.int64 and d.scores.dtype == np.float32 and d.names == {2: "dog"}
    empty = detect.Detections(np.zeros((0, 4)), [], [], NAMES)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    assert found().select(np.array([False, True, False])).name(1) == "horse" and found().name(7) == "7"
    with pytest.raises(StylemixError, match="disagree in length: 1 boxes, 2 classes, 1 scores"):
        detect.Detections([[0, 0, 1, 1]], [0, 1], [0.5], NAMES)


def test_detect_filters_by_class_and_confidence_and_sorts_by_score():
    image = np.zeros((10, 10, 3), np.uint8)
    all_sorted = detect.detect(lambda im: found(), image)
    assert all_sorted.scores.tolist() == pytest.approx([0.9, 0.6, 0.3]) and all_sorted.classes.tolist() == [1, 0, 0]
    people = detect.detect(lambda im: found(), image, "person", conf=0.5)
    assert people.scores.tolist() == pytest.approx([0.6]) and people.boxes.tolist() == [[2, 2, 5, 6]]
    assert len(detect.detect(lambda im: found(), image, [1, "Person"], conf=0.95)) == 0
    with pytest.raises(StylemixError, match="must return stylemix.detect.Detections, got list"):
        detect.detect(lambda im: [], image)


def test_class_ids_by_name_or_id():
    assert detect.class_ids(None, NAMES) is None
    assert detect.class_ids("person, DOG", NAMES) == {0, 2}
    assert detect.class_ids(1, NAMES) == {1} and detect.class_ids(["2", "horse"], NAMES) == {1, 2}
    with pytest.raises(StylemixError, match="does not know class 'cat'; its classes are: person, horse, dog"):
        detect.class_ids("person,cat", NAMES)


@pytest.mark.parametrize("conf, iou", [(-0.1, 0.5), (0.5, 1.5), (float("nan"), 0.5)])
def test_thresholds_outside_unit_interval(conf, iou):
    with pytest.raises(StylemixError, match="threshold must be in"):
        detect.check_thresholds(conf, iou)


def test_load_detector_keeps_callables_and_refuses_missing_weights(tmp_path):
    def my_detector(image):
        return found()
    assert detect.load_detector(my_detector) is my_detector and detect.detector_name(my_detector) == "my_detector"
    with pytest.raises(StylemixError, match="not found .give a local file path"):
        detect.load_detector(tmp_path / "yolov8n.pt")  # never a download
