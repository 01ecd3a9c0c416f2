"""Shared test fixtures: the ../shared data folder and small generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


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
