"""The user's bank cache: part banks fitted for a generator (by ``export`` or ``--parts fit``), kept under the
generator's id so that every later command on the same weights finds them without naming a file.

Layout: ``<cache folder>/banks/<generator id>/<settings key>.parts`` with its ``.classes.csv`` beside it. The cache
folder is ``$STYLEMIX_CACHE`` if set, else ``$XDG_CACHE_HOME/stylemix``, else ``~/.cache/stylemix``
(:func:`cache_dir`). The settings key names the bank's :class:`~stylemix.parts.PartSettings` (:func:`settings_key`):
one bank per generator and settings, the latest fit replacing an earlier one. A generator without an id (a plain
protocol object, :func:`stylemix.identity.generator_id` is ``None``) is never cached: nothing would tell its banks
apart from another generator's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from stylemix.parts.bank import PartBank, PartSettings, saved_bytes, settings_dict, table_path

__all__ = ["CACHE_ENV", "cache_dir", "cached_bank", "cached_bank_path", "settings_key", "store_bank"]

CACHE_ENV = "STYLEMIX_CACHE"  # the environment variable that moves the cache folder


def cache_dir() -> Path:
    """The cache folder: ``$STYLEMIX_CACHE``, else ``$XDG_CACHE_HOME/stylemix``, else ``~/.cache/stylemix`` (read
    on every call, so a changed environment takes effect at once)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "stylemix"
    return Path.home() / ".cache" / "stylemix"


def settings_key(settings: PartSettings) -> str:
    """The file stem of a bank of ``settings`` in the cache: ``k<K>-<12 hex of their sha256>`` (readable K, and a
    hash that changes with any other setting)."""
    canonical = json.dumps(settings_dict(settings), sort_keys=True, separators=(",", ":"))
    return f"k{settings.n_parts}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def cached_bank_path(G: Any, settings: PartSettings | None = None) -> Path | None:
    """Where the cache keeps ``G``'s bank of ``settings`` (default :class:`PartSettings`), whether or not it is
    there; ``None`` for a generator without an id."""
    from stylemix.identity import generator_id
    gid = generator_id(G)
    if gid is None:
        return None
    return cache_dir() / "banks" / gid / f"{settings_key(settings or PartSettings())}.parts"


def cached_bank(G: Any, settings: PartSettings | None = None) -> tuple[PartBank, Path] | None:
    """``G``'s cached bank of ``settings`` and its file, or ``None`` when there is none.

    The generator is hashed only when the cache holds any bank at all (an empty cache costs one ``stat``). The file
    is loaded with the checks of any bank (:meth:`PartBank.load` with ``G``) and kept in memory while it is
    unchanged; a file that does not load (damaged, of another generator) is not used, and a warning says why and
    which file to delete.
    """
    from stylemix.errors import StylemixError
    from stylemix.parts.bank import load_stamped
    root = cache_dir() / "banks"
    try:
        if not root.is_dir() or not any(root.iterdir()):
            return None
    except OSError:
        return None
    path = cached_bank_path(G, settings)
    if path is None or not path.is_file():
        return None
    try:
        bank = load_stamped(path)
        bank.check_generator(G)
    except StylemixError as e:
        from stylemix.backend import warn_once
        warn_once(f"the cached part bank {path} is not used ({e}); delete it and it is fitted again when asked")
        return None
    return bank, path


def store_bank(bank: PartBank, G: Any) -> Path | None:
    """Put ``bank`` (fitted on ``G``) in the cache under its settings; returns its file, or ``None`` for a generator
    without an id (never cached).

    Each file is written to a temporary file beside it and renamed (:func:`stylemix.io.atomic_write_bytes`), the
    class table before the bank, so a reader finds either no bank, the old one or the new one complete, and two
    processes storing at once leave one whole bank. A cache folder that cannot be written is told in a warning;
    the bank is still used by the command that fitted it.
    """
    from stylemix.io import atomic_write_bytes
    path = cached_bank_path(G, bank.settings)
    if path is None:
        return None
    data = saved_bytes(bank, path.name, sheets=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(table_path(path), data[table_path(path).name])
        atomic_write_bytes(path, data[path.name])
    except OSError as e:
        from stylemix.backend import warn_once
        warn_once(f"the part bank could not be cached in {path.parent} ({e}); set {CACHE_ENV} to a writable folder")
        return None
    return path
