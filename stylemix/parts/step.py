"""The per-image part-bank step of :func:`stylemix.segment.segment_many`: :func:`part_step` chooses the bank once
per run from segment's ``parts`` argument, then :class:`PartStep` gives each image its part map and foreground."""

from __future__ import annotations

import dataclasses
import os
import weakref
from typing import Any

import numpy as np
import torch

from stylemix import mixing
from stylemix.parts.bank import PartBank, load_bank, packaged_bank_for
from stylemix.parts.cues import image_cues, signature_latents
from stylemix.parts.descriptors import (descriptor_classes, descriptor_foreground, descriptor_parts, foreground_map,
                                        image_descriptors)

__all__ = ["ForegroundBank", "PartStep", "auto_bank", "part_step"]


@dataclasses.dataclass(frozen=True)
class ForegroundBank:
    """A bank that decides only the foreground of two-way masks (``seg.parts`` stays ``None``), as ``parts="auto"``
    uses one; what an export passes to :func:`stylemix.segment.segment_many` once it has chosen the bank.

    Attributes:
        bank: the :class:`PartBank`.
        source: what chose it, for ``meta["parts"]["bank"]`` (``auto: default``, ``auto: cached``, ...).
    """

    bank: PartBank
    source: str


def auto_bank(G: Any) -> ForegroundBank | None:
    """The bank ``parts="auto"`` takes the foreground from: the one shipped for ``G`` (:func:`packaged_bank_for`),
    else ``G``'s bank in the user's cache (:func:`stylemix.parts.cache.cached_bank`), else ``None`` (the per-image
    consensus)."""
    from stylemix.parts.cache import cached_bank
    bank = packaged_bank_for(G)
    if bank is not None:
        return ForegroundBank(bank, "auto: default")
    cached = cached_bank(G)
    return None if cached is None else ForegroundBank(cached[0], "auto: cached")


def part_step(G: Any, parts: Any, cfg: Any) -> "PartStep | None":
    """The step for :func:`stylemix.segment.segment_many`'s ``parts`` argument, or ``None`` for none.

    ``parts``: ``"auto"`` (the default) takes the foreground of two-way masks from :func:`auto_bank` (the packaged
    bank of ``G``, else its cached one; ``seg.parts`` stays ``None``), else the per-image consensus; ``"fit"``
    fits ``G``'s bank on :data:`~stylemix.parts.fit.FIT_SEEDS` now, caches it and takes the foreground from it,
    even where a packaged or cached bank exists; a :class:`ForegroundBank`: its foreground; ``None`` or
    ``"none"``: the consensus always; a :class:`PartBank`, a bank file or ``"default"``: that bank's classes in
    ``seg.parts`` and, for two-way masks, its foreground (a bank of another generator is refused). ``auto``,
    ``fit`` and a :class:`ForegroundBank` apply to ``clusters = 2`` and not to ``exact`` (the reference pipeline).
    """
    if parts is None or (isinstance(parts, str) and parts == "none"):
        return None
    foreground_only = isinstance(parts, ForegroundBank) or (isinstance(parts, str) and parts in ("auto", "fit"))
    if foreground_only and (cfg.clusters != 2 or cfg.exact):  # the bank decides fg/bg only
        if isinstance(parts, str) and parts == "fit":
            from stylemix.errors import StylemixError
            raise StylemixError("parts='fit' decides two-way masks: use it with clusters = 2 and without exact")
        return None
    if isinstance(parts, str) and parts == "fit":
        from stylemix.parts.fit import FIT_SEEDS, fit_flow_bank
        from stylemix.io import compact_seeds
        bank, _ = fit_flow_bank(G, list(FIT_SEEDS), cfg)
        parts = ForegroundBank(bank, f"fit: seeds {compact_seeds(list(FIT_SEEDS))}")
    elif isinstance(parts, str) and parts == "auto":
        parts = auto_bank(G)
        if parts is None:
            return None
    if isinstance(parts, ForegroundBank):
        return PartStep(G, parts.bank, cfg, foreground_only=True, source=parts.source)
    return PartStep(G, parts, cfg)


# generator -> {(generator id, device, latents, truncation): mapped styles of a bank's signature latents}
_SIGNATURE_STYLES: "weakref.WeakKeyDictionary[Any, dict[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()


class PartStep:
    """The part-bank step of :func:`stylemix.segment.segment_many`: loads and checks the bank once, then per image
    renders its cues, labels the classes at full resolution and gives the foreground probability.

    Args:
        G: the generator (must be the bank's).
        parts: a :class:`PartBank`, a bank file or ``"default"``.
        cfg: the resolved segmentation settings (refinement and cleaning of the part map follow them).
        foreground_only: give only the foreground (no full-resolution part map: ``parts=None`` per image).
        source: what chose the bank, for ``meta["parts"]``.
    """

    def __init__(self, G: Any, parts: Any, cfg: Any, foreground_only: bool = False, source: str | None = None
                 ) -> None:
        self.G, self.bank = G, load_bank(parts, G)
        self.foreground_only = foreground_only
        self.source = source or (parts if isinstance(parts, str) else
                                 "bank object" if isinstance(parts, PartBank) else os.fspath(parts))
        self.cfg = dataclasses.replace(cfg, analysis_resolution=self.bank.analysis_resolution,
                                       feature_dim=self.bank.feature_dim)
        self.latents = signature_latents(G, self.bank.settings)
        self._shared = None  # shared_variants(), mapped on first use

    @property
    def needs_consensus(self) -> bool:
        """Whether the bank's foreground reads the per-image consensus (:meth:`PartBank.needs_consensus`): without
        it, the pipeline clusters nothing for a two-way mask."""
        return self.bank.needs_consensus

    def shares_stack(self, cfg: Any) -> bool:
        """Whether the bank's signature stack has the shape of the image's variant stack under ``cfg`` (features,
        the same analysis resolution and feature dimension), so that it can serve as it: one stack rendered per
        image instead of two (:meth:`shared_variants`). Not under ``exact`` or ``noise_mode="random"`` (whose
        variants draw their own noise)."""
        return (cfg.descriptor == "features" and not cfg.exact and cfg.noise_mode != "random"
                and cfg.analysis_resolution == self.bank.analysis_resolution
                and cfg.feature_dim == self.bank.feature_dim)

    def shared_variants(self) -> Any:
        """The bank's signature variants as :class:`stylemix.render.SharedVariants`: their latents mapped once (the
        same for every image) and their crossovers, for :func:`stylemix.render.render_batch`."""
        if self._shared is None:
            from stylemix.identity import generator_id
            from stylemix.render import SharedVariants, generator_device
            G, cfg = self.G, self.cfg
            device = generator_device(G)
            # Mapped once per generator's weights, not per segment() call (each call would run the mapping network).
            digest = generator_id(G)
            key = (digest, str(device), self.latents.tobytes(), cfg.truncation_psi, cfg.truncation_cutoff)
            cache = _SIGNATURE_STYLES.setdefault(G, {}) if digest is not None else {}
            if key not in cache:
                with torch.inference_mode():
                    z = torch.from_numpy(self.latents).to(device)
                    c = torch.zeros(len(z), G.c_dim, device=device) if G.c_dim else None
                    cache.clear()  # one entry per generator: the weights or settings moved on
                    cache[key] = G.mapping(z, c, truncation_psi=cfg.truncation_psi,
                                           truncation_cutoff=cfg.truncation_cutoff)
            cx = mixing.variant_crossovers(0, len(self.latents), list(self.bank.crossovers), G.num_ws)
            self._shared = SharedVariants(cache[key], cx)
        return self._shared

    def __call__(self, ws_base: torch.Tensor, consensus: np.ndarray | None, guide: Any,
                 base_features: np.ndarray | None = None, signature: np.ndarray | None = None,
                 foreground_shape: tuple[int, int] | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(parts int32 [H, W] or None, foreground probability float32 [h, w] or None)`` for one image.

        Args:
            ws_base: ``[1, num_ws, w_dim]`` the image's styles.
            consensus: its per-image foreground probability ``[h, w]`` at the analysis resolution, or ``None`` (k > 2,
                or a bank whose foreground does not read it, :attr:`needs_consensus`).
            guide: ``[H, W, 3]`` the image (the part map's guided upsampling).
            base_features: the base image's feature maps ``float32 [C, r, r]`` if the caller has them at the bank's
                resolution (not rendered a second time).
            signature: the bank's signature stack ``float32 [N, D, r, r]`` of this image if the caller rendered it
                (:meth:`shared_variants`), else it is rendered here.
            foreground_shape: ``(h, w)`` of the foreground probability; default the consensus's, and without a
                consensus no foreground (``None``).

        The part map is ``None`` with ``foreground_only``; where the bank has a background class it holds the
        foreground parts only (:func:`~stylemix.parts.descriptors.descriptor_parts`), and the caller sets the
        background from the image's finished mask (:meth:`with_background`). The foreground probability reads
        the classes of the nearest of all prototypes, as the bank's table says.
        """
        import cv2
        from stylemix.backend import array_module, to_numpy
        from stylemix.stages import finish_labels, min_pixels
        if base_features is not None and (base_features.shape[-1] != self.cfg.analysis_resolution
                                          or self.cfg.noise_mode == "random"):  # random noise: its own draws
            base_features = None
        if signature is None:
            base, sig = image_cues(self.G, ws_base, self.latents, self.bank.crossovers, self.cfg, base_features)
        else:
            base, sig = base_features, signature
            if base is None:
                from stylemix.render import image_features
                with torch.inference_mode():
                    base = image_features(self.G, ws_base, self.cfg.analysis_resolution,
                                          self.cfg.noise_mode)[0].float().cpu().numpy()
        X = image_descriptors(base, sig, self.bank)  # one projection for the classes and the fine foreground
        classes = descriptor_classes(X, self.bank, base.shape[-2:])
        full = None
        if not self.foreground_only:
            xp = array_module(guide)
            size = tuple(guide.shape[:2])
            # The foreground parts only: segment takes the background from the finished mask (with_background).
            parts = descriptor_parts(X, self.bank, base.shape[-2:])
            full = finish_labels(xp.asarray(parts), size, self.bank.n_parts, guide,
                                 min_pixels=min_pixels(self.cfg.min_area, size), refine=self.cfg.refine)
            full = to_numpy(full).astype(np.int32)
        prob = None
        shape = foreground_shape if foreground_shape is not None else (
            None if consensus is None else tuple(consensus.shape))
        if shape is not None:
            fine = (descriptor_foreground(X, self.bank, base.shape[-2:]) if self.bank.settings.foreground == "fine"
                    else None)
            if classes.shape != tuple(shape):
                classes = cv2.resize(classes, tuple(shape)[::-1], interpolation=cv2.INTER_NEAREST)
                if fine is not None:
                    fine = cv2.resize(fine, tuple(shape)[::-1], interpolation=cv2.INTER_NEAREST)
            prob = foreground_map(classes, self.bank, consensus, fine)
        return full, prob

    def with_background(self, parts: Any, foreground: Any) -> Any:
        """The part map ``int [H, W]`` of :meth:`__call__` with class 0 exactly where the image's finished two-way
        mask ``bool [H, W]`` is background, where the bank has a background class; else ``parts`` as it is."""
        from stylemix.parts.descriptors import has_background, with_background
        return with_background(parts, foreground) if has_background(self.bank) else parts

    def describe(self) -> dict[str, Any]:
        """``meta["parts"]``: which bank, what it gave (``foreground`` or ``parts and foreground``), its classes."""
        return {"bank": self.source, "used_for": "foreground" if self.foreground_only else "parts",
                "classes": list(self.bank.class_names), "foreground": list(self.bank.class_foreground),
                "foreground_mode": self.bank.settings.foreground, "fit_seeds": self.bank.fit_seeds}
