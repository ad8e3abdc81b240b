"""Fixtures shared by the tokenizer tests: the shipped corpus and a 600-id tokenizer of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tok import Tokenizer

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"


@pytest.fixture(scope="module")
def text() -> str:
    return TINY.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tok4(text: str) -> Tokenizer:
    """600 ids trained on the first 30,000 characters, <|endoftext|> the last of them."""
    return Tokenizer.train(text[:30_000], 600, special_tokens=["<|endoftext|>"])
