"""Rendering a bank's cues for one image: the base image's features and its co-variation signature under the
bank's shared style variants (the same latents for every seed)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from stylemix import mixing
from stylemix.parts.bank import PartSettings

__all__ = ["image_cues", "signature_latents"]


def signature_latents(G: Any, settings: PartSettings) -> np.ndarray:
    """``float32 [N, z_dim]``: the shared variants' latents (the same for every seed)."""
    rng = mixing.stream(settings.signature_seed, mixing.STREAM_SIGNATURE)
    return rng.standard_normal((settings.signature_variants, G.z_dim)).astype(np.float32)


@torch.inference_mode()
def image_cues(G: Any, ws_base: torch.Tensor, latents: np.ndarray, crossovers: Sequence[int], cfg: Any,
               base: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The base image's features ``[C, r, r]`` and the shared signature stack ``[N, D, r, r]`` of one image.

    ``ws_base [1, num_ws, w_dim]``; ``latents [N, z_dim]`` the bank's shared latents; ``crossovers`` cycled over
    them; ``cfg`` a resolved :class:`~stylemix.config.SegmentConfig` (analysis resolution, feature dimension,
    truncation, noise mode, batch size). ``base``: those features already rendered (the boundary stage's, the same
    values), else they are rendered here.
    """
    from stylemix.render import features_suffix, generator_device, synthesis_prefixes, variant_stack
    device = generator_device(G)
    z = torch.from_numpy(latents).to(device)
    c = torch.zeros(len(z), G.c_dim, device=device) if G.c_dim else None
    ws_other = G.mapping(z, c, truncation_psi=cfg.truncation_psi, truncation_cutoff=cfg.truncation_cutoff)
    cx = mixing.variant_crossovers(0, len(latents), list(crossovers), G.num_ws)
    ws_mix = mixing.mix_styles(ws_base, ws_other, cx)
    states = synthesis_prefixes(G, ws_base, sorted({int(x) for x in cx}), noise_mode=cfg.noise_mode)
    r = cfg.analysis_resolution
    if base is None:
        base = features_suffix(G, states[min(states)], ws_base, r, None, noise_mode=cfg.noise_mode)[0]
        base = base.float().cpu().numpy()
    stack = variant_stack(G, states, ws_mix, cx, cfg, descriptor="features")
    return base, stack.float().cpu().numpy()
