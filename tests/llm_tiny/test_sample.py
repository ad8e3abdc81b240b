"""The sample command: streamed tokens equal generate()'s, UTF-8 held back until whole, flag checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_tiny.sample import decode_stream, stream
from llm_tiny.sample import main as sample_main
from llm_tiny.train import main as train_main
from model.gpt import GPTConfig, TinyGPT
from tok.bpe import Tokenizer


@pytest.fixture
def trained(tiny_args: Callable[..., list[str]], tmp_path: Path) -> Path:
    assert train_main(tiny_args("train.max_steps=10")) == 0
    return tmp_path / "run" / "ckpt_best.pt"


@pytest.mark.parametrize(
    ("prompt_len", "steps", "block"), [(1, 5, 8), (3, 40, 9), (16, 20, 8), (30, 50, 9)]
)  # a window that fills and restarts (even and odd block sizes), prompts longer than the block
def test_stream_yields_what_generate_returns(prompt_len: int, steps: int, block: int) -> None:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(97, block, n_layer=2, n_head=2, n_embd=16, rope=block == 8))
    prompt = torch.randint(0, 97, (1, prompt_len)).tolist()[0]
    args = (0.8, 20, 0.9)
    got = list(stream(model, prompt, steps, *args, generator=torch.Generator().manual_seed(5)))
    want = model.generate(
        torch.tensor([prompt]), steps, *args, generator=torch.Generator().manual_seed(5)
    )
    assert got == want[0, prompt_len:].tolist()


@settings(max_examples=50, deadline=None)
@given(st.text(), st.binary(max_size=8))
def test_decode_stream_holds_partial_characters(text: str, junk: bytes) -> None:
    tok = Tokenizer()  # bytes only: every multi-byte character is split across tokens
    data = text.encode("utf-8", "replace")
    pieces = list(decode_stream(tok, list(data)))
    assert "".join(pieces) == data.decode("utf-8")
    assert "\ufffd" not in "".join(pieces) or "\ufffd" in text
    mixed = list(decode_stream(tok, list(data + junk)))  # trailing garbage: replaced, never raises
    assert "".join(mixed) == (data + junk).decode("utf-8", "replace")


def test_same_seed_same_text(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outs = []
    for seed in (7, 7, 8):
        args = ["--ckpt", str(trained), "--prompt", "Thou", "--steps", "25", "--seed", str(seed)]
        assert sample_main(args) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] != outs[2]
    assert outs[0].startswith("Thou")


def test_num_samples_and_empty_prompt(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--ckpt", str(trained), "--prompt", "", "--steps", "10", "--num_samples", "3"]
    assert sample_main(args) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("--- sample")] == [
        "--- sample 1 ---",
        "--- sample 2 ---",
        "--- sample 3 ---",
    ]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--temp", "0"], "--temp"),
        (["--temp", "nan"], "--temp"),
        (["--top_k", "-1"], "--top_k"),
        (["--top_p", "0"], "--top_p"),
        (["--top_p", "1.5"], "--top_p"),
        (["--steps", "-3"], "--steps"),
        (["--num_samples", "0"], "--num_samples"),
        (["--steps", "many"], "invalid int value"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_flags_out_of_range_exit_2(
    trained: Path, capsys: pytest.CaptureFixture[str], flags: list[str], needle: str
) -> None:
    capsys.readouterr()
    assert sample_main(["--ckpt", str(trained), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]


def test_missing_checkpoint_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sample_main(["--ckpt", str(tmp_path / "none.pt")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.fixture
def fixed_stream(monkeypatch: pytest.MonkeyPatch) -> tuple[Tokenizer, list[list[int]]]:
    """sample's checkpoint and model replaced: the model 'samples' a fixed id sequence with an
    <|endoftext|> in the middle; returns the tokenizer and the prompts it was given."""
    import llm_tiny.checkpoint
    import llm_tiny.sample

    eot_text = "<|endoftext|>"
    tok = Tokenizer.train(
        "Hello world, the end of a document. " * 20, 270, special_tokens=[eot_text]
    )
    eot = tok.special_tokens[eot_text]
    ids = tok.encode("Hello world") + [eot] + tok.encode(" next document")
    prompts: list[list[int]] = []

    def fake_stream(model, prompt, steps, *rest, **kw):  # type: ignore[no-untyped-def]
        prompts.append(list(prompt))
        yield from ids[:steps]

    model = TinyGPT(GPTConfig(tok.vocab_size, 8, n_layer=1, n_head=1, n_embd=8))
    monkeypatch.setattr(llm_tiny.checkpoint, "load_checkpoint", lambda path: {})
    monkeypatch.setattr(llm_tiny.checkpoint, "tokenizer_of", lambda ck, path: tok)
    monkeypatch.setattr(llm_tiny.checkpoint, "build_model", lambda ck, path: model)
    monkeypatch.setattr(llm_tiny.sample, "stream", fake_stream)
    return tok, prompts


def test_sampling_stops_at_end_of_text(
    fixed_stream: tuple[Tokenizer, list[list[int]]], capsys: pytest.CaptureFixture[str]
) -> None:
    tok, prompts = fixed_stream
    assert sample_main(["--ckpt", "x.pt", "--prompt", "Hi ", "--steps", "50"]) == 0
    assert capsys.readouterr().out == "Hi Hello world\n"
    assert prompts == [tok.encode("Hi ")]


def test_sampling_goes_on_past_end_of_text_with_no_stop(
    fixed_stream: tuple[Tokenizer, list[list[int]]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert sample_main(["--ckpt", "x.pt", "--prompt", "Hi ", "--steps", "50", "--no-stop"]) == 0
    assert capsys.readouterr().out == "Hi Hello world<|endoftext|> next document\n"


def test_sampling_with_no_prompt_starts_a_new_document(
    fixed_stream: tuple[Tokenizer, list[list[int]]], capsys: pytest.CaptureFixture[str]
) -> None:
    tok, prompts = fixed_stream
    assert sample_main(["--ckpt", "x.pt", "--prompt", "", "--num_samples", "2"]) == 0
    eot = tok.special_tokens["<|endoftext|>"]
    assert prompts == [[eot], [eot]]
    out = capsys.readouterr().out
    assert out == "--- sample 1 ---\nHello world\n\n--- sample 2 ---\nHello world\n"
