"""The shipped corpora: present, unchanged, small, strictly valid UTF-8, plain line endings."""

from __future__ import annotations

import hashlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"


def test_corpus_is_present_and_under_200_kb() -> None:
    assert CORPUS.is_file()
    assert 50_000 < CORPUS.stat().st_size < 200_000


def test_corpus_is_strict_utf8_with_plain_line_endings() -> None:
    raw = CORPUS.read_bytes()
    text = raw.decode("utf-8", errors="strict")
    assert b"\r" not in raw
    assert text.endswith("\n")
    assert "MACBETH" in text and "MIDSUMMER" in text


TINYSHAKESPEARE = CORPUS.parent / "tinyshakespeare.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def test_tinyshakespeare_is_shipped_unchanged() -> None:
    # the benchmark configs and docs/results.md name data/tinyshakespeare.txt; a changed byte would
    # silently move every published number
    assert TINYSHAKESPEARE.is_file(), "data/tinyshakespeare.txt is missing (see data/README.md)"
    raw = TINYSHAKESPEARE.read_bytes()
    assert len(raw) == 1_115_394
    assert hashlib.sha256(raw).hexdigest() == TINYSHAKESPEARE_SHA256
