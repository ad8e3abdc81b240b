"""The `python -m tok.bpe` command line, run in-process through main(argv)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tok.bpe import Tokenizer
from tok.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "data" / "tiny.txt"
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "corpus.txt"
    path.write_bytes(TINY.read_bytes()[:20_000])
    return path


@pytest.fixture(scope="module")
def model(corpus: Path) -> Path:
    path = corpus.parent / "model.json"
    Tokenizer.train(corpus.read_text(encoding="utf-8"), 400, special_tokens=[EOT]).save(path)
    return path


def stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_train_writes_the_model_and_one_summary_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bpe.json"
    assert main(["train", str(corpus), "--vocab", "300", "--out", str(out), "--quiet"]) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr == ""
    (line,) = stdout.splitlines()
    assert line.startswith("44 merges in ") and "bytes/token" in line and str(out) in line
    tok = Tokenizer.load(out)
    assert tok.vocab_size == 300
    assert tok == Tokenizer.train(corpus.read_text(encoding="utf-8"), 300)


def test_train_shows_progress_and_takes_options(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bpe.json"
    argv = ["train", str(corpus), "--vocab", "302", "--pattern", "gpt2", "--out", str(out)]
    assert main(argv + ["--special", EOT, "<|pad|>"]) == 0
    _, stderr = capsys.readouterr()
    assert "merges" in stderr  # the tqdm bar
    tok = Tokenizer.load(out)
    assert tok.special_tokens == {EOT: 300, "<|pad|>": 301}
    assert tok.pattern.startswith("'(?:[sdmt]")


def test_train_warns_when_it_stops_early(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = tmp_path / "small.txt"
    small.write_text("abab abab", encoding="utf-8")
    out = tmp_path / "bpe.json"
    assert main(["train", str(small), "--vocab", "300", "--out", str(out), "--quiet"]) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr.startswith("warning: training stopped after 2 of 44 merges")
    assert stdout.startswith("2 merges in ")


def test_encode_text_file_and_stdin(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tok = Tokenizer.load(model)
    text = "To be,\r\nor not  to be\u3000🙂"
    expected = tok.encode(text)
    assert main(["encode", "--model", str(model), text]) == 0
    assert capsys.readouterr().out == " ".join(map(str, expected)) + "\n"

    src = tmp_path / "in.txt"
    src.write_bytes(text.encode("utf-8"))  # \r\n must survive the read
    assert main(["encode", "--model", str(model), "--input", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected

    stdin(monkeypatch, text.encode("utf-8"))
    assert main(["encode", "--model", str(model)]) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in expected]


def test_encode_special_tokens_only_when_allowed(
    model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", "--model", str(model), f"a{EOT}"]) == 0
    assert "399" not in capsys.readouterr().out.split()
    assert main(["encode", "--model", str(model), "--allow-special", f"a{EOT}"]) == 0
    assert capsys.readouterr().out.split()[-1] == "399"


def test_decode_ids_file_and_stdin(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tok = Tokenizer.load(model)
    text = "Fair is foul,\r\n  and foul is fair:\t🙂" + EOT
    ids = tok.encode(text, allowed_special="all")
    assert main(["decode", "--model", str(model), *map(str, ids)]) == 0
    assert capsys.readouterr().out == text

    spaced, listed = tmp_path / "ids.txt", tmp_path / "ids.json"
    spaced.write_text("\n".join(map(str, ids)) + "\n", encoding="utf-8")
    listed.write_text(json.dumps(ids), encoding="utf-8")
    for path in (spaced, listed):
        assert main(["decode", "--model", str(model), "--input", str(path)]) == 0
        assert capsys.readouterr().out == text

    stdin(monkeypatch, " ".join(map(str, ids)).encode())
    assert main(["decode", "--model", str(model)]) == 0
    assert capsys.readouterr().out == text


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["train", "--help"], ["encode", "--help"], ["decode", "--help"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "examples:" in out and "python -m tok.bpe" in out


def misuse_cases(corpus: Path, model: Path, tmp: Path) -> list[tuple[list[str], str]]:
    corrupt = tmp / "corrupt.json"
    corrupt.write_text('{"format": "llm-tiny-bpe"}', encoding="utf-8")
    latin1 = tmp / "latin1.txt"
    latin1.write_bytes(b"caf\xe9")
    bad_json = tmp / "bad.json"
    bad_json.write_text("[1, 2", encoding="utf-8")
    not_ints = tmp / "notints.json"
    not_ints.write_text('[1, "2"]', encoding="utf-8")
    m = str(model)
    return [
        ([], "the following arguments are required"),
        (["fly"], "invalid choice: 'fly'"),
        (["train", str(corpus), "--out", str(tmp / "o.json")], "required: --vocab"),
        (["train", str(corpus), "--vocab", "many", "--out", "o.json"], "invalid int value"),
        (["train", str(corpus), "--vocab", "255", "--out", "o.json"], "at least 256"),
        (["train", str(corpus), "--vocab", "256", "--special", EOT, "--out", "o"], "least 257"),
        (["train", str(tmp / "nope.txt"), "--vocab", "300", "--out", "o.json"], "nope.txt"),
        (
            ["train", str(latin1), "--vocab", "300", "--out", "o.json"],
            "is not valid UTF-8: byte 0xe9 at offset 3",
        ),
        (["train", str(corpus), "--vocab", "300", "--pattern", "gpt5", "--out", "o"], "gpt5"),
        (["train", str(corpus), "--vocab", "300", "--out", str(tmp / "no/dir/o.json")], "no/dir"),
        (["encode", "hello"], "required: --model"),
        (["encode", "--model", str(tmp / "missing.json"), "hi"], "missing.json"),
        (["encode", "--model", str(corrupt), "hi"], "missing field 'merges'"),
        (["encode", "--model", str(latin1), "hi"], "not a UTF-8 text file"),
        (["encode", "--model", m, "hi", "--input", str(corpus)], "not both"),
        (
            ["encode", "--model", m, "--input", str(latin1)],
            "is not valid UTF-8: byte 0xe9 at offset 3",
        ),
        (["encode", "--model", m, "--input", str(tmp)], "directory"),
        (["decode", "--model", m, "1", "two"], "not an integer id: 'two'"),
        (["decode", "--model", m, "1", "400"], "unknown token id 400"),
        (["decode", "--model", m, "--", "-1"], "unknown token id -1"),
        (["decode", "--model", m, "1", "--input", str(bad_json)], "not both"),
        (["decode", "--model", m, "--input", str(bad_json)], "not a valid JSON list"),
        (["decode", "--model", m, "--input", str(not_ints)], "JSON list of integers"),
        (["decode", "--model", m, "--input", str(tmp / "none.txt")], "none.txt"),
    ]


def test_every_misuse_is_one_line_and_exit_2(
    corpus: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in misuse_cases(corpus, model, tmp_path):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 2, argv
        assert out == "", argv
        assert err.count("\n") == 1 and err.startswith("error: "), (argv, err)
        assert message in err, (argv, err)
        assert "Traceback" not in err


def test_runs_as_a_module(model: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tok.bpe", "decode", "--model", str(model), "72", "105"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "Hi", "")
