"""Generator files: detect the format and hand the content to its family's reader.

Formats are told apart by their bytes, never by the extension:

* **safetensors** (8-byte header length, then a JSON header): weights only, no code. Files written by
  :func:`stylemix.generators.convert.convert_to_safetensors` carry the family, constructor config and style layout in their metadata and rebuild
  the generator exactly; a safetensors file without that metadata is read as a bare state dict.
* **torch zip / legacy** (``torch.save``): ``torch.load(weights_only=True)``, then the StyleGAN2 checkpoint layouts
  (NVIDIA state dicts, rosinality) or a StyleGAN3 state dict.
* **pickle** (NVIDIA network snapshots, TensorFlow ``(G, D, Gs)`` tuples): the restricted unpickler of
  :mod:`stylemix.generators.pickles`, which also says what network the file holds.

The readers are named in two small tables, :data:`READERS` (what a file holds -> the function building it) and
:data:`GENERATOR_CLASSES` (family -> class, for rebuilding from safetensors). Nothing is ever imported or called
because a file names it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import re
import struct
import zipfile
from typing import Any, Mapping

import torch

from stylemix.errors import GeneratorLoadError
from stylemix.generators.pickles import PersistentRecord, classify_network, read_pickle
from stylemix.io import file_sha256

__all__ = ["GENERATOR_CLASSES", "KEPT_ATTRIBUTES", "READERS", "SAFETENSORS_FORMAT", "SAFETENSORS_VERSION",
           "is_safetensors_head", "load_network_file"]

# What a file holds -> "module:function(network, *, source, conv_clamp)" building its generator. A reader whose module
# is missing fails with one line saying so.
READERS: dict[str, str] = {
    "stylegan2": "stylemix.generators.stylegan2_formats:generator_from_record",
    "stylegan2-tf": "stylemix.generators.stylegan2_tf:generator_from_tf_network",
    "stylegan2-checkpoint": "stylemix.generators.stylegan2_formats:generator_from_checkpoint",
    "stylegan3": "stylemix.generators.stylegan3_formats:generator_from_record",
    "stylegan3-state-dict": "stylemix.generators.stylegan3_formats:generator_from_state_dict",
}

# family (``G.family``) -> "module:Class"; ``Class(**G.config())`` + ``load_state_dict`` rebuilds ``G``.
GENERATOR_CLASSES: dict[str, str] = {
    "stylegan2": "stylemix.generators.stylegan2:StyleGAN2Generator",
    "stylegan2-tf": "stylemix.generators.stylegan2:StyleGAN2Generator",
    "rosinality": "stylemix.generators.stylegan2:StyleGAN2Generator",
    "stylegan3-t": "stylemix.generators.stylegan3:StyleGAN3Generator",
    "stylegan3-r": "stylemix.generators.stylegan3:StyleGAN3Generator",
}

SAFETENSORS_FORMAT = "stylemix.generator"
SAFETENSORS_VERSION = "1"
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's legacy (non-zip) format starts with this pickled int
KEPT_ATTRIBUTES = ("w_avg_source",)  # plain attributes of a generator that describe() reports and a rebuild keeps


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load_network_file(path: str | os.PathLike, *, conv_clamp: float | None | str = "auto") -> Any:
    """Load a generator from any supported file, without running code from it.

    Args:
        path: the file; its format is detected from its bytes.
        conv_clamp: ``"auto"`` takes the file's value (NVIDIA pickles record it; NVIDIA state dicts get NVIDIA's
            default 256; rosinality and TensorFlow have none), a number or ``None`` overrides it.

    Returns:
        The generator in eval mode, on CPU, fp32, with ``source_file`` and ``source_sha256`` set.

    Raises:
        GeneratorLoadError: unreadable, truncated or unsafe files, and files of unsupported families (the message
            names what the file holds).
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    try:
        head = _open_head(path, 16)
    except OSError as exc:
        raise GeneratorLoadError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if not head:
        raise GeneratorLoadError(f"{name}: the file is empty")
    if is_safetensors_head(head):
        G = _from_safetensors(path, name, conv_clamp)
    elif head.startswith(b"PK"):  # torch.save's zip format
        G = _from_checkpoint(_torch_load(path), name, conv_clamp)
    else:
        obj = read_pickle(path)
        if isinstance(obj, int) and obj == _TORCH_LEGACY_MAGIC:  # legacy torch.save: let torch parse the rest
            G = _from_checkpoint(_torch_load(path), name, conv_clamp)
        elif isinstance(obj, Mapping) and not any(isinstance(v, PersistentRecord) for v in obj.values()):
            G = _from_checkpoint(obj, name, conv_clamp)  # a state dict or checkpoint dict pickled directly
        else:
            kind, network = classify_network(obj, name)
            G = _read(kind, network, name, conv_clamp)
    G.source_file, G.source_sha256 = name, file_sha256(path)
    return G.eval().requires_grad_(False)


def _read(kind: str, network: Any, name: str, conv_clamp: float | None | str) -> Any:
    module_name, attr = READERS[kind].split(":")
    try:
        reader = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        family = "StyleGAN3" if kind.startswith("stylegan3") else kind
        raise GeneratorLoadError(f"{name}: a {family} generator, which this install of stylemix cannot build "
                                 f"({exc})") from None
    return reader(network, source=name, conv_clamp=conv_clamp)


def _from_checkpoint(obj: Any, name: str, conv_clamp: float | None | str) -> Any:
    """A ``torch.load``-ed object (or a state dict from elsewhere) -> generator of the family its keys show."""
    inner = obj
    if isinstance(obj, Mapping):
        inner = next((obj[k] for k in ("G_ema", "state_dict") if isinstance(obj.get(k), Mapping)), obj)
    # StyleGAN3 state dicts have the Fourier-feature input layer and layers named L{i}_{size}_{channels}.
    if isinstance(inner, Mapping) and any(str(k).startswith("synthesis.input.") or
                                          re.match(r"synthesis\.L\d+_", str(k)) for k in inner):
        return _read("stylegan3-state-dict", dict(inner), name, conv_clamp)
    return _read("stylegan2-checkpoint", obj, name, conv_clamp)


def _torch_load(path: str) -> Any:
    name = os.path.basename(path)
    if _open_head(path).startswith(b"PK") and not zipfile.is_zipfile(path):  # zip signature, no central directory
        raise GeneratorLoadError(f"{name}: the file is truncated or corrupt (incomplete zip archive)")
    try:
        # rosinality's train.py stores its argparse options; a Namespace holds only plain values.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"the forbidden global '{found.group(1)}'" if found else _first_line(exc)
        raise GeneratorLoadError(f"{name}: refusing to load, the checkpoint references {what} "
                                 "(only tensors and plain containers are allowed)") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise GeneratorLoadError(f"{name}: the file is truncated or corrupt ({_first_line(exc)})") from None


# ----------------------------------------------------------------------------------------------------------------
# safetensors


def is_safetensors_head(head: bytes) -> bool:
    """Whether a file starting with ``head`` (>= 9 bytes) is safetensors: u64 header length, then a JSON object."""
    return len(head) >= 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] < 1 << 32


def _from_safetensors(path: str, name: str, conv_clamp: float | None | str) -> Any:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise GeneratorLoadError(f"{name}: not a readable safetensors file ({_first_line(exc)})") from None
    if metadata.get("format") != SAFETENSORS_FORMAT:  # someone's bare state dict saved as safetensors
        return _from_checkpoint(tensors, name, conv_clamp)
    if metadata.get("format_version") != SAFETENSORS_VERSION:
        raise GeneratorLoadError(f"{name}: stylemix safetensors format version {metadata.get('format_version')!r}; "
                                 f"this stylemix reads version {SAFETENSORS_VERSION}")
    family = metadata.get("family", "")
    if family not in GENERATOR_CLASSES:
        raise GeneratorLoadError(f"{name}: unknown generator family {family!r} in the metadata (known: "
                                 f"{', '.join(sorted(GENERATOR_CLASSES))})")
    module_name, cls_name = GENERATOR_CLASSES[family].split(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
        config = json.loads(metadata["config"])
        layout = json.loads(metadata["style_layout"])
        attributes = json.loads(metadata.get("attributes") or "{}")
    except (ImportError, AttributeError) as exc:
        raise GeneratorLoadError(f"{name}: a {family} generator, which this install of stylemix cannot build "
                                 f"({exc})") from None
    except (KeyError, json.JSONDecodeError) as exc:
        raise GeneratorLoadError(f"{name}: broken stylemix metadata ({type(exc).__name__}: {exc})") from None
    if conv_clamp != "auto" and "conv_clamp" in config:
        config["conv_clamp"] = conv_clamp
    try:
        G = cls(**config)
    except (TypeError, ValueError) as exc:
        raise GeneratorLoadError(f"{name}: the metadata config does not build a {family} generator ({exc})"
                                 ) from None
    _load_exact(G, tensors, name)
    ours = G.style_layout
    if (list(ours.slot_resolutions), ours.default_crossover) != (layout.get("slot_resolutions"),
                                                                 layout.get("default_crossover")):
        raise GeneratorLoadError(f"{name}: the metadata style layout disagrees with the rebuilt generator's")
    for key, value in attributes.items():
        if key in KEPT_ATTRIBUTES:
            setattr(G, key, value)
    G.converted_from = {"name": metadata.get("source_name"), "sha256": metadata.get("source_sha256"),
                        "stylemix_version": metadata.get("stylemix_version")}
    return G


def _load_exact(G: torch.nn.Module, tensors: Mapping[str, torch.Tensor], name: str) -> None:
    """``G.load_state_dict(tensors)``: every key, shape and dtype as ``G`` has them, or one line naming the first
    difference."""
    expected = G.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected tensor {unexpected[0]!r}"
        raise GeneratorLoadError(f"{name}: {what}; the tensors do not match the generator the metadata describes")
    for k, ref in expected.items():
        if tensors[k].shape != ref.shape or tensors[k].dtype != ref.dtype:
            raise GeneratorLoadError(f"{name}: {k!r} is {tensors[k].dtype} {list(tensors[k].shape)}, the generator "
                                     f"needs {ref.dtype} {list(ref.shape)}")
    G.load_state_dict(dict(tensors))


# ----------------------------------------------------------------------------------------------------------------


def _open_head(path: str, size: int = 4) -> bytes:
    """The first ``size`` bytes of ``path`` (format sniffing)."""
    with open(path, "rb") as fh:
        return fh.read(size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__

