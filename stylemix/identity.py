"""What a result is made of: which generator (an id that is the same on every machine) and which arithmetic.

A generator's id is the sha256 of its *learned* tensors: every entry of its state dict (names, dtypes, shapes,
bytes, in name order) except the buffers the generator declares as computed at load (``derived_state``, e.g. a
``w_avg`` estimated by running the mapping network). Learned tensors are read from the file bit for bit, so the id
names what the user holds whatever the CPU, GPU, thread count or library versions; a buffer computed at load goes
through matmuls that round differently on each machine, so it stays out. Part banks, export cards, ``stylemix
info`` and the caches all name a generator by this id.

The arithmetic of the variant stack (``float32`` or ``bfloat16``) and the device type that ran it are part of what
a result is: masks of two arithmetics differ by a measured tolerance (docs/method.md, "Reproducibility"), so an
export records them and refuses to be resumed or sharded under others.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

from stylemix.errors import StylemixError

__all__ = ["ID_SCHEME", "generator_id", "legacy_weights_sha256", "weights_fingerprint", "forget_generator_id",
           "learned_state", "arithmetic", "check_arithmetic", "cpu_model"]

#: Prefix hashed before the tensors: a change of what the id covers changes every id.
ID_SCHEME = "stylemix-generator-id-1"


def learned_state(G: Any) -> dict[str, Any]:
    """``G``'s state dict less the entries named in ``G.derived_state`` (computed at load, not read from a file)."""
    derived = set(getattr(G, "derived_state", ()) or ())
    return {name: t for name, t in G.state_dict(keep_vars=True).items() if name not in derived}


def generator_id(G: Any) -> str | None:
    """Hex sha256 of ``G``'s learned tensors (:func:`learned_state`); ``None`` for a generator that is not a
    ``torch.nn.Module`` (a plain protocol object has no tensors to name it by).

    Kept per generator while its tensors stay the same ones (:func:`weights_fingerprint`): hashing the default
    generator costs tens of milliseconds and :func:`stylemix.segment` asks on every call. A change made behind
    autograd's back, through ``tensor.data``, is not seen: call :func:`forget_generator_id` after one.
    """
    import torch
    if not isinstance(G, torch.nn.Module):
        return None
    fingerprint = weights_fingerprint(G)
    cached = _ID_CACHE.get(G)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    digest = _hash_state(learned_state(G), ID_SCHEME)
    try:
        _ID_CACHE[G] = (fingerprint, digest)
    except TypeError:  # a module that cannot be weakly referenced: no cache
        pass
    return digest


def legacy_weights_sha256(G: Any) -> str | None:
    """The hash part banks written before generator ids stored (``weights_sha256``): the whole state dict, derived
    buffers included, with no scheme prefix. Equal to the stored one where no buffer is computed at load (network
    files); used only to recognise such a bank."""
    import torch
    if not isinstance(G, torch.nn.Module):
        return None
    return _hash_state(G.state_dict(keep_vars=True), None)


def _hash_state(state: dict[str, Any], scheme: str | None) -> str:
    import torch
    h = hashlib.sha256()
    if scheme is not None:
        h.update(f"{scheme};".encode())
    for name, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        # reshape: a 0-dim tensor (StyleGAN3's magnitude_ema) has no uint8 view; same bytes for the others
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_fingerprint(G: Any) -> tuple:
    """Which tensors ``G`` holds right now: per state-dict entry its name, object, storage, version counter, dtype,
    shape and device. Equal fingerprints mean the same weights (bar changes through ``tensor.data``), so what is
    derived from them (:func:`generator_id`, a reduced-precision copy) can be kept until it changes."""
    return tuple((name, id(t), t.data_ptr(), t._version, t.dtype, tuple(t.shape), str(t.device))
                 for name, t in sorted(G.state_dict(keep_vars=True).items()))


def forget_generator_id(G: Any) -> None:
    """Drop the cached id of ``G`` (after changing its weights through ``tensor.data``)."""
    _ID_CACHE.pop(G, None)


# generator -> (fingerprint of its tensors, id); weak, so a cached generator is still freed.
_ID_CACHE: "weakref.WeakKeyDictionary[Any, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def arithmetic(precision: str, device: Any) -> dict[str, str]:
    """``{"precision", "device"}``: the variant stack's resolved precision and the device type that computes it
    (``cpu``, ``cuda``, ...). Export cards store it, and it is part of their digest."""
    import torch
    return {"precision": str(precision), "device": torch.device(device).type}


def check_arithmetic(stored: dict[str, str] | None, current: dict[str, str], where: str) -> None:
    """Refuse to add results of ``current`` arithmetic to ``stored`` ones (one line naming both and the fix)."""
    if stored is None or stored == current:
        return
    hint = (f"resume with --precision {stored['precision']}" if stored.get("device") == current["device"]
            else f"resume on a {stored.get('device')} device with --precision {stored.get('precision')}")
    raise StylemixError(f"{where} was made with {stored.get('precision')} variant stacks on {stored.get('device')}, "
                        f"this run would use {current['precision']} on {current['device']}: {hint}")


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s), or the platform's processor string where /proc/cpuinfo has none."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
