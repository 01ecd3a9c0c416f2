"""stylemix: training-free segmentation of images from style-based GANs by style mixing."""

__version__ = "0.1.0"

from stylemix.errors import GeneratorLoadError, StylemixError
from stylemix.generators import Generator, GeneratorBase, StyleLayout, load_generator, wrap_generator

__all__ = ["Generator", "GeneratorBase", "GeneratorLoadError", "StyleLayout", "StylemixError", "__version__",
           "load_generator", "wrap_generator"]
