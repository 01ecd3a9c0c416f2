"""Errors stylemix reports to users as one line (the CLI prints ``Error: <message>`` and exits non-zero)."""

__all__ = ["GeneratorLoadError", "StylemixError"]


class StylemixError(Exception):
    """Bad input or an unusable file; the message is complete on its own, without a traceback."""


class GeneratorLoadError(StylemixError):
    """A network source that cannot be loaded (unknown name, truncated file, forbidden pickle global, ...)."""
