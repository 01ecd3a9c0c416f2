"""Rendering the base image and the variant stack, through the optional hooks of the :class:`Generator` protocol.

The protocol requires only ``mapping`` and ``synthesis`` (and the shape attributes); the speed hooks
``synthesis_prefixes`` / ``synthesis_prefix`` / ``synthesis_suffix`` / ``features_suffix`` / ``features`` are
optional. The free functions here call a hook when the object has it and otherwise fall back to full synthesis, so
a plain object that follows the protocol segments exactly like the same network subclassing
:class:`~stylemix.generators.base.GeneratorBase` (whose methods are the same fallbacks).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from stylemix import mixing
from stylemix.generators.base import FullSynthesisState, GeneratorBase, resize_image
from stylemix.vectors import project_channels

if TYPE_CHECKING:
    from stylemix.segment import SegmentConfig


def generator_device(G: Any) -> torch.device:
    """The device of ``G``'s weights (CPU when it has none)."""
    for t in list(G.parameters()) + list(G.buffers()) if isinstance(G, torch.nn.Module) else []:
        return t.device
    return torch.device("cpu")


def has_features(G: Any) -> bool:
    """Whether ``G`` exposes feature maps: a ``features`` or ``features_suffix`` of its own (the base class's
    ``features`` only raises, so it does not count)."""
    if getattr(type(G), "features_suffix", GeneratorBase.features_suffix) is not GeneratorBase.features_suffix:
        return True
    method = getattr(type(G), "features", None)
    if method is None:
        return callable(getattr(G, "features", None))
    return method is not GeneratorBase.features


def synthesis_prefix(G: Any, ws: torch.Tensor, crossover: int, noise_mode: str = "const") -> Any:
    """``G.synthesis_prefix`` when ``G`` has it, else a state that makes the suffix render in full."""
    hook = getattr(G, "synthesis_prefix", None)
    return FullSynthesisState(int(crossover)) if hook is None else hook(ws, int(crossover), noise_mode=noise_mode)


def synthesis_prefixes(G: Any, ws: torch.Tensor, crossovers: list[int], noise_mode: str = "const"
                       ) -> dict[int, Any]:
    """``{c: prefix state}`` for each crossover: ``G.synthesis_prefixes`` or one :func:`synthesis_prefix` each."""
    hook = getattr(G, "synthesis_prefixes", None)
    if hook is not None:
        return hook(ws, [int(c) for c in crossovers], noise_mode=noise_mode)
    return {int(c): synthesis_prefix(G, ws, int(c), noise_mode) for c in crossovers}


def synthesis_suffix(G: Any, state: Any, ws: torch.Tensor, resolution: int | None = None,
                     noise_mode: str = "const") -> torch.Tensor:
    """Finish ``ws [N, num_ws, w_dim]`` from ``state`` -> ``img [N, 3, r, r]`` (``G.synthesis_suffix``, else
    ``G.synthesis`` area-resized to ``resolution``)."""
    hook = getattr(G, "synthesis_suffix", None)
    if hook is not None:
        return hook(state, ws, resolution, noise_mode=noise_mode)
    return resize_image(G.synthesis(ws, noise_mode=noise_mode), resolution)


def features_suffix(G: Any, state: Any, ws: torch.Tensor, resolution: int, feature_dim: int | None = None,
                    noise_mode: str = "const") -> torch.Tensor:
    """Feature maps ``[N, D, r, r]`` of ``ws`` at ``resolution``: ``G.features_suffix``, else ``G.features``
    resized and projected to ``feature_dim`` channels (:func:`stylemix.vectors.project_channels`)."""
    hook = getattr(G, "features_suffix", None)
    if hook is not None:
        return hook(state, ws, resolution, feature_dim, noise_mode=noise_mode)
    feats = resize_image(G.features(ws, resolution, noise_mode=noise_mode), resolution)
    return feats if feature_dim is None else project_channels(feats, feature_dim)


@contextlib.contextmanager
def noise_stream(seed: int, noise_mode: str, device: torch.device) -> Iterator[None]:
    """For ``noise_mode="random"``: torch's generator seeded from ``seed``'s noise stream inside, restored after,
    so that the same inputs give the same noise (and masks). Other modes draw nothing: no effect."""
    if noise_mode != "random":
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(mixing.stream(seed, mixing.STREAM_NOISE).integers(2 ** 63)))
        yield


def render_variants(G: Any, ws_base: torch.Tensor, ws_mix: torch.Tensor, crossovers: np.ndarray,
                    cfg: "SegmentConfig") -> tuple[torch.Tensor, torch.Tensor]:
    """The base image at full resolution and the variant stack at the analysis resolution.

    The fast path runs the base's layers below each crossover once (:func:`synthesis_prefixes`), finishes each group
    of variants sharing a crossover from its state, and stops them at the analysis resolution, taking their feature
    maps (projected to ``feature_dim`` channels, :func:`features_suffix`) or their partial RGB image; ``cfg.exact``
    renders everything in full and area-resizes the RGB. Uses ``cfg.analysis_resolution``, ``noise_mode``,
    ``exact``, ``descriptor``, ``feature_dim`` and ``batch_size``.

    Returns:
        ``(image [1, 3, H, W], stack [N, C, r, r])``, variants in their original order.
    """
    r, nm = cfg.analysis_resolution, cfg.noise_mode
    if cfg.exact:
        image = G.synthesis(ws_base, noise_mode=nm)
        return image, torch.cat([resize_image(G.synthesis(ws_mix[i:i + cfg.batch_size], noise_mode=nm), r)
                                 for i in range(0, len(ws_mix), cfg.batch_size)])
    states = synthesis_prefixes(G, ws_base, sorted({int(c) for c in crossovers}), noise_mode=nm)
    image = synthesis_suffix(G, states[max(states)], ws_base, None, noise_mode=nm)  # the deepest state: least left
    if cfg.descriptor == "features":
        render = (lambda state, w: features_suffix(G, state, w, r, cfg.feature_dim, noise_mode=nm))
    else:
        render = (lambda state, w: synthesis_suffix(G, state, w, r, noise_mode=nm))
    order, parts = [], []
    for c, state in states.items():
        rows = np.flatnonzero(crossovers == c)
        for i in range(0, len(rows), cfg.batch_size):
            order.extend(rows[i:i + cfg.batch_size])
            parts.append(render(state, ws_mix[rows[i:i + cfg.batch_size]]))
    return image, torch.cat(parts)[torch.from_numpy(np.argsort(order))]
