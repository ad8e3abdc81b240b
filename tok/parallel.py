"""Worker processes that map a function over a stream, in order, with a bounded number in flight.

Counting chunks and encoding text both cut a corpus into independent pieces; `Workers.map` hands
them to worker processes and gives the results back in input order, so what is built from them
(a table of chunk counts, a token cache) is the same whatever the number of workers. At most
`window` pieces are in flight at once, so memory follows the piece size, never the corpus size.

Workers are forked where the system can fork: they start at once, share the parent's memory
until they write to it, and need no importable `__main__` (spawn would re-import the caller's
main module, torch and all, in every worker, and cannot from stdin or a notebook). They run pure
Python (regex, dicts, strs), never torch, so a parent holding torch's threads is safe to fork.
Fork them early, while the parent is small: one `Workers` can serve several maps in a row (the
function and its arguments travel with each task). With one worker everything runs in-process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


class Workers:
    """`n` worker processes (none for n = 1) for `map`; use as a context manager."""

    def __init__(self, n: int = 1) -> None:
        self.n = max(1, n)
        self._pool: Any = None

    def __enter__(self) -> Workers:
        if self.n > 1:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self._pool = ctx.Pool(self.n)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], window: int | None = None
    ) -> Iterator[R]:
        """fn(item) for each item, in order (fn must be a module-level function or a
        functools.partial of one); at most `window` (default 2 x workers) in flight."""
        if self._pool is None:
            yield from map(fn, items)
            return
        pending: deque[Any] = deque()
        limit = window or 2 * self.n
        for item in items:
            pending.append(self._pool.apply_async(fn, (item,)))
            if len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int | Workers = 1
) -> Iterator[R]:
    """fn(item) for each item, in order, over `workers` (a count, or a running `Workers`)."""
    if isinstance(workers, Workers):
        yield from workers.map(fn, items)
        return
    with Workers(workers) as pool:
        yield from pool.map(fn, items)
