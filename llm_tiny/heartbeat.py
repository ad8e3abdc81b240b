"""A line now and then when output goes to a file or a pipe, where no progress bar shows.

A large context on a small CPU can spend minutes on the first evaluation or between two log rows;
with a terminal, the progress bar moves, but under nohup, a scheduler or `| tee` nothing would be
printed at all. A Heartbeat speaks only after `every` seconds without a line: how far the slow part
is and how long the rest will take at the pace so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Heartbeat:
    """Calls log(line) when `on` and `every` seconds have passed since the last line."""

    def __init__(self, log: Callable[[str], None], on: bool, every: float = 30.0) -> None:
        self.log, self.on, self.every = log, on, every
        self.last = time.perf_counter()
        self.step_t0: tuple[int, float] | None = None  # (step, time) the pace is measured from

    def said(self) -> None:
        """Another line was printed: the silence starts again."""
        self.last = time.perf_counter()

    def _due(self) -> bool:
        return self.on and time.perf_counter() - self.last >= self.every

    def step(self, step: int, intervals: tuple[int, ...], total: int) -> None:
        """After a training step: when due, the pace and when the next log row comes (the next
        multiple of one of the intervals, or the last step)."""
        now = time.perf_counter()
        if self.step_t0 is None:
            self.step_t0 = (step - 1, self.last)
        if not self._due():
            return
        s0, t0 = self.step_t0
        next_row = min([total] + [(step // n + 1) * n for n in intervals])
        if step == total or any(step % n == 0 for n in intervals):
            return  # this step's own row is about to be printed
        pace = (now - t0) / max(1, step - s0)
        self.log(
            f"step {step}: {pace:.1f} s per step, next log row at step {next_row} "
            f"(~{_duration(pace * (next_row - step))})"
        )
        self.said()

    def each(self, items: Iterable[T], n: int, what: str) -> Iterator[T]:
        """The items, one by one; when due, how many of n are done and how long the rest takes."""
        t0 = time.perf_counter()
        for i, item in enumerate(items, 1):
            yield item
            if self._due():
                left = (time.perf_counter() - t0) / i * (n - i)
                self.log(f"{what}: {i} of {n} batches done, ~{_duration(left)} to go")
                self.said()
