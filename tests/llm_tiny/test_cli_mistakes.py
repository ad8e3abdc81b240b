"""The command-line mistakes people make, each answered in one line that says what was meant."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_tiny.config import load_config
from llm_tiny.corpus import find_sources
from llm_tiny.errors import ArgumentParser, UserError
from llm_tiny.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="demo")
    p.add_argument("--top_k", type=int, default=0)
    p.add_argument("--print-config", action="store_true")
    p.add_argument("--prompt", default="")
    return p


@given(st.sampled_from(["--top_k", "--top-k"]), st.integers(0, 99), st.booleans())
def test_long_flags_take_either_separator(flag: str, k: int, joined: bool) -> None:
    argv = [f"{flag}={k}"] if joined else [flag, str(k)]
    assert parser().parse_args(argv).top_k == k
    assert parser().parse_args(["--print_config"]).print_config is True


def test_a_value_is_never_respelled() -> None:
    assert parser().parse_args(["--prompt", "top-k"]).prompt == "top-k"


def test_an_unknown_flag_names_the_closest_one() -> None:
    with pytest.raises(
        UserError, match=r"unrecognized arguments: --topk 5 \(did you mean --top_k\?\)"
    ):
        parser().parse_args(["--topk", "5"])
    with pytest.raises(UserError) as e:
        parser().parse_args(["--zzz"])
    assert "did you mean" not in str(e.value)  # and never --help


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--lr", "1e-3"], "unrecognized arguments: --lr (did you mean train.lr=...?)"),
        (["--max-iters", "5"], "(did you mean train.max_steps=...?)"),
        (["train.lr", "1e-3"], "train.lr is a config key; write train.lr=VALUE"),
        (["configs/tiny"], "config file configs/tiny not found (did you mean configs/tiny.yaml?)"),
        (["data/tiny.txt"], "data/tiny.txt is not a YAML config"),
    ],
)
def test_train_answers_the_usual_mistakes(
    argv: list[str],
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(ROOT)
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_a_text_file_given_as_config_says_how_to_train_on_it(tmp_path: Path) -> None:
    text = tmp_path / "notes.md"
    text.write_text("# Notes\n\nkey: value: more\n")
    with pytest.raises(UserError, match=f"to train on its text: .* data.path={text}"):
        load_config(text)


def test_a_yaml_syntax_error_names_the_file_in_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  n_layer: [1, 2\n")
    with pytest.raises(UserError, match="cannot read config file .*bad.yaml") as e:
        load_config(bad)
    assert "\n" not in str(e.value)


def test_a_corpus_path_may_start_with_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "t.txt").write_text("hello")
    assert [s.path for s in find_sources("~/t.txt")] == [tmp_path / "t.txt"]
