"""Shared test fixtures: the ../shared data folder, small generators, and the devices the backend-facing tests run
on (kornia's way: the device is a test parameter, not a separate code path)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# cpu: NumPy. cupy-emulated: the package's CuPy code path on the host (tests/emulated_cupy.py), always run.
# cuda: the real GPU stack, skipped with the reason when torch, CuPy or a device is missing (bin/gpu-check and
# --require-cuda make that a failure).
DEVICES = ("cpu", "cupy-emulated", "cuda")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--require-cuda", action="store_true",
                     help="fail, instead of skipping, the cuda cases when no usable GPU is here (bin/gpu-check)")


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A :class:`stylemix.backend.Backend` per device; tests move inputs with ``device.xp.asarray`` and compare
    outputs through :func:`stylemix.backend.to_numpy`."""
    from stylemix import backend, cluster
    if request.param == "cpu":
        return backend.get_backend("cpu")
    if request.param == "cupy-emulated":
        import emulated_cupy
        xp = emulated_cupy.install(monkeypatch)
        monkeypatch.setattr(cluster, "host_kmeans_notice", lambda: None)  # no cuML here: the host fallback is meant
        return backend.Backend(torch.device("cpu"), xp)
    status = backend.cuda_status()
    if status["cupy"] != backend.OK:
        if request.config.getoption("--require-cuda"):
            pytest.fail(f"CUDA required: {status['cupy']}")
        pytest.skip(f"no CUDA array backend: {status['cupy']}")
    return backend.get_backend("cuda")


def use_backend(monkeypatch: pytest.MonkeyPatch, chosen) -> None:
    """Make every stylemix module that picks a backend pick ``chosen`` (e.g. the emulated CuPy one for a CPU
    generator), wherever the pipeline asks :func:`stylemix.backend.get_backend`."""
    import sys
    from stylemix import backend
    original = backend.get_backend
    for name, module in list(sys.modules.items()):
        if name.startswith("stylemix") and getattr(module, "get_backend", None) is original:
            monkeypatch.setattr(module, "get_backend", lambda device="auto": chosen)


@contextlib.contextmanager
def tf32_off():
    """TF32 off for CUDA matmuls and convolutions inside, the process's settings restored after (parity tests compare
    against float32 CPU results; TF32 keeps 10 mantissa bits)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.fixture
def no_tf32():
    """:func:`tf32_off` for one test."""
    with tf32_off():
        yield


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared data folder {SHARED} is not beside the repository")
    return SHARED


@pytest.fixture(autouse=True)
def pickle_canary(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """The fixtures' embedded code appends to $PICKLE_CANARY_PATH if it is ever executed: no test may run it."""
    path = tmp_path_factory.mktemp("canary") / "pickle-canary"
    monkeypatch.setenv("PICKLE_CANARY_PATH", str(path))
    yield path
    assert not path.exists(), "code embedded in a network pickle was executed"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (the machine is shared; parity tolerances were set for 1-2 threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shapes():
    from stylemix.generators.shapes import ShapesGenerator
    return ShapesGenerator().eval()


def base_styles(G, seed: int) -> torch.Tensor:
    """``ws [1, num_ws, w_dim]`` of ``seed`` (NVlabs latent, psi = 1)."""
    from stylemix.mixing import seed_to_z
    with torch.no_grad():
        return G.mapping(torch.from_numpy(seed_to_z(seed, G.z_dim)))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


@pytest.fixture(autouse=True, scope="session")
def empty_bank_cache(tmp_path_factory: pytest.TempPathFactory):
    """The user's bank cache (stylemix.parts.cache) moved to an empty folder for the whole run: a bank the developer
    fitted earlier for a test generator would otherwise change what ``parts="auto"`` resolves to. Tests of the
    cache point ``STYLEMIX_CACHE`` at a folder of their own."""
    import os
    before = os.environ.get("STYLEMIX_CACHE")
    os.environ["STYLEMIX_CACHE"] = str(tmp_path_factory.mktemp("stylemix-cache"))
    yield
    if before is None:
        os.environ.pop("STYLEMIX_CACHE", None)
    else:
        os.environ["STYLEMIX_CACHE"] = before
