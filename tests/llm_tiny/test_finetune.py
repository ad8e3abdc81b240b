"""train.init_from: a new run from another run's weights, tokenizer and shape, with fresh optimizer state."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from checks import assert_same_state, rows

from llm_tiny.checkpoint import load_checkpoint
from llm_tiny.config import Config, load_config
from llm_tiny.errors import RunError, UserError
from llm_tiny.init_from import adopt_checkpoint
from llm_tiny.runlog import read_log
from llm_tiny.train import Hooks, Trainer, run_training
from llm_tiny.train import main as train_main
from model.gpt import GPTConfig
from tok.bpe import Tokenizer

Args = Callable[..., list[str]]
QUIET = {"log": lambda _: None}


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def source(tiny_args: Args, tmp_path: Path) -> Path:
    """A 10-step run's ckpt_last.pt (1 layer x 32 wide, the session's 300-token tokenizer)."""
    assert train_main(tiny_args("train.max_steps=10", run="source")) == 0
    return tmp_path / "source" / "ckpt_last.pt"


def test_weights_come_from_the_checkpoint_and_training_state_starts_fresh(
    tiny_cfg: Callable[..., Config], source: Path
) -> None:
    cfg = tiny_cfg(f"train.init_from={source}", run="ft")
    with Trainer(cfg, **QUIET) as trainer:  # type: ignore[arg-type]
        ck = load_checkpoint(source)
        sd = trainer.model.state_dict()
        assert sd.keys() == ck["model"].keys()
        assert all(torch.equal(sd[k], ck["model"][k]) for k in sd)
        assert trainer.step == 0 and trainer.best == float("inf") and not trainer.opt.state
        # the same corpus and windows: the new run's step-0 evaluation is the source's last one
        assert trainer._evaluate()["val_loss"] == ck["best_val_loss"]


def test_a_fine_tuning_run_has_its_own_steps_schedule_and_the_sources_tokenizer(
    tiny_args: Args, tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # resume=true without a ckpt_last.pt of its own: nothing to continue, so it starts from init_from
    assert train_main(tiny_args(f"train.init_from={source}", "train.resume=true", run="ft")) == 0
    assert f"initialized from {source} (trained 10 steps)" in capsys.readouterr().out
    assert train_main(tiny_args(run="scratch")) == 0
    ft, src = load_checkpoint(tmp_path / "ft" / "ckpt_last.pt"), load_checkpoint(source)
    assert ft["step"] == 20 and ft["tokenizer_fingerprint"] == src["tokenizer_fingerprint"]
    lr = [r["lr"] for r in read_log(tmp_path / "ft" / "log.csv")]
    assert lr == [r["lr"] for r in read_log(tmp_path / "scratch" / "log.csv")]  # warmup again
    first, src_last = (
        read_log(tmp_path / "ft" / "log.csv")[0],
        read_log(source.parent / "log.csv")[-1],
    )
    assert (
        first["step"] == "0" and first["val_loss"] == src_last["val_loss"]
    )  # the source's weights


def test_a_new_corpus_is_encoded_with_the_checkpoints_tokenizer(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (Path(__file__).resolve().parents[2] / "data" / "tiny.txt").read_text()
    new = tmp_path / "new.txt"
    new.write_text(text[-16_000:], encoding="utf-8")  # the end of the Dream, not in the source
    cache = tmp_path / "cache2"
    # a config that names neither a tokenizer nor a model: both come from the checkpoint
    (tmp_path / "ft.yaml").write_text(
        f"data: {{path: {new}, cache_dir: {cache}}}\n"
        "train: {batch_size: 8, max_steps: 4, eval_interval: 2, eval_batches: 2, warmup_steps: 1,"
        f" progress: false, device: cpu, init_from: {source}, out_dir: {tmp_path / 'ft'}}}\n"
    )
    # a tokenizer trained on the new corpus under the default name must not get in the way
    base = [str(tmp_path / "ft.yaml"), "train.init_from=none", "data.vocab_size=300"]
    assert train_main([*base, f"train.out_dir={tmp_path / 'scratch'}"]) == 0
    assert len(list(cache.glob("tok-*.json"))) == 1
    capsys.readouterr()
    assert train_main([str(tmp_path / "ft.yaml")]) == 0
    assert "training a" not in capsys.readouterr().out
    run = tmp_path / "ft"
    want = load_checkpoint(source)
    assert Tokenizer.load(run / "tokenizer.json").fingerprint() == want["tokenizer_fingerprint"]
    got = load_checkpoint(run / "ckpt_last.pt")
    assert got["tokenizer_fingerprint"] == want["tokenizer_fingerprint"]
    assert got["model_config"] == want["model_config"]  # n_embd 32 etc., not the config defaults
    saved = load_config(run / "config.yaml")  # the resolved config says what the run really was
    assert saved.model.n_embd == 32 and saved.data.vocab_size == 300
    assert saved.data.tokenizer == str(run / "tokenizer.json")


def test_a_changed_shape_is_refused_naming_the_field_and_both_values(
    tiny_args: Args, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "model.n_embd=64": ("model.n_embd is 64", "has 32"),
        "model.n_layer=2": ("model.n_layer is 2", "has 1"),
        "model.block_size=32": ("model.block_size is 32", "has 16"),
        "model.rope=true": ("model.rope is True", "has False"),
        "model.activation=relu2": ("model.activation is 'relu2'", "has 'gelu'"),
        "data.vocab_size=290": ("data.vocab_size is 290", "300-token tokenizer"),
    }
    for override, needles in cases.items():
        assert train_main(tiny_args(f"train.init_from={source}", override, run="ft")) == 2
        err = one_error_line(capsys.readouterr().err)
        assert all(n in err for n in needles) and str(source) in err, (override, err)
    assert not (source.parent.parent / "ft" / "ckpt_last.pt").exists()


def test_dropout_and_the_attention_implementation_may_change(
    tiny_args: Args, tmp_path: Path, source: Path
) -> None:
    extra = ("model.dropout=0.2", "model.attn_dropout=0.05", "model.attn=naive")
    assert train_main(tiny_args(f"train.init_from={source}", *extra, run="ft")) == 0
    mc = load_checkpoint(tmp_path / "ft" / "ckpt_last.pt")["model_config"]
    assert (mc["dropout"], mc["attn_dropout"], mc["attn"]) == (0.2, 0.05, "naive")


def test_from_python_a_default_value_yields_to_the_checkpoint() -> None:
    ck = {"model_config": asdict(GPTConfig(300, 16, n_layer=1, n_head=2, n_embd=32))}
    cfg = Config()  # every model field at its default: n_layer 4, block_size 64, ...
    got = adopt_checkpoint(cfg, ck, "src.pt")  # no list of set keys: non-defaults count as set
    assert (got.model.n_layer, got.model.block_size, got.data.vocab_size) == (1, 16, 300)
    cfg.model.n_embd = 64
    with pytest.raises(UserError, match="model.n_embd is 64 but src.pt has 32"):
        adopt_checkpoint(cfg, ck, "src.pt")
    # with the keys the user wrote, an explicit default that differs is refused too
    with pytest.raises(UserError, match="model.n_layer is 4 but src.pt has 1"):
        adopt_checkpoint(Config(), ck, "src.pt", explicit={"model.n_layer"})


def test_a_stopped_fine_tuning_run_resumes_bit_exactly_without_reading_the_source(
    tiny_args: Args, tmp_path: Path, source: Path
) -> None:
    extra = (f"train.init_from={source}", "train.max_steps=24", "train.eval_interval=8")
    extra += ("train.log_interval=4", "model.dropout=0.1", "train.optimizer=muon")
    assert train_main(tiny_args(*extra, run="straight")) == 0

    def stop(_: Trainer, s: int) -> None:
        if s == 13:
            os.kill(os.getpid(), signal.SIGINT)

    path, *overrides = tiny_args(*extra, run="stopped")
    with pytest.raises(RunError, match="SIGINT at step 13"):
        run_training(load_config(path, overrides), Hooks(stop), **QUIET)  # type: ignore[arg-type]
    source.write_bytes(b"gone")  # a resume continues its own checkpoint, never re-inits
    assert train_main(tiny_args(*extra, "train.resume=true", run="stopped")) == 0
    assert rows(tmp_path / "stopped") == rows(tmp_path / "straight")
    assert_same_state(tmp_path / "stopped" / "ckpt_last.pt", tmp_path / "straight" / "ckpt_last.pt")


def test_a_missing_corrupt_or_own_checkpoint_is_refused(
    tiny_args: Args, tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    cases = [
        (tmp_path / "missing.pt", "run", "not found"),
        (bad, "run", "bad.pt"),
        (source, "source", "already holds a run"),  # a fresh start would delete it
    ]
    for path, run, needle in cases:
        assert train_main(tiny_args(f"train.init_from={path}", run=run)) == 2
        assert needle in one_error_line(capsys.readouterr().err)
    # even told to start over, the run may not delete the checkpoint it starts from
    assert (
        train_main(tiny_args(f"train.init_from={source}", "train.overwrite=true", run="source"))
        == 2
    )
    assert "this run's own checkpoint" in one_error_line(capsys.readouterr().err)
    assert load_checkpoint(source)["step"] == 10


def test_help_tells_resume_from_init_from(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        train_main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "train.resume=true" in out and "train.init_from=CKPT" in out and "fresh" in out
