"""Read and write StyleGAN2 generators in the formats people download, without running code from the files.

Supported (detected from the content, never from the extension):

* NVIDIA network pickles (``network-snapshot-*.pkl`` of stylegan2-ada-pytorch / stylegan3, and the output of their
  ``legacy.py`` conversion): read with a restricted unpickler that knows only tensor rebuilding, ``OrderedDict``,
  numpy scalars/dtypes and two NVIDIA helper names, which are mapped to harmless stand-ins. The ``module_src`` each
  network carries is never executed; the ``G_ema`` weights and constructor kwargs are read from its recorded state
  and a :class:`~stylemix.generators.stylegan2.StyleGAN2Generator` is built from them.
* rosinality checkpoints (``{'g_ema', 'latent_avg'}`` from ``convert_weight.py``, or ``train.py``'s
  ``{'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args', 'ada_aug_p'}``) and bare rosinality state dicts, read with
  ``torch.load(weights_only=True)`` and converted to NVIDIA's layout.
* bare NVIDIA-layout state dicts (``G.state_dict()``, ``.pt``/``.pth``), also ``weights_only``.

Everything architectural (resolution, channels per block, mapping depth, ``z_dim``/``w_dim``/``c_dim``) is inferred
from tensor names and shapes; anything else is a :class:`~stylemix.errors.GeneratorLoadError` with a one-line reason.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib
import io
import math
import os
import pickle
import re
import zipfile
from typing import Any, Callable, Mapping

import torch

from stylemix.errors import GeneratorLoadError
from stylemix.generators.stylegan2 import StyleGAN2Generator, make_resample_filter

StateDict = dict[str, torch.Tensor]

# torch.save's legacy (non-zip) format starts with this pickled int.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DEFAULT_LR_MULTIPLIER = 0.01  # both reference codes; not recoverable from a bare state dict
_NVIDIA_CONV_CLAMP = 256.0  # NVIDIA's SynthesisBlock default when the file does not say otherwise
_W_AVG_SAMPLES = 4096  # as rosinality's generate.py (mean_latent(4096)) when a checkpoint has no latent_avg
_TF_ADVICE = ("it is a TensorFlow StyleGAN/StyleGAN2 pickle (dnnlib.tflib), which cannot be read without "
              "TensorFlow; convert it to PyTorch first with NVlabs/stylegan2-ada-pytorch "
              "`python legacy.py --source=IN.pkl --dest=OUT.pkl` (or rosinality's `convert_weight.py`) "
              "and load the converted file")


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def load_stylegan2_file(path: str | os.PathLike, *, conv_clamp: float | None | str = "auto") -> StyleGAN2Generator:
    """Load a StyleGAN2 generator from an NVIDIA pickle, a rosinality checkpoint or an NVIDIA state dict.

    Args:
        path: the file; its format is detected from its bytes.
        conv_clamp: ``"auto"`` takes the file's value (NVIDIA pickles record it; NVIDIA state dicts get NVIDIA's
            default 256; rosinality has none), a number or ``None`` overrides it. It is not stored in weights.

    Returns:
        The generator in eval mode, on CPU, fp32.

    Raises:
        GeneratorLoadError: unreadable, truncated or unsafe files, unknown checkpoint families, shapes that do not
            form a StyleGAN2 generator, and TensorFlow pickles (with instructions to convert them).
    """
    path = os.fspath(path)
    try:
        head = _open_head(path)
    except OSError as exc:
        raise GeneratorLoadError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    name = os.path.basename(path)
    if not head:
        raise GeneratorLoadError(f"{name}: the file is empty")
    if head.startswith(b"PK"):  # torch.save's zip format
        G = _from_torch_object(_torch_load(path), name, conv_clamp)
    else:
        obj = _read_pickle(path)
        if isinstance(obj, int) and obj == _TORCH_LEGACY_MAGIC:  # legacy torch.save: let torch parse the rest
            G = _from_torch_object(_torch_load(path), name, conv_clamp)
        elif isinstance(obj, Mapping) and not any(isinstance(v, PersistentRecord) for v in obj.values()):
            G = _from_torch_object(obj, name, conv_clamp)  # a state dict or checkpoint dict pickled directly
        else:
            G = _from_nvidia_snapshot(obj, name, conv_clamp)
    return G.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------------
# Restricted unpickling of NVIDIA network pickles


@dataclasses.dataclass
class PersistentRecord:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` would have rebuilt, left as data.

    Attributes:
        class_name: the class the pickle wants (``Generator``, ``MappingNetwork``, ...).
        state: that object's ``__dict__``: ``_parameters``, ``_buffers``, ``_modules`` (more records),
            ``_init_kwargs``, ...
    """

    class_name: str
    state: dict[str, Any]


def _persistent_record(meta: Any) -> PersistentRecord:
    # Stands in for NVIDIA's reconstructor, which would exec(meta['module_src']): here the source is dropped unread.
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise GeneratorLoadError("malformed persistent object in network pickle (no 'state' dict)")
    return PersistentRecord(class_name=str(meta.get("class_name", "?")), state=meta["state"])


def _storage_from_bytes(data: bytes) -> Any:
    # torch.storage._load_from_bytes calls torch.load without weights_only; the bytes are a torch.save of one storage,
    # which the weights-only reader handles. map_location: snapshots are written from GPU training runs.
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


class _PlainDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict (attribute access is all EasyDict adds)."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)


def _numpy_attr(name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; a pickle may name either, whichever numpy wrote it.
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise GeneratorLoadError(f"numpy has no multiarray.{name}")


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    import numpy as np

    scalar, reconstruct = _numpy_attr("scalar"), _numpy_attr("_reconstruct")
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
        ("dnnlib.util", "EasyDict"): _PlainDict,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = scalar
        allowed[(module, "_reconstruct")] = reconstruct
    return allowed


class _TensorFlowPickle(Exception):
    pass


class _ForbiddenGlobal(Exception):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a StyleGAN2 network pickle needs; any other is refused unresolved."""

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file)
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        if module == "dnnlib.tflib" or module.startswith("dnnlib.tflib."):
            raise _TensorFlowPickle(f"{module}.{name}")
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        # Only torch.save's own format uses persistent ids, and that path goes through torch.load instead.
        raise _ForbiddenGlobal(f"persistent id {str(pid)[:40]!r}")


def _read_pickle(path: str) -> Any:
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh).load()
    except _TensorFlowPickle:
        raise GeneratorLoadError(f"{name}: {_TF_ADVICE}") from None
    except _ForbiddenGlobal as exc:
        raise GeneratorLoadError(f"{name}: refusing to load, the pickle references the forbidden global '{exc}' "
                                 "(only tensors, numpy scalars and NVIDIA network records are allowed)") from None
    except GeneratorLoadError:
        raise
    except EOFError:
        raise GeneratorLoadError(f"{name}: the file is truncated (the pickle stream ends early)") from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError,
            UnicodeDecodeError, MemoryError, OverflowError) as exc:
        raise GeneratorLoadError(f"{name}: not a readable network pickle or torch checkpoint "
                                 f"({type(exc).__name__}: {_first_line(exc)})") from None


def _from_nvidia_snapshot(obj: Any, name: str, conv_clamp: float | None | str) -> StyleGAN2Generator:
    """``{'G', 'D', 'G_ema', ...}`` of :class:`PersistentRecord` (or a bare record) -> generator from ``G_ema``."""
    if isinstance(obj, dict) and isinstance(obj.get("G_ema"), PersistentRecord):
        record = obj["G_ema"]
    elif isinstance(obj, PersistentRecord):
        record = obj
    elif isinstance(obj, dict):
        raise GeneratorLoadError(f"{name}: a pickle without a 'G_ema' network (keys: {_key_list(obj)})")
    else:
        raise GeneratorLoadError(f"{name}: unrecognised pickle content ({type(obj).__name__}); expected an NVIDIA "
                                 "network snapshot with 'G_ema'")
    if record.class_name != "Generator":
        raise GeneratorLoadError(f"{name}: G_ema is a {record.class_name!r}, not a StyleGAN2 Generator")
    sd = _flatten_record(record, "", {}, name)
    kwargs = _record_init_kwargs(record)
    from stylemix.generators import stylegan3  # StyleGAN3 records are told apart by their state, not their source
    if stylegan3.is_stylegan3_record(record):
        return stylegan3.stylegan3_from_state_dict(sd, kwargs, conv_clamp=conv_clamp, source=name)
    hints = _record_hints(record, kwargs)
    recorded_clamp = hints.pop("conv_clamp")
    clamp = recorded_clamp if conv_clamp == "auto" else conv_clamp
    return generator_from_nvidia_state_dict(sd, conv_clamp=clamp, source=name, init_kwargs=kwargs, **hints)


def _flatten_record(record: PersistentRecord, prefix: str, out: StateDict, name: str) -> StateDict:
    """Nested records -> one ``{dotted.name: tensor}`` state dict (persistent buffers only, like ``state_dict()``)."""
    state = record.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for key, value in list((state.get("_parameters") or {}).items()) + [
            (k, v) for k, v in (state.get("_buffers") or {}).items() if k not in skip]:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise GeneratorLoadError(f"{name}: {prefix}{key} is a {type(value).__name__}, not a tensor")
        out[prefix + key] = value.detach()
    for key, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise GeneratorLoadError(f"{name}: submodule {prefix}{key} is not a network record")
        _flatten_record(child, f"{prefix}{key}.", out, name)
    return out


def _record_init_kwargs(record: PersistentRecord) -> dict[str, Any]:
    """Constructor kwargs, flattening stylegan2-ada-pytorch's nested ``synthesis_kwargs`` into stylegan3's style."""
    kwargs = dict(record.state.get("_init_kwargs") or {})
    positional = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
    kwargs.update(zip(positional, record.state.get("_init_args") or ()))
    kwargs.update(dict(kwargs.pop("synthesis_kwargs", None) or {}))
    return kwargs


def _record_hints(record: PersistentRecord, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Facts a state dict cannot tell: ``conv_clamp``, the mapping's lr multiplier, the block architecture.

    Read from the layers' own recorded attributes first (what the network really ran with), then from the kwargs.
    """
    modules = record.state.get("_modules") or {}

    def child(rec: Any, *path: str) -> dict[str, Any]:
        for p in path:
            rec = ((rec.state.get("_modules") or {}).get(p) if isinstance(rec, PersistentRecord) else None)
        return rec.state if isinstance(rec, PersistentRecord) else {}

    syn = modules.get("synthesis")
    clamp = child(syn, "b4", "conv1").get("conv_clamp", kwargs.get("conv_clamp", _NVIDIA_CONV_CLAMP))
    architecture = child(syn, "b4").get("architecture", kwargs.get("architecture", "skip"))
    if architecture != "skip":
        raise GeneratorLoadError(f"StyleGAN2 generator with architecture {architecture!r}: only 'skip' (the "
                                 "official generator configuration) is supported")
    fc0 = child(modules.get("mapping"), "fc0")
    lr = fc0.get("bias_gain", (kwargs.get("mapping_kwargs") or {}).get("lr_multiplier", _DEFAULT_LR_MULTIPLIER))
    return {"conv_clamp": None if clamp is None else float(clamp), "mapping_lr_multiplier": float(lr)}


# ----------------------------------------------------------------------------------------------------------------
# torch.save files


def _torch_load(path: str) -> Any:
    name = os.path.basename(path)
    if _open_head(path).startswith(b"PK") and not zipfile.is_zipfile(path):  # zip signature, no central directory
        raise GeneratorLoadError(f"{name}: the file is truncated or corrupt (incomplete zip archive)")
    try:
        # rosinality's train.py stores its argparse options; a Namespace holds only plain values.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"the forbidden global '{found.group(1)}'" if found else _first_line(exc)
        raise GeneratorLoadError(f"{name}: refusing to load, the checkpoint references {what} "
                                 "(only tensors and plain containers are allowed)") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise GeneratorLoadError(f"{name}: the file is truncated or corrupt ({_first_line(exc)})") from None


def _from_torch_object(obj: Any, name: str, conv_clamp: float | None | str) -> StyleGAN2Generator:
    """A ``torch.load``-ed object -> generator, by recognising the checkpoint family from its keys."""
    if not isinstance(obj, Mapping):
        raise GeneratorLoadError(f"{name}: unrecognised checkpoint ({type(obj).__name__}); expected a rosinality "
                                 "checkpoint or an NVIDIA StyleGAN2 state dict")
    if isinstance(obj.get("g_ema"), Mapping):
        G = generator_from_rosinality_state_dict(obj["g_ema"], obj.get("latent_avg"), source=name)
        return _with_clamp(G, conv_clamp)
    if isinstance(obj.get("G_ema"), Mapping):  # NVIDIA state dicts saved next to others
        obj = obj["G_ema"]
    elif isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if _is_rosinality_state_dict(obj):
        return _with_clamp(generator_from_rosinality_state_dict(obj, None, source=name), conv_clamp)
    if _is_nvidia_state_dict(obj):
        clamp = _NVIDIA_CONV_CLAMP if conv_clamp == "auto" else conv_clamp
        return generator_from_nvidia_state_dict(dict(obj), conv_clamp=clamp, source=name)
    if any(str(k).startswith("synthesis.input.") or re.match(r"synthesis\.L\d+_", str(k)) for k in obj):
        from stylemix.generators import stylegan3  # a bare StyleGAN3 state dict: kwargs inferred and checked
        return stylegan3.stylegan3_from_state_dict(obj, None, conv_clamp=conv_clamp, source=name)
    raise GeneratorLoadError(f"{name}: unknown checkpoint family (keys: {_key_list(obj)}); expected an NVIDIA "
                             "network pickle, a rosinality checkpoint with 'g_ema' or an NVIDIA-layout state dict")


def _with_clamp(G: StyleGAN2Generator, conv_clamp: float | None | str) -> StyleGAN2Generator:
    if conv_clamp == "auto" or conv_clamp == G.conv_clamp:
        return G
    rebuilt = StyleGAN2Generator(**{**G.config(), "conv_clamp": conv_clamp})
    rebuilt.load_state_dict(G.state_dict())
    rebuilt.w_avg_source = G.w_avg_source
    return rebuilt


def _is_nvidia_state_dict(sd: Mapping[str, Any]) -> bool:
    return any(str(k).startswith("synthesis.b4.") for k in sd) and any(str(k).startswith("mapping.") for k in sd)


def _is_rosinality_state_dict(sd: Mapping[str, Any]) -> bool:
    return "input.input" in sd and "conv1.conv.weight" in sd


# ----------------------------------------------------------------------------------------------------------------
# NVIDIA layout


def infer_nvidia_config(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, Any]:
    """Constructor kwargs of :class:`StyleGAN2Generator` from NVIDIA-layout names and shapes.

    Inferred: mapping depth and widths, ``z_dim``, ``c_dim`` (from ``mapping.embed``), ``w_dim``, block resolutions
    and channels, image channels, noise inputs and the FIR filter size. Not inferable: the mapping lr multiplier
    (assumed 0.01) and ``conv_clamp`` (not stored in weights).
    """
    def shape(key: str) -> tuple[int, ...]:
        t = sd.get(key)
        if not isinstance(t, torch.Tensor):
            raise GeneratorLoadError(f"{source}: missing tensor {key!r}; these weights do not form a StyleGAN2 "
                                     "generator")
        return tuple(t.shape)

    num_layers = 0
    while f"mapping.fc{num_layers}.weight" in sd:
        num_layers += 1
    if num_layers == 0:
        raise GeneratorLoadError(f"{source}: no mapping layers (mapping.fc0.weight); not a StyleGAN2 generator")
    fc0, last = shape("mapping.fc0.weight"), shape(f"mapping.fc{num_layers - 1}.weight")
    if len(fc0) != 2 or len(last) != 2:
        raise GeneratorLoadError(f"{source}: mapping weights must be 2-D, got {list(fc0)} / {list(last)}")
    c_dim = embed = 0
    if "mapping.embed.weight" in sd:
        embed, c_dim = shape("mapping.embed.weight")
    z_dim = fc0[1] - embed
    found = (re.match(r"synthesis\.b(\d+)\.", str(k)) for k in sd)
    resolutions = sorted({int(m.group(1)) for m in found if m})
    if not resolutions:
        raise GeneratorLoadError(f"{source}: no synthesis blocks (synthesis.bR.*); not a StyleGAN2 generator")
    resolution = resolutions[-1]
    expected = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)] if resolution >= 4 else []
    if resolutions != expected:
        raise GeneratorLoadError(f"{source}: synthesis blocks {resolutions} are not the sequence 4, 8, ..., "
                                 f"{resolution}; not a StyleGAN2 generator")
    channels = {r: shape(f"synthesis.b{r}.conv1.weight")[0] for r in resolutions}
    filter_size = shape("synthesis.b4.resample_filter")[-1] if "synthesis.b4.resample_filter" in sd else 4
    return dict(z_dim=z_dim, c_dim=c_dim, w_dim=last[0], resolution=resolution,
                img_channels=shape("synthesis.b4.torgb.weight")[0], channels=channels, mapping_layers=num_layers,
                embed_features=embed or None, layer_features=fc0[0] if num_layers > 1 else None,
                use_noise="synthesis.b4.conv1.noise_const" in sd, resample_filter=(1,) * filter_size)


def generator_from_nvidia_state_dict(sd: Mapping[str, torch.Tensor], *, conv_clamp: float | None = _NVIDIA_CONV_CLAMP,
                                     mapping_lr_multiplier: float = _DEFAULT_LR_MULTIPLIER,
                                     family: str = "stylegan2-nvidia", source: str = "state dict",
                                     init_kwargs: Mapping[str, Any] | None = None,
                                     renamed: Mapping[str, str] | None = None) -> StyleGAN2Generator:
    """Build a generator whose architecture is inferred from ``sd`` and load ``sd`` into it (all keys, all shapes).

    ``init_kwargs`` (from a pickle) are cross-checked against the inferred shapes; ``renamed`` maps NVIDIA names
    back to the file's own names for error messages.
    """
    config = infer_nvidia_config(sd, source)
    if init_kwargs:
        for key, ours in (("z_dim", "z_dim"), ("c_dim", "c_dim"), ("w_dim", "w_dim"),
                          ("img_resolution", "resolution"), ("img_channels", "img_channels")):
            if key in init_kwargs and int(init_kwargs[key]) != config[ours]:
                raise GeneratorLoadError(f"{source}: recorded {key}={init_kwargs[key]} but the weights imply "
                                         f"{config[ours]}")
    try:
        G = StyleGAN2Generator(**config, conv_clamp=conv_clamp, mapping_lr_multiplier=mapping_lr_multiplier,
                               family=family)
    except ValueError as exc:
        raise GeneratorLoadError(f"{source}: these weights do not form a StyleGAN2 generator ({exc})") from None
    _load_checked(G, sd, source, renamed or {})
    return G


def _load_checked(G: StyleGAN2Generator, sd: Mapping[str, torch.Tensor], source: str,
                  renamed: Mapping[str, str]) -> None:
    """``G.load_state_dict(sd)`` with one clear line naming the first missing, unexpected or mis-shaped tensor."""
    expected = G.state_dict()
    where = f"{source} (resolution {G.resolution}, {G.mapping.num_layers} mapping layers)"

    def file_name(k: str) -> str:
        return renamed.get(k, k)

    missing = [k for k in expected if k not in sd]
    if missing:
        raise GeneratorLoadError(f"{where}: missing {file_name(missing[0])!r}"
                                 + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                                 + "; these weights do not form a StyleGAN2 generator")
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        raise GeneratorLoadError(f"{where}: unexpected tensor {file_name(unexpected[0])!r}"
                                 + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
                                 + "; not a StyleGAN2 skip generator")
    for k, ref in expected.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor):
            raise GeneratorLoadError(f"{where}: {file_name(k)!r} is a {type(t).__name__}, not a tensor")
        if t.shape != ref.shape:
            raise GeneratorLoadError(f"{where}: {file_name(k)!r} has shape {list(t.shape)}, a StyleGAN2 generator "
                                     f"needs {list(ref.shape)} there")
        if not t.is_floating_point():
            raise GeneratorLoadError(f"{where}: {file_name(k)!r} has dtype {t.dtype}, expected floating point")
    G.load_state_dict({k: sd[k].to(torch.float32) for k in expected})


def nvidia_state_dict(G: StyleGAN2Generator) -> StateDict:
    """``G``'s weights in NVIDIA's layout (the keys of the official ``Generator.state_dict()``)."""
    return {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}


def save_nvidia_state_dict(G: StyleGAN2Generator, path: str | os.PathLike) -> None:
    """Write ``G`` as a bare NVIDIA-layout state dict (``torch.save``); :func:`load_stylegan2_file` reads it back."""
    torch.save(nvidia_state_dict(G), path)


# ----------------------------------------------------------------------------------------------------------------
# rosinality layout


def _rosinality_pairs(resolutions: list[int], mapping_layers: int, use_noise: bool) -> list[tuple[str, str, str]]:
    """``(rosinality name, NVIDIA name, reshape kind)`` for every tensor both layouts share."""
    pairs = []
    for k in range(mapping_layers):  # style.0 is the parameter-free PixelNorm
        pairs += [(f"style.{k + 1}.weight", f"mapping.fc{k}.weight", "same"),
                  (f"style.{k + 1}.bias", f"mapping.fc{k}.bias", "same")]
    pairs.append(("input.input", "synthesis.b4.const", "lead1"))

    def conv(ros: str, nv: str, noise_index: int) -> list[tuple[str, str, str]]:
        out = [(f"{ros}.conv.weight", f"{nv}.weight", "lead1"),
               (f"{ros}.conv.modulation.weight", f"{nv}.affine.weight", "same"),
               (f"{ros}.conv.modulation.bias", f"{nv}.affine.bias", "same"),
               (f"{ros}.activate.bias", f"{nv}.bias", "same")]
        if use_noise:
            out += [(f"{ros}.noise.weight", f"{nv}.noise_strength", "scalar"),
                    (f"noises.noise_{noise_index}", f"{nv}.noise_const", "lead2")]
        return out

    def torgb(ros: str, nv: str) -> list[tuple[str, str, str]]:
        return [(f"{ros}.conv.weight", f"{nv}.weight", "lead1"),
                (f"{ros}.conv.modulation.weight", f"{nv}.affine.weight", "same"),
                (f"{ros}.conv.modulation.bias", f"{nv}.affine.bias", "same"),
                (f"{ros}.bias", f"{nv}.bias", "rgb_bias")]

    pairs += conv("conv1", "synthesis.b4.conv1", 0) + torgb("to_rgb1", "synthesis.b4.torgb")
    for k, res in enumerate(resolutions[1:]):
        pairs += conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0", 2 * k + 1)
        pairs += conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", 2 * k + 2)
        pairs += torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
    return pairs


def _to_nvidia(t: torch.Tensor, kind: str) -> torch.Tensor:
    """rosinality tensor -> NVIDIA shape: drop leading singleton axes, scalar noise strength, ``[3]`` ToRGB bias."""
    if kind == "lead1":
        return t[0] if t.ndim >= 1 and t.shape[0] == 1 else t.reshape(-1)  # bad shapes surface in _load_checked
    if kind == "lead2":
        return t[0, 0] if t.ndim == 4 and t.shape[:2] == (1, 1) else t.reshape(-1)
    if kind == "scalar":
        return t.reshape([]) if t.numel() == 1 else t
    if kind == "rgb_bias":
        return t.reshape(-1) if t.ndim == 4 else t
    return t


def _to_rosinality(t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "lead1":
        return t.unsqueeze(0)
    if kind == "lead2":
        return t[None, None]
    if kind == "scalar":
        return t.reshape([1])
    if kind == "rgb_bias":
        return t.reshape(1, -1, 1, 1)
    return t


def rosinality_to_nvidia_state_dict(sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                                    source: str = "rosinality checkpoint"
                                    ) -> tuple[StateDict, dict[str, str]]:
    """rosinality ``g_ema`` state dict -> (NVIDIA-layout state dict, NVIDIA name -> rosinality name).

    The size and mapping depth come from the key names; channels and dims stay in the tensors and are inferred by
    :func:`infer_nvidia_config`. The FIR ``kernel`` buffers (``[1,3,3,1]`` outer product ×4 for up-sampling)
    become NVIDIA's normalised ``resample_filter``. ``mapping.w_avg`` is ``latent_avg`` or zeros.
    """
    mapping_layers = 0
    while f"style.{mapping_layers + 1}.weight" in sd:
        mapping_layers += 1
    num_convs = 0
    while f"convs.{num_convs}.conv.weight" in sd:
        num_convs += 1
    if mapping_layers == 0 or num_convs % 2:
        raise GeneratorLoadError(f"{source}: rosinality keys do not form a generator ({mapping_layers} style "
                                 f"layers, {num_convs} convs)")
    resolutions = [2 ** i for i in range(2, num_convs // 2 + 3)]
    use_noise = "conv1.noise.weight" in sd
    out: StateDict = {}
    renamed: dict[str, str] = {}
    for ros, nv, kind in _rosinality_pairs(resolutions, mapping_layers, use_noise):
        renamed[nv] = ros
        if ros in sd:  # absent ones are reported by _load_checked under their rosinality names
            out[nv] = _to_nvidia(sd[ros], kind)
    known = {ros for ros, _, _ in _rosinality_pairs(resolutions, mapping_layers, use_noise)}
    kernels = [sd[k] for k in sd if k.endswith(".kernel")]
    extra = [k for k in sd if k not in known and not k.endswith(".kernel")]
    if extra:
        raise GeneratorLoadError(f"{source}: unexpected tensor {extra[0]!r}; not a rosinality StyleGAN2 generator")
    # Every NVIDIA layer carries the same filter; rosinality stores it pre-multiplied by the up-sampling gain.
    f = kernels[0] / kernels[0].sum() if kernels else make_resample_filter((1, 3, 3, 1))
    if f.ndim != 2:
        raise GeneratorLoadError(f"{source}: FIR kernel has shape {list(kernels[0].shape)}, expected 2-D")
    for res in resolutions:
        out[f"synthesis.b{res}.resample_filter"] = f.clone()
        for layer in (("conv1",) if res == 4 else ("conv0", "conv1")):
            out[f"synthesis.b{res}.{layer}.resample_filter"] = f.clone()
    w_dim = sd[f"style.{mapping_layers}.weight"].shape[0]
    out["mapping.w_avg"] = torch.zeros([w_dim]) if latent_avg is None else latent_avg.reshape(-1)
    return out, renamed


def generator_from_rosinality_state_dict(sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                                         source: str = "rosinality checkpoint") -> StyleGAN2Generator:
    """rosinality ``g_ema`` (+ ``latent_avg [style_dim]``) -> generator without ``conv_clamp`` (rosinality has none).

    Without ``latent_avg`` (train.py checkpoints), ``w_avg`` is estimated as the mean of 4096 mapped latents from a
    fixed seed, as rosinality's ``generate.py`` does, so truncation still works; ``describe()['w_avg']`` says so.
    """
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise GeneratorLoadError(f"{source}: latent_avg is a {type(latent_avg).__name__}, not a tensor")
    nv, renamed = rosinality_to_nvidia_state_dict(sd, latent_avg, source)
    renamed["mapping.w_avg"] = "latent_avg"
    G = generator_from_nvidia_state_dict(nv, conv_clamp=None, family="stylegan2-rosinality", source=source,
                                         renamed=renamed)
    if latent_avg is None:
        G.mapping.w_avg.copy_(estimate_w_avg(G))
        G.w_avg_source = f"estimated ({_W_AVG_SAMPLES} samples, seed 0)"
    return G


@torch.no_grad()
def estimate_w_avg(G: StyleGAN2Generator, num_samples: int = _W_AVG_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Mean mapping output ``[w_dim]`` over ``num_samples`` latents from ``seed`` (unconditional generators)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([num_samples, G.z_dim], generator=gen)
    c = None
    if G.c_dim:  # average over uniformly drawn one-hot labels
        c = torch.nn.functional.one_hot(torch.randint(G.c_dim, [num_samples], generator=gen), G.c_dim).float()
    return G.mapping(z, c)[:, 0].mean(dim=0)


def rosinality_checkpoint(G: StyleGAN2Generator) -> dict[str, Any]:
    """``{'g_ema': state_dict, 'latent_avg': [w_dim]}`` in rosinality's layout (as its ``convert_weight.py``).

    Raises:
        ValueError: what rosinality's ``Generator`` cannot express: labels, ``z_dim``/widths different from
            ``style_dim``, lr multiplier other than 0.01, no noise inputs, other than 3 image channels. Its lack of
            ``conv_clamp`` is not checked: a clamp that never triggers changes nothing.
    """
    m = G.mapping
    problems = [msg for bad, msg in (
        (G.c_dim > 0, "conditional (c_dim > 0)"),
        (G.z_dim != G.w_dim or m.layer_features != G.w_dim, "z_dim and mapping widths must equal w_dim"),
        (abs(m.lr_multiplier - _DEFAULT_LR_MULTIPLIER) > 1e-12, "mapping lr multiplier must be 0.01"),
        (not G.use_noise, "needs noise inputs"),
        (G.img_channels != 3, "needs 3 image channels")) if bad]
    if problems:
        raise ValueError("rosinality's Generator cannot represent this network: " + "; ".join(problems))
    nv = nvidia_state_dict(G)
    ros: StateDict = {}
    for ros_key, nv_key, kind in _rosinality_pairs(G.synthesis.block_resolutions, m.num_layers, True):
        ros[ros_key] = _to_rosinality(nv[nv_key], kind)
    up_kernel = nv["synthesis.b4.resample_filter"] * 4  # rosinality stores the ×2 up-sampling gain in the kernel
    for k, _ in enumerate(G.synthesis.block_resolutions[1:]):
        ros[f"convs.{2 * k}.conv.blur.kernel"] = up_kernel.clone()
        ros[f"to_rgbs.{k}.upsample.kernel"] = up_kernel.clone()
    return {"g_ema": ros, "latent_avg": nv["mapping.w_avg"].clone()}


def save_rosinality_checkpoint(G: StyleGAN2Generator, path: str | os.PathLike) -> None:
    """Write ``G`` as a rosinality ``{'g_ema', 'latent_avg'}`` checkpoint (see :func:`rosinality_checkpoint`)."""
    torch.save(rosinality_checkpoint(G), path)


# ----------------------------------------------------------------------------------------------------------------


def _open_head(path: str, size: int = 4) -> bytes:
    """The first ``size`` bytes of ``path`` (format sniffing)."""
    with open(path, "rb") as fh:
        return fh.read(size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _key_list(obj: Mapping[Any, Any], limit: int = 8) -> str:
    keys = [str(k) for k in list(obj)[:limit]]
    return ", ".join(keys) + (", ..." if len(obj) > limit else "") if keys else "none"
