"""Corpus -> tokenizer -> cached token ids, streamed: what `prepare` and `train` build.

`prepare` scans the corpus (`llm_tiny.corpus`), trains the tokenizer on the training split if there
is none yet (chunks counted in worker processes, from at most `data.tokenizer_max_bytes` of text
spread evenly over the split), and encodes each split into a token cache (`llm_tiny.tokens`),
piece by piece in the same workers. Caches and default tokenizers are named by a hash of the
corpus, the split and the tokenizer, so a second run starts at once. A corpus of many documents
gets an `<|endoftext|>` token, one before each document, in both splits.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_tiny.config import DataCfg
from llm_tiny.corpus import Scan, documents, scan
from llm_tiny.errors import UserError, one_line
from llm_tiny.tokens import TokenFile, build_cache, open_cache, token_dtype  # noqa: F401
from tok.bpe import Tokenizer, TokenizerError
from tok.parallel import Workers, default_workers
from tok.patterns import CUTTABLE, cut_pieces, pattern_regex
from tok.stream import BLOCK_BYTES, PIECE_CHARS

EOT = "<|endoftext|>"
# a model needs an embedding row per id: a hostile tokenizer file with one special id near 2**31
# would ask for hundreds of GB; real vocabularies stay far below this
MAX_VOCAB = 1 << 20


def token_byte_lengths(tok: Tokenizer) -> np.ndarray:
    """UTF-8 byte length of every token id: the bytes a correctly predicted token stands for.
    The end-of-text separator stands for no text: 0 bytes."""
    out = np.zeros(tok.vocab_size, dtype=np.int64)
    for i, b in tok.vocab.items():
        if 0 <= i < out.size:
            out[i] = len(b)
    for s, i in tok.special_tokens.items():
        if 0 <= i < out.size and out[i] == 0 and s != EOT:
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
    fingerprint: str  # the tokenizer's, computed once
    stats: dict[str, Any] = field(default_factory=dict)

    def check_length(self, block_size: int, what: str = "corpus") -> None:
        """UserError unless both splits hold at least one block_size + 1 window."""
        for name, tf in (("training", self.train), ("validation", self.val)):
            if tf.n < block_size + 1:
                raise UserError(
                    f"the {name} split of {what} has {tf.n} tokens; it needs at least "
                    f"block_size + 1 = {block_size + 1} (use a longer corpus, change data.val_frac, "
                    "or lower model.block_size)"
                )

    def sizes(self) -> str:
        """The splits' sizes in one phrase: tokens, and documents when there are many."""
        st, docs = self.stats, ""
        if not st.get("single", True):
            docs = f" in {st['splits']['train'][0]:,} / {st['splits']['val'][0]:,} documents"
        return f"{self.train.n:,} train / {self.val.n:,} val tokens{docs}"


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Tokenizer.load with its errors as a one-line UserError naming the file."""
    try:
        return Tokenizer.load(path)
    except (TokenizerError, OSError, ValueError) as e:
        raise UserError(f"tokenizer {path}: {one_line(e)}") from None


def default_tokenizer_path(dcfg: DataCfg, sc: Scan) -> Path:
    """Where the tokenizer for this corpus, split, vocab size, pattern and cap lives when none is named."""
    key = f"{sc.fingerprint}|{sc.split_key}|{dcfg.pattern}|{dcfg.tokenizer_max_bytes}"
    h = hashlib.sha256(key.encode()).hexdigest()
    stem = Path(dcfg.path.rstrip("/*")).stem or "corpus"
    return Path(dcfg.cache_dir) / f"tok-{stem}-v{dcfg.vocab_size}-{h[:12]}.json"


def tokenizer_path(dcfg: DataCfg, sc: Scan) -> Path:
    """The tokenizer file this config names, else the default one for its corpus."""
    return Path(dcfg.tokenizer) if dcfg.tokenizer else default_tokenizer_path(dcfg, sc)


def _bar(progress: bool, total: int, desc: str) -> AbstractContextManager[Any]:
    if not progress:
        return nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False, mininterval=1.0)


def _tap(bar: Any) -> Callable[[bytes], object] | None:
    return None if bar is None else (lambda data: bar.update(len(data)))


def _pieces(sc: Scan, split: str, cuttable: bool, tap: Any) -> Iterator[tuple[bool, str]]:
    """(starts a document, text) for every piece of a split, in corpus order."""
    for doc in documents(sc, split, tap):
        for k, piece in enumerate(cut_pieces(doc, PIECE_CHARS, cuttable)):
            yield k == 0, piece


def _spread(pieces: Iterator[tuple[bool, str]], total: int, cap: int | None) -> Iterator[str]:
    """The pieces' texts, or, past `cap` bytes of `total`, an even spread of about `cap` bytes."""
    seen = taken = 0
    for _, text in pieces:
        size = len(text.encode("utf-8", "surrogatepass"))
        seen += size
        if cap is None or total <= cap or taken < cap * seen / total:
            taken += size
            yield text


def train_tokenizer(
    sc: Scan, dcfg: DataCfg, workers: Workers, progress: bool, log: Callable[[str], None]
) -> Tokenizer:
    """Learn the tokenizer from the training split (at most data.tokenizer_max_bytes of it)."""
    pattern = pattern_regex(dcfg.pattern)
    specials = [] if sc.single else [EOT]
    train_bytes = sc.split_sizes()["train"][1]
    cap = dcfg.tokenizer_max_bytes
    size = min(train_bytes, cap) if cap else train_bytes
    log(
        f"training a {dcfg.vocab_size}-token tokenizer on {size / 1e6:,.1f} MB"
        + (
            f" spread over the {train_bytes / 1e6:,.1f} MB training split"
            if size < train_bytes
            else ""
        )
        + f" ({workers.n} worker(s)) ..."
    )
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            _bar(progress, train_bytes, "count") as bar,
        ):
            warnings.simplefilter("always")
            texts = _spread(_pieces(sc, "train", pattern in CUTTABLE, _tap(bar)), train_bytes, cap)
            tok = Tokenizer.train_pieces(
                texts, dcfg.vocab_size, pattern, specials, progress, workers
            )
    except (TokenizerError, ValueError) as e:
        raise UserError(f"cannot train the tokenizer: {one_line(e)}") from None
    for w in caught:
        log(f"note: {one_line(w.message)}")
    return tok


def prepare(
    dcfg: DataCfg,
    tokenizer: Tokenizer | None = None,
    log: Callable[[str], None] = print,
    progress: bool = False,
    fingerprint: str | None = None,
) -> Corpus:
    """Tokenizer and cached token ids for dcfg's corpus; trains/encodes only what isn't cached yet.

    With `tokenizer` given (a resumed or fine-tuning run's), it is used, and a tokenizer file named by
    the config must be the same tokenizer; `fingerprint` is its fingerprint, if the caller has it.
    """
    sc = scan(dcfg.path, dcfg.text_field, dcfg.val_frac, dcfg.on_bad_file, log)
    # fork the workers once, while this process is small, for both the tokenizer and the caches
    # (and hosts for the merge loop only if a tokenizer is to be trained)
    training = tokenizer is None and not tokenizer_path(dcfg, sc).is_file()
    with Workers(dcfg.workers or default_workers(), hosts=training) as workers:
        return _prepare(sc, dcfg, tokenizer, workers, log, progress, fingerprint)


def _prepare(
    sc: Scan,
    dcfg: DataCfg,
    tokenizer: Tokenizer | None,
    workers: Workers,
    log: Callable[[str], None],
    progress: bool,
    fingerprint: str | None,
) -> Corpus:
    t0 = time.perf_counter()
    tok_path = tokenizer_path(dcfg, sc)
    given = tokenizer is not None
    if tokenizer is None:
        if tok_path.is_file():
            tokenizer = load_tokenizer(tok_path)
            if tokenizer.vocab_size != dcfg.vocab_size:
                log(
                    f"note: {tok_path} has {tokenizer.vocab_size} tokens (data.vocab_size is ignored)"
                )
        else:
            tokenizer = train_tokenizer(sc, dcfg, workers, progress, log)
            tok_path.parent.mkdir(parents=True, exist_ok=True)
            tokenizer.save(tok_path)
            log(f"saved tokenizer {tok_path}")
    fp = (given and fingerprint) or tokenizer.fingerprint()
    if given and tok_path.is_file():
        named = load_tokenizer(tok_path)
        if named.fingerprint() != fp:
            raise UserError(
                f"the checkpoint's tokenizer ({fp[:12]}, "
                f"{tokenizer.vocab_size} tokens) differs from {tok_path} "
                f"({named.fingerprint()[:12]}, {named.vocab_size} tokens)"
            )
    if tokenizer.vocab_size > MAX_VOCAB:
        raise UserError(
            f"tokenizer {tok_path} has ids up to {tokenizer.vocab_size - 1}; a model here takes at "
            f"most {MAX_VOCAB} ids (vocab_size), one embedding row each"
        )
    t1 = time.perf_counter()
    splits = {
        s: encode_split(sc, s, tokenizer, dcfg.cache_dir, workers, progress, log, fp)
        for s in ("train", "val")
    }
    stats = {
        "splits": sc.split_sizes(),
        "single": sc.single,
        "tokenizer_s": t1 - t0,
        "encode_s": time.perf_counter() - t1,
    }
    lengths = token_byte_lengths(tokenizer)
    return Corpus(tokenizer, tok_path, splits["train"], splits["val"], lengths, fp, stats)


def encode_split(
    sc: Scan,
    split: str,
    tok: Tokenizer,
    cache_dir: str,
    workers: int | Workers = 1,
    progress: bool = False,
    log: Callable[[str], None] = print,
    fingerprint: str | None = None,
) -> TokenFile:
    """The cached ids of one split ("train", "val" or "all") under tok, encoded if not cached yet
    (fingerprint: tok's, if the caller has it already)."""
    fp = fingerprint or tok.fingerprint()
    sep = None if sc.single else tok.special_tokens.get(EOT)
    if not sc.single and sep is None:
        log(
            f"note: the tokenizer has no {EOT} token: {split} documents are joined with no separator"
        )
    how = sc.split_key if split != "all" else "-"
    key = f"{sc.fingerprint}|{how}|{split}|{fp}|{sep}"
    key = hashlib.sha256(key.encode()).hexdigest()[:24]
    tf = open_cache(cache_dir, key, tok, fp)
    if tf is not None:
        return tf
    total = sc.n_bytes if split == "all" else sc.split_sizes()[split][1]
    with _bar(progress, total, f"encode {split}") as bar:
        items = _pieces(sc, split, tok.pattern in CUTTABLE, _tap(bar))
        cut = f"pieces {PIECE_CHARS}, blocks {BLOCK_BYTES}"  # what decides where pieces end
        return build_cache(cache_dir, key, tok, items, workers, sep, log, cut, fp)


def encode_file(
    path: str | os.PathLike[str],
    tok: Tokenizer,
    split: str,
    val_frac: float,
    cache_dir: str,
    text_field: str = "text",
    workers: int | None = None,
) -> TokenFile:
    """Cached ids of a corpus's validation split ("val") or of all of it ("all"), under tok."""
    sc = scan(str(path), text_field, val_frac, "error", print)
    return encode_split(sc, split, tok, cache_dir, workers or default_workers())
