"""Where the arrays live: the one module that decides the device.

Every other module asks :func:`get_backend` (or :func:`array_module` on an array it was given) and writes its body
once for both array libraries: NumPy + SciPy on CPU, CuPy + cupyx.scipy on GPU. Torch tensors made by the generator
cross to the array side with DLPack (no copy on either device).

CuPy imports without a GPU but fails on first use, so availability is probed by running a tiny kernel, once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
from types import ModuleType
from typing import Any

import numpy as np
import torch

from stylemix.errors import StylemixError


@dataclasses.dataclass(frozen=True)
class Backend:
    """An array library and the torch device that feeds it.

    Attributes:
        name: ``"cpu"`` or ``"cuda"``.
        xp: ``numpy`` or ``cupy``.
        ndimage: ``scipy.ndimage`` or ``cupyx.scipy.ndimage``.
        torch_device: where generators run.
    """

    name: str
    xp: ModuleType
    ndimage: ModuleType
    torch_device: torch.device

    def from_torch(self, t: torch.Tensor) -> Any:
        """A tensor on ``torch_device`` as an ``xp`` array sharing its memory (DLPack)."""
        t = t.detach()
        if self.name == "cpu":
            return t.cpu().numpy()
        return self.xp.from_dlpack(t.contiguous())

    def asarray(self, a: Any) -> Any:
        return self.xp.asarray(a)

    def scope(self) -> Any:
        """A context in which CuPy works on ``torch_device`` (``with cupy.cuda.Device(n):``), restoring the caller's
        current device after; nothing to do on CPU. CuPy launches kernels on its current device, which this module
        never changes for the process."""
        if self.name == "cpu":
            return contextlib.nullcontext()
        return self.xp.cuda.Device(self.torch_device.index or 0)


def to_numpy(a: Any) -> np.ndarray:
    """Any NumPy/CuPy array or torch tensor as a host NumPy array (the only host copy point)."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):  # cupy.ndarray
        return a.get()
    return np.asarray(a)


def array_module(a: Any) -> ModuleType:
    """``numpy`` or ``cupy``, whichever owns ``a`` (without importing cupy for NumPy input)."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np
    if type(a).__module__.startswith("cupy"):
        return importlib.import_module("cupy")
    return np


def ndimage_module(a: Any) -> ModuleType:
    """``scipy.ndimage`` or ``cupyx.scipy.ndimage`` to match ``a``."""
    if array_module(a) is np:
        import scipy.ndimage
        return scipy.ndimage
    return importlib.import_module("cupyx.scipy.ndimage")


@functools.lru_cache(maxsize=None)
def cuda_status() -> tuple[bool, str]:
    """Whether the GPU backend can run here, and why not (torch CUDA, CuPy on a device, cuML)."""
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    try:
        cupy = importlib.import_module("cupy")
        cupy.zeros(1).sum().item()  # cupy imports without a GPU; the first kernel is the real test
    except Exception as exc:  # ImportError or CUDARuntimeError
        return False, f"CuPy is not usable ({type(exc).__name__}: {exc}); install stylemix[gpu]"
    try:
        importlib.import_module("cuml")
    except Exception as exc:
        return False, f"cuML is not usable ({type(exc).__name__}); install stylemix[gpu]"
    return True, "ok"


def available_devices() -> dict[str, str]:
    """``{"cpu": "ok", "cuda": "ok" | reason}`` for ``stylemix info``."""
    ok, why = cuda_status()
    return {"cpu": "ok", "cuda": "ok" if ok else why}


def get_backend(device: str | None = "auto") -> Backend:
    """The backend for ``device``: ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"auto"`` (CUDA when usable).

    Raises:
        StylemixError: ``cuda`` was asked for but torch/CuPy/cuML cannot use a GPU here.
    """
    device = (device or "auto").lower()
    if device == "auto":
        device = "cuda" if cuda_status()[0] else "cpu"
    if device == "cpu":
        import scipy.ndimage
        return Backend("cpu", np, scipy.ndimage, torch.device("cpu"))
    if device.startswith("cuda"):
        ok, why = cuda_status()
        if not ok:
            raise StylemixError(f"--device {device} is not available: {why}")
        cupy = importlib.import_module("cupy")
        index = int(device.split(":")[1]) if ":" in device else 0
        return Backend("cuda", cupy, importlib.import_module("cupyx.scipy.ndimage"), torch.device("cuda", index))
    raise StylemixError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
