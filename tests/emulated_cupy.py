"""A stand-in for CuPy on the host, so that the package's CuPy code path runs in CI without a GPU.

Its arrays are a NumPy subclass whose type lives in a ``cupy`` module, so :func:`stylemix.backend.array_module`
takes every ``xp is not np`` branch (cupyx resampling, the ``ndimage`` component cleaning, k-means on a host copy
for want of cuML, ``Backend.scope``). Functions are NumPy's with array results re-typed. It emulates the API only:
what it checks is that the CuPy path is written against CuPy names and agrees with the NumPy path, not CUDA itself.
"""

from __future__ import annotations

import functools
import sys
import types

import numpy as np
import scipy.ndimage


class ndarray(np.ndarray):
    """A "device" array: ``.get()`` copies it to the host, as ``cupy.ndarray.get`` does."""

    def get(self) -> np.ndarray:
        return np.asarray(self).copy()


ndarray.__module__ = "cupy._core.core"


def _typed(value):
    if isinstance(value, np.ndarray) and not isinstance(value, ndarray):
        return value.view(ndarray)
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    return value


def _wrap(f):
    @functools.wraps(f)
    def call(*args, **kwargs):
        return _typed(f(*args, **kwargs))
    return call


class _Device:
    """``cupy.cuda.Device(i)`` as a context manager; records the devices entered (tests read ``entered``)."""

    entered: list[int | None] = []

    def __init__(self, index: int | None = None) -> None:
        self.id = index

    def __enter__(self) -> "_Device":
        _Device.entered.append(self.id)
        return self

    def __exit__(self, *exc) -> None:
        return None


class _Module(types.ModuleType):
    def __init__(self, name: str, source: types.ModuleType) -> None:
        super().__init__(name)
        self._source = source

    def __repr__(self) -> str:
        return f"<emulated module {self.__name__!r}>"

    def __getattr__(self, name: str):
        if name.startswith("__"):  # module machinery (__spec__, __file__, ...) is not NumPy's
            raise AttributeError(name)
        value = getattr(self._source, name)
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, np.ufunc)) or (
                callable(value) and not isinstance(value, type) and hasattr(value, "__wrapped__")):
            return _wrap(value)
        if callable(value) and type(value).__name__ == "_ArrayFunctionDispatcher":
            return _wrap(value)
        return value


def make() -> dict[str, types.ModuleType]:
    """The modules to put in ``sys.modules``: ``cupy`` (with ``cuda.Device``, ``from_dlpack``, ``asnumpy``) and
    ``cupyx.scipy.ndimage``."""
    cupy = _Module("cupy", np)
    cupy.ndarray = ndarray
    cupy.asarray = lambda a, dtype=None: np.asarray(a, dtype=dtype).view(ndarray)
    cupy.from_dlpack = lambda t: np.from_dlpack(t.cpu() if hasattr(t, "cpu") else t).view(ndarray)
    cupy.asnumpy = lambda a: np.asarray(a).copy()
    cupy.cuda = types.SimpleNamespace(Device=_Device)
    nd = _Module("cupyx.scipy.ndimage", scipy.ndimage)
    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy, cupyx_scipy.ndimage = cupyx_scipy, nd
    return {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": cupyx_scipy, "cupyx.scipy.ndimage": nd}


def install(monkeypatch) -> types.ModuleType:
    """Put the emulation in ``sys.modules`` for one test; returns the ``cupy`` stand-in."""
    modules = make()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return modules["cupy"]
