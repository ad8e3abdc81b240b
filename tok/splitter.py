"""The splitter: a pattern that cuts text into chunks, with a fast path for ASCII text.

    split = Splitter(GPT4_PATTERN).split
    split("Hello world")        # ['Hello', ' world']

A chunk is the unit BPE works in: merges never cross a chunk boundary. Training (`tok.counting`),
encoding (`tok.cache`) and streaming (`tok.stream`) all split with this one class.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import regex

from tok.errors import TokenizerError
from tok.patterns import CUTTABLE, GPT2_PATTERN, GPT4_PATTERN, ascii_runs

# The GPT-4 and GPT-2 patterns for ASCII text, for Python's own `re`, which splits ASCII text about
# 1.6x as fast as `regex`: \p{L} and \p{N} become [A-Za-z] and [0-9], and the possessive ?+ and ++
# become greedy (nothing after them can fail, so they never backtrack). With re.ASCII, \s is
# [ \t\n\v\f\r], exactly what `regex` matches with \s among ASCII characters.
ASCII_SPLITS = {
    pattern: re.compile(ascii_pattern, re.ASCII).findall
    for pattern, ascii_pattern in (
        (
            GPT4_PATTERN,
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{1,3}"""
            r"""| ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",
        ),
        (
            GPT2_PATTERN,
            r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""",
        ),
    )
}
# Texts longer than this that are not all ASCII are split run by run (see `ascii_runs`).
ASCII_RUNS = 16384


def compile_pattern(pattern: str) -> Callable[[str], list[str]] | None:
    """The findall of a split regex ("" -> None: no pre-split); TokenizerError if it is invalid."""
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
    return compiled.findall if compiled is not None else None


class Splitter:
    """Cuts text into the chunks of one split regex ("" for no pre-split: the text is one chunk).

    `space_safe` tells that a single space with non-whitespace on both sides always starts a
    chunk whose neighbours do not depend on the text beyond it (the GPT-2 and GPT-4 patterns).
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._split = compile_pattern(pattern)
        self._ascii_split = ASCII_SPLITS.get(pattern)
        self.space_safe = pattern in CUTTABLE

    def split(self, text: str) -> list[str]:
        """The chunks of `text`; TokenizerError if the pattern skips characters."""
        if self._split is None:
            return [text] if text else []
        if self._ascii_split is not None:
            if text.isascii():
                return self._ascii_split(text)
            if len(text) > ASCII_RUNS:
                out: list[str] = []
                for is_ascii, run in ascii_runs(text):
                    out += (self._ascii_split if is_ascii else self._split)(run)
                return out
        chunks = self._split(text)
        if not self.space_safe and sum(map(len, chunks)) != len(text):
            raise TokenizerError(
                "the split pattern skipped some characters of the text; a pattern must "
                "match every character (end it with |\\s+|. for instance)"
            )
        return chunks
