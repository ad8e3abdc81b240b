"""The GPT-2 tokenizer benchmark runs end to end and checks its ids against tiktoken's."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from llm_tiny.bench import gpt2_tokenizer as bench

ROOT = Path(__file__).resolve().parents[3]
GPT2 = ROOT / "tests" / "data" / "gpt2"


def test_report_has_every_row(tmp_path: Path) -> None:
    pytest.importorskip("tiktoken")
    corpus = tmp_path / "c.txt"
    corpus.write_text((ROOT / "data" / "tiny.txt").read_text(encoding="utf-8")[:3000], "utf-8")
    out = bench.report(GPT2, corpus, repeats=1)
    assert "ids equal to tiktoken: yes" in out and "load average" in out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 5 and "warm caches" in rows[2] and "MB/s" in rows[2]


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert bench.main(["--model", str(tmp_path), "--repeats", "1"]) == 2
        assert bench.main(["--model", str(GPT2), "--repeats", "0"]) == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 2 and "missing file" in lines[0] and "--repeats" in lines[1]
