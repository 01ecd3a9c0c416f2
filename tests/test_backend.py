"""The device decision (stylemix.backend): what runs where on each machine, decided once, with one warning per
fallback and no process-wide device change. GPU machines are mocked: torch's CUDA queries, the probe's result and
CuPy itself (tests/emulated_cupy.py)."""

import builtins
import warnings

import numpy as np
import pytest
import torch

import emulated_cupy
from stylemix import backend, cluster
from stylemix.errors import StylemixError

NO_TORCH = {"torch": "torch sees no CUDA device", "cupy": "torch sees no CUDA device",
            "cuml": "torch sees no CUDA device"}
NO_CUPY = {"torch": "ok", "cupy": "CuPy is not usable (ImportError: no cupy); install stylemix[gpu]",
           "cuml": "cuML is not usable (ImportError); install stylemix[gpu]"}
NO_CUML = {"torch": "ok", "cupy": "ok", "cuml": "cuML is not usable (ImportError); install stylemix[gpu]"}
FULL = {"torch": "ok", "cupy": "ok", "cuml": "ok"}


@pytest.fixture
def gpu_machine(monkeypatch):
    """torch reports two CUDA devices, the current one being 1; the status is set by the test."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    backend.warn_once.cache_clear()
    yield lambda status: monkeypatch.setattr(backend, "cuda_status", lambda: status)
    backend.warn_once.cache_clear()


def test_cpu_backend_shares_memory_with_torch():
    b = backend.get_backend("cpu")
    assert b.xp is np and b.torch_device.type == "cpu" and b.name == "cpu" and not b.on_gpu
    t = torch.arange(6.0).reshape(2, 3)
    a = b.from_torch(t)
    t[0, 0] = 42
    assert a[0, 0] == 42  # a view, not a copy


def test_auto_falls_back_to_cpu_without_gpu(gpu_machine):
    gpu_machine(NO_TORCH)
    assert backend.get_backend("auto").name == "cpu"
    with pytest.raises(StylemixError, match="cuda is not available: torch sees no CUDA device"):
        backend.get_backend("cuda")


def test_torch_without_cupy_renders_on_gpu_clusters_on_cpu_with_one_warning(gpu_machine):
    gpu_machine(NO_CUPY)
    with pytest.warns(RuntimeWarning, match="rendering on the GPU, clustering and post-processing on the CPU"):
        b = backend.get_backend("cuda:1")
    assert b.torch_device == torch.device("cuda", 1) and b.xp is np and not b.on_gpu
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second backend (the next segment_many call) warns no more
        assert backend.get_backend("auto").torch_device == torch.device("cuda", 1)  # auto: torch's device is enough
    assert backend.available_devices()["cuda"].startswith("partial: CuPy is not usable")


def test_without_cuml_kmeans_runs_on_cpu_and_labels_come_back_on_the_device(gpu_machine, monkeypatch):
    gpu_machine(NO_CUML)
    cp = emulated_cupy.install(monkeypatch)
    with pytest.warns(RuntimeWarning, match=r"k-means on the CPU \(scikit-learn\)"):
        b = backend.get_backend("cuda")
    assert b.xp is cp and b.torch_device == torch.device("cuda", 1)  # "cuda" pinned to torch's current device
    X = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    X[:100] += 8
    want = cluster.KMeans(3, random_state=2).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same fallback, already announced by get_backend: no second warning
        got = cluster.KMeans(3, random_state=2).fit(cp.asarray(X))
    assert backend.array_module(got.labels_) is cp and backend.array_module(got.cluster_centers_) is cp
    np.testing.assert_array_equal(backend.to_numpy(got.labels_), want.labels_)
    np.testing.assert_array_equal(backend.to_numpy(got.cluster_centers_), want.cluster_centers_)


def test_kmeans_fallback_warns_once_by_itself(gpu_machine, monkeypatch):
    gpu_machine(NO_CUML)
    cp = emulated_cupy.install(monkeypatch)
    X = cp.asarray(np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            cluster.KMeans(2).fit(X)
    assert [str(w.message) for w in caught] == [backend.fallback_message(NO_CUML)]


def test_full_gpu_stack_warns_nothing_and_uses_cuml(gpu_machine, monkeypatch):
    gpu_machine(FULL)
    cp = emulated_cupy.install(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = backend.get_backend("cuda:0")
    assert b.xp is cp and b.torch_device.index == 0 and backend.available_devices()["cuda"] == "ok"
    fitted = {}

    class FakeCumlKMeans:  # what cuml.cluster.KMeans is called with, and its cupy outputs
        def __init__(self, **kwargs):
            fitted["kwargs"] = kwargs

        def fit(self, X):
            fitted["X"] = X
            self.labels_ = cp.asarray(np.array([1, 1, 0], np.int32))
            self.cluster_centers_ = cp.asarray(np.array([[5.0], [0.0]], np.float32))
            self.inertia_ = 0.5
            return self

    import types
    monkeypatch.setitem(__import__("sys").modules, "cuml", types.ModuleType("cuml"))
    monkeypatch.setitem(__import__("sys").modules, "cuml.cluster", types.SimpleNamespace(KMeans=FakeCumlKMeans))
    km = cluster.KMeans(2, n_init=2, random_state=7).fit(cp.asarray(np.array([[0.0], [0.1], [5.0]], np.float32)))
    assert fitted["kwargs"] == {"n_clusters": 2, "n_init": 2, "max_iter": 100, "tol": 1e-4, "random_state": 7,
                                "output_type": "cupy"}
    assert backend.array_module(fitted["X"]) is cp  # no host copy on the way in
    assert backend.to_numpy(km.labels_).tolist() == [0, 0, 1]  # canonical order: the larger cluster is 0
    assert km.inertia_ == 0.5


def test_get_backend_changes_no_process_state_and_scope_uses_the_index(gpu_machine, monkeypatch):
    gpu_machine(FULL)
    cp = emulated_cupy.install(monkeypatch)
    monkeypatch.setattr(emulated_cupy._Device, "entered", [])
    b = backend.get_backend("cuda:1")
    assert emulated_cupy._Device.entered == []  # choosing a backend does not touch CuPy's current device
    with b.scope():
        pass
    assert emulated_cupy._Device.entered == [1]
    assert isinstance(backend.get_backend("cpu").scope().__enter__(), type(None))  # CPU: nothing entered
    assert cp is b.xp


def test_device_index_out_of_range_and_unknown_names(gpu_machine):
    gpu_machine(NO_CUPY)
    with pytest.raises(StylemixError, match="torch sees 2 CUDA device"):
        backend.get_backend("cuda:2")
    for bad in ("tpu", "cuda:x", "cuda1"):
        with pytest.raises(StylemixError, match="unknown device"):
            backend.get_backend(bad)


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
        status = backend.cuda_status()
        assert status["torch"] == "ok" and "CuPy" in status["cupy"] and "stylemix[gpu]" in status["cupy"]
        assert status["cuml"] != "ok"
    finally:
        backend.cuda_status.cache_clear()


def test_cuda_status_with_cupy_but_no_cuml(monkeypatch):
    backend.cuda_status.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    emulated_cupy.install(monkeypatch)
    monkeypatch.setitem(__import__("sys").modules, "cuml", None)  # an import of cuml raises ImportError
    try:
        status = backend.cuda_status()
        assert status["torch"] == status["cupy"] == "ok" and "cuML" in status["cuml"]
        assert backend.gpu_kmeans_available() is False
    finally:
        backend.cuda_status.cache_clear()


def test_array_module_dispatch(monkeypatch):
    assert backend.array_module(np.zeros(2)) is np and backend.array_module(3.0) is np
    assert backend.ndimage_module(np.zeros(2)).__name__ == "scipy.ndimage"
    np.testing.assert_array_equal(backend.to_numpy(torch.ones(2)), [1, 1])
    cp = emulated_cupy.install(monkeypatch)
    a = cp.asarray(np.ones(2))
    assert backend.array_module(a) is cp and backend.ndimage_module(a).__name__ == "cupyx.scipy.ndimage"
    assert type(backend.to_numpy(a)) is np.ndarray


def test_import_needs_no_gpu_libraries():
    import subprocess
    import sys
    code = ("import sys; import stylemix; import stylemix.segment, stylemix.cli; "
            "bad = [m for m in ('cupy', 'cuml', 'ultralytics', 'openvino', 'ray') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tf32_switch_restores_the_process_settings():
    from conftest import tf32_off
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with tf32_off():
                assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
                raise RuntimeError("a failing test inside")
        assert torch.backends.cudnn.allow_tf32 is True  # restored even when the test fails
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_host_allocator_is_tuned_on_glibc_only(monkeypatch):
    import platform
    from stylemix import backend
    assert backend.tune_host_allocator() == (platform.libc_ver()[0] == "glibc")
    monkeypatch.setattr(backend.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert backend.tune_host_allocator() is False  # nothing called where mallopt is not glibc's
