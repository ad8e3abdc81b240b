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

`Pinned` is the other shape of parallel work: state that stays in its process between calls (a
shard of a table that is updated step by step, as merge training does), each call run on every
shard at once and answered in shard order. The caller works on the first shard itself while the
others run: with n shards there are n busy processes, and waking a worker costs no idle time.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _ignore_ctrl_c() -> None:
    """In a worker: Ctrl-C reaches the whole process group, but it is the caller's to handle
    (it stops its workers, keeping what is done); a worker's traceback would only be noise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _context() -> Any:
    """fork where the system has it (see the module's docstring), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


class Workers:
    """`n` worker processes (none for n = 1) for `map`; use as a context manager."""

    def __init__(self, n: int = 1) -> None:
        self.n = max(1, n)
        self._pool: Any = None

    def __enter__(self) -> Workers:
        if self.n > 1:
            self._pool = _context().Pool(self.n, initializer=_ignore_ctrl_c)
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


class Pinned:
    """One object per shard, built as `factory(*args)`, that keeps its state between calls: the
    first shard in this process, each other one in a worker process of its own. `call` runs a
    method on every shard at once (this process working on the first meanwhile) and returns the
    results in shard order. A context manager."""

    def __init__(self, factory: Callable[..., Any], shard_args: Sequence[tuple[Any, ...]]) -> None:
        self.n = len(shard_args)
        self._factory, self._args = factory, list(shard_args)
        self._local: Any = None
        self._procs: list[Any] = []
        self._conns: list[Any] = []

    def __enter__(self) -> Pinned:
        ctx = _context() if self.n > 1 else None
        forked = ctx is not None and ctx.get_start_method() == "fork"
        try:
            for args in self._args[1:]:
                assert ctx is not None
                mine, theirs = ctx.Pipe()
                # A forked shard inherits the arguments (no pickling) and every pipe end open
                # here: it closes ours, so that it sees the end of its pipe when we close it or die.
                ours = [mine, *self._conns] if forked else []
                proc = ctx.Process(
                    target=_serve, args=(theirs, self._factory, args, ours), daemon=True
                )
                proc.start()
                theirs.close()
                self._procs.append(proc)
                self._conns.append(mine)
            self._local = self._factory(*self._args[0])  # after forking: the workers stay lean
        except BaseException:
            self.__exit__()
            raise
        self._args = []  # the shards hold them now
        return self

    def call(self, method: str, *args: Any) -> list[Any]:
        """`shard.method(*args)` for every shard, run in parallel; the results in shard order."""
        for conn in self._conns:
            conn.send((method, args))
        try:
            first = getattr(self._local, method)(*args)
        finally:
            answers = []
            for conn in self._conns:  # every answer, so that none is left for the next call
                try:
                    _spin(conn)
                    answers.append(conn.recv())
                except EOFError:
                    raise RuntimeError("a worker process ended unexpectedly") from None
        for ok, value in answers:
            if not ok:
                raise RuntimeError(f"in a worker process: {value}")
        return [first, *(value for _, value in answers)]

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            conn.close()  # the shard sees the end of its pipe and returns
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():  # pragma: no cover - a shard stuck in a call
                proc.terminate()
                proc.join()
        self._procs, self._conns, self._local = [], [], None


def _spin(conn: Any, seconds: float = 0.002) -> None:
    """Poll `conn` for a moment before a blocking read: an answer that comes within it is
    read without the latency of putting this process to sleep and waking it."""
    end = time.perf_counter() + seconds
    while not conn.poll() and time.perf_counter() < end:
        pass


def _serve(conn: Any, factory: Callable[..., Any], args: tuple[Any, ...], ours: list[Any]) -> None:
    """A shard's process: build the object, then answer (method, args) calls until the pipe ends."""
    _ignore_ctrl_c()
    for end in ours:
        end.close()
    obj, failed = None, ""
    try:
        obj = factory(*args)
    except Exception as e:  # reported on the first call
        failed = f"{type(e).__name__}: {e}"
    del args
    while True:
        try:
            _spin(conn)
            method, call_args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if failed:
                raise RuntimeError(failed)
            answer = (True, getattr(obj, method)(*call_args))
        except Exception as e:
            answer = (False, f"{type(e).__name__}: {e}")
        try:
            conn.send(answer)
        except OSError:  # the caller is gone (stopped while we worked)
            return
