"""Where the arrays live: the one module that decides the device.

One mechanism: every module dispatches on the array it was given (:func:`array_module`, :func:`ndimage_module`)
and writes its body once for both array libraries, NumPy + SciPy on CPU and CuPy + cupyx.scipy on GPU.
:func:`get_backend` only decides where the generator runs and which array type its output becomes
(:meth:`Backend.from_torch`, DLPack: no copy on either device).

What a CUDA machine can use is probed once per process (:func:`cuda_status`): CuPy imports without a GPU but fails
on first use, so it is tested by running a tiny kernel. A missing part degrades instead of failing:

* torch on CUDA, CuPy and cuML: everything on the GPU;
* no cuML: rendering and post-processing on the GPU, k-means on the CPU (scikit-learn, the labels copied back);
* no CuPy: rendering on the GPU, everything after it on the CPU (the stack copied to the host once per image).

Each fallback says so in one warning per process (:func:`warn_once`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import platform
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import torch

from stylemix.errors import StylemixError

__all__ = ["Backend", "OK", "array_module", "available_devices", "cuda_status", "fallback_message", "gathers_variants",
           "get_backend", "gpu_kmeans_available", "host_kmeans_notice", "native_bfloat16", "ndimage_module", "to_numpy",
           "tune_host_allocator", "warn_once"]

OK = "ok"


@dataclasses.dataclass(frozen=True)
class Backend:
    """Where one run's generator works and which array library its outputs become.

    Attributes:
        torch_device: where the generator runs (``cpu`` or ``cuda:N``, the index always explicit for CUDA).
        xp: ``numpy`` or ``cupy``, the array type of :meth:`from_torch`; NumPy on a CUDA device without CuPy.
    """

    torch_device: torch.device
    xp: ModuleType

    @property
    def name(self) -> str:
        """``"cpu"`` or ``"cuda"``: the generator's device type."""
        return self.torch_device.type

    @property
    def on_gpu(self) -> bool:
        """Whether the arrays (not only the generator) live on the GPU."""
        return self.xp is not np

    def from_torch(self, t: torch.Tensor) -> Any:
        """A tensor on ``torch_device`` as an ``xp`` array: CuPy sharing its memory (DLPack), or NumPy (a view on
        CPU, one device-to-host copy when the generator is on CUDA without CuPy)."""
        t = t.detach()
        if not self.on_gpu:
            return t.cpu().numpy()
        return self.xp.from_dlpack(t.contiguous())

    def scope(self) -> Any:
        """A context in which CuPy allocates and launches on ``torch_device`` (``with cupy.cuda.Device(n):``),
        restoring the caller's current device on exit; nothing to do for NumPy arrays. CuPy works on its current
        device, which this module never changes for the whole process."""
        if not self.on_gpu:
            return contextlib.nullcontext()
        return self.xp.cuda.Device(self.torch_device.index)


def gathers_variants(device: torch.device) -> bool:
    """Whether the variants of a batch's images are rendered together (one call per crossover group over the
    batch) on ``device``: on a GPU, yes (larger launches fill it); on a CPU, no: each image's groups are their
    own calls, whose activations (a few variants x 512 channels at 32 px, ~12 MB) stay in the last-level cache,
    where a batch's groups (~100 MB at 8 images, fresh mappings under glibc's default allocator) do not. On the
    default generator, float32: 75 ms per image for its own groups against 108 ms gathered over 8 images; with
    the allocator tuned gathering gains ~15 % (``benchmarks/variant_stack.py``), but per-image calls also make a
    batch byte-identical to its images alone."""
    return device.type != "cpu"


@functools.lru_cache(maxsize=None)
def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions natively (a CUDA device that supports it; a CPU whose
    oneDNN has bfloat16 instructions, AVX-512 BF16 / AMX). Elsewhere bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def tune_host_allocator(keep_bytes: int = 1 << 30) -> bool:
    """Serve large host allocations from glibc's heap and keep up to ``keep_bytes`` of freed memory there for reuse
    (``mallopt`` ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``), for the whole process.

    torch allocates every CPU tensor afresh. Above glibc's mmap threshold (which its own rule keeps at 32 MB at most)
    each is a new mapping whose pages fault in one by one, and a 1024 px generator's 67 MB activations pay that on
    every image: on the 2-core machine, generating one image 179 -> 95 ms, ``segment`` 278 -> 189 ms
    (``benchmarks/variant_stack.py``; docs/benchmarks.md, Throughput). The cost: the process keeps its peak heap
    (3.7 instead of 2.4 GiB in ``benchmarks/export_throughput.py``). The ``stylemix`` command calls it; a library
    user may. glibc only: returns whether it took effect.
    """
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None or platform.libc_ver()[0] != "glibc":
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    value = int(min(keep_bytes, 2 ** 31 - 1))  # mallopt takes an int
    return bool(mallopt(m_mmap_threshold, value)) and bool(mallopt(m_trim_threshold, value))


def to_numpy(a: Any) -> np.ndarray:
    """Any NumPy/CuPy array or torch tensor as a host NumPy array (the only host copy point)."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if _is_cupy(a):
        return a.get()
    return np.asarray(a)


def array_module(a: Any) -> ModuleType:
    """``numpy`` or ``cupy``, whichever owns ``a`` (without importing cupy for NumPy input)."""
    return importlib.import_module("cupy") if _is_cupy(a) else np


def _is_cupy(a: Any) -> bool:
    return type(a).__module__.startswith("cupy")


def ndimage_module(a: Any) -> ModuleType:
    """``scipy.ndimage`` or ``cupyx.scipy.ndimage`` to match ``a``."""
    if array_module(a) is np:
        import scipy.ndimage
        return scipy.ndimage
    return importlib.import_module("cupyx.scipy.ndimage")


@functools.lru_cache(maxsize=None)
def cuda_status() -> dict[str, str]:
    """What of the GPU stack can run here: ``{"torch": ..., "cupy": ..., "cuml": ...}``, each ``"ok"`` or why not.

    Probed once per process. CuPy and cuML count only when torch sees a CUDA device.
    """
    if not torch.cuda.is_available():
        why = "torch sees no CUDA device"
        return {"torch": why, "cupy": why, "cuml": why}
    status = {"torch": OK}
    try:
        cupy = importlib.import_module("cupy")
        cupy.zeros(1).sum().item()  # cupy imports without a GPU; the first kernel is the real test
        status["cupy"] = OK
    except Exception as exc:  # ImportError or CUDARuntimeError
        status["cupy"] = f"CuPy is not usable ({type(exc).__name__}: {exc}); install stylemix[gpu]"
    try:
        importlib.import_module("cuml")
        status["cuml"] = OK if status["cupy"] == OK else "cuML needs CuPy"
    except Exception as exc:
        status["cuml"] = f"cuML is not usable ({type(exc).__name__}); install stylemix[gpu]"
    return status


def gpu_kmeans_available() -> bool:
    """Whether k-means on CuPy arrays runs on the GPU (cuML); else :class:`stylemix.cluster.KMeans` uses the CPU."""
    return cuda_status()["cuml"] == OK


def available_devices() -> dict[str, str]:
    """``{"cpu": "ok", "cuda": "ok" | what runs where | why not}`` for ``stylemix info``."""
    status = cuda_status()
    if status["torch"] != OK:
        return {"cpu": OK, "cuda": status["torch"]}
    fallback = fallback_message(status)
    return {"cpu": OK, "cuda": OK if fallback is None else f"partial: {fallback}"}


def fallback_message(status: dict[str, str]) -> str | None:
    """What runs on the CPU although torch has a CUDA device, in one line; ``None`` when nothing does.

    The same text wherever the fallback is noticed (:func:`get_backend`, a k-means fit), so :func:`warn_once`
    shows it once."""
    if status["torch"] != OK:
        return None
    if status["cupy"] != OK:
        return f"{status['cupy']}; rendering on the GPU, clustering and post-processing on the CPU"
    if status["cuml"] != OK:
        return f"{status['cuml']}; k-means on the CPU (scikit-learn), rendering and post-processing on the GPU"
    return None


@functools.lru_cache(maxsize=None)
def warn_once(message: str) -> None:
    """``warnings.warn(message)`` the first time this process sees ``message``, never again (a fallback is decided
    for the process, so repeating it for every image or every k-means fit would only bury other warnings)."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def host_kmeans_notice() -> None:
    """Say, once per process, that k-means on CuPy arrays runs on the CPU for want of cuML."""
    warn_once(fallback_message(cuda_status()) or "cuML is not usable; k-means on CuPy arrays runs on the CPU")


def get_backend(device: str | torch.device | None = "auto") -> Backend:
    """The backend for ``device``: ``"cpu"``, ``"cuda"`` (torch's current CUDA device), ``"cuda:N"`` or
    ``"auto"`` (CUDA when torch sees a device). Changes no process-wide state (see :meth:`Backend.scope`).

    On CUDA without CuPy or cuML the missing part runs on the CPU, with one warning (module docstring).

    Raises:
        StylemixError: ``cuda`` was asked for but torch sees no CUDA device, or the name is unknown.
    """
    device = str(device or "auto").lower()
    status = cuda_status()
    if device == "auto":
        device = "cuda" if status["torch"] == OK else "cpu"
    if device == "cpu":
        return Backend(torch.device("cpu"), np)
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if status["torch"] != OK:
            raise StylemixError(f"--device {device} is not available: {status['torch']}")
        # torch's "cuda" means its current device; pinned here so that CuPy's scope and DLPack agree on it
        index = int(device[5:]) if ":" in device else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise StylemixError(f"--device {device} is not available: torch sees {torch.cuda.device_count()} "
                                "CUDA device(s)")
        fallback = fallback_message(status)
        if fallback is not None:
            warn_once(fallback)
        xp = importlib.import_module("cupy") if status["cupy"] == OK else np
        return Backend(torch.device("cuda", index), xp)
    raise StylemixError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
