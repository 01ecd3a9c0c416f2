"""Rendering the base image and the variant stack, through the optional hooks of the :class:`Generator` protocol.

The protocol requires only ``mapping`` and ``synthesis`` (and the shape attributes); the speed hooks
``synthesis_prefixes`` / ``synthesis_prefix`` / ``synthesis_suffix`` / ``features_suffix`` / ``features`` are
optional. The free functions here call a hook when the object has it and otherwise fall back to full synthesis, so
a plain object that follows the protocol segments exactly like the same network subclassing
:class:`~stylemix.generators.base.GeneratorBase` (whose methods are the same fallbacks).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import weakref
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import torch

from stylemix import mixing
from stylemix.backend import gathers_variants
from stylemix.errors import StylemixError
from stylemix.generators.base import FullSynthesisState, GeneratorBase, resize_image
from stylemix.vectors import project_channels

if TYPE_CHECKING:
    from stylemix.config import SegmentConfig

__all__ = ["Rendered", "SharedVariants", "Subject", "base_image", "cast_floats", "features_suffix", "gather_states",
           "generator_device", "has_features", "image_features", "noise_stream", "reduced_precision", "render_batch",
           "render_variants", "style_latents", "subjects", "synthesis_prefix", "synthesis_prefixes", "synthesis_suffix",
           "synthesis_suffix_features", "to_uint8", "variant_stack"]


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


def image_features(G: Any, ws: torch.Tensor, resolution: int, noise_mode: str = "const") -> torch.Tensor:
    """Feature maps ``[1, C, r, r]`` of one image's styles ``ws [1, num_ws, w_dim]`` at ``resolution``, every channel
    (what the boundary stage's ``features`` methods read, :mod:`stylemix.refine`)."""
    return features_suffix(G, synthesis_prefix(G, ws, 0, noise_mode), ws, resolution, None, noise_mode)


def synthesis_suffix_features(G: Any, state: Any, ws: torch.Tensor, resolutions: Iterable[int],
                              noise_mode: str = "const") -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Finish one image's styles ``ws [1, num_ws, w_dim]`` from ``state`` at full resolution, with its feature maps
    at each of ``resolutions``: ``(img [1, 3, H, W], {r: [1, C, r, r]})``, every channel (the values of
    :func:`image_features`).

    ``G.synthesis_suffix_features`` where ``G`` has it (the maps are taken on the way, no layer runs twice);
    resolutions it does not return (their layers lie before the state), and every resolution for a generator
    without the hook, are rendered by :func:`image_features`. No feature maps for a generator without them.
    """
    resolutions = sorted({int(r) for r in resolutions}) if has_features(G) else []
    hook = getattr(G, "synthesis_suffix_features", None)
    if hook is not None and resolutions:
        image, feats = hook(state, ws, resolutions, noise_mode=noise_mode)
        feats = dict(feats)
    else:
        image, feats = synthesis_suffix(G, state, ws, None, noise_mode=noise_mode), {}
    for r in resolutions:
        if r not in feats:
            feats[r] = image_features(G, ws, r, noise_mode)
    return image, feats


def base_image(G: Any, states: dict[int, Any], ws_base: torch.Tensor, resolutions: Iterable[int] = (),
               noise_mode: str = "const") -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The base image ``[1, 3, H, W]`` finished from the deepest of its prefix ``states`` (the least left to run),
    and its feature maps ``{r: [1, C, r, r]}`` at ``resolutions`` (:func:`synthesis_suffix_features`; none asked:
    ``{}``)."""
    return synthesis_suffix_features(G, states[max(states)], ws_base, resolutions, noise_mode)


@contextlib.contextmanager
def noise_stream(seed: mixing.StreamKey, noise_mode: str, device: torch.device) -> Iterator[None]:
    """For ``noise_mode="random"``: torch's generator seeded from ``seed``'s noise stream inside, restored after,
    so that the same inputs give the same noise (and masks). Other modes draw nothing: no effect."""
    if noise_mode != "random":
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(mixing.stream(seed, mixing.STREAM_NOISE).integers(2 ** 63)))
        yield


@dataclasses.dataclass(frozen=True)
class Subject:
    """What one image is made from: a seed (NVlabs z), or a row of user latents with its stream key."""

    seed: int | None
    row: int | None
    key: mixing.StreamKey
    latent: np.ndarray | None = None  # w+ [num_ws, w_dim] or z [z_dim] of the row
    kind: str = "seed"  # "seed" | "w" | "z"


def subjects(seeds: Iterable[int] | None, latents: Any) -> Iterator[Subject]:
    """The images to segment: each seed (checked), or each row of ``latents`` (a :class:`~stylemix.latents.LatentRows`)."""
    if latents is None:
        for seed in seeds if seeds is not None else ():
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise StylemixError(f"a seed is an integer in [0, 2**32), got {seed!r}")
            seed = int(seed)
            if seed < 0 or seed >= 2 ** 32:
                raise StylemixError(f"seed must be in [0, 2**32), got {seed}")
            yield Subject(seed, None, seed)
        return
    for i in range(len(latents)):
        row = latents.row(i)
        yield Subject(None, row, mixing.row_key(row, latents.stream_base), latents.values[i], latents.kind)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """NVIDIA's conversion: ``img [B, 3, H, W]`` float -> ``uint8 [B, H, W, 3]`` (``x * 127.5 + 128``, clamped)."""
    # The arithmetic in the input's layout, then one permuting copy of the uint8 (a quarter of the bytes): 2x faster
    # than permuting the floats. Contiguous: OpenCV (overlays, PNGs) rejects a permuted layout.
    return (img * 127.5 + 128).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def style_latents(G: Any, seed: int | Subject, cfg: SegmentConfig
                  ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Base and mixed styles of ``seed`` (or of a latents row): ``(ws_base [1, num_ws, w_dim],
    ws_mix [N, num_ws, w_dim], crossovers [N])``.

    A seed's z and a z row are mapped with the variants' z in one call and truncated alike; a w row is the base
    as given (no truncation: it already is the image the user wants), only its variants are mapped.
    """
    subject = seed if isinstance(seed, Subject) else Subject(int(seed), None, int(seed))
    device = generator_device(G)
    z_rows = [mixing.variant_latents(subject.key, cfg.variants, G.z_dim)]
    if subject.kind == "seed":
        z_rows.insert(0, mixing.seed_to_z(subject.seed, G.z_dim))
    elif subject.kind == "z":
        z_rows.insert(0, subject.latent[None].astype(np.float32))
    z = torch.from_numpy(np.concatenate(z_rows)).to(device)
    c = torch.zeros(len(z), G.c_dim, device=device) if G.c_dim else None
    ws = G.mapping(z, c, truncation_psi=cfg.truncation_psi, truncation_cutoff=cfg.truncation_cutoff)
    if subject.kind == "w":
        ws = torch.cat([torch.from_numpy(subject.latent[None]).to(device=device, dtype=ws.dtype), ws])
    crossovers = mixing.variant_crossovers(subject.key, cfg.variants, cfg.crossover, G.num_ws)
    return ws[:1], mixing.mix_styles(ws[:1], ws[1:], crossovers), crossovers


def render_variants(G: Any, ws_base: torch.Tensor, ws_mix: torch.Tensor, crossovers: np.ndarray,
                    cfg: "SegmentConfig", with_image: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The base image at full resolution and the variant stack at the analysis resolution, for one image.

    The fast path runs the base's layers below each crossover once (:func:`synthesis_prefixes`), finishes each group
    of variants sharing a crossover from its state, and stops them at the analysis resolution, taking their feature
    maps (projected to ``feature_dim`` channels, :func:`features_suffix`) or their partial RGB image; ``cfg.exact``
    renders everything in full, ``batch_size`` variants per call, and area-resizes the RGB. Uses
    ``cfg.analysis_resolution``, ``noise_mode``, ``exact``, ``descriptor``, ``feature_dim`` and ``batch_size``.
    ``with_image=False`` skips the base image's full-resolution synthesis where the variants do not depend on it
    (not under ``exact``, nor under ``noise_mode="random"``, whose variants draw after it): the image is then
    ``None``.

    Returns:
        ``(image [1, 3, H, W] or None, stack [N, C, r, r])``, variants in their original order.
    """
    r, nm = cfg.analysis_resolution, cfg.noise_mode
    if cfg.exact:
        image = G.synthesis(ws_base, noise_mode=nm)
        return image, torch.cat([resize_image(G.synthesis(ws_mix[i:i + cfg.batch_size], noise_mode=nm), r)
                                 for i in range(0, len(ws_mix), cfg.batch_size)])
    states = synthesis_prefixes(G, ws_base, sorted({int(c) for c in crossovers}), noise_mode=nm)
    image = base_image(G, states, ws_base, (), nm)[0] if with_image or nm == "random" else None
    return image, variant_stack(G, states, ws_mix, crossovers, cfg)


@dataclasses.dataclass
class Rendered:
    """One image's renders (torch, on the generator's device).

    Attributes:
        ws_base: ``[1, num_ws, w_dim]`` its styles.
        crossovers: ``int64 [N]`` each variant's crossover.
        image: ``[1, 3, H, W]`` the base image, raw float.
        stack: ``[N, C, r, r]`` the variants at the analysis resolution, in their original order.
    """

    ws_base: torch.Tensor
    crossovers: np.ndarray
    image: torch.Tensor
    stack: torch.Tensor
    shared: bool = False  # the stack is of the batch's :class:`SharedVariants`, not of the image's own variants
    # {r: [1, C, r, r]} the base image's feature maps taken during its synthesis (render_batch's feature_resolutions)
    features: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SharedVariants:
    """Variants whose latents every image shares (a part bank's signature variants), in place of each image's own.

    Attributes:
        ws: ``[N, num_ws, w_dim]`` the mapped styles of the shared latents; variant ``i`` takes its slots
            ``[crossovers[i], num_ws)`` from ``ws[i]`` and the others from the image.
        crossovers: ``int64 [N]`` each variant's crossover.
    """

    ws: torch.Tensor
    crossovers: np.ndarray


def render_batch(G: Any, batch: list[Subject], cfg: "SegmentConfig", shared: SharedVariants | None = None,
                 feature_resolutions: Iterable[int] = ()) -> list[Rendered]:
    """:func:`style_latents` and :func:`render_variants` of every image of ``batch``, the variants rendered together.

    Each crossover group's variants, over all images of the batch, are one call (:func:`variant_stack` with the
    images' prefix states gathered per variant, :func:`gather_states`). The base images and their prefixes stay one
    call per image: batched kernels round differently (CPU convolutions ~1e-5, one grey level on 100-260 of the
    million pixels of a MobileStyleGAN image), and the image must be the generator's own batch-1 image, the same in
    any batch (what NVlabs' tools give for the seed, what a resumed export renders again). The latents, crossovers
    and noise of every image are drawn from its own streams, exactly as alone. One image at a time instead (what a
    batch of one gives): ``noise_mode="random"`` (torch's generator is seeded per image), ``exact``, and generators
    whose prefix states are not dataclasses / dicts of tensors with the batch on the first axis, and every batch on
    a CPU (:func:`stylemix.backend.gathers_variants`: one image's groups stay in cache, a batch's do not), where
    the batch is then byte-identical to its images alone.

    ``shared``: every image's variants are these (a part bank's signature variants mixed into each image's styles,
    :meth:`stylemix.parts.PartStep.shared_variants`) instead of its own; the stack is then that of the bank, which
    the bank's step reads instead of rendering it again (``Rendered.shared``). The base image is the same either
    way (its latent is still mapped with the image's own variant latents, as always: a lone mapping rounds apart).

    ``feature_resolutions``: the base image's feature maps kept at these resolutions while it is synthesised
    (:func:`base_image`; ``Rendered.features``), for the boundary stage and the part bank. Not under ``exact`` or
    ``noise_mode="random"`` (there the caller renders them with their own noise draws, as before).
    """
    resolutions = [] if cfg.exact or cfg.noise_mode == "random" else sorted({int(r) for r in feature_resolutions})
    def latents_of(subject: Subject) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        ws_base, ws_mix, crossovers = style_latents(G, subject, cfg)
        if shared is not None:
            ws_mix, crossovers = mixing.mix_styles(ws_base, shared.ws, shared.crossovers), shared.crossovers
        return ws_base, ws_mix, crossovers

    def alone(subject: Subject) -> Rendered:
        with noise_stream(subject.key, cfg.noise_mode, generator_device(G)):
            ws_base, ws_mix, crossovers = latents_of(subject)
            if not resolutions:
                image, stack = render_variants(G, ws_base, ws_mix, crossovers, cfg)
                return Rendered(ws_base, crossovers, image, stack, shared is not None)
            st = synthesis_prefixes(G, ws_base, sorted({int(c) for c in crossovers}), noise_mode=cfg.noise_mode)
            image, feats = base_image(G, st, ws_base, resolutions, cfg.noise_mode)
            stack = variant_stack(G, st, ws_mix, crossovers, cfg)
        return Rendered(ws_base, crossovers, image, stack, shared is not None, feats)

    if len(batch) == 1 or cfg.exact or cfg.noise_mode == "random" or not gathers_variants(generator_device(G)):
        return [alone(subject) for subject in batch]
    latents = [latents_of(subject) for subject in batch]
    states, images, features = [], [], []
    for ws_base, _, crossovers in latents:
        st = synthesis_prefixes(G, ws_base, sorted({int(c) for c in crossovers}), noise_mode=cfg.noise_mode)
        image, feats = base_image(G, st, ws_base, resolutions, cfg.noise_mode)
        states.append(st)
        images.append(image)
        features.append(feats)
    if not all(_batched_state(state, 1) for st in states for state in st.values()):
        return [Rendered(ws, c, image, variant_stack(G, st, ws_mix, c, cfg), shared is not None, feats)
                for (ws, ws_mix, c), st, image, feats in zip(latents, states, images, features)]
    crossovers = np.concatenate([c for _, _, c in latents])
    n = len(latents[0][2])  # variants per image
    owner = np.repeat(np.arange(len(batch)), n)  # the image of each variant row
    stack = variant_stack(G, states, torch.cat([ws for _, ws, _ in latents]), crossovers, cfg, owner=owner)
    return [Rendered(ws, c, image, stack[b * n:(b + 1) * n], shared is not None, feats)
            for b, ((ws, _, c), image, feats) in enumerate(zip(latents, images, features))]


def _batched_state(state: Any, batch: int) -> bool:
    """Whether :func:`gather_states` can stack ``state``: a dataclass, dict, list or tuple (nested) whose tensors
    all carry the batch on their first axis (or a tensor-free one, such as the fallback's)."""
    if isinstance(state, torch.Tensor):
        return state.ndim > 0 and state.shape[0] == batch
    if dataclasses.is_dataclass(state):
        return all(_batched_state(getattr(state, f.name), batch) for f in dataclasses.fields(state))
    if isinstance(state, dict):
        return all(_batched_state(v, batch) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(_batched_state(v, batch) for v in state)
    return True  # ints, None, ...: the same in every image's state


def gather_states(states: list[Any], index: np.ndarray) -> Any:
    """One prefix state from the batch-1 states of the images of a batch, row ``j`` that of image ``index[j]``, so
    that the suffix finishes each variant from its own image's state: ``B x [1, ...] -> [len(index), ...]``.
    Everything that is not a tensor is taken from the first state (the same crossover in all)."""
    first = states[0]
    if isinstance(first, torch.Tensor):  # one concatenation of the B images, then the rows (half the copies)
        return torch.cat(states)[torch.as_tensor(index, device=first.device)]
    if dataclasses.is_dataclass(first):
        return dataclasses.replace(first, **{f.name: gather_states([getattr(s, f.name) for s in states], index)
                                             for f in dataclasses.fields(first) if f.init})
    if isinstance(first, dict):
        return {k: gather_states([s[k] for s in states], index) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(gather_states(list(parts), index) for parts in zip(*states))
    return first


def variant_stack(G: Any, states: dict[int, Any] | list[dict[int, Any]], ws_mix: torch.Tensor,
                  crossovers: np.ndarray, cfg: "SegmentConfig", descriptor: str | None = None,
                  owner: np.ndarray | None = None) -> torch.Tensor:
    """The variants ``ws_mix [M, num_ws, w_dim]`` finished from the prefix ``states`` of their crossovers
    (``crossovers [M]``) at the analysis resolution: ``[M, C, r, r]``, in their original order.

    ``states``: ``{crossover: state}`` of one image (batch 1, broadcast to its variants), or with ``owner``
    (``int [M]``, the image of each variant, :func:`render_batch`) a list of them, one per image of a batch.
    ``descriptor`` (default ``cfg.descriptor``): ``features`` (projected to ``cfg.feature_dim``) or ``rgb``.
    Each crossover group is one call. Under ``cfg.precision="bfloat16"`` a bfloat16 copy of ``G`` finishes them
    from bfloat16 copies of the states (:func:`reduced_precision`); the stack is float32 either way.
    """
    r, nm = cfg.analysis_resolution, cfg.noise_mode
    if cfg.precision == "bfloat16" and ws_mix.dtype != torch.bfloat16:
        G_low = reduced_precision(G, torch.bfloat16)
        try:
            stack = variant_stack(G_low, cast_floats(states, torch.bfloat16), ws_mix.to(torch.bfloat16), crossovers,
                                  cfg, descriptor, owner)
        except (RuntimeError, TypeError, NotImplementedError) as exc:  # an op without a bfloat16 kernel
            raise StylemixError(f"{getattr(G, 'family', type(G).__name__)} does not run in bfloat16 "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0]}); use precision float32") from exc
        return stack.float()
    if (descriptor or cfg.descriptor) == "features":
        render = (lambda state, w: features_suffix(G, state, w, r, cfg.feature_dim, noise_mode=nm))
    else:
        render = (lambda state, w: synthesis_suffix(G, state, w, r, noise_mode=nm))
    order, parts = [], []
    for c in sorted({int(c) for c in crossovers}) if owner is not None else states:
        rows = np.flatnonzero(crossovers == c)
        if not len(rows):
            continue
        order.extend(rows)
        if owner is None:
            state = states[c]
        else:  # the images owning this group's rows, and each row's position among them
            images, where = np.unique(owner[rows], return_inverse=True)
            state = gather_states([states[i][c] for i in images], where)
        parts.append(render(state, ws_mix[rows]))
    return torch.cat(parts)[torch.from_numpy(np.argsort(order))]


def reduced_precision(G: Any, dtype: torch.dtype) -> Any:
    """A copy of the generator module ``G`` with its floating-point weights and buffers in ``dtype``, made once and
    kept while ``G``'s weights stay the same tensors (:func:`stylemix.identity.weights_fingerprint`)."""
    from stylemix.identity import weights_fingerprint
    fingerprint = weights_fingerprint(G)
    cached = _REDUCED.get(G, {}).get(dtype)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    low = copy.deepcopy(G).to(dtype)
    try:
        _REDUCED.setdefault(G, {})[dtype] = (fingerprint, low)
    except TypeError:  # a module that cannot be weakly referenced: no cache
        pass
    return low


# generator -> {dtype: (fingerprint of its tensors, its copy in that dtype)}; weak, so the generator is still freed.
_REDUCED: "weakref.WeakKeyDictionary[Any, dict[torch.dtype, tuple[tuple, Any]]]" = weakref.WeakKeyDictionary()


def cast_floats(obj: Any, dtype: torch.dtype) -> Any:
    """``obj`` (a prefix state: a tensor, dataclass, dict, list or tuple of them, nested) with its floating-point
    tensors in ``dtype``; everything else as it is."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: cast_floats(getattr(obj, f.name), dtype)
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, dict):
        return {k: cast_floats(v, dtype) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cast_floats(v, dtype) for v in obj)
    return obj
