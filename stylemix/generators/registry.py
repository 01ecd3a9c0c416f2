"""``load_generator``: a registered name or a file path -> a :class:`~stylemix.generators.base.Generator`."""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable

import torch

from stylemix.errors import GeneratorLoadError

__all__ = ["DEFAULT_GENERATOR", "load_generator", "register_generator", "registered_generators"]

# name -> "module:callable"; the callable takes no arguments and returns a generator. Imported lazily so that
# `import stylemix` never pulls in an adapter's optional dependencies.
_REGISTRY: dict[str, str | Callable[[], Any]] = {
    "mobilestylegan-ffhq": "stylemix.generators.mobilestylegan:load_mobilestylegan_ffhq",
    "shapes": "stylemix.generators.shapes:ShapesGenerator",
}

DEFAULT_GENERATOR = "mobilestylegan-ffhq"


def register_generator(name: str, factory: str | Callable[[], Any]) -> None:
    """Make ``load_generator(name)`` call ``factory()`` (a callable or a ``"module:function"`` string)."""
    _REGISTRY[name] = factory


def registered_generators() -> list[str]:
    return sorted(_REGISTRY)


def load_generator(source: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Any:
    """Load a generator from a registered name or a file, in eval mode, on ``device``.

    Files (:func:`stylemix.generators.files.load_network_file`; the format is detected from the content, and
    nothing inside a file is ever executed): NVIDIA ``network-snapshot-*.pkl`` in every pickle protocol, TensorFlow
    StyleGAN2 pickles, rosinality ``.pt`` checkpoints, bare NVIDIA-layout state dicts, and ``.safetensors`` files
    written by ``stylemix convert``.
    ``None`` loads the default generator (``mobilestylegan-ffhq``).
    """
    source = DEFAULT_GENERATOR if source is None else source
    key = os.fspath(source)
    if key in _REGISTRY:
        factory = _REGISTRY[key]
        if isinstance(factory, str):
            module_name, attr = factory.split(":")
            try:
                factory = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise GeneratorLoadError(f"generator {key!r} is not available in this install ({exc})") from None
        G = factory()
    elif os.path.isfile(key):
        from stylemix.generators.files import load_network_file
        G = load_network_file(key)
    elif os.path.exists(key):
        raise GeneratorLoadError(f"network {key!r} is not a file")
    else:
        raise GeneratorLoadError(
            f"unknown network {key!r}: not a file and not a registered name ({', '.join(registered_generators())})")
    return G.eval().requires_grad_(False).to(device)
