"""Part banks: class ids that mean the same part in every image of a generator, and a foreground decided once.

Per image, each pixel (at the analysis resolution) is described by three cues that are stable across images:

* the base image's own generator features there (L2-normalised, then a PCA fitted on the bank's images);
* its *co-variation signature*: how it changes across one fixed set of style variants that every image shares
  (the bank's ``signature`` variants, the same latents for every seed), standardised per pixel as the method's
  vectors are, then a PCA. With per-seed variants these vectors cannot be compared across images; with shared
  variants, hair responds to a hair-colour change the same way in every portrait;
* its position in the frame.

:func:`~stylemix.parts.fit.discover` pools these descriptors over many seeds, clusters them into ``prototypes``
(many more than the parts), gives each prototype the foreground rate that the per-image consensus of style mixing
(:func:`stylemix.stages.consensus_foreground`) gives its pixels over all the bank's images, makes every prototype
with a rate of at most 1/2 the *background* class, and merges the others into ``n_parts - 1`` classes by Ward
linkage of their centroids (with four or more foreground classes, the core class's prototypes low in the frame form
one of them: ``PartSettings.lower_band``). A second k-means of the same descriptors with many more centres, the
*fine foreground prototypes*, each with its own pooled rate, decides the foreground (``foreground="fine"``) on
finer regions than the parts. A :class:`PartBank` holds all of it; :func:`predict_classes` labels a new image.
docs/parts.md explains the choices and the measurements behind them.

Files: :meth:`PartBank.save` writes a safetensors file (arrays plus a JSON header; loading runs no code) and,
beside it, ``<stem>.classes.csv``, the table of class names and foreground flags a person may edit.

One file per job: :mod:`~stylemix.parts.bank` (the file format, :class:`PartBank`, the shipped banks),
:mod:`~stylemix.parts.descriptors` (pure array maths), :mod:`~stylemix.parts.cues` (rendering an image's cues),
:mod:`~stylemix.parts.fit` (collecting and fitting, :func:`discover`), :mod:`~stylemix.parts.sheets` (contact
sheets), :mod:`~stylemix.parts.cache` (the user's banks, kept under the generator's id) and
:mod:`~stylemix.parts.step` (the per-image step of :func:`stylemix.segment.segment_many`, which resolves
``parts="auto"``: packaged, then cached, then the per-image consensus).
"""

from stylemix.parts.bank import (FOREGROUND_MODES, PACKAGED, PACKAGED_FOR, PART_CHOICES, PartBank, PartSettings,
                                 load_bank, packaged_bank_for, resolve_bank_path, table_path)
from stylemix.parts.descriptors import foreground_map, predict_classes
from stylemix.parts.fit import discover
from stylemix.parts.cache import cache_dir, cached_bank, store_bank
from stylemix.parts.step import ForegroundBank, PartStep, auto_bank, part_step

__all__ = ["FOREGROUND_MODES", "PACKAGED", "PACKAGED_FOR", "PART_CHOICES", "ForegroundBank", "PartBank",
           "PartSettings", "PartStep", "auto_bank", "cache_dir", "cached_bank", "discover", "foreground_map",
           "load_bank", "packaged_bank_for", "part_step", "predict_classes", "resolve_bank_path", "store_bank",
           "table_path"]
