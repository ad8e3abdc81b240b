"""Split patterns: the regexes that cut text into chunks before BPE, and where text may be cut.

A chunk is the unit BPE works in: merges never cross a chunk boundary. `cut_pieces` cuts a long
text into pieces at places where the pattern is sure to have a chunk boundary whose chunks on
either side do not depend on the text beyond it, so that splitting (and encoding) the pieces one
by one gives exactly what splitting the whole text would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

# The split patterns of GPT-4 (cl100k_base) and GPT-2.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PATTERNS = {"gpt4": GPT4_PATTERN, "gpt2": GPT2_PATTERN, "none": ""}


def pattern_regex(name: str) -> str:
    """The split regex for a pattern name (gpt4, gpt2, none: any case); anything else is a regex."""
    return PATTERNS.get(name.lower(), name)


# Patterns for which a space with non-whitespace on both sides always starts a chunk, and the
# chunks on either side do not depend on the text beyond it (no lookbehind, and every chunk
# that holds a space starts with it or is all whitespace). Text may be cut before such a space.
CUTTABLE = frozenset({GPT4_PATTERN, GPT2_PATTERN})


def last_cut(text: str, end: int | None = None) -> int:
    """The last index i < end (default len(text) - 1) where `text` may be cut before a space
    that has non-whitespace on both sides; -1 if there is none."""
    i = text.rfind(" ", 1, len(text) - 1 if end is None else end)
    while i > 0:
        if not text[i - 1].isspace() and not text[i + 1].isspace():
            return i
        i = text.rfind(" ", 1, i)
    return -1


def next_cut(text: str, start: int) -> int:
    """The first index i >= start where `text` may be cut (see `last_cut`); -1 if none."""
    i = text.find(" ", max(start, 1), len(text) - 1)
    while i > 0:
        if not text[i - 1].isspace() and not text[i + 1].isspace():
            return i
        i = text.find(" ", i + 1, len(text) - 1)
    return -1


def ascii_runs(text: str, step: int = 4096) -> Iterator[tuple[bool, str]]:
    """Cut `text` at safe places every `step` characters or so and join neighbouring parts
    into runs that are all ASCII or not: (is ASCII, run), in order, adding up to `text`.

    Python's `re` splits ASCII text about twice as fast as `regex`, and real text is mostly
    ASCII with a few other characters here and there."""
    start = 0  # where the current run starts
    kind: bool | None = None
    at = 0
    while at < len(text):
        end = next_cut(text, at + step)
        end = len(text) if end < 0 else end
        part = text[at:end].isascii()
        if kind is not None and part != kind:
            yield kind, text[start:at]
            start = at
        kind, at = part, end
    if kind is not None:
        yield kind, text[start:]


def cut_pieces(blocks: Iterable[str], size: int, cuttable: bool) -> Iterator[str]:
    """Join the text blocks of one document and cut them into pieces of about `size` characters
    at safe places (see `last_cut`); with `cuttable` false the whole document is one piece.

    A piece is longer than `size` only where the text has no safe place to cut (a run of text
    without spaces), and then only until the next one. Each block is searched once at most,
    so a document with no place to cut costs linear, not quadratic, time.
    """
    held: list[str] = []  # the text since the last cut, block by block
    n = 0  # its length
    clean = 0  # held[:clean] are known to hold no cut, joints included
    for block in blocks:
        if not block:
            continue
        held.append(block)
        n += len(block)
        if not cuttable or n < size:
            continue
        for k in range(len(held) - 1, clean - 1, -1):  # the last cut: search from the newest block
            before = held[k - 1][-1] if k else ""
            after = held[k + 1][0] if k + 1 < len(held) else ""
            cut = last_cut(before + held[k] + after) - len(before)
            if cut > 0 or (cut == 0 and k):
                yield "".join(held[:k]) + held[k][:cut]
                held = [held[k][cut:], *held[k + 1 :]]
                n = sum(map(len, held))
                break
        clean = len(held) - 1  # the newest block's last character waits for what follows it
    if held:
        yield "".join(held)
