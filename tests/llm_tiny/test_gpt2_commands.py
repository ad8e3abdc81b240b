"""A GPT-2 folder as --ckpt of eval, sample and export: the same numbers and tokens as transformers.

The folder's tokenizer is stubbed with one of ours (same vocabulary size as the model), so these tests
prove the model side and the commands' dispatch, whatever tok's GPT-2 reader does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from checks import random_gpt2

from llm_tiny import hf_in
from llm_tiny.data import encode_file
from llm_tiny.eval import main as eval_main
from llm_tiny.export import main as export_main
from llm_tiny.sample import main as sample_main
from tok.bpe import Tokenizer

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

N_POS = 32


@pytest.fixture
def tok(session_tokenizer: Path, monkeypatch: pytest.MonkeyPatch) -> Tokenizer:
    """Our 300-token tokenizer, standing in for the folder's GPT-2 files."""
    t = Tokenizer.load(session_tokenizer)
    monkeypatch.setattr(hf_in, "read_tokenizer", lambda path: t)
    return t


def gpt2_folder(folder: Path, vocab: int, **conf: Any) -> Any:
    """A random GPT-2-shaped folder written by transformers; its model in eval mode."""
    return random_gpt2(
        folder, vocab_size=vocab, n_positions=N_POS, n_embd=32, n_layer=2, n_head=4, **conf
    )


def test_eval_of_a_folder_is_transformers_loss_on_the_same_windows(
    tmp_path: Path, tok: Tokenizer, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "gpt2"
    hf = gpt2_folder(folder, tok.vocab_size)
    cache = str(tmp_path / "cache")
    args = ["--ckpt", str(folder), "--data", str(corpus), "--split", "all", "--cache_dir", cache]
    assert eval_main([*args, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "step 0:" in out and "bpb" in out
    ids = torch.from_numpy(encode_file(corpus, tok, "all", 0.1, cache).array()[:].astype("int64"))
    nats = 0.0
    with torch.no_grad():  # every token but the first predicted once, in windows of N_POS
        for s in range(0, ids.numel() - 1, N_POS):
            x, y = ids[s : s + N_POS], ids[s + 1 : s + 1 + N_POS]
            logits = hf(x[: y.numel()][None]).logits[0]
            nats += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
    loss = float(out.split("loss ")[1].split()[0])
    assert loss == pytest.approx(nats / (ids.numel() - 1), abs=1e-4)
    rows = (folder / "eval.csv").read_text().splitlines()  # kept in the folder, like beside a file
    assert len(rows) == 2 and rows[1].startswith(str(folder))


def test_greedy_sample_of_a_folder_is_transformers_greedy_text(
    tmp_path: Path, tok: Tokenizer, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = gpt2_folder(tmp_path, tok.vocab_size, eos_token_id=None, bos_token_id=None)
    prompt = "ROMEO: "
    ids = torch.tensor([tok.encode(prompt)])
    n = N_POS - ids.size(1)
    argv = ["--ckpt", str(tmp_path), "--prompt", prompt, "--steps", str(n), "--top_k", "1"]
    assert sample_main(argv) == 0
    theirs = hf.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False
    )[0, ids.size(1) :]
    assert theirs.numel() == n
    assert capsys.readouterr().out == prompt + tok.decode(theirs.tolist()) + "\n"


def test_export_of_a_folder_loads_back_in_transformers_with_the_same_logits(
    tmp_path: Path, tok: Tokenizer, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = gpt2_folder(tmp_path / "gpt2", tok.vocab_size)
    out = tmp_path / "out"
    assert export_main(["--ckpt", str(tmp_path / "gpt2"), "--out", str(out)]) == 0
    assert "GPT2LMHeadModel" in capsys.readouterr().out
    back = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    x = torch.randint(tok.vocab_size, (2, N_POS), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert float((back(x).logits - hf(x).logits).abs().max()) <= 1e-4
    conf = json.loads((out / "config.json").read_text())
    assert conf["activation_function"] == "gelu_new" and conf["tie_word_embeddings"] is True
    assert "read from the model folder" in (out / "README.md").read_text()


def run_cmd(main: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("main", [eval_main, sample_main], ids=["eval", "sample"])
def test_bad_folders_fail_in_one_line_with_exit_2(
    tmp_path: Path, tok: Tokenizer, corpus: Path, main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    argv = ["--ckpt", str(folder)] + (["--data", str(corpus)] if main is eval_main else [])
    folder.mkdir()
    code, err = run_cmd(main, argv, capsys)
    assert (code, err) == (2, f"error: {folder} is not a model folder: it has no config.json\n")
    gpt2_folder(folder, tok.vocab_size + 1)
    code, err = run_cmd(main, argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert (
        f"has {tok.vocab_size} tokens but its model expects vocab_size {tok.vocab_size + 1}" in err
    )
    conf = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(conf | {"model_type": "bert"}))
    code, err = run_cmd(main, argv, capsys)
    assert code == 2 and "a 'bert' model (config.json model_type); supported: gpt2" in err


def test_a_run_folder_is_still_answered_with_the_checkpoint_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": "llm-tiny checkpoint"}, run / "ckpt_best.pt")
    code, err = run_cmd(sample_main, ["--ckpt", str(run)], capsys)
    assert code == 2 and f"is a run folder, not a checkpoint: give --ckpt {run}/ckpt_best.pt" in err
