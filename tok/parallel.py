"""Worker processes that map a function over a stream, in order, with a bounded number in flight.

Counting chunks and encoding text both cut a corpus into independent pieces; `ordered_map` hands
them to worker processes and gives the results back in input order, so what is built from them
(a table of chunk counts, a token cache) is the same whatever the number of workers. At most
`window` pieces are in flight at once, so memory follows the piece size, never the corpus size.
Workers are forked where the system can fork: they start at once, share the parent's memory
until they write to it, and need no importable `__main__` (spawn would re-import the caller's
main module, torch and all, in every worker, and cannot from stdin or a notebook). They run pure
Python (regex, dicts, strs), never torch, so a parent holding torch's threads is safe to fork.
With one worker everything runs in this process.
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


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int = 1,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
    window: int | None = None,
) -> Iterator[R]:
    """fn(item) for each item, in order, over `workers` processes (fn and initializer must be
    module-level functions). At most `window` (default 2 x workers) items are in flight."""
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    window = window or 2 * workers
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        pending: deque[Any] = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
