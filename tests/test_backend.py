import builtins

import numpy as np
import pytest
import torch

from stylemix import backend
from stylemix.errors import StylemixError


def test_cpu_backend_shares_memory_with_torch():
    b = backend.get_backend("cpu")
    assert b.xp is np and b.torch_device.type == "cpu"
    t = torch.arange(6.0).reshape(2, 3)
    a = b.from_torch(t)
    t[0, 0] = 42
    assert a[0, 0] == 42  # a view, not a copy


def test_auto_falls_back_to_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "no GPU here"))
    assert backend.get_backend("auto").name == "cpu"
    with pytest.raises(StylemixError, match="cuda is not available: no GPU here"):
        backend.get_backend("cuda")


def test_cuda_status_reports_missing_cupy(monkeypatch):
    backend.cuda_status.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name.split(".")[0] in ("cupy", "cuml"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    try:
        ok, why = backend.cuda_status()
        assert not ok and "CuPy" in why and "stylemix[gpu]" in why
    finally:
        backend.cuda_status.cache_clear()


def test_unknown_device():
    with pytest.raises(StylemixError, match="unknown device"):
        backend.get_backend("tpu")


def test_array_module_dispatch():
    assert backend.array_module(np.zeros(2)) is np
    assert backend.ndimage_module(np.zeros(2)).__name__ == "scipy.ndimage"
    np.testing.assert_array_equal(backend.to_numpy(torch.ones(2)), [1, 1])


def test_import_needs_no_gpu_libraries():
    import subprocess
    import sys
    code = ("import sys; import stylemix; import stylemix.segment, stylemix.cli; "
            "bad = [m for m in ('cupy', 'cuml', 'ultralytics', 'openvino', 'ray') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
