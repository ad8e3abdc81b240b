"""The shipped corpus: present, small, strictly valid UTF-8, plain line endings."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "data" / "tiny.txt"


def test_corpus_is_present_and_under_200_kb() -> None:
    assert CORPUS.is_file()
    assert 50_000 < CORPUS.stat().st_size < 200_000


def test_corpus_is_strict_utf8_with_plain_line_endings() -> None:
    raw = CORPUS.read_bytes()
    text = raw.decode("utf-8", errors="strict")
    assert b"\r" not in raw
    assert text.endswith("\n")
    assert "MACBETH" in text and "MIDSUMMER" in text
