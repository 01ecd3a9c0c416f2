"""Running the seeds of an export: segmented and encoded in this process (encoding overlapping the next seeds'
segmentation), or by Ray actors across a cluster; both yield the same :class:`~stylemix.export.formats.SeedResult`
bytes, and the driver keeps every file write."""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Iterator, Sequence

from stylemix.errors import StylemixError
from stylemix.export.formats import SeedResult, encode_seed
from stylemix.export.plan import ExportPlan

__all__ = ["SeedWorker", "seed_results"]


def seed_results(plan: ExportPlan, seeds: Sequence[int], *, batch_seeds: int = 16, ray: bool = False,
                 ray_address: str | None = None, workers: int | None = None, writer_threads: int | None = None
                 ) -> Iterator[SeedResult]:
    """The :class:`SeedResult` of each of ``seeds``: in order, segmented in this process while ``writer_threads``
    threads (``None``: :data:`stylemix.outputs.WRITER_THREADS`; 0: inline) encode the seeds before them, the same
    bytes either way; or, with ``ray``, segmented and encoded by Ray actors in blocks of ``batch_seeds``, in
    completion order."""
    if batch_seeds < 1:
        raise StylemixError(f"--batch-seeds must be at least 1, got {batch_seeds}")
    if not seeds:
        return iter(())
    if ray:
        blocks = [list(seeds[i:i + batch_seeds]) for i in range(0, len(seeds), batch_seeds)]
        return _ray_results(plan, blocks, ray_address, workers)
    from stylemix.outputs import WRITER_THREADS, ordered_map
    worker = SeedWorker(plan.G, plan)
    threads = WRITER_THREADS if writer_threads is None else writer_threads
    return ordered_map(worker.encode, worker.segmentations(seeds), threads=threads)


class SeedWorker:
    """Segments seeds and encodes them into :class:`SeedResult` (what a Ray actor holds; also used in-process).

    Args:
        generator: a generator, or a source for :func:`stylemix.load_generator` (loaded on ``device``).
        plan: the export's :class:`ExportPlan` (its ``G`` is not used: a Ray actor gets the plan without it).
        device: where a source is loaded, or a generator object moved (``None``: left where it is).
    """

    def __init__(self, generator: Any, plan: ExportPlan, device: str | None = None) -> None:
        import stylemix
        if isinstance(generator, (str, os.PathLike)):
            generator = stylemix.load_generator(generator, device=device or "cpu")
        elif device is not None:
            generator = generator.to(device)
        self.G, self.plan = generator, plan

    def segmentations(self, seeds: Sequence[int]) -> Iterator[Any]:
        """The :class:`~stylemix.segment.Segmentation` of each of ``seeds`` (latents rows for a latents export)."""
        from stylemix.segment import segment_many
        latents = self.plan.latents
        items = {"seeds": list(seeds)} if latents is None else {"ws": latents.take(seeds)}
        return segment_many(self.G, **items, **self.plan.segment_kwargs())

    def encode(self, seg: Any) -> SeedResult:
        """The files and the record of one segmentation (:func:`~stylemix.export.formats.encode_seed`)."""
        return encode_seed(seg, self.plan.encoding)

    def run(self, seeds: Sequence[int]) -> list[SeedResult]:
        """Segment and encode ``seeds`` (one Ray task's block)."""
        return [self.encode(seg) for seg in self.segmentations(seeds)]


def _ray_results(plan: ExportPlan, blocks: list[list[int]], address: str | None, workers: int | None
                 ) -> Iterator[SeedResult]:
    """Results of ``blocks`` segmented and encoded by Ray actors, in completion order.

    One actor per worker holds the generator; with GPUs in the cluster each actor takes one GPU, else one CPU. The
    driver keeps every file write (the actors return bytes), so the nodes need no shared file system. The actors
    get the plan as it is (settings resolved and checked, the instance step built once here); a YOLO detector
    travels as its weights path and thresholds and is opened once per actor, since a model cannot be shared
    between processes.
    """
    from stylemix.render import generator_device  # lazy like every torch-side import here
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise StylemixError("--ray needs Ray: pip install 'stylemix[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    n = workers or gpus or max(int(resources.get("CPU", 1)), 1)
    remote = ray.remote(num_gpus=1, num_cpus=0) if gpus else ray.remote(num_cpus=1)
    Actor = remote(SeedWorker)
    G = plan.G
    if plan.source is not None:
        source: Any = plan.source  # a path every node can read (shared storage or the same layout), or a name
    else:  # weights travel on the CPU (a node may have no GPU); a copy, so the caller's generator stays put
        source = ray.put(G if generator_device(G).type == "cpu" else copy.deepcopy(G).cpu())
    spec = ray.put(dataclasses.replace(plan, G=None))
    actors = [Actor.remote(source, spec, "cuda" if gpus else "cpu") for _ in range(n)]
    try:
        pool = ActorPool(actors)  # submits a block whenever an actor is free: at most `n` blocks in flight
        for results in pool.map_unordered(lambda a, block: a.run.remote(block), blocks):
            yield from results
    finally:
        for a in actors:
            ray.kill(a)
