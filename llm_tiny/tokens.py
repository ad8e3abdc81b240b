"""Token caches on disk, written as they are encoded and resumable, and the batches cut from them.

A cache is a flat file of ids (uint16 when the vocabulary fits, else uint32), `<key>.bin`, and a
manifest `<key>.json` (token count, dtype, tokenizer fingerprint, sha256 of the ids). It is used
only when the manifest matches the tokenizer and the file matches the manifest, byte for byte.
While it is built the ids go to `<key>.bin.part`, and `<key>.part.json` records, every few
seconds, how many pieces of text and tokens are safely on disk (after an fsync): a preparation
stopped at any moment (Ctrl-C, kill -9, a full disk) resumes from there, and the finished cache
is the same, byte for byte, as one built in a single go, with any number of workers.
No torch here: preparing data needs none (the batches are in `llm_tiny.batches`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from llm_tiny.errors import UserError
from llm_tiny.files import atomic_write_text, fsync_dir
from tok.bpe import Tokenizer
from tok.parallel import Workers
from tok.stream import encode_stream, typecode

CACHE_VERSION = "2"
SAVE_EVERY_S = 5.0  # how often a build in progress records what is safely on disk


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in it, else uint32: the ids as tok.stream writes them."""
    return np.dtype(typecode(vocab_size))


@dataclass(frozen=True)
class TokenFile:
    """A cached run of token ids on disk."""

    path: Path
    dtype: np.dtype
    n: int

    def array(self) -> np.memmap:
        """A fresh read-only memmap of the ids (cheap; drop it after use)."""
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n,))


def _sha256(path: Path, upto: int | None = None) -> Any:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = upto
        while left is None or left > 0:
            data = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not data:
                break
            h.update(data)
            left = None if left is None else left - len(data)
    return h


def _read_json(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def open_cache(
    folder: str | os.PathLike[str], key: str, tok: Tokenizer, fingerprint: str | None = None
) -> TokenFile | None:
    """The finished cache `key` if it is complete and matches `tok` (else None: rebuild it);
    fingerprint: tok's, if the caller has it already."""
    path, meta_path = Path(folder) / f"{key}.bin", Path(folder) / f"{key}.json"
    if not (path.is_file() and meta_path.is_file()):
        return None
    meta, dtype = _read_json(meta_path), token_dtype(tok.vocab_size)
    fp = fingerprint or tok.fingerprint()
    other = meta.get("tokenizer")
    if isinstance(other, str) and other != fp:
        # the name is keyed by the tokenizer, so another one means a copied or renamed cache
        raise UserError(
            f"token cache {path} was encoded with tokenizer {other[:12]}, but this run's "
            f"tokenizer is {fp[:12]}; delete {path} and {meta_path}"
        )
    n = meta.get("n_tokens")
    if not (isinstance(n, int) and n > 0) or meta.get("version") != CACHE_VERSION:
        return None
    if meta.get("dtype") != dtype.name or path.stat().st_size != n * dtype.itemsize:
        return None
    if _sha256(path).hexdigest() != meta.get("sha256"):
        return None
    return TokenFile(path, dtype, n)


def build_cache(
    folder: str | os.PathLike[str],
    key: str,
    tok: Tokenizer,
    items: Iterator[tuple[bool, str]],
    workers: int | Workers = 1,
    sep: int | None = None,
    log: Callable[[str], None] = print,
    cut: str = "",
    fingerprint: str | None = None,
) -> TokenFile:
    """Encode the (starts a document, text) pieces into cache `key`, resuming a build that was
    stopped; `sep` goes before each document. The same pieces must come on every call: `cut`
    says how they were cut from the text, and a build stopped with another cut starts over.
    fingerprint: tok's, if the caller has it already."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, part, progress = (folder / f"{key}{ext}" for ext in (".bin", ".bin.part", ".part.json"))
    dtype, fp = token_dtype(tok.vocab_size), fingerprint or tok.fingerprint()
    width = dtype.itemsize
    state = {"version": CACHE_VERSION, "tokenizer": fp, "dtype": dtype.name, "sep": sep, "cut": cut}
    done = _read_json(progress)
    items_done, n = done.get("items", 0), done.get("n_tokens", 0)
    resumable = all(done.get(k) == v for k, v in state.items()) and part.is_file()
    if resumable and isinstance(n, int) and isinstance(items_done, int):
        resumable = part.stat().st_size >= n * width
    if resumable:
        log(f"resuming {path.name}: {items_done:,} pieces, {n:,} tokens already on disk")
        with open(part, "r+b") as torn:
            torn.truncate(n * width)  # anything past the last record is a torn write
        sha = _sha256(part)
    else:
        items_done, n, sha = 0, 0, hashlib.sha256()
        part.write_bytes(b"")

    def record(f: Any) -> None:
        f.flush()
        os.fsync(f.fileno())
        atomic_write_text(progress, json.dumps({**state, "items": items_done, "n_tokens": n}))

    with open(part, "ab") as f:
        last = time.monotonic()
        try:
            for ids in encode_stream(tok, islice(items, items_done, None), workers, sep):
                f.write(ids)
                sha.update(ids)
                n += len(ids) // width
                items_done += 1
                if time.monotonic() - last > SAVE_EVERY_S:
                    record(f)
                    last = time.monotonic()
        except BaseException:
            with contextlib.suppress(OSError):  # keep what is done; a torn write is cut off later
                record(f)
            raise
        f.flush()
        os.fsync(f.fileno())
    if n == 0:
        raise UserError("nothing to encode: the text is empty")
    meta = {**state, "n_tokens": n, "sha256": sha.hexdigest()}
    os.replace(part, path)
    fsync_dir(folder)
    atomic_write_text(folder / f"{key}.json", json.dumps(meta) + "\n")
    progress.unlink(missing_ok=True)
    return TokenFile(path, dtype, n)
