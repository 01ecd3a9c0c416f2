"""stylemix: training-free segmentation of images from style-based GANs by style mixing.

    >>> import stylemix
    >>> G = stylemix.load_generator("shapes")       # or a .pkl / .pt path, or "mobilestylegan-ffhq"
    >>> seg = stylemix.segment(G, seed=0)
    >>> seg.image.shape, seg.foreground.dtype
    ((64, 64, 3), dtype('bool'))
"""

__version__ = "0.1.0"

from stylemix.config import InstanceConfig, SegmentConfig
from stylemix.errors import GeneratorLoadError, StylemixError
from stylemix.generators import (Generator, GeneratorBase, StyleLayout, load_generator, register_generator,
                                 wrap_generator)
from stylemix.parts.bank import PartBank, PartSettings
from stylemix.parts.fit import discover
from stylemix.segment import Segmentation, segment, segment_many

__all__ = ["Generator", "GeneratorBase", "GeneratorLoadError", "InstanceConfig", "PartBank", "PartSettings",
           "SegmentConfig", "Segmentation", "StyleLayout", "StylemixError", "__version__", "discover", "load_generator",
           "register_generator", "segment", "segment_many", "wrap_generator"]
