"""The splitter: its ASCII fast path splits exactly as the full patterns do."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tok import GPT2_PATTERN, GPT4_PATTERN, TokenizerError, splitter
from tok.splitter import Splitter

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"
EOT = "<|endoftext|>"

ASCII = st.lists(
    st.one_of(
        st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "\x0b", "\x0c", "\x1c", "'", "'s", "'LL"]),
        st.sampled_from(["'Re", "'ve", "'d", "a", "Zz", "7", "123456", "_", ".", "!?", "-"]),
        st.characters(max_codepoint=127),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(s=ASCII)
def test_the_ascii_splits_equal_the_patterns_on_ascii_text(s: str) -> None:
    for pattern in (GPT4_PATTERN, GPT2_PATTERN):
        assert splitter.ASCII_SPLITS[pattern](s) == regex.findall(pattern, s)


def test_the_ascii_splits_agree_on_every_short_ascii_string() -> None:
    chars = "a7' \n\r\t\x0b.sSl"  # each class the patterns tell apart, and contractions
    texts = ["".join(t) for n in range(1, 5) for t in itertools.product(chars, repeat=n)]
    for pattern in (GPT4_PATTERN, GPT2_PATTERN):
        split = regex.compile(pattern).findall
        assert all(splitter.ASCII_SPLITS[pattern](t) == split(t) for t in texts)


def test_regex_whitespace_is_python_whitespace() -> None:
    # The fast path checks piece edges with str.isspace; it is safe because every
    # character that the patterns' \s matches is also str.isspace.
    s = "".join(map(chr, range(sys.maxunicode + 1)))
    assert all(c.isspace() for c in regex.findall(r"\s", s))


def test_long_mixed_text_splits_as_regex_does() -> None:
    # past 16 KB a text that is not all ASCII is split run by run, ASCII runs by Python's re
    text = TINY.read_text(encoding="utf-8")[:30_000]
    text = text.replace("e t", "é t").replace("the", "th\u00a0e").replace("\n\n", "\r\n 🙂 \n")
    for pattern in (GPT4_PATTERN, GPT2_PATTERN):
        assert Splitter(pattern).split(text) == regex.findall(pattern, text)


def test_no_pattern_is_one_chunk_and_a_bad_pattern_a_named_error() -> None:
    assert Splitter("").split("a b") == ["a b"] and Splitter("").split("") == []
    with pytest.raises(TokenizerError, match="skipped some characters"):
        Splitter(r"\w+").split("a b")
    with pytest.raises(TokenizerError, match="capturing group"):
        Splitter(r"(\w)+")
    with pytest.raises(TokenizerError, match="not a valid regex"):
        Splitter("(?:")
