"""Corpus -> tokenizer -> cached token ids -> batches.

The split is by text: the last `val_frac` of the corpus's bytes (moved forward to a character boundary) is
the validation text, the rest trains, and the tokenizer is trained on the training text only. Each part is
encoded once and cached as a flat numpy file of ids (uint16 when the vocabulary fits) named by a hash of
the corpus bytes, the split and the tokenizer, so a second run starts at once. Batches slice a memmap
opened per call: only the rows a batch reads are touched, so resident memory does not creep up.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from llm_tiny.config import DataCfg
from llm_tiny.errors import UserError, one_line
from llm_tiny.files import atomic_write_bytes, atomic_write_text
from tok.bpe import PATTERNS, Tokenizer, TokenizerError

CACHE_VERSION = "1"
# a model needs an embedding row per id: a hostile tokenizer file with one special id near 2**31
# would ask for hundreds of GB; real vocabularies stay far below this
MAX_VOCAB = 1 << 20


def pattern_regex(name: str) -> str:
    """The pre-split regex for a pattern name (gpt4, gpt2, none); anything else is taken as a regex."""
    return PATTERNS.get(name.lower(), name)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (memory stays flat for big corpora)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_corpus_file(path: str | os.PathLike[str]) -> Path:
    """The corpus path, if it names a non-empty file (else a UserError saying what is wrong)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"corpus {p} not found (set data.path=FILE)")
    if not p.is_file():
        raise UserError(f"corpus {p} is not a file")
    if p.stat().st_size == 0:
        raise UserError(f"corpus {p} is empty")
    return p


def read_corpus(path: str | os.PathLike[str]) -> bytes:
    """The corpus bytes, checked to be non-empty, strictly valid UTF-8."""
    p = check_corpus_file(path)
    data = p.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"corpus {p} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} "
            f"({e.reason})"
        ) from None
    return data


def split_text(data: bytes, val_frac: float) -> tuple[str, str]:
    """(train text, validation text): the last val_frac of the bytes, cut at a character boundary."""
    cut = min(len(data), round(len(data) * (1.0 - val_frac)))
    while cut < len(data) and (data[cut] & 0xC0) == 0x80:  # a UTF-8 continuation byte
        cut += 1
    return data[:cut].decode("utf-8"), data[cut:].decode("utf-8")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in it, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


@dataclass(frozen=True)
class TokenFile:
    """A cached run of token ids on disk."""

    path: Path
    dtype: np.dtype
    n: int

    def array(self) -> np.memmap:
        """A fresh read-only memmap of the ids (cheap; drop it after use)."""
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n,))


def encode_cached(
    get_text: Callable[[], str], key: str, tok: Tokenizer, cache_dir: str | os.PathLike[str]
) -> TokenFile:
    """The ids of get_text() under tok, from `<cache_dir>/<key>.bin` or encoded once and cached there."""
    folder = Path(cache_dir)
    path, meta_path = folder / f"{key}.bin", folder / f"{key}.json"
    dtype, fp = token_dtype(tok.vocab_size), tok.fingerprint()
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            n = int(meta["n_tokens"])
            ok = meta.get("tokenizer") == fp and meta.get("dtype") == dtype.name
            ok = ok and n > 0 and path.stat().st_size == n * dtype.itemsize
        except (OSError, ValueError, KeyError, TypeError):
            ok, meta = False, {}
        other = meta.get("tokenizer") if isinstance(meta, dict) else None
        if isinstance(other, str) and other != fp:
            # the file name is keyed by fp, so a different one means a copied or renamed cache
            raise UserError(
                f"token cache {path} was encoded with tokenizer {other[:12]}, but this run's "
                f"tokenizer is {fp[:12]}; delete {path} and {meta_path}"
            )
        if ok:
            tf = TokenFile(path, dtype, n)
            top = int(tf.array().max())
            if top >= tok.vocab_size:
                raise UserError(
                    f"token cache {path} holds id {top}, outside the tokenizer's vocabulary "
                    f"of {tok.vocab_size} (tokenizer {fp[:12]}); delete the cache file"
                )
            return tf
    ids = np.asarray(tok.encode(get_text()), dtype=dtype)
    if ids.size == 0:
        raise UserError("nothing to encode: the text is empty")
    atomic_write_bytes(path, ids.tobytes())
    meta = {
        "n_tokens": int(ids.size),
        "dtype": dtype.name,
        "tokenizer": fp,
        "version": CACHE_VERSION,
    }
    atomic_write_text(meta_path, json.dumps(meta) + "\n")
    return TokenFile(path, dtype, int(ids.size))


def token_byte_lengths(tok: Tokenizer) -> np.ndarray:
    """UTF-8 byte length of every token id: the bytes a correctly predicted token stands for."""
    out = np.zeros(tok.vocab_size, dtype=np.int64)
    for i, b in tok.vocab.items():
        if 0 <= i < out.size:
            out[i] = len(b)
    for s, i in tok.special_tokens.items():
        if 0 <= i < out.size and out[i] == 0:
            out[i] = len(s.encode("utf-8"))
    return out


@dataclass
class Corpus:
    """A tokenized corpus: its tokenizer, the train and validation ids, and bytes per token id."""

    tokenizer: Tokenizer
    tokenizer_path: Path | None
    train: TokenFile
    val: TokenFile
    token_bytes: np.ndarray

    def check_length(self, block_size: int, what: str = "corpus") -> None:
        """UserError unless both splits hold at least one block_size + 1 window."""
        for name, tf in (("training", self.train), ("validation", self.val)):
            if tf.n < block_size + 1:
                raise UserError(
                    f"the {name} split of {what} has {tf.n} tokens; it needs at least "
                    f"block_size + 1 = {block_size + 1} (use a longer corpus, change data.val_frac, "
                    "or lower model.block_size)"
                )


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Tokenizer.load with its errors as a one-line UserError naming the file."""
    try:
        return Tokenizer.load(path)
    except (TokenizerError, OSError, ValueError) as e:
        raise UserError(f"tokenizer {path}: {one_line(e)}") from None


def default_tokenizer_path(dcfg: DataCfg, corpus_sha: str) -> Path:
    """Where the tokenizer for this corpus, split, vocab size and pattern lives when none is named."""
    h = hashlib.sha256(f"{corpus_sha}|{dcfg.val_frac!r}|{dcfg.pattern}".encode()).hexdigest()
    return Path(dcfg.cache_dir) / f"tok-{Path(dcfg.path).stem}-v{dcfg.vocab_size}-{h[:12]}.json"


def prepare(
    dcfg: DataCfg,
    tokenizer: Tokenizer | None = None,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> Corpus:
    """Tokenizer and cached token ids for dcfg's corpus; trains/encodes only what isn't cached yet.

    With `tokenizer` given (a resumed run's), it is used, and a tokenizer file named by the config must
    be the same tokenizer.
    """
    path = check_corpus_file(dcfg.path)
    corpus_sha = file_sha256(path)
    texts: list[tuple[str, str]] = []

    def parts() -> tuple[str, str]:
        if not texts:  # read, check and split the corpus only if something must be built
            texts.append(split_text(read_corpus(path), dcfg.val_frac))
        return texts[0]

    tok_path = Path(dcfg.tokenizer) if dcfg.tokenizer else default_tokenizer_path(dcfg, corpus_sha)
    if tokenizer is None:
        if tok_path.is_file():
            tokenizer = load_tokenizer(tok_path)
            if tokenizer.vocab_size != dcfg.vocab_size:
                log(
                    f"note: {tok_path} has {tokenizer.vocab_size} tokens (data.vocab_size is ignored)"
                )
        else:
            train_text = parts()[0]
            log(f"training a {dcfg.vocab_size}-token tokenizer on {len(train_text):,} chars ...")
            pattern = pattern_regex(dcfg.pattern)
            tokenizer = train_tokenizer(train_text, dcfg.vocab_size, pattern, progress, log)
            tok_path.parent.mkdir(parents=True, exist_ok=True)
            tokenizer.save(tok_path)
            log(f"saved tokenizer {tok_path}")
    elif tok_path.is_file():
        named = load_tokenizer(tok_path)
        if named.fingerprint() != tokenizer.fingerprint():
            raise UserError(
                f"the checkpoint's tokenizer ({tokenizer.fingerprint()[:12]}, "
                f"{tokenizer.vocab_size} tokens) differs from {tok_path} "
                f"({named.fingerprint()[:12]}, {named.vocab_size} tokens)"
            )
    if tokenizer.vocab_size > MAX_VOCAB:
        raise UserError(
            f"tokenizer {tok_path} has ids up to {tokenizer.vocab_size - 1}; a model here takes at "
            f"most {MAX_VOCAB} ids (vocab_size), one embedding row each"
        )
    fp = tokenizer.fingerprint()
    keys = [
        hashlib.sha256(f"{CACHE_VERSION}|{corpus_sha}|{dcfg.val_frac!r}|{s}|{fp}".encode())
        for s in ("train", "val")
    ]
    train = encode_cached(lambda: parts()[0], keys[0].hexdigest()[:24], tokenizer, dcfg.cache_dir)
    val = encode_cached(lambda: parts()[1], keys[1].hexdigest()[:24], tokenizer, dcfg.cache_dir)
    return Corpus(tokenizer, tok_path, train, val, token_byte_lengths(tokenizer))


def train_tokenizer(
    text: str,
    vocab_size: int,
    pattern: str,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> Tokenizer:
    """Tokenizer.train (with a progress bar if asked) with its errors as a UserError and its
    warnings as one-line notes (Python's own warning display adds a source line)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tok = Tokenizer.train(text, vocab_size, pattern=pattern, progress=progress)
    except (TokenizerError, ValueError) as e:
        raise UserError(f"cannot train the tokenizer: {one_line(e)}") from None
    for w in caught:
        log(f"note: {one_line(w.message)}")
    return tok


def encode_file(
    path: str | os.PathLike[str], tok: Tokenizer, split: str, val_frac: float, cache_dir: str
) -> TokenFile:
    """Cached ids of a file's validation split ("val") or of the whole file ("all"), under tok."""
    p = check_corpus_file(path)
    sha = file_sha256(p)

    def text() -> str:
        data = read_corpus(p)
        return split_text(data, val_frac)[1] if split == "val" else data.decode("utf-8")

    frac = repr(val_frac) if split == "val" else "-"
    key = f"{CACHE_VERSION}|{sha}|{frac}|{split}|{tok.fingerprint()}"
    return encode_cached(text, hashlib.sha256(key.encode()).hexdigest()[:24], tok, cache_dir)


def windows(tf: TokenFile, offsets: np.ndarray, block_size: int) -> tuple[Tensor, Tensor]:
    """Inputs x and targets y (len(offsets), block_size): y is x shifted left by one token."""
    idx = offsets.astype(np.int64)[:, None] + np.arange(block_size + 1)
    chunk = torch.from_numpy(tf.array()[idx].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def get_batch(
    tf: TokenFile,
    batch_size: int,
    block_size: int,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[Tensor, Tensor]:
    """This rank's share of one global batch of random windows.

    Every rank draws the same batch_size offsets from its (identically seeded) generator and keeps rows
    rank*B/W .. (rank+1)*B/W, so the global batch is the same whatever the number of processes.
    """
    offsets = torch.randint(tf.n - block_size, (batch_size,), generator=generator)
    per = batch_size // world_size
    return windows(tf, offsets[rank * per : (rank + 1) * per].numpy(), block_size)


def fixed_offsets(tf: TokenFile, block_size: int, count: int) -> np.ndarray:
    """`count` window offsets spread evenly over tf: the same validation subset at every evaluation."""
    return np.linspace(0, tf.n - block_size - 1, count).round().astype(np.int64)
