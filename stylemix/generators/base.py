"""The generator protocol every adapter implements, and a base class with the fallbacks.

A stylemix generator follows NVIDIA's StyleGAN2 conventions:

* ``mapping(z, c, truncation_psi, truncation_cutoff)`` turns latents ``z [B, z_dim]`` (and labels ``c [B, c_dim]``)
  into per-slot styles ``ws [B, num_ws, w_dim]``;
* ``synthesis(ws, noise_mode=...)`` renders ``img [B, 3, H, W]``, raw float, roughly in [-1, 1] but *not* clamped.

Style mixing needs two more facts and two hooks:

* ``style_layout`` says which slot drives which resolution and where layout ends and colour begins
  (``default_crossover``);
* ``synthesis_prefix(ws, crossover)`` runs, once, every layer that depends only on the slots ``[0, crossover)``, and
  ``synthesis_suffix(state, ws, resolution)`` finishes any number of variants sharing those slots, optionally stopping
  at a lower ``resolution``. Both are optional: :class:`GeneratorBase` implements them by full synthesis, and
  :mod:`stylemix.render` does the same for an object that lacks them, so an adapter that cannot split its network
  (or does not subclass the base) still works, only slower.

Optional, for speed: ``synthesis_prefixes(ws, crossovers)`` (the prefix at several crossovers, sharing the layers
below each) and ``features_suffix(state, ws, resolution, feature_dim)`` (a variant's feature maps from a prefix state,
randomly projected where that is cheapest); the base class builds both from the hooks above.

Optional, a measured fact: ``variant_precision`` (``"float32"`` unless an adapter sets ``"bfloat16"``) is the
arithmetic its variant stacks keep their quality in; ``SegmentConfig(precision="auto")`` uses bfloat16 for them
where the device computes it natively (:mod:`stylemix.render`). The base image is always rendered in float32.

Optional, for identity: ``derived_state`` (state-dict names of buffers computed at load, such as an estimated
``w_avg``), left out of the generator's id (:func:`stylemix.identity.generator_id`) so that the id names the learned
tensors only and is the same on every machine.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from stylemix.errors import StylemixError
from stylemix.vectors import project_channels

__all__ = ["FullSynthesisState", "Generator", "GeneratorBase", "StyleLayout", "WrappedGenerator", "resize_image",
           "truncate", "wrap_generator"]


@dataclasses.dataclass(frozen=True)
class StyleLayout:
    """Which style slot does what, declared by each generator adapter.

    Attributes:
        slot_resolutions: for each of the ``num_ws`` slots, the feature resolution of the layer it drives.
        groups: named half-open slot ranges, e.g. ``{"coarse": (0, 4), "middle": (4, 8), "fine": (8, 18)}``.
        default_crossover: slots ``[0, default_crossover)`` carry layout (kept by style mixing); the rest carry
            colour and texture (resampled per variant).
    """

    slot_resolutions: tuple[int, ...]
    groups: dict[str, tuple[int, int]]
    default_crossover: int

    @property
    def num_ws(self) -> int:
        return len(self.slot_resolutions)

    def __post_init__(self) -> None:
        if not 1 <= self.default_crossover < self.num_ws:
            raise StylemixError(f"default_crossover must lie in [1, {self.num_ws - 1}], got {self.default_crossover}")

    @staticmethod
    def from_slot_resolutions(slot_resolutions: tuple[int, ...] | list[int], default_crossover: int | None = None
                              ) -> "StyleLayout":
        """The usual StyleGAN grouping: coarse up to 8 px, middle 16-32 px, fine above."""
        res = tuple(int(r) for r in slot_resolutions)
        n = len(res)
        coarse_end = sum(1 for r in res if r <= 8) or 1
        middle_end = max(coarse_end, sum(1 for r in res if r <= 32))
        groups = {"coarse": (0, coarse_end), "middle": (coarse_end, middle_end), "fine": (middle_end, n)}
        if default_crossover is None:
            default_crossover = min(max(coarse_end, 1), n - 1)
        return StyleLayout(res, groups, default_crossover)


@runtime_checkable
class Generator(Protocol):
    """What stylemix needs from a style-based generator (see the module docstring for the semantics).

    Only these members are required. The speed hooks (``synthesis_prefix``, ``synthesis_suffix``,
    ``synthesis_prefixes``, ``features``, ``features_suffix``, with the signatures of :class:`GeneratorBase`) are
    optional: :mod:`stylemix.render` calls them when an object has them and falls back to ``synthesis`` otherwise.
    """

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int
    resolution: int
    style_layout: StyleLayout

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """``z [B, z_dim]``, ``c [B, c_dim]`` -> ``ws [B, num_ws, w_dim]``."""
        ...

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` -> ``img [B, 3, resolution, resolution]``, raw float."""
        ...


@dataclasses.dataclass
class FullSynthesisState:
    """Prefix state of the fallback: nothing is shared, the suffix renders everything."""

    crossover: int


class GeneratorBase(torch.nn.Module):
    """Base for adapters: holds the shape attributes and implements the hooks by full synthesis.

    Subclasses set ``z_dim, c_dim, w_dim, num_ws, resolution, style_layout`` and implement ``mapping`` and
    ``synthesis``; they override ``synthesis_prefix``/``synthesis_suffix``/``features`` when they can do better.
    """

    z_dim: int
    c_dim: int = 0
    w_dim: int
    num_ws: int
    resolution: int
    style_layout: StyleLayout
    family: str = "custom"
    # The variant stack's arithmetic under precision="auto" where the device has bfloat16: an adapter sets
    # "bfloat16" only once its masks were measured unchanged in it (docs/benchmarks.md).
    variant_precision: str = "float32"
    # State-dict names of buffers computed at load, not read from a file: outside the generator's id.
    derived_state: tuple[str, ...] = ()
    # Set by the file loader (stylemix.generators.files): the file's name and sha256, reported by describe().
    source_file: str | None = None
    source_sha256: str | None = None

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        """``z [B, z_dim]`` -> ``img [B, C, R, R]``: mapping then synthesis (NVlabs' ``G(z, c)``)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def synthesis_prefix(self, ws: torch.Tensor, crossover: int, noise_mode: str = "const") -> Any:
        return FullSynthesisState(crossover=int(crossover))

    def synthesis_suffix(self, state: Any, ws: torch.Tensor, resolution: int | None = None,
                         noise_mode: str = "const") -> torch.Tensor:
        img = self.synthesis(ws, noise_mode=noise_mode)
        return resize_image(img, resolution)

    def features(self, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not expose intermediate features")

    def synthesis_prefixes(self, ws: torch.Tensor, crossovers: list[int], noise_mode: str = "const"
                           ) -> dict[int, Any]:
        """``{c: synthesis_prefix(ws, c)}`` for each crossover; adapters that can share the layers below the
        smaller crossovers override it (the states must behave exactly as separate prefixes)."""
        return {int(c): self.synthesis_prefix(ws, int(c), noise_mode=noise_mode) for c in crossovers}

    def features_suffix(self, state: Any, ws: torch.Tensor, resolution: int, feature_dim: int | None = None,
                        noise_mode: str = "const") -> torch.Tensor:
        """Feature maps of ``ws [N, num_ws, w_dim]`` at ``resolution``, optionally projected: ``[N, D, r, r]``.

        ``state`` is a :meth:`synthesis_prefix` of styles sharing ``ws[:, :crossover]``; adapters may start from it
        (this fallback ignores it). ``feature_dim`` applies :func:`stylemix.vectors.project_channels` (``D =
        min(feature_dim, C)``); ``None`` returns all ``C`` channels.
        """
        feats = resize_image(self.features(ws, resolution, noise_mode=noise_mode), resolution)
        return feats if feature_dim is None else project_channels(feats, feature_dim)

    def describe(self) -> dict[str, Any]:
        """Facts for ``stylemix info``; adapters add their own keys. ``file`` and ``sha256`` are the loaded file's
        (absent for generators built in code or from a registered name); ``converted_from`` names the original of
        a file written by ``stylemix convert``."""
        info: dict[str, Any] = {
            "family": self.family,
            "resolution": self.resolution,
            "z_dim": self.z_dim,
            "c_dim": self.c_dim,
            "w_dim": self.w_dim,
            "num_ws": self.num_ws,
            "style_groups": {k: list(v) for k, v in self.style_layout.groups.items()},
            "default_crossover": self.style_layout.default_crossover,
            "slot_resolutions": list(self.style_layout.slot_resolutions),
        }
        if self.source_file is not None:
            info.update(file=self.source_file, sha256=self.source_sha256)
        if getattr(self, "converted_from", None):
            info["converted_from"] = self.converted_from
        return info


def resize_image(img: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Area-downsample ``img [B, C, H, W]`` to ``resolution`` (``None`` or same size: unchanged)."""
    if resolution is None or resolution == img.shape[-1]:
        return img
    if resolution > img.shape[-1]:
        return F.interpolate(img, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return F.interpolate(img, size=(resolution, resolution), mode="area")


class WrappedGenerator(GeneratorBase):
    """Adapter around a user's own mapping and synthesis callables (see :func:`wrap_generator`)."""

    family = "wrapped"

    def __init__(self, mapping: Any, synthesis: Any, *, z_dim: int, w_dim: int, num_ws: int, resolution: int,
                 c_dim: int = 0, style_layout: StyleLayout | None = None, default_crossover: int | None = None,
                 w_avg: torch.Tensor | None = None, module: torch.nn.Module | None = None) -> None:
        super().__init__()
        self._mapping, self._synthesis = mapping, synthesis
        self.module = module  # registered so .to(device) moves the user's weights
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.resolution = z_dim, c_dim, w_dim, num_ws, resolution
        if style_layout is None:
            slot_res = _default_slot_resolutions(num_ws, resolution)
            style_layout = StyleLayout.from_slot_resolutions(slot_res, default_crossover)
        self.style_layout = style_layout
        self.register_buffer("w_avg", None if w_avg is None else torch.as_tensor(w_avg, dtype=torch.float32))

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        ws = self._mapping(z, c) if self.c_dim else self._mapping(z)
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).repeat(1, self.num_ws, 1)
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return self._synthesis(ws)


def wrap_generator(mapping: Any, synthesis: Any, *, z_dim: int, w_dim: int, num_ws: int, resolution: int,
                   **kwargs: Any) -> GeneratorBase:
    """Make a stylemix generator from two callables.

    Args:
        mapping: ``z [B, z_dim] -> w [B, w_dim]`` or ``ws [B, num_ws, w_dim]`` (``(z, c)`` if ``c_dim > 0``).
        synthesis: ``ws [B, num_ws, w_dim] -> img [B, 3, resolution, resolution]`` in NVIDIA's range.
        kwargs: ``c_dim``, ``default_crossover`` or a full ``style_layout``, ``w_avg [w_dim]`` for truncation, and
            ``module`` (the ``torch.nn.Module`` owning the weights, so ``.to(device)`` moves them).
    """
    return WrappedGenerator(mapping, synthesis, z_dim=z_dim, w_dim=w_dim, num_ws=num_ws, resolution=resolution,
                            **kwargs)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor | None, truncation_psi: float,
             truncation_cutoff: int | None) -> torch.Tensor:
    """NVIDIA truncation: ``lerp(w_avg, ws, psi)`` on slots ``[0, cutoff)`` (all when ``cutoff`` is None)."""
    if truncation_psi == 1:
        return ws
    if w_avg is None:
        raise StylemixError("this generator has no w_avg, so truncation_psi must be 1")
    ws = ws.clone()
    cut = ws.shape[1] if truncation_cutoff is None else int(truncation_cutoff)
    ws[:, :cut] = w_avg.to(ws.dtype).lerp(ws[:, :cut], truncation_psi)
    return ws


def _default_slot_resolutions(num_ws: int, resolution: int) -> tuple[int, ...]:
    """StyleGAN2's slot order (two slots per resolution from 8 px, 4 px first) cut or padded to ``num_ws``."""
    res, r = [4], 8
    while len(res) < num_ws:
        res += [r, r]
        r = min(r * 2, resolution)
    return tuple(res[:num_ws])
