"""GPT-2's tokenizer files read into plain data: `vocab.json` + `merges.txt`, or HF `tokenizer.json`.

    data = read_gpt2("gpt2/")            # a folder, tokenizer.json, vocab.json, or (vocab, merges)
    Tokenizer(*data)                     # what tok.gpt2.load_gpt2 returns

GPT-2 writes each token's bytes as printable characters (`byte_chars`: a printable Latin-1 byte
stands for itself, every other byte for a character from U+0100 on); its ids are bytes first (in
the order of those characters), then merge k as 256 + k, then `<|endoftext|>`. A `Tokenizer`
keeps GPT-2's ids with its `byte_ids` (byte -> id). Every problem is a one-line TokenizerError
naming the file: a missing file, JSON that does not parse, a merges.txt that disagrees with its
vocab.json.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tok.codec import TokenizerData, parse_json
from tok.errors import TokenizerError, is_int
from tok.patterns import GPT2_PATTERN

VOCAB, MERGES, TOKENIZER_JSON = "vocab.json", "merges.txt", "tokenizer.json"
Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def byte_chars() -> list[str]:
    """GPT-2's (and HF ByteLevel's) stand-in character for each byte: printable Latin-1 as
    itself, the other bytes as U+0100, U+0101, ... in byte order."""
    keep = {*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)}
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def is_gpt2_folder(path: str | os.PathLike[str]) -> bool:
    """A folder that holds GPT-2's tokenizer files (vocab.json + merges.txt, or tokenizer.json)."""
    p = Path(path)
    return p.is_dir() and (
        (p / TOKENIZER_JSON).is_file() or ((p / VOCAB).is_file() and (p / MERGES).is_file())
    )


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"missing file: {path}") from None
    except UnicodeDecodeError:
        raise TokenizerError(f"{path}: not a UTF-8 text file") from None


def _json(path: Path) -> Any:
    try:
        return parse_json(_read(path))
    except TokenizerError as err:
        raise TokenizerError(f"{path}: {err}") from None


def read_vocab_merges(vocab_path: Path, merges_path: Path) -> TokenizerData:
    """GPT-2's vocab.json (token -> id) and merges.txt (one "left right" pair a line)."""
    vocab = _json(vocab_path)
    if not isinstance(vocab, dict) or not all(map(is_int, vocab.values())):
        raise TokenizerError(f"{vocab_path}: must be a JSON object of token -> integer id")
    pairs: list[tuple[str, str]] = []
    for n, line in enumerate(_read(merges_path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerError(f"{merges_path}: line {n} is not two tokens apart by a space")
        pairs.append((parts[0], parts[1]))
    return gpt2_data(vocab, pairs, f"{vocab_path} and {merges_path}", {})


def read_tokenizer_json(path: Path, data: Any = None) -> TokenizerData:
    """An HF `tokenizer.json` of a byte-level BPE (GPT-2's, or one `llm_tiny.export` wrote)."""
    data = _json(path) if data is None else data
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise TokenizerError(f"{path}: not a BPE tokenizer.json (no model of type BPE)")
    vocab, raw = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(raw, list):
        raise TokenizerError(f"{path}: its model needs a vocab object and a merges list")
    pairs: list[tuple[str, str]] = []
    for k, m in enumerate(raw):
        pair = m.split(" ") if isinstance(m, str) else m
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)
        ):
            raise TokenizerError(f"{path}: merge {k} is not a pair of tokens: {m!r}")
        pairs.append((pair[0], pair[1]))
    added = data.get("added_tokens") or []
    added = [t for t in added if isinstance(t, dict)] if isinstance(added, list) else []
    specials = {t.get("content"): t.get("id") for t in added if t.get("special") is True}
    return gpt2_data(vocab, pairs, str(path), specials, _pattern(path, data.get("pre_tokenizer")))


def _pattern(path: Path, pre: Any) -> str:
    """The split regex of a pre-tokenizer: GPT-2's ByteLevel, or a Split then ByteLevel."""
    is_seq = isinstance(pre, dict) and pre.get("type") == "Sequence"
    steps = pre.get("pretokenizers") if is_seq else [pre]
    steps = [s if isinstance(s, dict) else {} for s in steps] if isinstance(steps, list) else []
    last = steps[-1] if steps else {}
    if last.get("type") != "ByteLevel" or last.get("add_prefix_space"):
        raise TokenizerError(f"{path}: not a byte-level BPE as GPT-2's (pre_tokenizer {pre!r:.80})")
    if len(steps) == 1:
        return GPT2_PATTERN if last.get("use_regex", True) else ""
    split = steps[0] if len(steps) == 2 and not last.get("use_regex", True) else {}
    regex = split.get("pattern")
    regex = regex.get("Regex") if isinstance(regex, dict) and split.get("type") == "Split" else None
    if not isinstance(regex, str) or split.get("behavior") != "Isolated" or split.get("invert"):
        raise TokenizerError(f"{path}: a pre_tokenizer this reader does not know: {pre!r:.80}")
    return regex


def gpt2_data(
    vocab: dict[str, int],
    pairs: list[tuple[str, str]],
    where: str,
    specials: dict[str, int],
    pattern: str = GPT2_PATTERN,
) -> TokenizerData:
    """Check that a vocabulary and its merges agree, and turn them into our plain data.

    Every byte must have a token, merge k must make the token whose id is 256 + k from two
    tokens of the vocabulary, and every other token must be a special token above them."""
    of_char = {c: b for b, c in enumerate(byte_chars())}
    n = 256 + len(pairs)
    byte_ids = []
    for b, c in enumerate(byte_chars()):
        if not is_int(vocab.get(c)) or not 0 <= vocab[c] < 256:
            raise TokenizerError(f"{where} disagree: byte 0x{b:02x} ({c!r}) has no id below 256")
        byte_ids.append(vocab[c])
    merges: dict[tuple[int, int], int] = {}
    for k, (left, right) in enumerate(pairs):
        for side in (left, right):
            if side not in vocab:
                raise TokenizerError(f"{where} disagree: merge {k} uses {side!r}, not in the vocab")
        made = vocab.get(left + right)
        if made != 256 + k:
            raise TokenizerError(
                f"{where} disagree: merge {k} ({left!r} {right!r}) must make id {256 + k},"
                f" the vocab gives {left + right!r} the id {made!r}"
            )
        merges[vocab[left], vocab[right]] = made
    if len(set(byte_ids)) != 256:
        raise TokenizerError(f"{where} disagree: two bytes have the same id")
    ordinary = 0
    for token, i in vocab.items():
        if not is_int(i) or i < 0:
            raise TokenizerError(f"{where}: token {token!r} has the id {i!r}")
        if i >= n:  # past the merges: a special token, as <|endoftext|> is
            specials.setdefault(token, i)
            continue
        if any(c not in of_char for c in token):
            raise TokenizerError(f"{where}: token {token!r} is not in GPT-2's byte characters")
        ordinary += 1
    if ordinary != n:
        raise TokenizerError(
            f"{where} disagree: {n} ids (256 bytes + {len(pairs)} merges) but the vocab has"
            f" {ordinary} tokens below {n}"
        )
    return TokenizerData(merges, pattern, specials, tuple(byte_ids))


def read_gpt2(path: Paths) -> TokenizerData:
    """GPT-2's tokenizer from a folder (vocab.json + merges.txt, else tokenizer.json), from a
    tokenizer.json or vocab.json file (merges.txt beside it), or from (vocab.json, merges.txt)."""
    if not isinstance(path, (str, os.PathLike)):
        if len(path) != 2:
            raise TokenizerError("give a folder, a tokenizer.json, or vocab.json and merges.txt")
        return read_vocab_merges(Path(path[0]), Path(path[1]))
    p = Path(path)
    if p.is_dir():
        if (p / VOCAB).is_file() or not (p / TOKENIZER_JSON).is_file():
            if not (p / VOCAB).is_file():
                raise TokenizerError(f"missing file: {p / VOCAB} (or {p / TOKENIZER_JSON})")
            return read_vocab_merges(p / VOCAB, p / MERGES)
        return read_tokenizer_json(p / TOKENIZER_JSON)
    if p.name == VOCAB:
        return read_vocab_merges(p, p.with_name(MERGES))
    return read_tokenizer_json(p)
