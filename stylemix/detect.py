"""The detector step of the instance mode: an image -> boxes with classes and scores.

A *detector* is any callable with this protocol::

    detector(image: uint8 [H, W, 3] RGB) -> Detections

returning :class:`Detections` (boxes ``float [n, 4]`` as ``x0, y0, x1, y1`` in pixels of that image, class ids
``int [n]``, scores ``float [n]`` in [0, 1] and the id -> name table ``names``). It may also expose a ``names``
attribute so that class names can be checked before the first image.

:class:`YoloDetector` is the built-in one: ``ultralytics.YOLO(path, task="detect")`` over any weights file
Ultralytics reads (``.pt``, ``.onnx``, ``.tflite``, ...), by local path only (nothing is downloaded). It needs the
``detect`` extra (``pip install stylemix[detect]``); Ultralytics is imported only when a detector is loaded.

:func:`detect` runs a detector and applies the class filter and the confidence threshold, so a callable of your own
is filtered the same way as YOLO. NMS is the detector's job (YOLO applies it with the ``iou`` threshold).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from stylemix.errors import StylemixError

__all__ = ["Detections", "Detector", "INSTALL_HINT", "YoloDetector", "check_thresholds", "class_ids", "detect",
           "detector_name", "load_detector"]

INSTALL_HINT = "pip install stylemix[detect]"


@dataclasses.dataclass(frozen=True)
class Detections:
    """What a detector found in one image.

    Attributes:
        boxes: ``float32 [n, 4]``, ``x0, y0, x1, y1`` in pixels of the image given to the detector.
        classes: ``int64 [n]`` class ids, keys of ``names``.
        scores: ``float32 [n]`` confidences in [0, 1].
        names: class id -> name, for every class the detector knows (not only those found).
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    names: dict[int, str]

    def __post_init__(self) -> None:
        # Normalise dtypes/shapes once here so every consumer can rely on them (a user callable may return lists).
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        classes = np.asarray(self.classes).astype(np.int64).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not len(boxes) == len(classes) == len(scores):
            raise StylemixError(f"detections disagree in length: {len(boxes)} boxes, {len(classes)} classes, "
                                f"{len(scores)} scores")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "names", {int(k): str(v) for k, v in dict(self.names).items()})

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray) -> "Detections":
        """The detections where ``keep`` (bool ``[n]`` or indices) holds, names unchanged."""
        return Detections(self.boxes[keep], self.classes[keep], self.scores[keep], self.names)

    def name(self, class_id: int) -> str:
        return self.names.get(int(class_id), str(int(class_id)))


Detector = Callable[[np.ndarray], Detections]


class YoloDetector:
    """An Ultralytics YOLO detection model as a :data:`Detector`.

    Args:
        weights: a local weights file Ultralytics reads (``.pt``, ``.onnx``, ``.tflite``, ...).
        conf: confidence threshold of the detector.
        iou: NMS IoU threshold of the detector.
        imgsz: inference size; ``None``: the model's own (e.g. 640 for a fixed-size TFLite export).

    The model is loaded and run once on a blank image here, so that an unreadable file or a missing runtime fails
    at construction with one clear :class:`StylemixError` rather than at the first image.
    """

    def __init__(self, weights: str | os.PathLike, conf: float = 0.25, iou: float = 0.7, imgsz: int | None = None
                 ) -> None:
        path = Path(weights)
        if not path.is_file():
            # Checked first: given a bare name, Ultralytics would try to download it.
            raise StylemixError(f"detector weights {os.fspath(weights)!r} not found (give a local file path)")
        check_thresholds(conf, iou)
        YOLO = _import_ultralytics()
        self.weights, self.conf, self.iou, self.imgsz = path, float(conf), float(iou), imgsz
        try:
            self.model = YOLO(os.fspath(path), task="detect")
            self._predict(np.zeros((32, 32, 3), np.uint8))
            self.names: dict[int, str] = {int(k): str(v) for k, v in dict(self.model.names).items()}
        except ImportError as exc:
            raise StylemixError(f"cannot run detector {path.name!r}: missing module {exc.name or exc} "
                                f"({INSTALL_HINT}; .onnx weights also need onnxruntime)") from None
        except Exception as exc:  # Ultralytics raises many types for a bad file (ValueError, TypeError, KeyError)
            raise StylemixError(f"cannot read detector weights {os.fspath(path)!r}: {_one_line(exc)}") from None

    def _predict(self, image: np.ndarray) -> Any:
        kwargs = {} if self.imgsz is None else {"imgsz": self.imgsz}
        # Ultralytics takes NumPy images as BGR (OpenCV's order).
        return self.model.predict(np.ascontiguousarray(image[:, :, ::-1]), conf=self.conf, iou=self.iou,
                                  verbose=False, **kwargs)[0]

    def __call__(self, image: np.ndarray) -> Detections:
        """``image uint8 [H, W, 3]`` RGB -> :class:`Detections` in its pixels."""
        boxes = self._predict(image).boxes
        return Detections(boxes.xyxy.cpu().numpy(), boxes.cls.cpu().numpy(), boxes.conf.cpu().numpy(), self.names)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A model cannot be shared between processes (a TFLite interpreter does not pickle at all): a detector
        # sent to a Ray actor travels as its weights and thresholds and is opened there.
        return YoloDetector, (self.weights, self.conf, self.iou, self.imgsz)

    def __repr__(self) -> str:
        return f"YoloDetector({os.fspath(self.weights)!r}, conf={self.conf}, iou={self.iou})"


def load_detector(source: str | os.PathLike | Detector, conf: float = 0.25, iou: float = 0.7) -> Detector:
    """A weights path -> :class:`YoloDetector`; a callable is returned as it is (``conf``/``iou`` then unused here,
    :func:`detect` still applies ``conf``)."""
    if callable(source):
        return source
    return YoloDetector(source, conf=conf, iou=iou)


def detector_name(detector: Detector) -> str:
    """A short description for metadata: the weights file name, or the callable's name."""
    if isinstance(detector, YoloDetector):
        return detector.weights.name
    return getattr(detector, "__name__", type(detector).__name__)


def class_ids(classes: str | int | Iterable[str | int] | None, names: dict[int, str]) -> frozenset[int] | None:
    """Resolve a class filter against a detector's ``names``: ``None`` (every class) or the set of class ids.

    ``classes`` is a comma-separated string (``"person,horse"``), one name or id, or a list of names and ids.
    An unknown name or id is a :class:`StylemixError` that lists the known names.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, int, np.integer)):
        classes = str(classes).split(",")
    by_name = {v.lower(): k for k, v in names.items()}
    ids = set()
    for c in classes:
        key = str(c).strip()
        if not key:
            continue
        if key.lower() in by_name:
            ids.add(by_name[key.lower()])
        elif key.isdigit() and int(key) in names:
            ids.add(int(key))
        else:
            known = ", ".join(names[k] for k in sorted(names))
            raise StylemixError(f"the detector does not know class {key!r}; its classes are: {known}")
    return frozenset(ids)


def detect(detector: Detector, image: np.ndarray, classes: str | Iterable[str | int] | None = None,
           conf: float = 0.0) -> Detections:
    """Run ``detector`` on ``image uint8 [H, W, 3]`` and keep the detections of ``classes`` scoring >= ``conf``.

    Returns:
        :class:`Detections`, sorted by decreasing score.
    """
    found = detector(image)
    if not isinstance(found, Detections):
        raise StylemixError(f"a detector must return stylemix.detect.Detections, got {type(found).__name__}")
    keep = found.scores >= conf
    wanted = class_ids(classes, found.names)
    if wanted is not None:
        keep &= np.isin(found.classes, sorted(wanted))
    found = found.select(keep)
    return found.select(np.argsort(-found.scores, kind="stable"))


def check_thresholds(conf: float, iou: float) -> None:
    for name, value in (("detector confidence", conf), ("detector NMS IoU", iou)):
        if not 0 <= value <= 1:
            raise StylemixError(f"{name} threshold must be in [0, 1], got {value}")


# Ultralytics reads these at import: no downloads, no pip installs, settings in a temp folder, no banner. Set only
# where the user has not, and only for the import (then restored), so the process's environment is left as it was.
_ULTRALYTICS_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0",
                    "YOLO_CONFIG_DIR": os.path.join(tempfile.gettempdir(), "stylemix-ultralytics"),
                    "YOLO_VERBOSE": "False"}


def _import_ultralytics() -> Any:
    """``ultralytics.YOLO``, imported offline and quiet, without leaving its settings or its thread setting on this
    process's environment."""
    saved = {key: os.environ.get(key) for key in (*_ULTRALYTICS_ENV, "OMP_NUM_THREADS")}
    for key, value in _ULTRALYTICS_ENV.items():
        os.environ.setdefault(key, value)
    try:
        from ultralytics import YOLO
    except ImportError:
        raise StylemixError(f"the detector needs Ultralytics, which is not installed: {INSTALL_HINT}") from None
    finally:
        # Ultralytics also sets OMP_NUM_THREADS=1 for the whole process (and its children): put back what was there.
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return YOLO


def _one_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    text = re.sub(r"^(ERROR|WARNING)\W*", "", text)
    return (text.splitlines() or [type(exc).__name__])[0]
