"""The tokenizer benchmark runs end to end on a small corpus, with or without references."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_tiny.bench import tokenizer as bench

TINY = Path(__file__).resolve().parents[3] / "data" / "tiny.txt"


@pytest.fixture
def corpora(tmp_path: Path) -> tuple[Path, Path]:
    text = TINY.read_text(encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text[:6000], encoding="utf-8")
    plays = tmp_path / "plays"
    plays.mkdir()
    (plays / "a_gut.txt").write_text(text[6000:9000], encoding="utf-8")
    (plays / "b_gut.txt").write_text(text[9000:12000], encoding="utf-8")
    (plays / "b_gut_f.txt").write_text("not part of it", encoding="utf-8")
    return corpus, plays


def test_report_has_every_row(corpora: tuple[Path, Path]) -> None:
    corpus, plays = corpora
    out = bench.report(corpus, plays, repeats=1, vocabs=(300, 350, 400))
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 8  # header, rule, 3 train, 2 encode, decode
    assert "train: first 5,969 B → vocab 300" in out  # under 200 KB: all of it up to its last \n
    assert "train: 6,000 B → vocab 350" in out
    assert "train: 6,000 B → vocab 400 (one run, own process)" in out  # *_gut.txt files only
    assert "peak RSS" in out and "MB/s" in out
    assert "DIFFERENT" not in out


def test_report_without_the_references(
    corpora: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "_optional", lambda name: None)
    out = bench.report(corpora[0], None, repeats=1, vocabs=(300, 300, 300))
    assert "tokenizers not installed, tiktoken not installed" in out
    assert "nothing (no reference installed)" in out
    rule = next(ln for ln in out.splitlines() if ln.startswith("| ---"))
    assert "HF" not in out.split(rule)[1]  # no ratio against a missing reference


def test_first_bytes_cuts_at_a_newline() -> None:
    assert bench.first_bytes("ab\ncd\nef", 7) == "ab\ncd\n"
    assert bench.first_bytes("ab\ncd\nef", 100) == "ab\ncd\n"


def test_cli_checks_its_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--corpus", str(tmp_path / "missing.txt")]) == 2
    assert bench.main(["--corpus", str(TINY), "--repeats", "0"]) == 2
    assert bench.main(["--repeats", "many"]) == 2
    assert bench.main(["--corpus", str(TINY), "--plays", str(tmp_path)]) == 2  # no *_gut.txt
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        f"error: {tmp_path / 'missing.txt'} does not exist",
        "error: --repeats must be at least 1",
    ]
    assert "invalid int value: 'many'" in err[2] and "no *_gut.txt files" in err[3]
    assert len(err) == 4
    assert bench.main(["--help"]) == 0
    assert "example:" in capsys.readouterr().out
