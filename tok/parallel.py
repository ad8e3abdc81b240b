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
The other shards live in host processes that `Workers` forks beside its pool, while the caller
is small: a process forked later, from a caller holding a big table, would be charged (in RSS)
for all of the caller's memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
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
    """`n` worker processes (none for n = 1) for `map`, forked on entering; with `hosts`, also
    n - 1 idle hosts for the shards of one `Pinned` (merge training). A context manager."""

    def __init__(self, n: int = 1, hosts: bool = False) -> None:
        self.n = max(1, n)
        self._want_hosts = hosts
        self._pool: Any = None
        self._hosts: list[tuple[Any, Any]] = []

    def __enter__(self) -> Workers:
        if self.n > 1:
            ctx = _context()
            self._pool = ctx.Pool(self.n, initializer=_ignore_ctrl_c)
            if self._want_hosts:
                self._hosts = _start_hosts(ctx, self.n - 1)
        return self

    def __exit__(self, *exc: object) -> None:
        _stop_hosts(self._hosts)
        self._hosts = []
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def take_hosts(self, k: int) -> list[tuple[Any, Any]]:
        """Up to k of the idle hosts forked on entering, for a `Pinned`'s shards."""
        taken, self._hosts = self._hosts[:k], self._hosts[k:]
        return taken

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


TASK_CHARS = 1 << 19  # text enough to make a worker task worth its trip (a 1 MB piece goes alone)


def batched(
    items: Iterable[T], size: Callable[[T], int], limit: int | None = None
) -> Iterator[list[T]]:
    """Consecutive items in groups of at least `limit` (default TASK_CHARS) by `size`, the last
    one maybe less: many small documents travel to the workers as one task, not one each."""
    limit = TASK_CHARS if limit is None else limit
    group: list[T] = []
    held = 0
    for item in items:
        group.append(item)
        held += size(item)
        if held >= limit:
            yield group
            group, held = [], 0
    if group:
        yield group


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
    first shard in this process, each other one in a host process of its own (`workers`' idle
    hosts when given, else forked now). `call` runs a method on every shard at once (this
    process working on the first meanwhile) and returns the results in shard order. The
    factory and the arguments of the other shards are pickled to their hosts. A context manager.
    """

    def __init__(
        self,
        factory: Callable[..., Any],
        shard_args: Sequence[tuple[Any, ...]],
        workers: Workers | None = None,
    ) -> None:
        self.n = len(shard_args)
        self._factory, self._args, self._workers = factory, list(shard_args), workers
        self._local: Any = None
        self._hosts: list[tuple[Any, Any]] = []

    def __enter__(self) -> Pinned:
        others = self._args[1:]
        try:
            if self._workers is not None:
                self._hosts = self._workers.take_hosts(len(others))
            if len(self._hosts) < len(others):
                self._hosts += _start_hosts(_context(), len(others) - len(self._hosts))
            for (_, conn), args in zip(self._hosts, others, strict=True):
                conn.send((self._factory, args))
            self._local = self._factory(*self._args[0])
        except BaseException:
            self.__exit__()
            raise
        self._args = []  # the shards hold them now
        return self

    def call(self, method: str, *args: Any) -> list[Any]:
        """`shard.method(*args)` for every shard, run in parallel; the results in shard order."""
        for _, conn in self._hosts:
            conn.send((method, args))
        try:
            first = getattr(self._local, method)(*args)
        finally:
            answers = []
            for _, conn in self._hosts:  # every answer, so that none is left for the next call
                try:
                    answers.append(conn.recv())
                except EOFError:
                    raise RuntimeError("a worker process ended unexpectedly") from None
        for ok, value in answers:
            if not ok:
                raise RuntimeError(f"in a worker process: {value}")
        return [first, *(value for _, value in answers)]

    def __exit__(self, *exc: object) -> None:
        _stop_hosts(self._hosts)  # a host serves one Pinned, then ends: its memory goes with it
        self._hosts, self._local = [], None


# our ends of the pipes to the hosts alive now: a host forked later closes them, so that each
# host sees the end of its own pipe when we close it or die
_open_ends: set[Any] = set()


def _start_hosts(ctx: Any, k: int) -> list[tuple[Any, Any]]:
    """k idle host processes, each waiting for an object to build and serve: (process, pipe end)."""
    hosts = []
    for _ in range(k):
        mine, theirs = ctx.Pipe()
        ours = [mine, *_open_ends] if ctx.get_start_method() == "fork" else []
        proc = ctx.Process(target=_serve, args=(theirs, ours), daemon=True)
        proc.start()
        theirs.close()
        _open_ends.add(mine)
        hosts.append((proc, mine))
    return hosts


def _stop_hosts(hosts: list[tuple[Any, Any]]) -> None:
    for _, conn in hosts:
        with contextlib.suppress(OSError):
            conn.send(None)  # the host's cue to end
        conn.close()
        _open_ends.discard(conn)
    for proc, _ in hosts:
        proc.join(timeout=5)
        if proc.is_alive():  # pragma: no cover - a host stuck in a call
            proc.terminate()
            proc.join()


def _serve(conn: Any, ours: list[Any]) -> None:
    """A host: build the object it is sent, then answer (method, args) calls until told to end
    (None) or the pipe ends."""
    _ignore_ctrl_c()
    for end in ours:
        end.close()
    obj, failed = None, ""
    try:
        job = conn.recv()
        if job is None:
            return
        factory, args = job
        obj = factory(*args)
        del job, args
    except (EOFError, OSError):
        return
    except Exception as e:  # reported on the first call
        failed = f"{type(e).__name__}: {e}"
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        method, call_args = msg
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
