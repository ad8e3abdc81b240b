"""The chunk caches: the ids of every chunk (and space-separated piece) seen, kept for next time.

    cache = ChunkCache(Splitter(GPT4_PATTERN), rank, pair_of, no_id)
    ids = cache.ordinary("Hello world")   # a str of chr(id), one character per id

Ids travel as strs of chr(id), which join, split and slice at C speed (`tok.merges.ids_of`
turns one into a list of ints). A chunk is encoded once, by `tok.merges.apply_merges`, then
looked up. For the GPT-2 and GPT-4 patterns `ordinary` also caches whole pieces between
single spaces (see its comment), so common words cost one dict lookup each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import compress, count, repeat
from operator import add, is_, mul, not_
from typing import Any, cast

from tok.merges import apply_merges, latin1
from tok.splitter import Splitter

# Chunks longer than this are not cached: they rarely repeat, and with pattern "" the
# whole text is one chunk.
LONG_CHUNK = 64
# A cache is cleared when it grows past this many entries, bounding its memory.
CACHE_LIMIT = 1 << 20
# Space-separated pieces longer than this are not cached (see `ChunkCache.ordinary`).
LONG_PIECE = 256
UNSEEN = object()  # what a cache lookup gives for a key it has not seen


class Memo(dict):
    """key -> fn(key), computed on first sight; keys longer than `longest` are not kept."""

    def __init__(self, fn: Callable[[str], Any], longest: int) -> None:
        super().__init__()
        self.fn, self.longest = fn, longest

    def __missing__(self, key: str) -> Any:
        value = self.fn(key)
        if len(key) <= self.longest:
            if len(self) >= CACHE_LIMIT:
                self.clear()
            self[key] = value
        return value


def is_clean(piece: str) -> bool:
    """A non-empty piece that neither starts nor ends with whitespace."""
    return bool(piece) and not piece[0].isspace() and not piece[-1].isspace()


def glue_groups(n_pieces: int, bad: Iterable[int]) -> list[tuple[int, int]]:
    """Merge each bad piece index k with its neighbours into disjoint ranges [lo, hi]."""
    out: list[tuple[int, int]] = []
    for k in bad:
        lo, hi = max(k - 1, 0), min(k + 1, n_pieces - 1)
        if out and lo <= out[-1][1]:
            lo = out.pop()[0]
        out.append((lo, hi))
    return out


class ChunkCache:
    """Encodes text to id-strings with a splitter and ranked merges, caching chunks and pieces.

    `rank` maps a pair (two id characters) to its new id, `pair_of[k]` is the pair of merge k,
    `no_id` is a character that stands for no id below the special tokens.
    """

    def __init__(
        self, splitter: Splitter, rank: dict[str, int], pair_of: list[str], no_id: str
    ) -> None:
        self.splitter, self.rank, self.pair_of, self.no_id = splitter, rank, pair_of, no_id
        self.byte_table: dict[int, str] | None = None  # byte -> its id character, if not itself
        self.chunks = Memo(self._encode_chunk, LONG_CHUNK)
        self.pieces = Memo(self._encode_piece, LONG_PIECE)

    def byte_ids(self, chunk: str) -> str:
        """The ids of the UTF-8 bytes of `chunk`, before any merge."""
        if self.byte_table is None:
            return latin1(chunk)
        return latin1(chunk).translate(self.byte_table)

    def _encode_chunk(self, chunk: str) -> str:
        return apply_merges([self.byte_ids(chunk)], self.rank, self.pair_of)[0]

    def fill_chunks(self, chunks: Iterable[str]) -> None:
        """Encode the chunks not cached yet in one batch, and cache them."""
        cache = self.chunks
        # distinct first (C speed), then the misses: far fewer lookups than chunks
        todo = [c for c in dict.fromkeys(chunks) if c not in cache and len(c) <= LONG_CHUNK]
        if len(cache) + len(todo) > CACHE_LIMIT:
            cache.clear()
        if todo:
            to_ids = latin1 if self.byte_table is None else self.byte_ids
            merged = apply_merges(list(map(to_ids, todo)), self.rank, self.pair_of)
            cache.update(zip(todo, merged, strict=True))

    def ids(self, text: str) -> str:
        """The ids of `text` as a str: split with the pattern, each chunk from the chunk cache."""
        chunks = self.splitter.split(text)
        self.fill_chunks(chunks)
        return "".join(map(self.chunks.__getitem__, chunks))

    def _encode_piece(self, piece: str) -> str | None:
        """The ids of " " + piece, or None if the piece's edges are not safe to split at."""
        return self.ids(" " + piece) if is_clean(piece) else None

    def fill_pieces(self, todo: list[str]) -> None:
        """Cache the given distinct pieces, not cached yet, with one regex pass over all of them."""
        cache = self.pieces
        todo = [p for p in todo if len(p) <= LONG_PIECE]  # long ones: __missing__
        if len(cache) + len(todo) > CACHE_LIMIT:
            cache.clear()
        ok = list(map(is_clean, todo))
        cache.update(dict.fromkeys(compress(todo, map(not_, ok))))  # None: glue it
        clean = list(compress(todo, ok))
        if not clean:
            return
        # A clean piece holds no space and its first chunk starts with its leading space. So we
        # put a character that is no id before the ids of each chunk that starts with a space,
        # and cut the ids of all the pieces apart there, at C speed. ASCII pieces go first, in
        # one string, for the faster ASCII split.
        ascii_ = list(map(str.isascii, clean))
        clean = list(compress(clean, ascii_)) + list(compress(clean, map(not_, ascii_)))
        n_ascii = sum(ascii_)
        chunks: list[str] = []
        for part in (clean[:n_ascii], clean[n_ascii:]):
            chunks += self.splitter.split(" " + " ".join(part)) if part else []
        distinct = list(dict.fromkeys(chunks))
        self.fill_chunks(distinct)
        starts = map(mul, repeat(self.no_id), map(str.startswith, distinct, repeat(" ")))
        marked = dict(
            zip(distinct, map(add, starts, map(self.chunks.__getitem__, distinct)), strict=True)
        )
        ids = "".join(map(marked.__getitem__, chunks)).split(self.no_id)
        assert len(ids) == len(clean) + 1, "a clean piece must start exactly one chunk"
        cache.update(zip(clean, ids[1:], strict=True))

    def ordinary(self, text: str) -> str:
        """The ids of `text` as a str, special-token texts taken as plain text."""
        if not self.splitter.space_safe or " " not in text:
            return self.ids(text)
        # Fast path for the GPT-2 and GPT-4 patterns: a single space with non-whitespace on
        # both sides is always a chunk boundary of those patterns, and the chunks on either
        # side do not depend on the text beyond it. So we split at every space with C-speed
        # str.split, cache whole pieces, and re-join (glue) the few pieces whose edges are
        # whitespace, or empty, with their neighbours before splitting those by the regex.
        pieces = text.split(" ")
        # segs[k]: the ids of piece k in place (after its space, if k > 0); None: glue it
        cache = self.pieces
        segs = list(map(cache.get, pieces, repeat(UNSEEN)))
        new = list(dict.fromkeys(compress(pieces, map(is_, segs, repeat(UNSEEN)))))
        if new:
            self.fill_pieces(new)
            # all of them again: filling may clear a full cache, and long pieces come from __missing__
            segs = list(map(cache.__getitem__, pieces))
        segs[0] = self.ids(pieces[0]) if is_clean(pieces[0]) else None
        groups = glue_groups(len(pieces), compress(count(), map(is_, segs, repeat(None))))
        out: list[str] = []
        start = 0  # the first piece not yet encoded
        for lo, hi in groups:
            out += cast(list[str], segs[start:lo])
            out.append(self.ids((" " if lo else "") + " ".join(pieces[lo : hi + 1])))
            start = hi + 1
        out += cast(list[str], segs[start:])
        return "".join(out)
