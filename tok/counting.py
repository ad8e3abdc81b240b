"""Counting the distinct chunks of a stream of text pieces, in worker processes, into one table.

Each piece is split on its own (special-token texts cut out first, so no merge learns from them)
and its chunks counted, small pieces several to a task; the counts of all pieces are added up in
input order. Memory follows the number of distinct chunks, never the size of the text, and the
table is the same for any number of workers. Keys are the chunks' UTF-8 bytes as latin-1 strs, what `tok.merges` trains on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import regex

from tok.merges import latin1
from tok.parallel import Workers, batched, ordered_map
from tok.splitter import Splitter

_setup: tuple[str, tuple[str, ...]] | None = None  # this process's (pattern, specials)
_split: Callable[[str], list[str]] = str.split
_cut_specials: Callable[[str], list[str]] | None = None


def _chunker(pattern: str, specials: tuple[str, ...]) -> None:
    """Set up this process's chunker for `pattern` and the special-token texts to cut out."""
    global _setup, _split, _cut_specials
    if _setup == (pattern, specials):
        return
    _split = Splitter(pattern).split
    _cut_specials = None
    if specials:
        alts = sorted(specials, key=lambda t: (-len(t), t))  # longest first, as encode does
        _cut_specials = regex.compile("|".join(map(regex.escape, alts))).split
    _setup = (pattern, specials)


def count_pieces(pattern: str, specials: tuple[str, ...], pieces: list[str]) -> dict[str, int]:
    """latin-1 chunk -> count over some pieces, each split on its own."""
    _chunker(pattern, specials)
    counts: Counter[str] = Counter()
    for piece in pieces:
        for part in _cut_specials(piece) if _cut_specials is not None else (piece,):
            counts.update(_split(part))
    out: dict[str, int] = {}
    for chunk, n in counts.items():
        key = latin1(
            chunk
        )  # distinct chunks map to distinct keys, but lone surrogates all to U+FFFD
        out[key] = out.get(key, 0) + n
    return out


def count_chunks(
    pieces: Iterable[str],
    pattern: str,
    specials: Sequence[str] = (),
    workers: int | Workers = 1,
) -> dict[str, int]:
    """The chunk counts of all pieces added up: latin-1 chunk -> count."""
    total: dict[str, int] = {}
    task = partial(count_pieces, pattern, tuple(specials))
    for part in ordered_map(task, batched(pieces, len), workers):
        if not total:
            total = part
            continue
        get = total.get
        for chunk, n in part.items():
            total[chunk] = get(chunk, 0) + n
    return total
