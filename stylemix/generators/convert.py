"""``stylemix convert``: any supported generator file -> one safetensors file that rebuilds it exactly.

Above both the file readers (:mod:`stylemix.generators.files`, which read what this writes) and the registry
(:func:`~stylemix.generators.registry.load_generator`, which this uses to read the source).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import stylemix
from stylemix.errors import GeneratorLoadError
from stylemix.generators.files import GENERATOR_CLASSES, KEPT_ATTRIBUTES, SAFETENSORS_FORMAT, SAFETENSORS_VERSION
from stylemix.generators.registry import load_generator
from stylemix.io import file_sha256

__all__ = ["convert_to_safetensors"]


def convert_to_safetensors(source: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False
                           ) -> dict[str, Any]:
    """Write the generator of ``source`` (any supported file) to ``out`` as one safetensors file.

    The file holds the weights (``G.state_dict()``, fp32) and, in its metadata, everything that rebuilds the
    generator: ``family``, ``config`` (JSON constructor kwargs), ``style_layout``, ``source_name``,
    ``source_sha256`` and ``stylemix_version``. It is written to a temporary file next to ``out`` and renamed, so an
    error never leaves a partial ``out``.

    Returns:
        A summary: ``out``, ``family``, ``tensors``, ``bytes``, ``sha256`` of ``out``, ``source_sha256``.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.suffix != ".safetensors":
        raise GeneratorLoadError(f"the output must end in .safetensors, got {out.name!r}")
    if out.exists() and not overwrite:
        raise GeneratorLoadError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if os.path.isfile(source) and out.exists() and os.path.samefile(source, out):
        raise GeneratorLoadError(f"{out} is the source file itself")
    G = load_generator(source)
    family = getattr(G, "family", type(G).__name__)
    if family == "mobilestylegan":
        raise GeneratorLoadError("the default MobileStyleGAN generator is read from an OpenVINO IR (XML and raw "
                                 "weights), which already carries no code; load it by name, there is nothing to "
                                 "convert")
    if family not in GENERATOR_CLASSES or not callable(getattr(G, "config", None)):
        raise GeneratorLoadError(f"cannot convert a {family!r} generator: only the families "
                                 f"{', '.join(sorted(GENERATOR_CLASSES))} are rebuilt from safetensors")
    layout = G.style_layout
    metadata = {
        "format": SAFETENSORS_FORMAT, "format_version": SAFETENSORS_VERSION, "family": family,
        "config": json.dumps(G.config()),
        "style_layout": json.dumps({"slot_resolutions": list(layout.slot_resolutions),
                                    "groups": {k: list(v) for k, v in layout.groups.items()},
                                    "default_crossover": layout.default_crossover}),
        "attributes": json.dumps({k: getattr(G, k) for k in KEPT_ATTRIBUTES if hasattr(G, k)}),
        "source_name": getattr(G, "source_file", None) or os.fspath(source),
        "source_sha256": getattr(G, "source_sha256", None) or "",
        "stylemix_version": stylemix.__version__,
    }
    # clone: safetensors refuses tensors that share memory, and a state dict may hold views.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in G.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, os.fspath(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file, not the writer's private mode
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"out": os.fspath(out), "family": family, "tensors": len(tensors), "bytes": out.stat().st_size,
            "sha256": file_sha256(out), "source_sha256": metadata["source_sha256"]}
