"""The foreground source: where an image's region decision comes from, chosen once per run by
:func:`foreground_source` so that the per-image step reads source -> finish -> optional instances.

* :class:`Consensus` (k = 2, no part bank): the per-image consensus of the variant stack's k-means splits.
* :class:`PartBankForeground` (k = 2 with a part bank): the bank's classes and its foreground, which reads the
  consensus only where the bank's ``foreground`` mode does.
* :class:`Clusters` (k > 2): one k-means of the stack and the foreground rule per cluster, and the bank's classes
  beside them when a bank is given.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from stylemix.backend import array_module, to_numpy
from stylemix.cluster import thread_limit
from stylemix.config import SegmentConfig
from stylemix.stages import foreground_probability, part_labels, split_scores

if TYPE_CHECKING:
    from stylemix.parts.step import PartStep
    from stylemix.render import Rendered

__all__ = ["Clusters", "Consensus", "Decision", "ForegroundSource", "PartBankForeground", "foreground_source"]


@dataclasses.dataclass
class Decision:
    """One image's region decision at the analysis resolution r, before it is finished at full resolution.

    Attributes:
        scores: ``float32 [k]`` each cluster's foreground score (k = 2: background, foreground).
        margin: how clearly the foreground was chosen.
        prob: k = 2: ``float32 [r, r]`` the foreground probability (the stack's array type); else ``None``.
        labels, is_fg: k > 2: ``int32 [r, r]`` cluster ids and ``bool [k]`` the clusters judged foreground.
        agreement: how far the consensus's votes agree, when a consensus ran.
        parts: ``int32 [H, W]`` the part bank's class ids, when a bank gives parts.
    """

    scores: Any
    margin: float
    prob: Any = None
    labels: Any = None
    is_fg: Any = None
    agreement: float | None = None
    parts: np.ndarray | None = None


class ForegroundSource(Protocol):
    """What :func:`stylemix.segment.segment_many` asks for each image's region decision."""

    bank: PartStep | None  # the part bank that runs for each image, if any
    name: str  # ``meta["foreground_from"]``

    def decide(self, stack: Any, random_state: int, rendered: Rendered, guide: Any,
               features: np.ndarray | None) -> Decision:
        """The decision for one image from its variant stack ``[N, C, r, r]`` (backend array), its renders, the
        image ``guide [H, W, 3]`` and its boundary feature maps ``float32 [C, r', r']`` (or ``None``)."""
        ...


@dataclasses.dataclass
class Consensus:
    """k = 2: the consensus of ``cfg.consensus`` k-means splits (:func:`~stylemix.stages.foreground_probability`)."""

    cfg: SegmentConfig
    bank: None = None
    name: str = "consensus"

    def decide(self, stack: Any, random_state: int, rendered: Rendered, guide: Any,
               features: np.ndarray | None) -> Decision:
        cfg = self.cfg
        # One BLAS / OpenMP thread: the masks do not depend on the thread count (a threaded reduction sums in
        # arrival order), and analysis-resolution arrays are small, so threads would cost more than they save.
        with thread_limit(1):
            prob, scores, margin, agreement = foreground_probability(
                stack, random_state, consensus=cfg.consensus, foreground_rule=cfg.foreground_rule,
                frame_penalty=cfg.frame_penalty, **cfg.kmeans_options())
        return Decision(scores, margin, prob=prob, agreement=agreement)


@dataclasses.dataclass
class PartBankForeground:
    """k = 2 with a part bank: the bank's foreground (and classes), fed the consensus where its mode reads it;
    the margin is the consensus's, else that of the bank's own split."""

    cfg: SegmentConfig
    bank: PartStep

    @property
    def name(self) -> str:
        return f"part bank ({self.bank.bank.settings.foreground})"

    def decide(self, stack: Any, random_state: int, rendered: Rendered, guide: Any,
               features: np.ndarray | None) -> Decision:
        consensus = (Consensus(self.cfg).decide(stack, random_state, rendered, guide, features)
                     if self.bank.needs_consensus else None)
        r = self.cfg.analysis_resolution
        parts, prob = _run_bank(self.bank, rendered, stack, guide, features,
                               None if consensus is None else to_numpy(consensus.prob), foreground_shape=(r, r))
        prob = consensus.prob if prob is None else array_module(stack).asarray(prob)
        if consensus is None:
            scores, margin = split_scores(prob, self.cfg.foreground_rule)
            return Decision(scores, margin, prob=prob, parts=parts)
        return dataclasses.replace(consensus, prob=prob, parts=parts)


@dataclasses.dataclass
class Clusters:
    """k > 2: the stack's ``cfg.clusters`` k-means clusters (:func:`~stylemix.stages.part_labels`) and, with a
    part bank, its classes beside them."""

    cfg: SegmentConfig
    bank: PartStep | None = None
    name: str = "clusters"

    def decide(self, stack: Any, random_state: int, rendered: Rendered, guide: Any,
               features: np.ndarray | None) -> Decision:
        cfg = self.cfg
        with thread_limit(1):  # as in Consensus
            labels, scores, is_fg, margin = part_labels(stack, cfg.clusters, random_state,
                                                        foreground_rule=cfg.foreground_rule, **cfg.kmeans_options())
        parts = None
        if self.bank is not None:
            parts, _ = _run_bank(self.bank, rendered, stack, guide, features, None, foreground_shape=None)
        return Decision(scores, margin, labels=labels, is_fg=is_fg, parts=parts)


def foreground_source(cfg: SegmentConfig, bank: PartStep | None) -> ForegroundSource:
    """The run's source for the resolved ``cfg`` and its part bank step (``None``: no bank)."""
    if cfg.clusters != 2:
        return Clusters(cfg, bank)
    return Consensus(cfg) if bank is None else PartBankForeground(cfg, bank)


def _run_bank(bank: PartStep, rendered: Rendered, stack: Any, guide: Any, features: np.ndarray | None,
             consensus: np.ndarray | None, foreground_shape: tuple[int, int] | None
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The bank's ``(parts, foreground probability)`` for one image: its base feature maps are the boundary
    stage's where they have the bank's resolution, else those captured at the base image's synthesis (else the
    bank renders them); the image's stack is its signature where the bank's variants were shared.

    Not under a thread limit: the bank's step renders, and torch's OpenMP pool is one of those threadpoolctl
    limits."""
    rb = bank.cfg.analysis_resolution
    base = (features if features is not None and features.shape[-1] == rb else
            rendered.features[rb][0].float().cpu().numpy() if rb in rendered.features else None)
    return bank(rendered.ws_base, consensus, guide, base, signature=to_numpy(stack) if rendered.shared else None,
                foreground_shape=foreground_shape)
