"""Progress of an export: a tqdm bar on a terminal, plain lines on stderr elsewhere (a Slurm log, ``nohup``), where a
bar would print nothing until the end."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

__all__ = ["LogProgress", "progress_bar"]


class LogProgress:
    """Plain progress lines (``export png: 120/1000 seeds, 2.6 img/s, eta 5 min``), one each ``step`` of the total
    or each ``every_s`` seconds, whichever comes first, and one at the end.

    The same calls as the part of tqdm's interface the export uses (``update``, context manager).

    Args:
        total: seeds of this process (its shard's); ``initial``: those done before this run (not in the rate).
        desc: the line's prefix.
        stream: where lines go (default ``sys.stderr``); ``clock``: seconds (``time.monotonic``).
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "export", step: float = 0.05,
                 every_s: float = 30.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.n, self.start_n, self.desc = total, initial, initial, desc
        self.step_n = max(1, int(round(total * step)))
        self.every_s, self.stream, self.clock = every_s, stream, clock
        self.t0 = self.last_t = clock()
        self.last_n = initial

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if self.n - self.last_n >= self.step_n or now - self.last_t >= self.every_s or self.n >= self.total:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last_n, self.last_t = self.n, now
        done, elapsed = self.n - self.start_n, now - self.t0
        rate = done / elapsed if done and elapsed > 0 else None
        text = f"{self.desc}: {self.n}/{self.total} seeds"
        if rate:
            left = (self.total - self.n) / rate
            eta = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
            text += f", {rate:.2g} img/s" + (f", eta {eta}" if self.n < self.total else "")
        print(text, file=self.stream or sys.stderr, flush=True)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.n != self.last_n:  # the last seeds, when the run stops before its total (an error)
            self._line(self.clock())


def progress_bar(total: int, initial: int, desc: str, progress: bool | None, stream: TextIO | None = None) -> Any:
    """What shows an export's progress: ``progress`` ``True`` a tqdm bar, ``False`` nothing, ``None`` a tqdm bar on
    a terminal and :class:`LogProgress` lines elsewhere (``stream``, default ``sys.stderr``)."""
    from tqdm import tqdm
    out = stream or sys.stderr
    if progress is None and not (hasattr(out, "isatty") and out.isatty()):
        return LogProgress(total, initial, desc, stream=out)
    return tqdm(total=total, initial=initial, unit="img", desc=desc, disable=not progress and progress is not None,
                smoothing=0.1, file=out)
