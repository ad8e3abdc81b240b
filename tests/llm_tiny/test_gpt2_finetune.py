"""train.init_from a GPT-2 folder: its weights and shape, a cropped context, bit-exact resume.

The folder's tokenizer is stubbed with one of ours of the same size (the model side is under test).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from checks import assert_same_state, random_gpt2, rows

from llm_tiny import hf_in
from llm_tiny.checkpoint import load_checkpoint
from llm_tiny.config import load_config
from llm_tiny.train import Trainer
from llm_tiny.train import main as train_main
from tok.bpe import Tokenizer

pytest.importorskip("transformers")

YAML = """\
model: {block_size: 16, dropout: 0.0}
train: {batch_size: 4, max_steps: 6, warmup_steps: 2, lr: 1.0e-4, eval_interval: 3, eval_batches: 2,
        log_interval: 1, threads: 1, progress: false, device: cpu}
"""


@pytest.fixture
def args(
    tmp_path: Path, corpus: Path, session_tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """A fine-tuning config from a random 2-layer GPT-2 folder (n_positions 32) on the corpus."""
    tok = Tokenizer.load(session_tokenizer)
    monkeypatch.setattr(hf_in, "read_tokenizer", lambda path: tok)
    shape = dict(vocab_size=tok.vocab_size, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    random_gpt2(tmp_path / "gpt2", **shape)
    (tmp_path / "ft.yaml").write_text(YAML)
    return [
        str(tmp_path / "ft.yaml"),
        f"train.init_from={tmp_path / 'gpt2'}",
        f"data.path={corpus}",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]


def test_the_run_starts_from_the_folders_weights_with_its_context_cropped(
    tmp_path: Path, args: list[str]
) -> None:
    cfg = load_config(args[0], [*args[1:], f"train.out_dir={tmp_path / 'ft'}"])
    with Trainer(cfg, log=lambda _: None, set_keys={"model.block_size", "model.dropout"}) as tr:
        m = tr.model.cfg
        have = tr.model.state_dict()
    assert (m.block_size, m.n_layer, m.bias, m.tie_weights, m.rope) == (16, 2, True, True, False)
    assert m.activation == "gelu_tanh"
    _, want = hf_in.read_model(tmp_path / "gpt2", block_size=16)
    assert have.keys() == want.keys() and all(torch.equal(have[k], want[k]) for k in have)


def test_a_stopped_and_resumed_fine_tuning_run_equals_an_unbroken_one(
    tmp_path: Path, args: list[str]
) -> None:
    assert train_main([*args, f"train.out_dir={tmp_path / 'a'}"]) == 0
    b = [*args, f"train.out_dir={tmp_path / 'b'}"]
    assert train_main([*b, "train.max_steps=3"]) == 0
    assert train_main([*b, "train.resume=true"]) == 0
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    assert_same_state(tmp_path / "a" / "ckpt_last.pt", tmp_path / "b" / "ckpt_last.pt")
    ck = load_checkpoint(tmp_path / "a" / "ckpt_last.pt")
    assert ck["step"] == 6 and ck["model_config"]["block_size"] == 16


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.block_size=64",
            "model.block_size=64 but .* has n_positions=32: it may only be cut",
        ),
        ("model.n_layer=3", "model.n_layer is 3 but .* has 2; train.init_from keeps"),
        ("model.rope=true", "model.rope is True but .* has False"),
    ],
)
def test_a_shape_the_folder_does_not_have_is_refused_in_one_line(
    tmp_path: Path, args: list[str], override: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main([*args, f"train.out_dir={tmp_path / 'x'}", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(message, err), err
