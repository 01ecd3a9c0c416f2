"""A tiny generator whose segmentation is known exactly, for tests and examples.

Its coarse style (slot 0) places the objects: ellipses on a row, each optionally with an inner part. Its fine
styles (slots ``[4, num_ws)``) colour each region independently (background, each object, each inner part), and
slots 1-3 do nothing. So style mixing at any crossover in ``[1, 4]`` keeps the layout and redraws every region's
colour, exactly the situation the method assumes, and :meth:`ShapesGenerator.truth` gives the true regions.
It implements every protocol hook (shared prefix, early exit at any power-of-two resolution, features).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stylemix.generators.base import GeneratorBase, StyleLayout, truncate

__all__ = ["ShapesGenerator"]


class ShapesGenerator(GeneratorBase):
    """Known-truth generator.

    Args:
        resolution: output side in pixels (power of two).
        objects: number of ellipses, laid out left to right so they never overlap.
        parts: give each object an inner disc coloured independently (regions for k > 2).
        texture: amplitude of a fixed per-pixel pattern shared by every variant (like StyleGAN's const noise).
        coupling: in [0, 1), how much each inner part's colour follows its object's (0: independent). Parts of one
            real object change partly together (a face and its lips), which is what tells the whole object from
            the background; the part-bank test uses it.
    """

    family = "shapes"

    def __init__(self, resolution: int = 64, objects: int = 1, parts: bool = False, texture: float = 0.05,
                 z_dim: int = 16, num_ws: int = 8, coupling: float = 0.0) -> None:
        super().__init__()
        self.z_dim = self.w_dim = z_dim
        self.c_dim, self.num_ws, self.resolution = 0, num_ws, resolution
        self.objects, self.parts, self.texture = objects, parts, texture
        slot_res = [8] + [16] * 3 + [resolution] * (num_ws - 4)
        self.style_layout = StyleLayout(tuple(slot_res), {"coarse": (0, 1), "middle": (1, 4),
                                                          "fine": (4, num_ws)}, default_crossover=4)
        rng = np.random.RandomState(1234)
        n_regions = 1 + objects * (2 if parts else 1)
        # Fixed projections: fine styles -> an RGB colour per region, each region its own directions.
        proj = rng.randn(n_regions, 3, z_dim).astype(np.float32)
        if parts and coupling:
            proj[1 + objects:] = (1 - coupling) * proj[1 + objects:] + coupling * proj[1:1 + objects]
        self.register_buffer("colour_proj", torch.from_numpy(proj))
        self.register_buffer("w_avg", torch.zeros(z_dim))

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """``z [B, z_dim]`` -> ``ws [B, num_ws, w_dim]`` (normalised z, broadcast)."""
        w = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        return truncate(w[:, None].repeat(1, self.num_ws, 1), self.w_avg, truncation_psi, truncation_cutoff)

    def _regions(self, w0: torch.Tensor, resolution: int) -> torch.Tensor:
        """Region ids ``int64 [B, r, r]`` from the layout style ``w0 [B, w_dim]``: 0 = background, object j has
        id ``1 + j`` and its inner part ``1 + objects + j``."""
        B = w0.shape[0]
        coord = (torch.arange(resolution, dtype=torch.float32, device=w0.device) + 0.5) / resolution
        yy, xx = coord[:, None], coord[None, :]
        regions = torch.zeros(B, resolution, resolution, dtype=torch.int64, device=w0.device)
        t = torch.tanh(w0)
        cell = 1.0 / self.objects
        for j in range(self.objects):
            cx = (j + 0.5) * cell + 0.1 * cell * t[:, 4 * j % self.w_dim]
            cy = 0.5 + 0.1 * t[:, (4 * j + 1) % self.w_dim]
            rx = cell * (0.28 + 0.1 * t[:, (4 * j + 2) % self.w_dim])
            ry = 0.25 + 0.1 * t[:, (4 * j + 3) % self.w_dim]
            d = ((xx - cx[:, None, None]) / rx[:, None, None]) ** 2 + ((yy - cy[:, None, None]) / ry[:, None, None]) ** 2
            regions[d <= 1] = 1 + j
            if self.parts:
                regions[d <= 0.3] = 1 + self.objects + j
        return regions

    def truth(self, ws: torch.Tensor, resolution: int | None = None) -> dict[str, np.ndarray]:
        """True regions of ``ws [B, num_ws, w_dim]``: ``instances`` (0 bg, 1..objects), ``parts`` (0 bg, 1 object
        body, 2 inner part) and ``foreground`` (bool), each ``[B, r, r]``."""
        regions = self._regions(ws[:, 0], resolution or self.resolution).cpu().numpy()
        instances = np.where(regions > self.objects, regions - self.objects, regions)
        parts = np.where(regions == 0, 0, np.where(regions > self.objects, 2, 1))
        return {"instances": instances, "parts": parts, "foreground": regions > 0}

    def _render(self, regions: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        fine = ws[:, self.style_layout.default_crossover:].mean(1)  # [B, w_dim]
        colours = torch.tanh(torch.einsum("rcd,bd->brc", self.colour_proj, fine) / 2)  # [B, regions, 3]
        img = torch.gather(colours, 1, regions.flatten(1)[:, :, None].expand(-1, -1, 3))
        r = regions.shape[-1]
        img = img.reshape(-1, r, r, 3).permute(0, 3, 1, 2)
        pattern = torch.sin(torch.arange(r, device=ws.device, dtype=torch.float32) * 2.3)
        return img + self.texture * (pattern[:, None] * pattern[None, :])

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` -> ``img [B, 3, resolution, resolution]`` in about [-1, 1]."""
        return self._render(self._regions(ws[:, 0], self.resolution), ws)

    def synthesis_prefix(self, ws: torch.Tensor, crossover: int, noise_mode: str = "const") -> Any:
        # The layout depends only on slot 0, so any crossover >= 1 can share it.
        return {"w0": ws[:, 0], "crossover": crossover}

    def synthesis_suffix(self, state: Any, ws: torch.Tensor, resolution: int | None = None,
                         noise_mode: str = "const") -> torch.Tensor:
        w0 = state["w0"] if state["crossover"] >= 1 else ws[:, 0]
        regions = self._regions(w0, resolution or self.resolution)
        if regions.shape[0] != ws.shape[0]:
            regions = regions.expand(ws.shape[0], -1, -1)
        return self._render(regions, ws)

    def features(self, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
        """Stand-in feature maps ``[B, 3 + n_regions, r, r]``: the RGB at ``resolution`` and one channel per region
        holding that region's (style-dependent) brightness, like a real generator's features that follow both."""
        regions = self._regions(ws[:, 0], resolution)
        rgb = self._render(regions, ws)
        n = self.colour_proj.shape[0]
        onehot = torch.nn.functional.one_hot(regions, n).permute(0, 3, 1, 2).float()
        fine = ws[:, self.style_layout.default_crossover:].mean(1)
        level = torch.einsum("rcd,bd->br", self.colour_proj, fine)[:, :, None, None]
        return torch.cat([rgb, onehot * level], 1)
