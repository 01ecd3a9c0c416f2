"""Part banks: class ids that mean the same part in every image of a generator, and a foreground decided once.

Per image, each pixel (at the analysis resolution) is described by three cues that are stable across images:

* the base image's own generator features there (L2-normalised, then a PCA fitted on the bank's images);
* its *co-variation signature*: how it changes across one fixed set of style variants that every image shares
  (the bank's ``signature`` variants, the same latents for every seed), standardised per pixel as the method's
  vectors are, then a PCA. With per-seed variants these vectors cannot be compared across images; with shared
  variants, hair responds to a hair-colour change the same way in every portrait;
* its position in the frame.

:func:`discover` pools these descriptors over many seeds, clusters them into ``prototypes`` (many more than the
parts), gives each prototype the foreground rate that the per-image consensus of style mixing
(:func:`stylemix.segment.consensus_foreground`) gives its pixels over all the bank's images, makes every prototype
with a rate of at most 1/2 the *background* class, and merges the others into ``n_parts - 1`` classes by Ward
linkage of their centroids. A second k-means of the same descriptors with many more centres, the *fine
foreground prototypes*, each with its own pooled rate, decides the foreground (``foreground="fine"``) on finer
regions than the parts. A :class:`PartBank` holds all of it; :func:`predict_classes` labels a new image.
docs/parts.md explains the choices and the measurements behind them.

Files: :meth:`PartBank.save` writes a safetensors file (arrays plus a JSON header; loading runs no code) and,
beside it, ``<stem>.classes.csv``, the table of class names and foreground flags a person may edit.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import weakref
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from stylemix import mixing
from stylemix.errors import StylemixError
from stylemix.vectors import pixel_vectors

FORMAT = "stylemix-partbank"
FORMAT_VERSION = 2  # 2: the fine foreground prototypes (version 1 banks load, their foreground stays by class)
FOREGROUND_MODES = ("fine", "combined", "bank", "consensus")
PACKAGED = {"default": "mobilestylegan-ffhq.parts"}  # names of the banks shipped in stylemix/data
# Generator family -> the packaged bank whose foreground ``segment(..., parts="auto")`` (the default) uses, when the
# generator's weights are the bank's: on the default generator it measures better than the per-image consensus.
PACKAGED_FOR = {"mobilestylegan": "default"}
PART_CHOICES = ("auto", "none")  # the string values of segment's ``parts`` besides a bank file and "default"


@dataclasses.dataclass(frozen=True)
class PartSettings:
    """How a bank describes pixels and merges them (stored in the bank; defaults from docs/parts.md).

    Attributes:
        n_parts: K, the number of classes (class 0 is the background when the bank finds one).
        prototypes: M, the number of k-means prototypes of the pooled descriptors (M >> K).
        signature_variants: shared style variants that give every pixel its co-variation signature.
        signature_seed: seed of their latents, ``mixing.stream(signature_seed, mixing.STREAM_SIGNATURE)``.
        crossovers: the variants' crossovers, cycled (``[]``: the segmentation's default crossovers).
        feature_components, signature_components: PCA dimensions kept of each cue.
        feature_weight, signature_weight, position_weight: how each cue weighs in the descriptor.
        pixels_per_image: pixels drawn per bank image for fitting.
        foreground_prototypes: Mf, the fine prototypes of the foreground (a second k-means of the same pooled
            descriptors, Mf >> M: the foreground is decided on finer regions than the parts, so a second person's
            clothes or a crowd can be background while the subject's clothes are not).
        foreground: the per-pixel foreground of ``segment(..., parts=bank)``: ``fine`` (each pixel takes the
            pooled consensus foreground rate of its nearest fine prototype; measured best, docs/parts.md),
            ``bank`` (the bank's foreground classes), ``combined`` (their mean with the per-image consensus, then
            the guided threshold) or ``consensus`` (the per-image decision, as with ``parts="none"``).
        random_state: seed of the prototype k-means.
    """

    n_parts: int = 4
    prototypes: int = 64
    signature_variants: int = 24
    signature_seed: int = 0
    crossovers: tuple[int, ...] = ()
    feature_components: int = 32
    signature_components: int = 32
    feature_weight: float = 1.0
    signature_weight: float = 1.0
    position_weight: float = 0.5
    pixels_per_image: int = 256
    foreground_prototypes: int = 256
    foreground: str = "fine"
    random_state: int = 0

    def check(self) -> None:
        if self.n_parts < 2:
            raise StylemixError(f"a part bank needs at least 2 parts, got {self.n_parts}")
        if self.prototypes < self.n_parts:
            raise StylemixError(f"prototypes ({self.prototypes}) must be at least the parts ({self.n_parts})")
        if self.foreground_prototypes < 2:
            raise StylemixError(f"foreground prototypes must be at least 2, got {self.foreground_prototypes}")
        if self.signature_variants < 2:
            raise StylemixError(f"signature variants must be at least 2, got {self.signature_variants}")
        if self.foreground not in FOREGROUND_MODES:
            raise StylemixError(f"unknown foreground mode {self.foreground!r}: use one of "
                                f"{', '.join(FOREGROUND_MODES)}")


@dataclasses.dataclass
class PartBank:
    """Everything needed to label parts in new images of one generator.

    Attributes:
        settings: the :class:`PartSettings` it was fitted with.
        analysis_resolution, feature_dim: of the segmentation settings it was fitted with.
        feature_mean ``[C]``, feature_basis ``[Pf, C]``: PCA of the L2-normalised base features.
        signature_mean ``[N*D]``, signature_basis ``[Ps, N*D]``: PCA of the co-variation signatures.
        prototypes ``float32 [M, Pf + Ps + 2]``: centroids in descriptor space.
        prototype_class ``int32 [M]``: the class of each prototype.
        prototype_foreground ``float32 [M]``: its pooled consensus foreground rate over the bank's images.
        foreground_prototypes ``float32 [Mf, Pf + Ps + 2]`` and foreground_rate ``float32 [Mf]``: the fine
            prototypes of the foreground (``foreground="fine"``) and their pooled rates (empty in a version 1
            bank: the foreground then follows the classes).
        class_names, class_foreground: per class (the table; ``foreground`` flags decide the mask).
        class_share ``float [K]``: each class's share of the bank's pixels.
        generator: ``{"family", "id"}`` (:func:`stylemix.identity.generator_id`); fit_seeds: the seeds it was fitted on (NVlabs ranges).
        sheets: per class a contact sheet ``uint8 [h, w, 3]`` (only right after :func:`discover`; not stored).
        foreground_sheet: the same for the fine foreground (``<stem>.foreground.png``; not stored).
    """

    settings: PartSettings
    analysis_resolution: int
    feature_dim: int
    crossovers: tuple[int, ...]
    feature_mean: np.ndarray
    feature_basis: np.ndarray
    signature_mean: np.ndarray
    signature_basis: np.ndarray
    prototypes: np.ndarray
    prototype_class: np.ndarray
    prototype_foreground: np.ndarray
    class_names: list[str]
    class_foreground: list[bool]
    class_share: list[float]
    generator: dict[str, Any]
    fit_seeds: str = ""
    foreground_prototypes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.float32))
    foreground_rate: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    sheets: list[np.ndarray] | None = None
    foreground_sheet: np.ndarray | None = None

    @property
    def n_parts(self) -> int:
        return len(self.class_names)

    @property
    def needs_consensus(self) -> bool:
        """Whether :func:`foreground_map` reads a per-image consensus under this bank's ``foreground`` setting
        (``combined``, ``consensus``); ``fine`` and ``bank`` decide without one."""
        return self.settings.foreground in ("combined", "consensus")

    # -- files ------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, sheets: bool = True) -> list[Path]:
        """Write the bank (safetensors), its class table (``<stem>.classes.csv``) and, when the bank holds them,
        the contact sheets (``<stem>.classNN.png``, ``<stem>.foreground.png``); returns the paths written."""
        from safetensors.numpy import save_file
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT, "version": FORMAT_VERSION, "settings": _settings_dict(self.settings),
                  "analysis_resolution": self.analysis_resolution, "feature_dim": self.feature_dim,
                  "crossovers": list(self.crossovers), "generator": self.generator, "fit_seeds": self.fit_seeds,
                  "classes": self.table()}
        tensors = {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}
        tensors.update({name: tensors[name].astype(np.float16) for name in _HALF})
        save_file(tensors, str(path), metadata={"stylemix": json.dumps(header, sort_keys=True)})
        written = [path, table_path(path)]
        table_path(path).write_text(table_csv(self.table()))
        if sheets and self.sheets:
            import cv2
            for i, sheet in enumerate(self.sheets):
                p = sheet_path(path, i)
                cv2.imwrite(str(p), sheet[:, :, ::-1])
                written.append(p)
        if sheets and self.foreground_sheet is not None:
            import cv2
            p = path.with_name(f"{path.stem}.foreground.png")
            cv2.imwrite(str(p), self.foreground_sheet[:, :, ::-1])
            written.append(p)
        return written

    @staticmethod
    def load(path: str | os.PathLike, G: Any = None) -> "PartBank":
        """Read a bank written by :meth:`save` (``"default"``: the bank shipped with stylemix). The class table
        beside it, when present, overrides the stored names and foreground flags. With ``G``, a bank fitted on
        other weights is refused (one-line :class:`StylemixError`)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        path = resolve_bank_path(path)
        try:
            from safetensors import safe_open
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
            arrays = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise StylemixError(f"{path}: not a part bank ({e})") from None
        try:
            header = json.loads(meta["stylemix"])
            if header.get("format") != FORMAT:
                raise KeyError("format")
        except (KeyError, ValueError):
            raise StylemixError(f"{path}: not a stylemix part bank") from None
        if int(header["version"]) > FORMAT_VERSION:
            raise StylemixError(f"{path}: part bank format {header['version']} is newer than this stylemix reads")
        rows = header["classes"]
        if table_path(path).is_file():
            rows = read_table(table_path(path), len(rows))
        bank = PartBank(settings=PartSettings(**{**header["settings"],
                                                 "crossovers": tuple(header["settings"]["crossovers"])}),
                        analysis_resolution=int(header["analysis_resolution"]),
                        feature_dim=int(header["feature_dim"]), crossovers=tuple(header["crossovers"]),
                        class_names=[r["name"] for r in rows], class_foreground=[bool(r["foreground"]) for r in rows],
                        class_share=[float(r.get("pixel_share", 0.0)) for r in rows],
                        generator=header["generator"], fit_seeds=header.get("fit_seeds", ""),
                        **{name: arrays[name].astype(np.float32) if name in _HALF else arrays[name]
                           for name in _ARRAYS if name in arrays},
                        **{name: np.zeros(shape, np.float32) for name, shape in _SINCE_V2.items()
                           if name not in arrays})
        if G is not None:
            bank.check_generator(G)
        return bank

    def check_generator(self, G: Any) -> None:
        """Refuse a generator that is not the bank's (one line saying why and what to do)."""
        reason = self.mismatch(G)
        if reason is not None:
            raise StylemixError(reason)

    def mismatch(self, G: Any) -> str | None:
        """Why ``G`` is not the generator this bank was fitted on, in one line; ``None`` when it is.

        A bank names its generator by :func:`stylemix.identity.generator_id`. A bank written before ids stored
        the hash of the whole state dict (``weights_sha256``): it matches where that hash can be recomputed
        here (generators read from a file), else the line says how to refit it.
        """
        from stylemix.identity import generator_id, legacy_weights_sha256
        family = self.generator.get("family")
        if "id" in self.generator:
            want, got = self.generator["id"], generator_id(G)
            if want == got:
                return None
            return (f"this part bank was fitted on another generator ({family}, id {str(want)[:12]}), "
                    f"not this one ({getattr(G, 'family', type(G).__name__)}, id {str(got)[:12]})")
        legacy = legacy_weights_sha256(G)
        if legacy is not None and self.generator.get("weights_sha256") == legacy:
            return None
        return (f"this part bank ({family}) predates machine-independent generator ids and cannot be matched to "
                f"this generator: refit it with `stylemix discover --seeds {self.fit_seeds or '200-399'} "
                f"-k {self.n_parts} --out BANK`")

    def table(self) -> list[dict[str, Any]]:
        """The class table: ``id``, ``name``, ``foreground``, ``pixel_share``, ``foreground_rate``."""
        rate = class_rates(self.prototype_class, self.prototype_foreground, self.n_parts)
        return [{"id": i, "name": self.class_names[i], "foreground": bool(self.class_foreground[i]),
                 "pixel_share": round(float(self.class_share[i]), 4), "foreground_rate": round(float(rate[i]), 4)}
                for i in range(self.n_parts)]

    def with_names(self, names: Sequence[str] | None = None, foreground: Sequence[bool] | None = None
                   ) -> "PartBank":
        """A copy with other class names and / or foreground flags (one per class)."""
        for given in (names, foreground):
            if given is not None and len(given) != self.n_parts:
                raise StylemixError(f"the bank has {self.n_parts} classes, got {len(given)} values")
        return dataclasses.replace(self, class_names=list(names or self.class_names),
                                   class_foreground=[bool(f) for f in (foreground or self.class_foreground)])


_ARRAYS = ("feature_mean", "feature_basis", "signature_mean", "signature_basis", "prototypes", "prototype_class",
           "prototype_foreground", "foreground_prototypes", "foreground_rate")
_SINCE_V2 = {"foreground_prototypes": (0, 0), "foreground_rate": (0,)}  # absent from version 1 banks: empty


_HALF = ("feature_mean", "feature_basis", "signature_mean", "signature_basis", "foreground_prototypes")


def _half(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16).astype(np.float32)


def _settings_dict(s: PartSettings) -> dict[str, Any]:
    d = dataclasses.asdict(s)
    d["crossovers"] = list(s.crossovers)
    return d


def table_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".classes.csv")


def sheet_path(path: str | os.PathLike, i: int) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.class{i:02d}.png")


def resolve_bank_path(path: str | os.PathLike) -> Path:
    """A bank's file: a path, or the name of a bank shipped with stylemix (``default``)."""
    if str(path) in PACKAGED:
        return Path(__file__).resolve().parent / "data" / PACKAGED[str(path)]
    path = Path(path)
    if not path.is_file():
        raise StylemixError(f"no part bank at {path} (use a file written by `stylemix discover`, or 'default')")
    return path


def table_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, ["id", "name", "foreground", "pixel_share", "foreground_rate"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "foreground": "yes" if r["foreground"] else "no"})
    return out.getvalue()


def read_table(path: Path, n_parts: int) -> list[dict[str, Any]]:
    """Parse an edited class table; names must be unique and non-empty, flags yes/no (or true/false, 1/0)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    flags = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
    out: list[dict[str, Any]] = []
    for i, r in enumerate(rows):
        name = (r.get("name") or "").strip()
        flag = (r.get("foreground") or "").strip().lower()
        if str(r.get("id", "")).strip() != str(i) or not name or flag not in flags:
            raise StylemixError(f"{path}: row {i + 1} must read id {i}, a name and foreground yes/no")
        out.append({**r, "id": i, "name": name, "foreground": flags[flag],
                    "pixel_share": float(r.get("pixel_share") or 0)})
    if len(out) != n_parts or len({r["name"] for r in out}) != n_parts:
        raise StylemixError(f"{path}: needs {n_parts} rows with distinct names, got {len(out)}")
    return out


# --------------------------------------------------------------------------------------------------------------
# Pure functions over arrays


def positions(h: int, w: int) -> np.ndarray:
    """``float32 [h*w, 2]``: pixel-centre (y, x) in [-1/2, 1/2], row-major."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(yy + 0.5) / h - 0.5, (xx + 0.5) / w - 0.5], -1).reshape(-1, 2).astype(np.float32)


def raw_cues(base_features: np.ndarray, signature_stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two learned cues of every pixel before their PCA.

    Args:
        base_features: ``float [C, h, w]`` the base image's generator features at the analysis resolution.
        signature_stack: ``float [N, D, h, w]`` the shared signature variants (projected features).

    Returns:
        ``(features [h*w, C]`` L2-normalised, ``signatures [h*w, N*D]`` standardised to unit norm).
    """
    C = base_features.shape[0]
    F = np.ascontiguousarray(np.asarray(base_features, np.float32).reshape(C, -1).T)
    F /= np.linalg.norm(F, axis=1, keepdims=True) + 1e-8
    S = np.asarray(pixel_vectors(np.asarray(signature_stack, np.float32), "standardize"))
    return F, S / np.sqrt(S.shape[1])


def fit_pca(X: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and the first ``n`` principal axes ``[n, D]`` of ``X [P, D]`` (signs fixed: the largest
    coordinate of each axis is positive, so the result does not depend on the SVD's choice).

    In float64, rounded to float32 at the end: LAPACK's rounding differs between CPUs and thread counts in the
    last float64 digits, which the rounding removes (call it inside :func:`stylemix.cluster.thread_limit` ``(1)``
    for the same bytes at any thread count)."""
    X = np.asarray(X, np.float64)
    mean = X.mean(0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    vt = vt[:min(n, vt.shape[0])]
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]
    return mean.astype(np.float32), vt.astype(np.float32)


def descriptors(F: np.ndarray, S: np.ndarray, pos: np.ndarray, bank: PartBank, dtype: Any = np.float32
                ) -> np.ndarray:
    """``[P, Pf + Ps + 2]`` descriptors of pixels with cues ``F [P, C]``, ``S [P, N*D]``, ``pos [P, 2]``, computed
    in ``dtype`` (float32 per image; a fit uses float64, see :func:`fit`)."""
    s = bank.settings
    F, S, pos = (np.asarray(a, dtype) for a in (F, S, pos))
    return np.concatenate([s.feature_weight * ((F - bank.feature_mean) @ bank.feature_basis.T.astype(dtype, copy=False)),
                           s.signature_weight * ((S - bank.signature_mean) @ bank.signature_basis.T.astype(dtype, copy=False)),
                           s.position_weight * pos], 1).astype(dtype)


def nearest(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index ``int32 [P]`` of the nearest of ``centres [M, D]`` for each row of ``X [P, D]``."""
    d = (X * X).sum(1)[:, None] - 2 * X @ centres.T + (centres * centres).sum(1)[None]
    return d.argmin(1).astype(np.int32)


def merge_prototypes(centres: np.ndarray, foreground_rate: np.ndarray, weights: np.ndarray, n_parts: int,
                     mean_y: np.ndarray) -> np.ndarray:
    """Class ``int32 [M]`` of each prototype: those the pooled consensus calls background (rate <= 1/2) form class
    0, the rest are merged into ``n_parts - 1`` classes by Ward linkage of their centroids; foreground classes are
    numbered from the top of the frame down (``mean_y [M]``, weighted by ``weights [M]``)."""
    from sklearn.cluster import AgglomerativeClustering
    M = len(centres)
    fg = np.flatnonzero((foreground_rate > 0.5) & (weights > 0))
    bg = np.setdiff1d(np.arange(M), fg)
    n_fg = n_parts - 1 if len(bg) else n_parts
    n_fg = max(1, min(n_fg, len(fg)))
    cls = np.zeros(M, np.int32)
    if len(fg) > 1 and n_fg > 1:
        raw = AgglomerativeClustering(n_fg, linkage="ward").fit_predict(centres[fg].astype(np.float64))
    else:
        raw = np.zeros(len(fg), np.int64)
    # Order the foreground classes top to bottom, so ids read the same whatever the linkage's numbering.
    ys = [np.average(mean_y[fg][raw == c], weights=weights[fg][raw == c] + 1e-9) for c in range(n_fg)]
    rank = np.empty(n_fg, np.int32)
    rank[np.argsort(ys, kind="stable")] = np.arange(n_fg)
    offset = 1 if len(bg) else 0
    cls[fg] = offset + rank[raw]
    return cls


def class_rates(prototype_class: np.ndarray, prototype_foreground: np.ndarray, n_parts: int) -> np.ndarray:
    """Mean foreground rate per class ``[K]`` (unweighted over its prototypes)."""
    total = np.bincount(prototype_class, weights=prototype_foreground, minlength=n_parts)
    return total / np.maximum(np.bincount(prototype_class, minlength=n_parts), 1)


def image_descriptors(base_features: np.ndarray, signature_stack: np.ndarray, bank: PartBank) -> np.ndarray:
    """``float32 [h*w, Pf + Ps + 2]`` descriptors of one image's pixels (inputs as :func:`raw_cues`)."""
    h, w = base_features.shape[-2:]
    F, S = raw_cues(base_features, signature_stack)
    return descriptors(F, S, positions(h, w), bank)


def descriptor_classes(X: np.ndarray, bank: PartBank, shape: tuple[int, int]) -> np.ndarray:
    """Class ids ``int32 [h, w]`` of an image's descriptors ``X [h*w, D]`` (:func:`image_descriptors`)."""
    return bank.prototype_class[nearest(X, bank.prototypes)].reshape(shape).astype(np.int32)


def descriptor_foreground(X: np.ndarray, bank: PartBank, shape: tuple[int, int]) -> np.ndarray | None:
    """The fine foreground ``float32 [h, w]`` of an image's descriptors ``X [h*w, D]``: each pixel's nearest fine
    prototype's pooled foreground rate; ``None`` for a bank without fine prototypes (version 1)."""
    if not len(bank.foreground_prototypes):
        return None
    return bank.foreground_rate[nearest(X, bank.foreground_prototypes)].reshape(shape).astype(np.float32)


def predict_classes(base_features: np.ndarray, signature_stack: np.ndarray, bank: PartBank) -> np.ndarray:
    """Class ids ``int32 [h, w]`` at the analysis resolution of one image (inputs as :func:`raw_cues`)."""
    return descriptor_classes(image_descriptors(base_features, signature_stack, bank), bank,
                              base_features.shape[-2:])


def foreground_map(classes: np.ndarray, bank: PartBank, consensus: np.ndarray | None = None,
                   fine: np.ndarray | None = None) -> np.ndarray:
    """Foreground probability ``float32 [h, w]`` of one image, as the bank's ``foreground`` setting says.

    Args:
        classes: the bank's class ids ``int [h, w]``.
        bank: the bank (its ``foreground`` setting and class table).
        consensus: the per-image consensus probability ``float [h, w]`` (``combined``, ``consensus``), or ``None``.
        fine: :func:`descriptor_foreground` ``float [h, w]`` (``fine``), or ``None``.

    ``fine``: the fine prototypes' pooled rates, except in a class whose flag the table turns away from its pooled
    verdict (rate above 1/2 or not): there the flag, so that setting ``cloth`` to ``no`` still removes clothing.
    ``bank``: the class flags (also ``fine`` without ``fine``, and ``combined`` / ``consensus`` without
    ``consensus``). ``combined``: the mean of the class flags and the consensus. ``consensus``: the consensus.
    """
    flags = np.asarray(bank.class_foreground, bool)
    bank_fg = flags.astype(np.float32)[classes]
    mode = bank.settings.foreground
    if mode == "fine" and fine is not None:
        edited = flags != (class_rates(bank.prototype_class, bank.prototype_foreground, bank.n_parts) > 0.5)
        return np.where(edited[classes], bank_fg, np.asarray(fine, np.float32)).astype(np.float32)
    if consensus is None or mode in ("bank", "fine"):
        return bank_fg
    if mode == "consensus":
        return np.asarray(consensus, np.float32)
    return 0.5 * (bank_fg + np.asarray(consensus, np.float32))


# --------------------------------------------------------------------------------------------------------------
# Rendering the cues


def signature_latents(G: Any, settings: PartSettings) -> np.ndarray:
    """``float32 [N, z_dim]``: the shared variants' latents (the same for every seed)."""
    rng = mixing.stream(settings.signature_seed, mixing.STREAM_SIGNATURE)
    return rng.standard_normal((settings.signature_variants, G.z_dim)).astype(np.float32)


@torch.inference_mode()
def image_cues(G: Any, ws_base: torch.Tensor, latents: np.ndarray, crossovers: Sequence[int], cfg: Any,
               base: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The base image's features ``[C, r, r]`` and the shared signature stack ``[N, D, r, r]`` of one image.

    ``ws_base [1, num_ws, w_dim]``; ``latents [N, z_dim]`` the bank's shared latents; ``crossovers`` cycled over
    them; ``cfg`` a resolved :class:`~stylemix.segment.SegmentConfig` (analysis resolution, feature dimension,
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


# --------------------------------------------------------------------------------------------------------------
# Discovery


def discover(G: Any, seeds: Iterable[int], n_parts: int = 4, *, settings: PartSettings | None = None,
             config: Any = None, sheet_seeds: int = 16, progress: Any = None, **options: Any) -> PartBank:
    """Fit a :class:`PartBank` of ``n_parts`` classes on the images of ``seeds``.

    Args:
        G: the generator (its device picks the backend for the consensus).
        seeds: NVlabs seeds of the bank's images (keep them apart from the seeds you evaluate on).
        n_parts: K.
        settings: :class:`PartSettings` (``n_parts`` and ``options`` naming its fields override it).
        config: the :class:`~stylemix.segment.SegmentConfig` of the per-image consensus (``options`` naming its
            fields override it).
        sheet_seeds: how many of the first seeds go on the contact sheets.
        progress: optional callable ``progress(done, total)``.

    Returns:
        The bank, with ``bank.sheets`` (one contact sheet per class) for :meth:`PartBank.save`.
    """
    from stylemix.config import SegmentConfig
    seeds = [int(s) for s in seeds]
    part_fields = {f.name for f in dataclasses.fields(PartSettings)}
    seg_fields = {f.name for f in dataclasses.fields(SegmentConfig)}
    unknown = sorted(set(options) - part_fields - seg_fields)
    if unknown:
        raise StylemixError(f"unknown option {unknown[0]!r}")
    settings = dataclasses.replace(settings or PartSettings(), n_parts=int(n_parts),
                                   **{k: v for k, v in options.items() if k in part_fields})
    settings.check()
    cfg = dataclasses.replace(config or SegmentConfig(), **{k: v for k, v in options.items() if k in seg_fields})
    cfg = dataclasses.replace(cfg, clusters=2, descriptor="features").resolve(G)
    crossovers = tuple(settings.crossovers) or tuple(int(c) for c in np.atleast_1d(cfg.crossover))
    if len(seeds) < 2:
        raise StylemixError("a part bank needs at least 2 seeds")
    samples = collect(G, seeds, settings, cfg, crossovers, sheet_seeds, progress)
    return fit(samples, settings, cfg, crossovers, G)


@dataclasses.dataclass
class BankSamples:
    """What :func:`collect` gathers from the bank's images: per sampled pixel its cues ``F [P, C]``, ``S [P, N*D]``,
    consensus foreground probability ``prob [P]`` and position ``pos [P, 2]``; the seeds; and, for the contact
    sheets, ``(seed, image, F, S, pos)`` of the first images with every pixel."""

    F: np.ndarray
    S: np.ndarray
    prob: np.ndarray
    pos: np.ndarray
    seeds: list[int]
    sheet_data: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def collect(G: Any, seeds: Sequence[int], settings: PartSettings, cfg: Any, crossovers: Sequence[int],
            sheet_seeds: int = 16, progress: Any = None, render: Any = None) -> BankSamples:
    """Render the bank's images and sample their pixels (``settings.pixels_per_image`` each, drawn from the
    seed's own stream, so a sample never depends on the other seeds). ``render``: a stand-in for
    :func:`bank_image` with its signature (benchmarks/parts.py passes a cached one).

    On a CPU each image renders on one torch thread, images side by side on as many threads as torch had: torch's
    kernels (oneDNN's 1x1 convolutions among them) round differently with the thread count, and a bank must be
    the same bytes at any thread count. Side by side costs about what one image on every thread costs.
    """
    from stylemix.cluster import thread_limit
    from stylemix.outputs import ordered_map
    from stylemix.render import generator_device
    latents = signature_latents(G, settings)
    render = render or bank_image
    on_cpu = not isinstance(G, torch.nn.Module) or generator_device(G).type == "cpu"
    workers = min(torch.get_num_threads(), len(seeds)) if on_cpu else 0
    samples, sheet_data = [], []
    before = torch.get_num_threads()
    try:
        if on_cpu:
            torch.set_num_threads(1)
        with thread_limit(1):
            rendered = ordered_map(lambda seed: render(G, seed, cfg, latents, crossovers), seeds,
                                   threads=workers if workers > 1 else 0, queue=2 * max(workers, 1))
            for i, (seed, (F, S, prob, image, pos)) in enumerate(zip(seeds, rendered)):
                pick = np.sort(mixing.stream(seed, mixing.STREAM_BANK_PIXELS).permutation(len(F))
                               [:settings.pixels_per_image])
                samples.append((F[pick], S[pick], prob.ravel()[pick], pos[pick]))
                if i < sheet_seeds:
                    sheet_data.append((seed, image, F, S, pos))
                if progress is not None:
                    progress(i + 1, len(seeds))
    finally:
        torch.set_num_threads(before)
    F, S, P, pos = (np.concatenate(x) for x in zip(*samples))
    return BankSamples(F, S, P, pos, list(seeds), sheet_data)


def fit(samples: BankSamples, settings: PartSettings, cfg: Any, crossovers: Sequence[int], G: Any,
        consensus_split: bool = True) -> PartBank:
    """The bank of ``samples``: PCA of each cue, prototypes, pooled foreground rates, merge into classes.
    ``consensus_split=False`` merges all prototypes by Ward alone (an ablation: no foreground evidence)."""
    from stylemix.cluster import thread_limit
    from stylemix.identity import generator_id
    from stylemix.io import compact_seeds
    F, S, pos = samples.F, samples.S, samples.pos
    # One thread and float64 throughout, rounded where stored: the same samples give the same bank bytes at any
    # thread count (threaded BLAS and k-means sum partials in arrival order) and, but for last-digit ties, on
    # any CPU.
    with thread_limit(1):
        # The PCA is kept at float16 precision (stored so: a bank is tens of KB); the prototypes are fitted on it.
        f_mean, f_basis, s_mean, s_basis = (_half(a) for a in (*fit_pca(F, settings.feature_components),
                                                              *fit_pca(S, settings.signature_components)))
        bank = PartBank(settings, cfg.analysis_resolution, cfg.feature_dim, tuple(crossovers), f_mean, f_basis,
                        s_mean, s_basis, np.zeros((0, 0), np.float32), np.zeros(0, np.int32),
                        np.zeros(0, np.float32), [], [], [],
                        {"family": getattr(G, "family", type(G).__name__), "id": generator_id(G)},
                        compact_seeds(samples.seeds))
        X = descriptors(F, S, pos, bank, np.float64)
        centres, _ = _prototypes(X, settings)
        # The fine foreground prototypes: the same descriptors, many more centres (kept at float16, as stored).
        fine, _ = _prototypes(X, dataclasses.replace(settings, prototypes=settings.foreground_prototypes))
        bank = dataclasses.replace(bank, prototypes=centres.astype(np.float32), foreground_prototypes=_half(fine))
        return regroup(bank, samples, settings.n_parts, consensus_split)


def regroup(bank: PartBank, samples: BankSamples, n_parts: int, consensus_split: bool = True) -> PartBank:
    """The bank's prototypes merged into ``n_parts`` classes from the pooled statistics of ``samples`` (the
    prototypes are kept, so banks of several K share them). One thread and float64, as :func:`fit`."""
    from stylemix.cluster import thread_limit
    with thread_limit(1):
        return _regroup(bank, samples, n_parts, consensus_split)


def _regroup(bank: PartBank, samples: BankSamples, n_parts: int, consensus_split: bool) -> PartBank:
    X = descriptors(samples.F, samples.S, samples.pos, bank, np.float64)
    proto = nearest(X, bank.prototypes)
    M = len(bank.prototypes)
    count = np.bincount(proto, minlength=M).astype(np.float64)
    rate = np.bincount(proto, weights=samples.prob, minlength=M) / np.maximum(count, 1)
    mean_y = np.bincount(proto, weights=samples.pos[:, 0], minlength=M) / np.maximum(count, 1)
    cls = merge_prototypes(bank.prototypes, rate if consensus_split else np.ones(M), count, n_parts, mean_y)
    K = int(cls.max()) + 1
    share = np.bincount(cls[proto], minlength=K) / len(proto)
    rates = class_rates(cls, rate.astype(np.float32), K)
    names = ["background" if k == 0 and rates[0] <= 0.5 else f"part{k}" for k in range(K)]
    fine_rate = bank.foreground_rate
    if len(bank.foreground_prototypes):  # each fine prototype's pooled consensus rate, as the prototypes' above
        fine = nearest(X, bank.foreground_prototypes)
        n = len(bank.foreground_prototypes)
        fine_rate = (np.bincount(fine, weights=samples.prob, minlength=n)
                     / np.maximum(np.bincount(fine, minlength=n), 1)).astype(np.float32)
    bank = dataclasses.replace(bank, settings=dataclasses.replace(bank.settings, n_parts=int(n_parts)),
                               prototype_class=cls, prototype_foreground=rate.astype(np.float32), class_names=names,
                               class_foreground=[bool(r > 0.5) for r in rates], class_share=list(share),
                               foreground_rate=fine_rate)
    bank.sheets = class_sheets(bank, samples.sheet_data)
    bank.foreground_sheet = foreground_sheet(bank, samples.sheet_data) if len(bank.foreground_prototypes) else None
    return bank


def _prototypes(X: np.ndarray, settings: PartSettings) -> tuple[np.ndarray, np.ndarray]:
    from stylemix.cluster import KMeans
    """k-means centres ``[M, D]`` (float32) and labels ``[P]`` of the descriptors ``X [P, D]`` (float64 in a fit)."""
    M = min(settings.prototypes, len(np.unique(X.round(4), axis=0)))
    km = KMeans(max(M, settings.n_parts), n_init=2, random_state=settings.random_state).fit(X)
    return km.cluster_centers_, np.asarray(km.labels_)


def bank_image(G: Any, seed: int, cfg: Any, latents: np.ndarray, crossovers: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One bank image: its cues, its consensus foreground probability ``[r, r]``, its image and positions."""
    from stylemix.render import render_variants, style_latents, to_uint8
    from stylemix.stages import anchor_vote, consensus_foreground, kmeans_seed
    with torch.inference_mode():
        ws_base, ws_mix, cx = style_latents(G, seed, cfg)
        image, stack = render_variants(G, ws_base, ws_mix, cx, cfg)
        image_u8 = to_uint8(image)[0].cpu().numpy()
    prob, _ = consensus_foreground(stack.float().cpu().numpy(), cfg.consensus, kmeans_seed(seed),
                                   anchor_vote(cfg.foreground_rule, cfg.frame_penalty), **cfg.kmeans_options())
    base, sig = image_cues(G, ws_base, latents, crossovers, cfg)
    F, S = raw_cues(base, sig)
    r = cfg.analysis_resolution
    return F, S, np.asarray(prob), image_u8, positions(r, r)


def class_sheets(bank: PartBank, data: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                 tile: int = 128) -> list[np.ndarray]:
    """Per class, a contact sheet of the given images with the class highlighted (the rest dimmed), 4 columns,
    captioned with the seed and the class's share of that image."""
    import cv2
    from stylemix.visualize import contact_sheet, palette
    colours = palette(bank.n_parts + 1)[1:]
    sheets = []
    r = bank.analysis_resolution
    for k in range(bank.n_parts):
        tiles, captions = [], []
        for seed, image, F, S, pos in data:
            cls = bank.prototype_class[nearest(descriptors(F, S, pos, bank), bank.prototypes)].reshape(r, r)
            small = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32)
            on = cv2.resize((cls == k).astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST) > 0
            out = small * 0.35
            out[on] = 0.6 * small[on] + 0.4 * colours[k]
            tiles.append(out.astype(np.uint8))
            captions.append(f"{seed}: {100 * on.mean():.0f}%")
        sheet = contact_sheet(tiles, 4, captions, tile=tile)
        title = np.full((24, sheet.shape[1], 3), 255, np.uint8)
        fg = "fg" if bank.class_foreground[k] else "bg"
        cv2.putText(title, f"class {k}: {bank.class_names[k]} ({fg})", (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    tuple(int(c) for c in colours[k]), 1, cv2.LINE_AA)
        sheets.append(np.concatenate([title, sheet]))
    return sheets


def foreground_sheet(bank: PartBank, data: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                     tile: int = 128) -> np.ndarray:
    """A contact sheet of the fine foreground (``foreground="fine"`` before the boundary stage) on the given
    images: foreground at full colour, background dimmed, captioned with the seed and its foreground share."""
    import cv2
    from stylemix.visualize import contact_sheet
    r = bank.analysis_resolution
    tiles, captions = [], []
    for seed, image, F, S, pos in data:
        X = descriptors(F, S, pos, bank)
        cls, fine = descriptor_classes(X, bank, (r, r)), descriptor_foreground(X, bank, (r, r))
        fg = foreground_map(cls, bank, None, fine) > 0.5
        small = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32)
        on = cv2.resize(fg.astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST) > 0
        out = small * 0.3
        out[on] = small[on]
        tiles.append(out.astype(np.uint8))
        captions.append(f"{seed}: {100 * on.mean():.0f}%")
    sheet = contact_sheet(tiles, 4, captions, tile=tile)
    title = np.full((24, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(title, f"fine foreground ({len(bank.foreground_prototypes)} prototypes)", (4, 17),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, sheet])


def load_bank(spec: "str | os.PathLike | PartBank", G: Any = None) -> PartBank:
    """A bank from a :class:`PartBank`, a file or ``"default"``; checked against ``G`` when given."""
    if not isinstance(spec, (str, os.PathLike, PartBank)):
        raise StylemixError(f"parts must be 'auto', 'none', 'default', a bank file or a PartBank, got {spec!r}")
    bank = spec if isinstance(spec, PartBank) else PartBank.load(spec)
    if G is not None:
        bank.check_generator(G)
    return bank


def packaged_bank_for(G: Any) -> PartBank | None:
    """The bank shipped with stylemix for ``G`` (its family in :data:`PACKAGED_FOR` and the bank's generator id
    equal to ``G``'s), else ``None``. The family is checked first, so other generators are never hashed; a
    generator of a family with a packaged bank that is not the bank's generator (another checkpoint, changed
    weights) is told once per process why the bank does not apply."""
    name = PACKAGED_FOR.get(getattr(G, "family", None))
    if name is None or not resolve_bank_path(name).is_file():
        return None
    bank = _load_packaged(name)
    reason = bank.mismatch(G)
    if reason is not None:
        from stylemix.backend import warn_once
        warn_once(f"the part bank shipped for {G.family} ('{name}') is not used, so the foreground comes from the "
                  f"per-image consensus: {reason}")
        return None
    return bank


def _load_packaged(name: str) -> PartBank:
    """:meth:`PartBank.load` of a packaged bank, read once while its file and class table stay unchanged (a load
    costs ~30 ms, which ``segment(G, seed)`` would pay on every call)."""
    path = resolve_bank_path(name)
    stamp = tuple((st.st_mtime_ns, st.st_size) if p.is_file() and (st := p.stat()) else None
                  for p in (path, table_path(path)))
    key = (name, str(path))
    cached = _PACKAGED_CACHE.get(key)
    if cached is None or cached[0] != stamp:
        cached = _PACKAGED_CACHE[key] = (stamp, PartBank.load(name))
    return cached[1]


_PACKAGED_CACHE: dict[tuple[str, str], tuple[tuple, PartBank]] = {}  # (name, file) -> (file stamps, bank)


def part_step(G: Any, parts: Any, cfg: Any) -> "PartStep | None":
    """The step for :func:`stylemix.segment.segment_many`'s ``parts`` argument, or ``None`` for none.

    ``parts``: ``"auto"`` (the default) takes the foreground of two-way masks from the packaged bank of ``G`` where
    one exists (:func:`packaged_bank_for`; ``seg.parts`` stays ``None``), else the per-image consensus; ``None``
    or ``"none"``: the consensus always; a :class:`PartBank`, a bank file or ``"default"``: that bank's classes
    in ``seg.parts`` and, for two-way masks, its foreground (a bank of another generator is refused).
    """
    if parts is None or (isinstance(parts, str) and parts == "none"):
        return None
    if isinstance(parts, str) and parts == "auto":
        if cfg.clusters != 2 or cfg.exact:  # the bank decides fg/bg only; the reference pipeline stays as it was
            return None
        bank = packaged_bank_for(G)
        return None if bank is None else PartStep(G, bank, cfg, foreground_only=True, source="auto: default")
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
                and cfg.analysis_resolution == self.bank.analysis_resolution and cfg.feature_dim == self.bank.feature_dim)

    def shared_variants(self) -> Any:
        """The bank's signature variants as :class:`stylemix.render.SharedVariants`: their latents mapped once (the
        same for every image) and their crossovers, for :func:`stylemix.render.render_batch`."""
        if self._shared is None:
            from stylemix.identity import generator_id
            from stylemix.render import SharedVariants, generator_device
            G, cfg = self.G, self.cfg
            device = generator_device(G)
            # Mapped once per generator's weights, not per segment() call (a mapping call costs ~10-40 ms).
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

        The part map is ``None`` with ``foreground_only``.
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
            full = finish_labels(xp.asarray(classes), size, self.bank.n_parts, guide,
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

    def describe(self) -> dict[str, Any]:
        """``meta["parts"]``: which bank, what it gave (``foreground`` or ``parts and foreground``), its classes."""
        return {"bank": self.source, "used_for": "foreground" if self.foreground_only else "parts",
                "classes": list(self.bank.class_names), "foreground": list(self.bank.class_foreground),
                "foreground_mode": self.bank.settings.foreground, "fit_seeds": self.bank.fit_seeds}
