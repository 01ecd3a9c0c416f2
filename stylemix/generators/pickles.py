"""Network pickles read as data: a restricted unpickler, the records it returns, and what network a file holds.

Every pickle protocol (0-5) and both numpy namings (``numpy.core.*`` from numpy 1.x, ``numpy._core.*`` from
numpy 2) are read. The allow-list names only data constructors: tensor and storage rebuilding, ``OrderedDict``,
``set``/``frozenset``, latin-1 ``bytes`` (how protocols 0-2 store them), numpy arrays, dtypes and scalars, and three
names from NVIDIA's code that are replaced by stand-ins that keep the recorded state as data:

* ``torch_utils.persistence._reconstruct_persistent_obj`` (stylegan2-ada-pytorch / stylegan3), which would
  ``exec`` the module source the file carries, becomes a :class:`PersistentRecord`;
* ``dnnlib.tflib.network.Network`` (the TensorFlow releases), whose ``__setstate__`` would ``exec`` the build
  module source, becomes a :class:`TFNetworkRecord`;
* ``dnnlib.util.EasyDict`` becomes a plain dict.

Any other global (``os.system``, ``builtins.eval``, ``builtins.getattr``, a real network class, ...) is refused
before it is resolved, and the error names it. :func:`classify_network` is the one place that says what a loaded
pickle holds, from the recorded state alone (never from the embedded source, which is not read).
"""

from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import importlib
import io
import os
import pickle
from typing import Any, Callable, Mapping

import numpy as np
import torch

from stylemix.errors import GeneratorLoadError

__all__ = ["PersistentRecord", "RestrictedUnpickler", "TFNetworkRecord", "allowed_globals", "classify_network",
           "read_pickle"]

# ----------------------------------------------------------------------------------------------------------------
# Records


@dataclasses.dataclass
class PersistentRecord:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` would have rebuilt, left as data.

    Attributes:
        class_name: the class the pickle wants (``Generator``, ``MappingNetwork``, ...).
        state: that object's ``__dict__``: ``_parameters``, ``_buffers``, ``_modules`` (more records),
            ``_init_args``, ``_init_kwargs`` and plain attributes.
    """

    class_name: str
    state: dict[str, Any]

    def child(self, *path: str) -> "PersistentRecord | None":
        """The record at ``_modules[path[0]]._modules[path[1]]...``, or None."""
        rec: Any = self
        for p in path:
            rec = (rec.state.get("_modules") or {}).get(p) if isinstance(rec, PersistentRecord) else None
        return rec if isinstance(rec, PersistentRecord) else None


class TFNetworkRecord:
    """A ``dnnlib.tflib.network.Network`` of the TensorFlow StyleGAN releases, as the data its state holds.

    The TensorFlow class would execute ``build_module_src`` in ``__setstate__``; here that string is dropped unread
    and only the rest is kept: ``version``, ``name``, ``static_kwargs``, ``components`` (more records),
    ``build_func_name`` and ``variables`` (``{name: array}`` in pickle order). Version 5 (StyleGAN2-ADA TF) adds
    input/output shapes and names, which are kept in :attr:`extra`.
    """

    def __init__(self, *args: Any) -> None:  # NEWOBJ passes no arguments; a stray one is ignored
        self.version, self.name, self.build_func_name = 0, "?", "?"
        self.static_kwargs: dict[str, Any] = {}
        self.components: dict[str, TFNetworkRecord] = {}
        self.variables: dict[str, np.ndarray] = {}
        self.extra: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise GeneratorLoadError("malformed TensorFlow network in pickle (its state is not a dict)")
        state = {k: v for k, v in state.items() if k != "build_module_src"}
        self.version = state.pop("version", 0)
        self.name = str(state.pop("name", "?"))
        self.build_func_name = str(state.pop("build_func_name", "?"))
        self.static_kwargs = dict(state.pop("static_kwargs", None) or {})
        self.components = dict(state.pop("components", None) or {})
        variables = state.pop("variables", None) or []
        try:
            self.variables = {str(k): v for k, v in variables}
        except (TypeError, ValueError):
            raise GeneratorLoadError(f"malformed TensorFlow network {self.name!r}: variables are not (name, value) "
                                     "pairs") from None
        self.extra = state

    def all_variables(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Own variables and those of every component, named ``component/variable`` as NVIDIA's converter does."""
        out = {prefix + k: v for k, v in self.variables.items()}
        for name, comp in self.components.items():
            if isinstance(comp, TFNetworkRecord):
                out.update(comp.all_variables(f"{prefix}{name}/"))
        return out

    def __repr__(self) -> str:
        return f"TFNetworkRecord({self.name!r}, {self.build_func_name!r}, version={self.version})"


# ----------------------------------------------------------------------------------------------------------------
# Stand-ins for the allowed globals


def _persistent_record(meta: Any) -> PersistentRecord:
    # Stands in for NVIDIA's reconstructor, which would exec(meta['module_src']): the source is dropped unread.
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


def _latin1_bytes(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocols 0-2 store bytes as _codecs.encode(<str>, 'latin1'); that is the only call accepted.
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") != "latin1":
        raise _ForbiddenGlobal(f"_codecs.encode (only latin-1 text is accepted, got {type(text).__name__}, "
                               f"{encoding!r})")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    # Protocols 0-2 store b"" as bytes() with no arguments.
    if args:
        raise _ForbiddenGlobal("builtins.bytes (only bytes() with no arguments is accepted)")
    return b""


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # copyreg._reconstructor (protocols 0-1) would call base.__new__(cls, state) for any class; only the stand-ins
    # of the allow-list are accepted, so nothing is constructed that it did not name.
    if cls is _PlainDict and base is dict:
        return _PlainDict(state if isinstance(state, dict) else {})
    if cls is TFNetworkRecord and base is object:
        return TFNetworkRecord()
    raise _ForbiddenGlobal(f"copyreg._reconstructor of {getattr(cls, '__name__', cls)!r}")


def _numpy_attr(modules: tuple[str, ...], name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; a pickle may name either, whichever numpy wrote it.
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise GeneratorLoadError(f"numpy has no {modules[0]}.{name}")


def allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """``(module, name) -> object`` for every global a network pickle may name."""
    multiarray = ("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = ("numpy._core.numeric", "numpy.core.numeric")
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): _latin1_bytes,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
        ("dnnlib.util", "EasyDict"): _PlainDict,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
        ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    }
    # dict and object only ever serve as copyreg._reconstructor's base class (protocols 0-1).
    allowed.update({("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "bytes"): _empty_bytes,
                    ("builtins", "dict"): dict, ("builtins", "object"): object,
                    ("copyreg", "_reconstructor"): _reconstructor})
    for module in multiarray:
        allowed[(module, "scalar")] = _numpy_attr(multiarray, "scalar")
        allowed[(module, "_reconstruct")] = _numpy_attr(multiarray, "_reconstruct")
    for module in numeric:
        allowed[(module, "_frombuffer")] = _numpy_attr(numeric, "_frombuffer")
    return allowed


# ----------------------------------------------------------------------------------------------------------------
# The unpickler


class _ForbiddenGlobal(Exception):
    pass


class _Inert:
    """In a survey, what a refused global would have built: it runs nothing and keeps what it is given."""

    refused = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.state, self.items = args, None, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :func:`allowed_globals`; any other global is refused unresolved.

    ``survey=True`` (used only to describe a refused file) replaces each refused global by an inert stand-in instead
    of raising, so the rest of the file can be read as data; :attr:`refused` lists them in order.
    """

    def __init__(self, file: io.BufferedIOBase, survey: bool = False) -> None:
        super().__init__(file)
        self._allowed = allowed_globals()
        self._survey = survey
        self.refused: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (__builtin__, copy_reg, ...), which protocols 0-2 write, mapped as pickle's fix_imports
        # does; no Python 3 module has these names, so the mapping needs no protocol check.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = self._allowed.get((module, name))
        if found is not None:
            return found
        self.refused.append(f"{module}.{name}")
        if not self._survey:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return type("Refused", (_Inert,), {"refused": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        # Only torch.save's own format uses persistent ids, and that path goes through torch.load instead.
        raise _ForbiddenGlobal(f"persistent id {str(pid)[:40]!r}")


def read_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; every failure is one :class:`GeneratorLoadError` line."""
    path = os.fspath(path)
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh).load()
    except _ForbiddenGlobal as exc:
        what = _survey_refused(path)
        raise GeneratorLoadError(f"{name}: refusing to load{what}, the pickle references the forbidden global "
                                 f"'{exc}' (only tensors, numpy arrays and NVIDIA network records are allowed)"
                                 ) from None
    except GeneratorLoadError as exc:
        raise GeneratorLoadError(f"{name}: {exc}") from None
    except EOFError:
        raise GeneratorLoadError(f"{name}: the file is truncated (the pickle stream ends early)") from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError,
            UnicodeDecodeError, MemoryError, OverflowError) as exc:
        raise GeneratorLoadError(f"{name}: not a readable network pickle or torch checkpoint "
                                 f"({type(exc).__name__}: {_first_line(exc)})") from None


def _survey_refused(path: str) -> str:
    """`` a StyleGAN-XL network`` (or another family) when a refused file's data says what it is, else ``""``."""
    try:
        with open(path, "rb") as fh:
            obj = RestrictedUnpickler(fh, survey=True).load()
    except Exception:  # the survey only improves the message; the refusal stands whatever happens here
        return ""
    family = _unsupported_family(obj)
    return f" {family}" if family else ""


def _unsupported_family(obj: Any) -> str | None:
    """The name of a known family we do not support, recognised from a (surveyed) pickle's records."""
    records = [obj] if isinstance(obj, PersistentRecord) else \
        [v for v in obj.values() if isinstance(v, PersistentRecord)] if isinstance(obj, Mapping) else []
    for record in records:
        if _is_stylegan_xl(record):
            return _STYLEGAN_XL
    return None


_STYLEGAN_XL = "a StyleGAN-XL network (autonomousvision/stylegan_xl), which stylemix does not support"


def _is_stylegan_xl(record: PersistentRecord) -> bool:
    # StyleGAN-XL's generator projects a pretrained class embedding (mapping.embed_proj); its super-resolution
    # stages are SuperresGenerator records with head layers.
    mapping = record.child("mapping")
    return record.class_name == "SuperresGenerator" or "head_layer_names" in record.state or (
        mapping is not None and "embed_proj" in (mapping.state.get("_modules") or {}))


# ----------------------------------------------------------------------------------------------------------------
# What a pickle holds


def classify_network(obj: Any, name: str) -> tuple[str, Any]:
    """``(kind, network)`` for a loaded pickle, judged from its recorded state only.

    ``kind`` is ``"stylegan2"`` or ``"stylegan3"`` (``network`` is the generator's :class:`PersistentRecord`:
    ``G_ema`` of a snapshot, or a bare record), or ``"stylegan2-tf"`` (``network`` is the :class:`TFNetworkRecord`
    of ``Gs``, the moving average, from a ``(G, D, Gs)`` tuple, or a bare ``G_main`` network). Anything else
    raises :class:`GeneratorLoadError` with one line naming what the file holds.
    """
    if isinstance(obj, TFNetworkRecord) or (isinstance(obj, tuple) and obj and
                                            all(isinstance(n, TFNetworkRecord) for n in obj)):
        return "stylegan2-tf", _classify_tf(obj, name)
    if isinstance(obj, Mapping) and isinstance(obj.get("G_ema"), PersistentRecord):
        record = obj["G_ema"]
    elif isinstance(obj, PersistentRecord):
        record = obj
    elif isinstance(obj, Mapping):
        records = [v for v in obj.values() if isinstance(v, PersistentRecord)]
        if records and all(_is_discriminator(r) for r in records):
            raise GeneratorLoadError(f"{name}: the pickle holds only a discriminator ({records[0].class_name}), "
                                     "not a generator")
        raise GeneratorLoadError(f"{name}: a pickle without a 'G_ema' network (keys: {_key_list(obj)})")
    else:
        raise GeneratorLoadError(f"{name}: unrecognised pickle content ({type(obj).__name__}); expected an NVIDIA "
                                 "network snapshot with 'G_ema' or a TensorFlow (G, D, Gs) tuple")
    return _classify_record(record, name), record


def _is_discriminator(record: PersistentRecord) -> bool:
    return "Discriminator" in record.class_name or record.child("b4", "out") is not None


def _classify_record(record: PersistentRecord, name: str) -> str:
    if _is_stylegan_xl(record):
        raise GeneratorLoadError(f"{name}: {_STYLEGAN_XL}")
    if _is_discriminator(record):
        raise GeneratorLoadError(f"{name}: the network is a discriminator ({record.class_name}), not a generator")
    synthesis, mapping = record.child("synthesis"), record.child("mapping")
    if synthesis is None or mapping is None:
        raise GeneratorLoadError(f"{name}: the network {record.class_name!r} has no mapping and synthesis networks; "
                                 "not a StyleGAN generator")
    modules = synthesis.state.get("_modules") or {}
    # StyleGAN3's synthesis starts from Fourier features (an `input` layer) and lists its layers by name; StyleGAN2's
    # has one block per resolution, b4 ... bR.
    if "input" in modules or "layer_names" in synthesis.state:
        return "stylegan3"
    if "b4" in modules:
        return "stylegan2"
    raise GeneratorLoadError(f"{name}: the generator's synthesis network has neither StyleGAN2 blocks (b4, b8, ...) "
                             f"nor a StyleGAN3 input layer (modules: {_key_list(modules)}); unsupported family")


def _classify_tf(obj: Any, name: str) -> TFNetworkRecord:
    if isinstance(obj, tuple):
        if len(obj) != 3:
            raise GeneratorLoadError(f"{name}: a tuple of {len(obj)} TensorFlow networks; expected (G, D, Gs)")
        net = obj[2]  # Gs, the moving average that NVIDIA's generation scripts use
    else:
        net = obj
    func = net.build_func_name
    synthesis = net.components.get("synthesis")
    syn_func = synthesis.build_func_name if isinstance(synthesis, TFNetworkRecord) else None
    if func == "G_style" or (func == "G_main" and syn_func == "G_synthesis" and isinstance(synthesis, TFNetworkRecord)
                             and not any(k.endswith("/mod_weight") for k in synthesis.variables)):
        raise GeneratorLoadError(f"{name}: a TensorFlow StyleGAN (version 1) generator ({func} / {syn_func}), which "
                                 "stylemix does not support")
    if func.startswith("D_"):
        raise GeneratorLoadError(f"{name}: a TensorFlow discriminator ({func}) alone, not a generator")
    if func != "G_main" or not isinstance(synthesis, TFNetworkRecord) or \
            not isinstance(net.components.get("mapping"), TFNetworkRecord):
        raise GeneratorLoadError(f"{name}: a TensorFlow network built by {func!r} with components "
                                 f"{sorted(net.components)}; expected StyleGAN2's G_main with mapping and synthesis")
    if syn_func == "G_synthesis_stylegan_revised":
        raise GeneratorLoadError(f"{name}: a TensorFlow StyleGAN2 config A-D generator (G_synthesis_stylegan_revised), "
                                 "which stylemix does not support (configs E and F are supported)")
    return net


# ----------------------------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _key_list(obj: Mapping[Any, Any], limit: int = 8) -> str:
    keys = [str(k) for k in list(obj)[:limit]]
    return ", ".join(keys) + (", ..." if len(obj) > limit else "") if keys else "none"
