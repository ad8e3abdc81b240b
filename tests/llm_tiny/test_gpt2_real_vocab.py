"""A GPT-2 folder with GPT-2's real vocabulary (tests/data/gpt2) end to end: eval, sample, init_from.

The model is GPT-2-shaped at a small width with random weights; the tokenizer is OpenAI's, read by
tok.gpt2 on our side and by transformers' own GPT-2 tokenizer on theirs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from checks import random_gpt2

from llm_tiny.checkpoint import load_checkpoint
from llm_tiny.eval import main as eval_main
from llm_tiny.sample import main as sample_main
from llm_tiny.train import main as train_main
from tok.gpt2 import load_gpt2

transformers = pytest.importorskip("transformers")

VOCAB = Path(__file__).resolve().parents[1] / "data" / "gpt2"
N_POS, V = 32, 50257


def folder_with_vocab(folder: Path, **conf: Any) -> Any:
    shape = dict(vocab_size=V, n_positions=N_POS, n_embd=32, n_layer=2, n_head=4)
    hf = random_gpt2(folder, **(shape | conf))
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(VOCAB / name, folder / name)
    return hf


def test_greedy_sample_is_transformers_greedy_text_with_gpt2s_tokenizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = folder_with_vocab(tmp_path, eos_token_id=None, bos_token_id=None)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    prompt = "Hello world"
    ids = hf_tok(prompt, return_tensors="pt").input_ids
    assert ids.tolist() == [[15496, 995]]
    n = N_POS - ids.size(1)
    argv = ["--ckpt", str(tmp_path), "--prompt", prompt, "--steps", str(n), "--top_k", "1"]
    assert sample_main([*argv, "--no-stop"]) == 0
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    assert capsys.readouterr().out == hf_tok.decode(out[0]) + "\n"


def test_eval_loss_is_transformers_loss_on_transformers_token_ids(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "gpt2"
    hf = folder_with_vocab(folder)
    args = ["--ckpt", str(folder), "--data", str(corpus), "--split", "all", "--device", "cpu"]
    assert eval_main([*args, "--cache_dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    text = corpus.read_text(encoding="utf-8")
    ids = torch.tensor(transformers.AutoTokenizer.from_pretrained(folder)(text).input_ids)
    assert f"{ids.numel() - 1:,} tokens" in out
    nats = 0.0
    with torch.no_grad():
        for s in range(0, ids.numel() - 1, N_POS):
            y = ids[s + 1 : s + 1 + N_POS]
            logits = hf(ids[s : s + y.numel()][None]).logits[0]
            nats += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
    assert float(out.split("loss ")[1].split()[0]) == pytest.approx(
        nats / (ids.numel() - 1), abs=1e-4
    )


def test_fine_tuning_keeps_gpt2s_tokenizer(tmp_path: Path, corpus: Path) -> None:
    folder_with_vocab(tmp_path / "gpt2")
    yaml = tmp_path / "ft.yaml"
    yaml.write_text(
        "model: {block_size: 16}\ntrain: {batch_size: 2, max_steps: 2, warmup_steps: 1, lr: 1.0e-4, "
        "eval_interval: 2, eval_batches: 1, threads: 1, progress: false, device: cpu}\n"
    )
    run = tmp_path / "run"
    args = [f"train.init_from={tmp_path / 'gpt2'}", f"data.path={corpus}", f"train.out_dir={run}"]
    assert train_main([str(yaml), *args, f"data.cache_dir={tmp_path / 'cache'}"]) == 0
    ck = load_checkpoint(run / "ckpt_last.pt")
    assert ck["tokenizer_fingerprint"] == load_gpt2(tmp_path / "gpt2").fingerprint()
    assert ck["model_config"]["vocab_size"] == V and ck["model_config"]["block_size"] == 16


def test_tokenizer_files_and_embedding_that_disagree_fail_in_one_line(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder_with_vocab(tmp_path, vocab_size=50000)
    assert eval_main(["--ckpt", str(tmp_path), "--data", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 50257 tokens but its model expects vocab_size 50000" in err
    (tmp_path / "merges.txt").unlink()
    assert sample_main(["--ckpt", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "merges.txt" in err
    conf = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(conf | {"reorder_and_upcast_attn": True}))
    assert sample_main(["--ckpt", str(tmp_path)]) == 2
    assert "reorder_and_upcast_attn=True cannot be reproduced" in capsys.readouterr().err
