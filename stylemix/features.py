"""Old name of :mod:`stylemix.vectors` (per-pixel vectors), kept only for the generator adapters that still import
it from here; new code imports :mod:`stylemix.vectors`."""

from stylemix.vectors import NORMALIZATIONS, pixel_vectors, project_channels, projection_matrix  # noqa: F401
