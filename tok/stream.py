"""Text of any size: read a UTF-8 file in blocks, cut it into pieces, encode pieces in workers.

    with open(path, "rb") as f:
        pieces = cut_pieces(read_blocks(f, path), PIECE_CHARS, tok.pattern in CUTTABLE)
        for ids in encode_stream(tok, ((False, p) for p in pieces), workers=2):
            out.write(ids)                      # the ids of each piece, as array bytes, in order

Memory follows the block and piece sizes and the number of pieces in flight, never the file.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice, tee
from typing import BinaryIO

from tok.merges import ID_ARRAY
from tok.parallel import Workers, batched, ordered_map
from tok.tokenizer import Tokenizer

BLOCK_BYTES = 1 << 20  # what one read takes from a file
PIECE_CHARS = 1 << 20  # about what one worker task holds


class BadText(ValueError):
    """Bytes that are not UTF-8; the message names the file and the byte offset."""

    def __init__(self, name: str, offset: int, byte: int, reason: str) -> None:
        super().__init__(
            f"{name} is not valid UTF-8: byte 0x{byte:02x} at offset {offset} ({reason})"
        )
        self.name, self.offset = name, offset


def _char_start(data: bytes) -> int:
    """Where the last, possibly incomplete, UTF-8 character of `data` starts (len: none open)."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            need = 1 if b < 0x80 else 2 if b >> 5 == 6 else 3 if b >> 4 == 14 else 4
            return len(data) if need <= back else len(data) - back
    return len(data)


def read_blocks(
    f: BinaryIO,
    name: str,
    start: int = 0,
    stop: int | None = None,
    block: int = BLOCK_BYTES,
    tap: Callable[[bytes], object] | None = None,
) -> Iterator[str]:
    """The text of bytes [start, stop) of an open binary file, decoded strictly, in blocks.

    `start` must be a character boundary (as `split_offset` gives). Bad UTF-8 raises BadText
    naming `name` and the offset of the first bad byte in the file. `tap(data)` sees every
    run of bytes as it is read (for a checksum or a progress bar).
    """
    if start or f.tell():
        f.seek(start)
    at, carry = start, b""  # at: the file offset of carry's first byte
    while stop is None or at + len(carry) < stop:
        want = block if stop is None else min(block, stop - at - len(carry))
        data = f.read(want)
        if not data:
            break
        if tap is not None:
            tap(data)
        data = carry + data
        cut = _char_start(data)
        text, carry = data[:cut], data[cut:]
        yield decode_utf8(text, name, at)
        at += len(text)
    if carry:
        yield decode_utf8(carry, name, at)


def decode_utf8(data: bytes, name: str, at: int = 0) -> str:
    """`data` decoded strictly; BadText names `name` and the file offset (data starts at `at`)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadText(name, at + e.start, data[e.start], str(e.reason)) from None


def split_offset(f: BinaryIO, size: int, frac: float) -> int:
    """The byte offset where the last `frac` of a file of `size` bytes starts, moved forward to
    a character boundary (past UTF-8 continuation bytes)."""
    cut = min(size, round(size * (1.0 - frac)))
    f.seek(cut)
    ahead = f.read(4)
    skip = 0
    while skip < len(ahead) and ahead[skip] & 0xC0 == 0x80:
        skip += 1
    return cut + skip


# -- encoding in workers -----------------------------------------------------------------------

_tok: Tokenizer | None = None  # this process's tokenizer, and the JSON it was made from
_tok_json = ""


def typecode(vocab_size: int) -> str:
    """The array type code that holds every id: 'H' (2 bytes) if they fit, else 4 bytes."""
    return "H" if vocab_size <= 1 << 16 else ID_ARRAY


# A str of chr(id) encoded with these codecs is the ids as native 2- or 4-byte unsigned ints:
# no list of ints in between.
_CODECS = {"H": f"utf-16-{sys.byteorder[0]}e", ID_ARRAY: f"utf-32-{sys.byteorder[0]}e"}


def encode_item(tokenizer_json: str, sep: int | None, item: tuple[bool, str]) -> bytes:
    """The ids of one (starts a document, text) piece as array bytes, `sep` first if it starts
    one. The chunk path, not encode_ordinary's space-split one: on code-heavy text that one
    glues so many whitespace-edged pieces that it runs about 1.7x slower."""
    global _tok, _tok_json
    if tokenizer_json != _tok_json:
        _tok, _tok_json = Tokenizer.from_json(tokenizer_json), tokenizer_json
    assert _tok is not None
    first, text = item
    ids = _tok.cache.ids(text)
    if first and sep is not None:
        ids = chr(sep) + ids
    return ids.encode(_CODECS[typecode(_tok.vocab_size)], "surrogatepass")


def encode_stream(
    tok: Tokenizer,
    items: Iterable[tuple[bool, str]],
    workers: int | Workers = 1,
    sep: int | None = None,
) -> Iterator[bytes]:
    """The ids of each (starts a document, text) piece, in order, as bytes of
    `array(typecode(tok.vocab_size))`; `sep` (say an end-of-text id) goes before each document.
    Special-token texts inside the text are encoded as plain text, as `encode_ordinary` does."""
    task = partial(encode_items, tok.to_json(), sep)
    for ids in ordered_map(task, batched(items, _text_len), workers):
        yield from ids


def encode_items(
    tokenizer_json: str, sep: int | None, items: list[tuple[bool, str]]
) -> list[bytes]:
    """`encode_item` for each of some items: small documents travel several to a task."""
    return [encode_item(tokenizer_json, sep, item) for item in items]


def _text_len(item: tuple[bool, str]) -> int:
    return len(item[1])


def count_ids(
    tok: Tokenizer, pieces: Iterable[str], workers: int | Workers = 1, limit: int = 0
) -> tuple[int, int]:
    """(ids, UTF-8 bytes) of the pieces (of the first `limit` of them, if set)."""
    texts, sent = tee(islice(pieces, limit) if limit else pieces)  # one pass over the pieces
    n_ids = n_bytes = 0
    width = array(typecode(tok.vocab_size)).itemsize
    for text, ids in zip(
        texts, encode_stream(tok, ((False, t) for t in sent), workers), strict=True
    ):
        n_ids += len(ids) // width
        n_bytes += len(text.encode("utf-8", "surrogatepass"))
    return n_ids, n_bytes
