"""Byte-level BPE tokenizer: the `Tokenizer` class (train, encode, decode, save, load).

Text is split into chunks with a regex (GPT-4's pattern by default, `tok.patterns`); each
chunk's UTF-8 bytes start as the ids 0..255, and merge k turns the adjacent pair (left,
right) into the id 256 + k. Merges never cross a chunk boundary.

Training never recounts the corpus. It counts each distinct chunk once with its frequency
(`tok.counting`, in worker processes for big corpora), keeps the count of every adjacent pair
and an index from pair to the chunks that contain it, and after each merge touches only those
chunks, adjusting the counts of the pairs around each merged occurrence (`tok.learn`, the
chunks split over worker processes for big corpora). The next pair comes off a heap whose
stale entries are skipped or corrected when they surface (lazy deletion).

Tie-break rule: the pair with the highest count wins; among equal counts, the smallest
(left id, right id) pair wins. Overlapping occurrences (as in "aaa") all count, as in
GPT-2's and minbpe's trainers. Training stops early, with a warning, once no pair occurs
twice. The same text always gives the same merges and the same file, byte for byte.

Encoding applies merges by rank (lowest first) within each chunk and caches the ids of
every chunk it has seen. The save format is a versioned, human-readable JSON file; see
`Tokenizer.to_json`. The command line lives in `tok.cli`; `python -m tok.bpe` runs it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, count, repeat
from operator import add, is_, itemgetter, mul, not_
from pathlib import Path
from typing import Any, Literal, cast

import regex

from tok.counting import count_chunks
from tok.learn import train_merges
from tok.merges import apply_merges, ids_of, latin1
from tok.parallel import Workers
from tok.patterns import _ASCII_SPLITS, GPT2_PATTERN, GPT4_PATTERN, PATTERNS, ascii_runs

__all__ = ["GPT2_PATTERN", "GPT4_PATTERN", "PATTERNS", "Tokenizer", "TokenizerError"]

FORMAT = "llm-tiny-bpe"
VERSION = 1

# Chunks longer than this are not cached: they rarely repeat, and with pattern "" the
# whole text is one chunk.
_LONG_CHUNK = 64
_UNSEEN = object()  # what a cache lookup gives for a key it has not seen
# The chunk cache is cleared when it grows past this many entries, bounding its memory.
_CACHE_LIMIT = 1 << 20
# Space-separated pieces longer than this are not cached (see `encode_ordinary`).
_LONG_PIECE = 256
# Texts longer than this that are not all ASCII are split run by run (see `ascii_runs`).
_ASCII_RUNS = 16384


class TokenizerError(ValueError):
    """A tokenizer file, merge list, special token or id that is not valid."""


class _Memo(dict):
    """key -> fn(key), computed on first sight; keys longer than `longest` are not kept."""

    def __init__(self, fn: Callable[[str], Any], longest: int) -> None:
        super().__init__()
        self.fn, self.longest = fn, longest

    def __missing__(self, key: str) -> Any:
        value = self.fn(key)
        if len(key) <= self.longest:
            if len(self) >= _CACHE_LIMIT:
                self.clear()
            self[key] = value
        return value


def _is_clean(piece: str) -> bool:
    """A non-empty piece that neither starts nor ends with whitespace."""
    return bool(piece) and not piece[0].isspace() and not piece[-1].isspace()


def _groups(n_pieces: int, bad: Iterable[int]) -> list[tuple[int, int]]:
    """Merge each bad piece index k with its neighbours into disjoint ranges [lo, hi]."""
    out: list[tuple[int, int]] = []
    for k in bad:
        lo, hi = max(k - 1, 0), min(k + 1, n_pieces - 1)
        if out and lo <= out[-1][1]:
            lo = out.pop()[0]
        out.append((lo, hi))
    return out


class Tokenizer:
    """A byte-level BPE tokenizer: a split pattern, a ranked merge list, special tokens.

    `merges` maps (left id, right id) to the new id 256 + rank, in rank order; `vocab`
    maps every ordinary id to its bytes; `special_tokens` maps each special token's text
    to its id, above all merge ids. Treat the attributes as read-only: build a new
    Tokenizer (or call `register_special_tokens`) to change them.
    """

    def __init__(
        self,
        merges: dict[tuple[int, int], int] | None = None,
        pattern: str = GPT4_PATTERN,
        special_tokens: dict[str, int] | None = None,
    ) -> None:
        """Check and index the merges, pattern and special tokens; TokenizerError if invalid.

        `pattern` is a regex, "" for no pre-split, or a name from PATTERNS ("gpt4", ...).
        """
        merges = dict(merges or {})
        if not isinstance(pattern, str):
            raise TokenizerError(f"pattern must be a string, got {type(pattern).__name__}")
        pattern = PATTERNS.get(pattern, pattern)
        try:
            compiled = regex.compile(pattern) if pattern else None
        except (regex.error, OverflowError, ValueError) as err:
            raise TokenizerError(f"pattern is not a valid regex: {err}") from None
        except RecursionError:
            raise TokenizerError("pattern is not a valid regex: nested too deeply") from None
        if compiled is not None and compiled.groups:  # findall would return tuples, not chunks
            raise TokenizerError(
                f"pattern has {compiled.groups} capturing group(s); use (?:...) groups"
            )
        self._split = compiled.findall if compiled is not None else None
        self._ascii_split = _ASCII_SPLITS.get(pattern)
        if len(merges) > sys.maxunicode - 256:  # ids, and one more, must fit in str characters
            raise TokenizerError(f"too many merges: {len(merges)} > {sys.maxunicode - 256}")
        vocab = {i: bytes([i]) for i in range(256)}
        for rank, (pair, new_id) in enumerate(merges.items()):
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TokenizerError(f"merge {rank} is not a (left, right) pair: {pair!r}")
            if not _is_int(new_id) or new_id != 256 + rank:
                raise TokenizerError(f"merge {rank} must create id {256 + rank}, not {new_id!r}")
            for side in pair:
                if not _is_int(side) or not 0 <= side < new_id:
                    raise TokenizerError(
                        f"merge {rank} refers to id {side!r}, which is not defined before it"
                    )
            vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        self.pattern = pattern
        self.merges = merges
        self.vocab = vocab
        self.special_tokens: dict[str, int] = {}
        self._rank = {chr(a) + chr(b): z for (a, b), z in merges.items()}
        self._pair_of = list(self._rank)
        # Caches hold ids as strs of chr(id), which join, split and slice at C speed.
        self._chunks = _Memo(self._encode_chunk, _LONG_CHUNK)
        self._pieces = _Memo(self._encode_piece, _LONG_PIECE)
        self._space_safe = pattern in (GPT4_PATTERN, GPT2_PATTERN)
        self._no_id = chr(256 + len(merges))  # a character that stands for no merge-level id
        # id -> its bytes as a latin-1 str: joining strs is much faster than joining bytes.
        self._decoder = {i: b.decode("latin-1") for i, b in vocab.items()}
        self._special_splits: dict[frozenset[str], Callable[[str], list[str]]] = {}
        self.register_special_tokens(special_tokens or {})

    # -- special tokens -----------------------------------------------------------------

    def register_special_tokens(self, tokens: dict[str, int] | Sequence[str]) -> None:
        """Add special tokens; a sequence of texts gets the next free ids after all others."""
        if not isinstance(tokens, dict):
            if isinstance(tokens, str):
                raise TokenizerError("special tokens must be a dict or a list of strings")
            first = self.vocab_size
            tokens = {text: first + i for i, text in enumerate(tokens)}
        taken = {i: t for t, i in self.special_tokens.items()}
        lowest = 256 + len(self.merges)
        for text, new_id in tokens.items():
            if not isinstance(text, str) or not text:
                raise TokenizerError(f"a special token must be a non-empty string: {text!r}")
            if text in self.special_tokens:
                raise TokenizerError(f"special token {text!r} is already registered")
            if not _is_int(new_id) or not lowest <= new_id < 2**31:
                raise TokenizerError(
                    f"special token {text!r} has id {new_id!r}; special ids must be integers"
                    f" >= {lowest} (above every merge) and < 2**31"
                )
            if new_id in taken:
                raise TokenizerError(
                    f"special tokens {taken[new_id]!r} and {text!r} have the same id {new_id}"
                )
            taken[new_id] = text
        for text, new_id in tokens.items():
            self.special_tokens[text] = new_id
            self._decoder[new_id] = latin1(text)
        self._special_splits.clear()

    @property
    def vocab_size(self) -> int:
        """One more than the largest id: the embedding size a model needs."""
        return max(255 + len(self.merges), *self.special_tokens.values(), 0) + 1

    # -- training -----------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str = GPT4_PATTERN,
        special_tokens: dict[str, int] | Sequence[str] | None = None,
        progress: bool = False,
    ) -> Tokenizer:
        """Learn merges from `text` until there are `vocab_size` ids, special tokens included.

        Special tokens given as a dict keep their ids (which must lie above the merges);
        given as a list of texts they get the ids right after the last merge. Their texts
        are cut out of the training text, so no merge learns from them. Warns and stops
        early when no pair occurs twice.
        """
        return cls.train_pieces([text], vocab_size, pattern, special_tokens, progress)

    @classmethod
    def train_pieces(
        cls,
        pieces: Iterable[str],
        vocab_size: int,
        pattern: str = GPT4_PATTERN,
        special_tokens: dict[str, int] | Sequence[str] | None = None,
        progress: bool = False,
        workers: int | Workers = 1,
    ) -> Tokenizer:
        """`train` on a stream of texts, each split on its own, counted in `workers` processes.

        Pieces cut by `tok.patterns.cut_pieces` split exactly as their whole text would, so the
        result is the same tokenizer for any piece size and any number of workers. Memory
        follows the number of distinct chunks, not the length of the text.
        """
        specials = special_tokens or {}
        if not _is_int(vocab_size) or vocab_size < 256 + len(specials):
            raise TokenizerError(
                f"vocab_size must be an integer >= {256 + len(specials)} "
                f"(256 bytes + {len(specials)} special tokens), got {vocab_size!r}"
            )
        n_merges = vocab_size - 256 - len(specials)
        probe = cls(pattern=pattern)  # checks the pattern and the special tokens up front
        probe.register_special_tokens(specials)
        for text_, new_id in probe.special_tokens.items():
            if isinstance(specials, dict) and new_id < 256 + n_merges:
                raise TokenizerError(
                    f"special token {text_!r} has id {new_id}, inside the merge ids "
                    f"256..{255 + n_merges}; use an id >= {256 + n_merges}"
                )
        if not isinstance(workers, Workers):  # one set of workers, forked while we are small
            with Workers(workers, hosts=True) as pool:
                return cls.train_pieces(pieces, vocab_size, pattern, specials, progress, pool)
        chunks = count_chunks(pieces, probe.pattern, list(probe.special_tokens), workers)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_merges, desc="merges", unit="merge", leave=False)
        try:
            on_merge = bar.update if bar is not None else None
            learned = train_merges(chunks, n_merges, on_merge, workers)
        finally:
            if bar is not None:
                bar.close()
        merges = {(ord(p[0]), ord(p[1])): 256 + r for r, p in enumerate(learned)}
        if isinstance(specials, dict):
            return cls(merges, pattern, dict(specials))
        tok = cls(merges, pattern)
        tok.register_special_tokens(list(specials))
        return tok

    # -- encoding and decoding ----------------------------------------------------------

    def _encode_chunk(self, chunk: str) -> str:
        return apply_merges([latin1(chunk)], self._rank, self._pair_of)[0]

    def _fill_chunks(self, chunks: Iterable[str]) -> None:
        """Encode the chunks not cached yet in one batch, and cache them."""
        cache = self._chunks
        # distinct first (C speed), then the misses: far fewer lookups than chunks
        todo = [c for c in dict.fromkeys(chunks) if c not in cache and len(c) <= _LONG_CHUNK]
        if len(cache) + len(todo) > _CACHE_LIMIT:
            cache.clear()
        if todo:
            merged = apply_merges(list(map(latin1, todo)), self._rank, self._pair_of)
            cache.update(zip(todo, merged, strict=True))

    def _chunks_of(self, text: str) -> list[str]:
        """Split `text` with the pattern; TokenizerError if the pattern skips characters."""
        if self._split is None:
            return [text] if text else []
        if self._ascii_split is not None:
            if text.isascii():
                return self._ascii_split(text)
            if len(text) > _ASCII_RUNS:
                out: list[str] = []
                for is_ascii, run in ascii_runs(text):
                    out += (self._ascii_split if is_ascii else self._split)(run)
                return out
        chunks = self._split(text)
        if not self._space_safe and sum(map(len, chunks)) != len(text):
            raise TokenizerError(
                "the split pattern skipped some characters of the text; a pattern must "
                "match every character (end it with |\\s+|. for instance)"
            )
        return chunks

    def _split_ids(self, text: str) -> str:
        """The ids of `text` as a str: split with the pattern, each chunk from the chunk cache."""
        chunks = self._chunks_of(text)
        self._fill_chunks(chunks)
        return "".join(map(self._chunks.__getitem__, chunks))

    def _encode_split(self, text: str) -> list[int]:
        """The ids of `text` by the pattern and the chunk cache alone (the reference path)."""
        return ids_of(self._split_ids(text))

    def _encode_piece(self, piece: str) -> str | None:
        """The ids of " " + piece, or None if the piece's edges are not safe to split at."""
        return self._split_ids(" " + piece) if _is_clean(piece) else None

    def _fill_pieces(self, todo: list[str]) -> None:
        """Cache the given distinct pieces, not cached yet, with one regex pass over all of them."""
        cache = self._pieces
        todo = [p for p in todo if len(p) <= _LONG_PIECE]  # long ones: __missing__
        if len(cache) + len(todo) > _CACHE_LIMIT:
            cache.clear()
        ok = list(map(_is_clean, todo))
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
            chunks += self._chunks_of(" " + " ".join(part)) if part else []
        distinct = list(dict.fromkeys(chunks))
        self._fill_chunks(distinct)
        starts = map(mul, repeat(self._no_id), map(str.startswith, distinct, repeat(" ")))
        marked = dict(
            zip(distinct, map(add, starts, map(self._chunks.__getitem__, distinct)), strict=True)
        )
        ids = "".join(map(marked.__getitem__, chunks)).split(self._no_id)
        assert len(ids) == len(clean) + 1, "a clean piece must start exactly one chunk"
        cache.update(zip(clean, ids[1:], strict=True))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with merges only: special-token texts are encoded as plain text."""
        if not self._space_safe or " " not in text:
            return self._encode_split(text)
        # Fast path for the GPT-2 and GPT-4 patterns: a single space with non-whitespace on
        # both sides is always a chunk boundary of those patterns, and the chunks on either
        # side do not depend on the text beyond it. So we split at every space with C-speed
        # str.split, cache whole pieces, and re-join (glue) the few pieces whose edges are
        # whitespace, or empty, with their neighbours before splitting those by the regex.
        pieces = text.split(" ")
        # segs[k]: the ids of piece k in place (after its space, if k > 0); None: glue it
        cache = self._pieces
        segs = list(map(cache.get, pieces, repeat(_UNSEEN)))
        new = list(dict.fromkeys(compress(pieces, map(is_, segs, repeat(_UNSEEN)))))
        if new:
            self._fill_pieces(new)
            # all of them again: filling may clear a full cache, and long pieces come from __missing__
            segs = list(map(cache.__getitem__, pieces))
        segs[0] = self._split_ids(pieces[0]) if _is_clean(pieces[0]) else None
        groups = _groups(len(pieces), compress(count(), map(is_, segs, repeat(None))))
        out: list[str] = []
        start = 0  # the first piece not yet encoded
        for lo, hi in groups:
            out += cast(list[str], segs[start:lo])
            out.append(self._split_ids((" " if lo else "") + " ".join(pieces[lo : hi + 1])))
            start = hi + 1
        out += cast(list[str], segs[start:])
        return ids_of("".join(out))

    def encode(
        self, text: str, allowed_special: Literal["all", "none"] | Iterable[str] = "none"
    ) -> list[int]:
        """Encode `text` to ids. Special-token texts are plain text unless allowed.

        `allowed_special` is "none" (the default: "<|endoftext|>" in the text is encoded
        like any other text), "all" (every registered special token becomes its id), or a
        set of special-token texts to allow.
        """
        if allowed_special == "none":
            return self.encode_ordinary(text)
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif isinstance(allowed_special, str):
            raise TokenizerError(
                f'allowed_special must be "all", "none" or a set of texts, not {allowed_special!r}'
            )
        else:
            allowed = set(cast(Iterable[str], allowed_special))
            unknown = sorted(allowed - set(self.special_tokens))
            if unknown:
                raise TokenizerError(f"not a registered special token: {unknown[0]!r}")
        if not allowed:
            return self.encode_ordinary(text)
        key = frozenset(allowed)
        split = self._special_splits.get(key)
        if split is None:
            # Longest first, so that a special token containing another one wins.
            alts = sorted(allowed, key=lambda t: (-len(t), t))
            split = regex.compile("(" + "|".join(map(regex.escape, alts)) + ")").split
            self._special_splits[key] = split
        ids: list[int] = []
        for i, part in enumerate(split(text)):
            if i % 2:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that `ids` stand for; special tokens give their UTF-8 text."""
        seq: Sequence[int]
        if hasattr(ids, "tolist"):  # numpy arrays and torch tensors
            seq = ids.tolist()
        else:
            seq = ids if isinstance(ids, (list, tuple)) else list(ids)
        try:
            # itemgetter fetches every piece in one C call.
            get = itemgetter(*seq) if len(seq) > 1 else lambda d: [d[i] for i in seq]
            return "".join(get(self._decoder)).encode("latin-1")
        except (KeyError, TypeError):
            bad = next(i for i in seq if not (_is_int(i) and i in self._decoder))
            specials = sorted(self.special_tokens.values())
            raise TokenizerError(
                f"unknown token id {bad!r}: ids are 0..{255 + len(self.merges)}"
                + (f" and the special ids {specials}" if specials else "")
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text that `ids` stand for; invalid UTF-8 becomes U+FFFD.

        Never raises for ids of this tokenizer; an id it does not have raises TokenizerError.
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- saving and loading -------------------------------------------------------------

    def to_json(self) -> str:
        """The canonical JSON text of this tokenizer: one merge per line, stable bytes."""
        merges = ",\n".join(f"    [{a}, {b}]" for a, b in self.merges)
        by_id = dict(sorted(self.special_tokens.items(), key=lambda item: item[1]))
        specials = json.dumps(by_id, ensure_ascii=False)
        return (
            "{\n"
            f'  "format": "{FORMAT}",\n'
            f'  "version": {VERSION},\n'
            f'  "pattern": {json.dumps(self.pattern, ensure_ascii=False)},\n'
            f'  "special_tokens": {specials},\n'
            + ('  "merges": [\n' + merges + "\n  ]\n" if merges else '  "merges": []\n')
            + "}\n"
        )

    def fingerprint(self) -> str:
        """SHA-256 hex digest of `to_json()`: equal tokenizers, equal fingerprints."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write `to_json()` to `path` atomically (a temporary file, then a rename)."""
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such directory", str(path.parent))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with open(tmp, "x", encoding="utf-8", newline="\n") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Parse and check a tokenizer's JSON text; any problem -> TokenizerError naming it."""
        if not isinstance(text, str):
            raise TokenizerError(f"tokenizer JSON must be a str, not {type(text).__name__}")
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as err:
            raise TokenizerError(f"not valid JSON: {err}") from None
        except RecursionError:
            raise TokenizerError("not valid JSON: nested too deeply") from None
        except TokenizerError:
            raise
        except ValueError as err:  # e.g. an integer past Python's 4300-digit conversion limit
            raise TokenizerError(f"not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise TokenizerError("a tokenizer file must hold a JSON object")
        expected = {"format", "version", "pattern", "special_tokens", "merges"}
        for key in sorted(expected - data.keys()):
            raise TokenizerError(f"missing field {key!r}")
        for key in sorted(data.keys() - expected):
            raise TokenizerError(f"unknown field {key!r}")
        if data["format"] != FORMAT:
            raise TokenizerError(f"format is {data['format']!r}, expected {FORMAT!r}")
        if not _is_int(data["version"]) or data["version"] != VERSION:
            raise TokenizerError(f"unsupported version {data['version']!r} (this reads {VERSION})")
        specials, raw = data["special_tokens"], data["merges"]
        if not isinstance(specials, dict):
            raise TokenizerError("special_tokens must be an object of text -> id")
        if not isinstance(raw, list):
            raise TokenizerError("merges must be a list of [left, right] pairs")
        merges: dict[tuple[int, int], int] = {}
        for rank, item in enumerate(raw):
            if not (isinstance(item, list) and len(item) == 2 and all(map(_is_int, item))):
                raise TokenizerError(f"merge {rank} is not a [left, right] pair of ids: {item!r}")
            pair = (item[0], item[1])
            if pair in merges:
                raise TokenizerError(
                    f"merge {rank} repeats the pair {list(pair)} of merge {merges[pair] - 256}"
                )
            merges[pair] = 256 + rank
        return cls(merges, data["pattern"], specials)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Read a file written by `save`; a corrupt file -> TokenizerError, a missing one OSError."""
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise TokenizerError(f"{path}: not a UTF-8 text file") from None
        try:
            return cls.from_json(text)
        except TokenizerError as err:
            raise TokenizerError(f"{path}: {err}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = next((k for k, v in PATTERNS.items() if v == self.pattern), "custom")
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"pattern={name}, special_tokens={len(self.special_tokens)})"
        )


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise TokenizerError(f"duplicate key {key!r}")
        out[key] = value
    return out


if __name__ == "__main__":
    from tok.cli import main

    sys.exit(main())
