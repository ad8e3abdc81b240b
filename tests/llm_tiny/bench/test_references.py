"""The reference jobs: one piece of code for each side, run in-process or as a child's JSON line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_tiny.bench import references as refs
from tok.bpe import Tokenizer

TINY = Path(__file__).resolve().parents[3] / "data" / "tiny.txt"


def test_ours_train_job_prints_its_seconds_and_peak_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(TINY.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    assert refs.main(["ours-train", str(corpus), "280"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"s", "peak_rss_mb"} and got["s"] > 0 and got["peak_rss_mb"] > 10


def test_hf_trained_alike_and_hf_built_from_our_merges_split_as_ours() -> None:
    hf = pytest.importorskip("tokenizers", reason="an optional install for the benchmark")
    text = TINY.read_text(encoding="utf-8")[:4000]
    trained = refs.hf_train(hf, text, 300)
    assert trained.get_vocab_size() == 300
    ours = Tokenizer.train(text, 300)
    assert refs.hf_from(hf, ours).encode(text).ids == ours.encode(text)


def test_a_folder_corpus_is_its_gut_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b_gut.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a_gut.txt").write_text("first ", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("left out", encoding="utf-8")
    assert refs.read_corpus(tmp_path) == "first second"
    assert refs.read_corpus(tmp_path / "notes.txt") == "left out"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*_gut.txt files"):
        refs.read_corpus(tmp_path / "empty")
