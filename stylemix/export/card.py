"""What the dataset card says about an export's settings: the generator's and the detector's identity, and the
settings digest that every record repeats (a run whose digest differs is refused)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from stylemix.identity import generator_id
from stylemix.io import file_sha256

__all__ = ["canonical_json", "generator_identity", "instance_identity", "settings_digest"]


def generator_identity(G: Any, source: str | os.PathLike | None) -> dict[str, Any]:
    """What the card says about the generator: its source (file name or registered name), its id
    (:func:`stylemix.identity.generator_id`, the same on every machine), ``G.describe()`` and, for a file, the
    file's sha256."""
    facts = json.loads(json.dumps(G.describe() if hasattr(G, "describe") else {}, default=str))
    ident: dict[str, Any] = {"family": getattr(G, "family", type(G).__name__), "describe": facts,
                             "id": generator_id(G)}
    if source is not None and os.path.isfile(source):
        ident.update(source=Path(source).name, sha256=file_sha256(source))
    else:
        ident.update(source=None if source is None else os.fspath(source))
    return ident


def instance_identity(step: Any) -> dict[str, Any] | None:
    """The instance mode's settings for the card (``None`` when off): detector name and, for a weights file, its
    sha256, class filter, thresholds, per-box settings and the detector's class table.

    Args:
        step: :func:`stylemix.instances.prepare_instances`'s result.
    """
    from stylemix.detect import detector_name
    if step is None:
        return None
    ident: dict[str, Any] = {
        "detector": detector_name(step.detector), "classes": step.config.classes, "conf": step.config.conf,
        "iou": step.config.iou, "settings": step.config.box_settings(),
        "names": {str(k): v for k, v in sorted((getattr(step.detector, "names", None) or {}).items())}}
    weights = getattr(step.detector, "weights", None)  # a YoloDetector's file
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        ident["sha256"] = file_sha256(weights)
    return ident


def settings_digest(core: dict[str, Any]) -> str:
    """sha256 of what decides every byte a seed writes (the card ``core`` minus names that do not)."""
    keyed = {k: v for k, v in core.items() if k not in ("seeds", "digest")}
    keyed["generator"] = {k: v for k, v in core["generator"].items() if k != "source"}  # a renamed file is the same
    if "parts" in core:
        keyed["parts"] = {k: v for k, v in core["parts"].items() if k != "source"}
    if "file" in core.get("foreground_bank", {}):  # a bank stored in the dataset: its bytes decide, not its origin
        keyed["foreground_bank"] = {k: v for k, v in core["foreground_bank"].items() if k != "source"}
    return hashlib.sha256(canonical_json(keyed).encode()).hexdigest()


def canonical_json(obj: Any) -> str:
    """``obj`` as one line of JSON with sorted keys and no spaces: the form of the digest and of manifest lines."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
