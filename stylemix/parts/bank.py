"""The part bank's file format: :class:`PartSettings`, :class:`PartBank` (safetensors arrays plus a JSON header;
loading runs no code), its editable class table ``<stem>.classes.csv``, and the banks shipped with stylemix."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stylemix.errors import StylemixError
from stylemix.parts.descriptors import class_rates

__all__ = ["FOREGROUND_MODES", "FORMAT", "FORMAT_VERSION", "MERGE_CUES", "PACKAGED", "PACKAGED_FOR", "PART_CHOICES",
           "PartBank", "PartSettings", "load_bank", "load_stamped", "packaged_bank_for", "read_table",
           "resolve_bank_path", "round_half", "saved_bytes", "settings_dict", "sheet_path", "table_csv", "table_path"]

FORMAT = "stylemix-partbank"
FORMAT_VERSION = 2  # 2: the fine foreground prototypes (version 1 banks load, their foreground stays by class)
FOREGROUND_MODES = ("fine", "combined", "bank", "consensus")
MERGE_CUES = ("features", "descriptor")  # what the Ward merge of the foreground prototypes compares
PACKAGED = {"default": "mobilestylegan-ffhq.parts"}  # names of the banks shipped in stylemix/data
# Generator family -> the packaged bank whose foreground ``segment(..., parts="auto")`` (the default) uses, when the
# generator's weights are the bank's: on the default generator it measures better than the per-image consensus.
PACKAGED_FOR = {"mobilestylegan": "default"}
PART_CHOICES = ("auto", "fit", "none")  # the string values of segment's ``parts`` besides a bank file and "default"


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
        merge_cue: what the Ward merge of the foreground prototypes compares: ``descriptor`` (the whole
            descriptor) or ``features`` (their generator feature block alone: on faces it moves less between
            fit seeds, but parts that differ only in how they co-vary, as on the shapes generator, merge).
        lower_band: with four or more foreground classes, the prototypes of the core class (the highest pooled
            foreground rate) whose pixels lie on average below this height (``y`` in [-1/2, 1/2]; 0.35 is the
            bottom 15 % of the frame) form a class of their own, and Ward makes the others: a part that the
            cues barely tell from the core but that sits apart from it in every image (on aligned portraits the
            neck, which style mixing changes with the face and whose features resemble the chin's). ``0.5`` or
            more turns it off.
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
    merge_cue: str = "descriptor"
    lower_band: float = 0.35
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
        if self.merge_cue not in MERGE_CUES:
            raise StylemixError(f"unknown merge cue {self.merge_cue!r}: use one of {', '.join(MERGE_CUES)}")
        if not -0.5 <= self.lower_band:
            raise StylemixError(f"lower_band is a height in [-1/2, 1/2] (0.5 or more: off), got {self.lower_band}")
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
        generator: ``{"family", "id"}`` (:func:`stylemix.identity.generator_id`); fit_seeds: the seeds it was
            fitted on (NVlabs ranges).
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
        header = {"format": FORMAT, "version": FORMAT_VERSION, "settings": settings_dict(self.settings),
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


def round_half(a: np.ndarray) -> np.ndarray:
    """``a`` rounded to float16 and back to float32: the precision a bank stores its PCA and fine prototypes at."""
    return a.astype(np.float16).astype(np.float32)


def settings_dict(s: PartSettings) -> dict[str, Any]:
    d = dataclasses.asdict(s)
    d["crossovers"] = list(s.crossovers)
    return d


def saved_bytes(bank: PartBank, name: str, sheets: bool = True) -> dict[str, bytes]:
    """``{file name: bytes}`` of what :meth:`PartBank.save` writes for a bank file called ``name`` (the bank, its
    class table and, with ``sheets``, the contact sheets it holds), without leaving a file behind."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        return {p.name: p.read_bytes() for p in bank.save(Path(tmp) / name, sheets=sheets)}


def table_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".classes.csv")


def sheet_path(path: str | os.PathLike, i: int) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.class{i:02d}.png")


def resolve_bank_path(path: str | os.PathLike) -> Path:
    """A bank's file: a path, or the name of a bank shipped with stylemix (``default``)."""
    if str(path) in PACKAGED:
        return Path(__file__).resolve().parents[1] / "data" / PACKAGED[str(path)]
    path = Path(path)
    if not path.is_file():
        raise StylemixError(f"no part bank at {path} (use a file written by `stylemix discover`, 'default', "
                            "'auto', 'fit' or 'none')")
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
        warn_once(f"the part bank shipped for {G.family} ('{name}') is not used, so the foreground comes from this "
                  f"generator's cached bank where it has one, else the per-image consensus: {reason}")
        return None
    return bank


def _load_packaged(name: str) -> PartBank:
    """:meth:`PartBank.load` of a packaged bank, read once while its files stay unchanged (:func:`load_stamped`)."""
    return load_stamped(resolve_bank_path(name))


def load_stamped(path: str | os.PathLike) -> PartBank:
    """:meth:`PartBank.load` of ``path`` (no generator check), read once while the file and its class table stay
    unchanged: a load reads and converts every array, which ``segment(G, seed)`` would otherwise repeat on every
    call with a packaged or cached bank."""
    path = Path(path)
    stamp = tuple((st.st_mtime_ns, st.st_size, st.st_ino) if p.is_file() and (st := p.stat()) else None
                  for p in (path, table_path(path)))
    key = str(path.resolve())
    cached = _STAMPED.get(key)
    if cached is None or cached[0] != stamp:
        cached = _STAMPED[key] = (stamp, PartBank.load(path))
    return cached[1]


_STAMPED: dict[str, tuple[tuple, PartBank]] = {}  # resolved file -> (file stamps, bank)
