"""The chunk caches: the space-split fast path and the batch fills equal the plain regex split."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tok import GPT2_PATTERN, GPT4_PATTERN, Tokenizer, TokenizerError, cache, merges

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"
EOT = "<|endoftext|>"

# -- the fast space-split path ------------------------------------------------------------

SPACEY = st.lists(
    st.sampled_from(
        [" ", " ", " ", "\n", "\n", "\r", "\r\n", "\t", "\u00a0", "\u3000", "\x1c", "a", "B"]
        + ["é", "7", "'", "s", "t", ".", ",", "!", "中", "🙂", "\x00", "\ue000"]
    ),
    max_size=40,
).map("".join)


@pytest.fixture(scope="module")
def gpt_toks(text: str) -> list[Tokenizer]:
    """Tokenizers with the two patterns that take the fast path."""
    return [Tokenizer.train(text[:20_000], 400, pattern=p) for p in (GPT4_PATTERN, GPT2_PATTERN)]


@settings(max_examples=400, deadline=None)
@given(s=SPACEY)
def test_space_split_fast_path_equals_the_plain_regex_split(
    gpt_toks: list[Tokenizer], s: str
) -> None:
    for t in gpt_toks:
        assert t.encode(s) == t._encode_split(s)
        cold = Tokenizer(t.merges, pattern=t.pattern)  # empty caches: the batch path
        assert cold.encode(s) == t._encode_split(s)


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(SPACEY, max_size=12))
def test_fast_path_batches_many_pieces(gpt_toks: list[Tokenizer], lines: list[str]) -> None:
    # Many pieces of every shape in one batch, from empty caches.
    for text in ("\n".join(lines), " ".join(lines), "  ".join(lines)):
        for t in gpt_toks:
            assert Tokenizer(t.merges, pattern=t.pattern).encode(text) == t._encode_split(text)


def test_id_strings_convert_to_ints_across_the_whole_id_range() -> None:
    # Caches hold ids as characters; ids 0xD800..0xDFFF are lone surrogates, which must survive.
    ids = [0, 255, 256, 0xD7FF, 0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0xE000, sys.maxunicode]
    assert merges.ids_of("".join(map(chr, ids))) == ids
    assert merges.ids_of("") == []


def test_the_merge_limit_leaves_a_character_for_no_id() -> None:
    limit = sys.maxunicode - 256
    with pytest.raises(TokenizerError, match=f"too many merges: {limit + 1} > {limit}"):
        Tokenizer({(255 + k, 0): 256 + k for k in range(limit + 1)})


def test_fast_path_with_tiny_caches(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(cache, "CACHE_LIMIT", 50)
    monkeypatch.setattr(cache, "LONG_PIECE", 3)
    monkeypatch.setattr(cache, "LONG_CHUNK", 2)
    t = Tokenizer.train(text[:5000], 300)
    sample = text[5000:15000]
    ids = t.encode(sample)
    assert t.decode(ids) == sample
    assert ids == t.encode(sample) == Tokenizer(t.merges)._encode_split(sample)
