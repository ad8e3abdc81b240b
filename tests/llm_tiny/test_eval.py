"""The eval command: whole-split scoring in non-overlapping windows, bits per byte, bad checkpoints."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llm_tiny import checkpoint as ck
from llm_tiny.data import TokenFile, token_byte_lengths
from llm_tiny.eval import evaluate_checkpoint, score
from llm_tiny.eval import main as eval_main
from llm_tiny.train import main as train_main
from model.gpt import GPTConfig, TinyGPT
from tok.bpe import Tokenizer


@pytest.fixture
def trained(tiny_args: Callable[..., list[str]], tmp_path: Path) -> Path:
    assert train_main(tiny_args("train.max_steps=10")) == 0
    return tmp_path / "run" / "ckpt_best.pt"


@pytest.mark.parametrize("n", [2, 16, 17, 18, 50, 161])  # around multiples of block_size + 1
def test_score_predicts_every_token_but_the_first_once(
    tmp_path: Path, session_tokenizer: Path, n: int
) -> None:
    tok = Tokenizer.load(session_tokenizer)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(tok.vocab_size, 16, n_layer=1, n_head=2, n_embd=32)).eval()
    ids = np.random.default_rng(n).integers(0, tok.vocab_size, n).astype(np.uint16)
    (tmp_path / "ids.bin").write_bytes(ids.tobytes())
    tf = TokenFile(tmp_path / "ids.bin", np.dtype(np.uint16), n)
    lengths = token_byte_lengths(tok)
    r = score(model, tf, torch.from_numpy(lengths), batch_size=3)
    assert r["tokens"] == n - 1
    assert r["bytes"] == int(lengths[ids[1:]].sum())
    want = 0.0  # the same windows, one at a time, by hand
    t = torch.from_numpy(ids.astype(np.int64))
    for s in range(0, n - 1, 16):
        x, y = t[s : min(s + 16, n - 1)], t[s + 1 : min(s + 17, n)]
        with torch.no_grad():
            logits, _ = model(x[None])
        want += F.cross_entropy(logits[0], y, reduction="sum").item()
    assert r["nats"] == pytest.approx(want, rel=1e-5)
    assert r["loss"] == pytest.approx(want / (n - 1), rel=1e-5)
    assert r["bpb"] == pytest.approx(want / (math.log(2) * r["bytes"]), rel=1e-5)
    assert r["ppl"] == pytest.approx(math.exp(r["loss"]), rel=1e-9)


def test_eval_cli_prints_and_appends_rows(
    trained: Path, tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert eval_main(["--ckpt", str(trained)]) == 0
    line = capsys.readouterr().out.strip()
    assert "(val," in line and "step 10" in line and "bpb" in line
    other = tmp_path / "other.txt"
    other.write_text("Is this a dagger which I see before me?\n" * 30, encoding="utf-8")
    assert eval_main(["--ckpt", str(trained), "--data", str(other), "--split", "all"]) == 0
    rows = (trained.parent / "eval.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[2].split(",")[3] == "all"
    r = evaluate_checkpoint(trained, other, "all")
    tok = ck.tokenizer_of(ck.load_checkpoint(trained))
    ids = tok.encode(other.read_text(encoding="utf-8"))
    assert r["tokens"] == len(ids) - 1
    assert r["bytes"] == len(other.read_bytes()) - len(tok.vocab[ids[0]])  # all but the first


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (self.marker,))


def test_bad_checkpoints_are_refused(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = trained.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": _Evil(tmp_path / "pwned")}))
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    cases = {
        str(tmp_path / "missing.pt"): "not found",
        str(tmp_path / "cut.pt"): "corrupt or truncated",
        str(tmp_path / "evil.pt"): "refused",
        str(tmp_path / "noise.pt"): "noise.pt",
    }
    for path, needle in cases.items():
        capsys.readouterr()
        assert eval_main(["--ckpt", path]) == 2
        assert needle in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "pwned").exists()
    assert eval_main(["--ckpt", str(trained), "--data", str(tmp_path / "nope.txt")]) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"--data {tmp_path / 'nope.txt'}: not found" in err and "data.path" not in err
    assert eval_main(["--ckpt", str(trained), "--batch_size", "0"]) == 2


def test_build_model_matches_training_weights(trained: Path) -> None:
    state = ck.load_checkpoint(trained)
    model = ck.build_model(state)
    for k, v in state["model"].items():
        assert torch.equal(model.state_dict()[k], v)
