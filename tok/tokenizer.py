"""The `Tokenizer` class: a byte-level BPE tokenizer (train, encode, decode, save, load).

Text is split into chunks with a regex (GPT-4's pattern by default, `tok.splitter`); each
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
every chunk it has seen (`tok.cache`). The save format is a versioned, human-readable JSON
file (`tok.codec`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Literal, cast

import regex

from tok import codec, gpt2_files
from tok.cache import ChunkCache
from tok.errors import TokenizerError, is_int
from tok.learn import learn_merges
from tok.merges import ids_of, latin1
from tok.parallel import Workers
from tok.patterns import GPT4_PATTERN, PATTERNS, pattern_regex
from tok.splitter import Splitter


def build_vocab(
    merges: dict[tuple[int, int], int], byte_ids: Sequence[int] = range(256)
) -> dict[int, bytes]:
    """id -> bytes for the 256 bytes and every merge; TokenizerError if a merge is not valid."""
    if len(merges) > sys.maxunicode - 256:  # ids, and one more, must fit in str characters
        raise TokenizerError(f"too many merges: {len(merges)} > {sys.maxunicode - 256}")
    if sorted(byte_ids) != list(range(256)) or not all(map(is_int, byte_ids)):
        raise TokenizerError("byte_ids must give each of the 256 bytes one of the ids 0..255")
    vocab = {i: bytes([b]) for b, i in sorted(enumerate(byte_ids), key=itemgetter(1))}
    for rank, (pair, new_id) in enumerate(merges.items()):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TokenizerError(f"merge {rank} is not a (left, right) pair: {pair!r}")
        if not is_int(new_id) or new_id != 256 + rank:
            raise TokenizerError(f"merge {rank} must create id {256 + rank}, not {new_id!r}")
        for side in pair:
            if not is_int(side) or not 0 <= side < new_id:
                raise TokenizerError(
                    f"merge {rank} refers to id {side!r}, which is not defined before it"
                )
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
    return vocab


def check_special_tokens(tokens: dict[str, int], registered: dict[str, int], lowest: int) -> None:
    """TokenizerError unless each new token is a non-empty text not registered yet, with an id
    of its own in [lowest, 2**31)."""
    taken = {i: t for t, i in registered.items()}
    for text, new_id in tokens.items():
        if not isinstance(text, str) or not text:
            raise TokenizerError(f"a special token must be a non-empty string: {text!r}")
        if text in registered:
            raise TokenizerError(f"special token {text!r} is already registered")
        if not is_int(new_id) or not lowest <= new_id < 2**31:
            raise TokenizerError(
                f"special token {text!r} has id {new_id!r}; special ids must be integers"
                f" >= {lowest} (above every merge) and < 2**31"
            )
        if new_id in taken:
            raise TokenizerError(
                f"special tokens {taken[new_id]!r} and {text!r} have the same id {new_id}"
            )
        taken[new_id] = text


class Tokenizer:
    """A byte-level BPE tokenizer: a split pattern, a ranked merge list, special tokens.

    `merges` maps (left id, right id) to the new id 256 + rank, in rank order; `vocab`
    maps every ordinary id to its bytes; `special_tokens` maps each special token's text
    to its id, above all merge ids. `byte_ids[b]` is the id of byte b: b itself for a
    tokenizer trained here, GPT-2's own order for GPT-2's (`tok.gpt2.load_gpt2`). Treat the attributes as read-only: build a new
    Tokenizer (or call `register_special_tokens`) to change them.
    """

    def __init__(
        self,
        merges: dict[tuple[int, int], int] | None = None,
        pattern: str = GPT4_PATTERN,
        special_tokens: dict[str, int] | None = None,
        byte_ids: Sequence[int] | None = None,
    ) -> None:
        """Check and index the merges, pattern and special tokens; TokenizerError if invalid.

        `pattern` is a regex, "" for no pre-split, or a name from PATTERNS ("gpt4", ...).
        `byte_ids` (default: byte b is id b) is a permutation of 0..255.
        """
        merges = dict(merges or {})
        if not isinstance(pattern, str):
            raise TokenizerError(f"pattern must be a string, got {type(pattern).__name__}")
        pattern = pattern_regex(pattern)
        splitter = Splitter(pattern)
        ids = tuple(range(256)) if byte_ids is None else tuple(byte_ids)
        vocab = build_vocab(merges, ids)
        self.byte_ids = ids
        self.pattern = pattern
        self.merges = merges
        self.vocab = vocab
        self.special_tokens: dict[str, int] = {}
        rank = {chr(a) + chr(b): z for (a, b), z in merges.items()}
        # a character that stands for no merge-level id
        self.cache = ChunkCache(splitter, rank, list(rank), chr(256 + len(merges)))
        if ids != tuple(range(256)):
            self.cache.byte_table = {b: chr(i) for b, i in enumerate(ids)}
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
        check_special_tokens(tokens, self.special_tokens, 256 + len(self.merges))
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
        if not is_int(vocab_size) or vocab_size < 256 + len(specials):
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
        names = list(probe.special_tokens)
        merges = learn_merges(pieces, n_merges, probe.pattern, names, progress, workers)
        if isinstance(specials, dict):
            return cls(merges, pattern, dict(specials))
        tok = cls(merges, pattern)
        tok.register_special_tokens(list(specials))
        return tok

    # -- encoding and decoding ----------------------------------------------------------

    def _encode_split(self, text: str) -> list[int]:
        """The ids of `text` by the pattern and the chunk cache alone (the reference path)."""
        return ids_of(self.cache.ids(text))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with merges only: special-token texts are encoded as plain text."""
        return ids_of(self.cache.ordinary(text))

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
            bad = next(i for i in seq if not (is_int(i) and i in self._decoder))
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

    # -- saving and loading (the format: tok.codec) -------------------------------------

    def to_json(self) -> str:
        """The canonical JSON text of this tokenizer: one merge per line, stable bytes."""
        ids = None if self.byte_ids == tuple(range(256)) else self.byte_ids
        data = codec.TokenizerData(self.merges, self.pattern, self.special_tokens, ids)
        return codec.dumps(data)

    def fingerprint(self) -> str:
        """SHA-256 hex digest of `to_json()`: equal tokenizers, equal fingerprints."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write `to_json()` to `path` atomically (a temporary file, then a rename)."""
        codec.write_text(path, self.to_json())

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Parse and check a tokenizer's JSON text; any problem -> TokenizerError naming it."""
        return cls(*codec.loads(text))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Read a file written by `save`, a GPT-2 folder (vocab.json + merges.txt and/or
        tokenizer.json) or an HF tokenizer.json; a corrupt file -> TokenizerError, a missing
        one OSError (a missing file of a GPT-2 folder: TokenizerError naming it)."""
        try:
            if os.path.isdir(path):
                return cls(*gpt2_files.read_gpt2(path))
            data = codec.parse_json(codec.read_text(path))
            if isinstance(data, dict) and "model" in data and "format" not in data:
                return cls(*gpt2_files.read_tokenizer_json(Path(path), data))
            return cls(*codec.from_object(data))
        except TokenizerError as err:
            msg = str(err)
            raise TokenizerError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = next((k for k, v in PATTERNS.items() if v == self.pattern), "custom")
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"pattern={name}, special_tokens={len(self.special_tokens)})"
        )
