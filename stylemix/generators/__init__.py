"""Generators: the protocol, adapters for the StyleGAN2 family and MobileStyleGAN, and the loader."""

from stylemix.generators.base import (Generator, GeneratorBase, StyleLayout, resize_image, truncate,
                                      wrap_generator)
from stylemix.generators.registry import load_generator, register_generator, registered_generators

__all__ = ["Generator", "GeneratorBase", "StyleLayout", "load_generator", "register_generator",
           "registered_generators", "resize_image", "truncate", "wrap_generator"]
