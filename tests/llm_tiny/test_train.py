"""Training end to end: train -> eval -> sample, bit-exact resume, crashes, signals, bad input."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from checks import assert_same_state, rows

from llm_tiny import files
from llm_tiny import train as train_mod
from llm_tiny.checkpoint import load_checkpoint
from llm_tiny.config import Config, load_config
from llm_tiny.errors import Diverged, RunError, UserError
from llm_tiny.eval import main as eval_main
from llm_tiny.files import RunLock
from llm_tiny.runlog import LOG_FIELDS, read_log
from llm_tiny.runtime import CPU_BF16_ENV
from llm_tiny.sample import main as sample_main
from llm_tiny.train import Hooks, Trainer, run_training
from llm_tiny.train import main as train_main
from tok.bpe import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
Args = Callable[..., list[str]]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def signal_at(step: int, sig: int) -> Hooks:
    def hook(_: Trainer, s: int) -> None:
        if s == step:
            os.kill(os.getpid(), sig)

    return Hooks(after_step=hook)


# ---- the whole loop ----------------------------------------------------------------------------


def test_train_eval_sample_end_to_end(
    tiny_args: Args, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main(tiny_args()) == 0
    run = tmp_path / "run"
    assert {"config.yaml", "log.csv", "ckpt_last.pt", "ckpt_best.pt"} <= {
        p.name for p in run.iterdir()
    }
    log = read_log(run / "log.csv")
    assert [int(r["step"]) for r in log] == [0, 5, 10, 15, 20]
    assert [bool(r["val_loss"]) for r in log] == [True, False, True, False, True]
    assert list(log[0]) == list(LOG_FIELDS)
    first, last = float(log[0]["val_loss"]), float(log[-1]["val_loss"])
    assert last < first - 0.5  # it learned: well below the untrained model's loss (~ln 300)
    assert abs(first - math.log(300)) < 0.5
    assert float(log[-1]["lr"]) == pytest.approx(3e-4, rel=1e-4)  # schedule ends at min_lr
    path, *overrides = tiny_args()
    assert load_config(run / "config.yaml") == load_config(path, overrides)  # resolved config
    assert load_checkpoint(run / "ckpt_last.pt")["step"] == 20
    capsys.readouterr()

    assert eval_main(["--ckpt", str(run / "ckpt_best.pt")]) == 0
    out = capsys.readouterr().out
    assert "loss" in out and "ppl" in out and "bpb" in out
    evals = (run / "eval.csv").read_text().splitlines()
    assert len(evals) == 2 and evals[0].startswith("ckpt,step,data,split")

    args = ["--ckpt", str(run / "ckpt_best.pt"), "--prompt", "Fair is", "--steps", "30"]
    texts = []
    for seed in ("3", "3", "4"):
        assert sample_main([*args, "--seed", seed]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0].startswith("Fair is") and len(texts[0]) > len("Fair is") + 10
    assert texts[0] == texts[1] and texts[0] != texts[2]


def test_metrics_returned_in_process(tiny_cfg: Callable[..., Config]) -> None:
    m = run_training(tiny_cfg(), log=lambda _: None)
    assert m["step"] == 20 and m["total_steps"] == 20
    assert m["best_val_loss"] <= m["val_loss"] + 1e-12
    assert m["val_ppl"] == pytest.approx(math.exp(m["val_loss"]))
    assert m["params"] > 0 and m["train_loss"] > 0 and m["val_bpb"] > 0


# ---- resume ------------------------------------------------------------------------------------


# mid log window / right at an eval; Muon's momentum must resume too
# CPU bf16 on: autocast, the dropout masks from random bits and bf16 Newton-Schulz resume exactly too
@pytest.mark.parametrize(
    "stop_step,optimizer,bf16",
    [(11, "adamw", "0"), (16, "adamw", "1"), (13, "muon", "0"), (13, "muon", "1")],
)
def test_resume_after_ctrl_c_is_bit_exact(
    tiny_args: Args,
    tmp_path: Path,
    stop_step: int,
    optimizer: str,
    bf16: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CPU_BF16_ENV, bf16)
    extra = ("train.max_steps=24", "train.eval_interval=8", "train.log_interval=4")
    extra += ("model.dropout=0.1",)  # dropout draws from the torch RNG, which must resume too
    extra += (f"train.optimizer={optimizer}", "train.amp=auto")
    assert train_main(tiny_args(*extra, run="straight")) == 0

    path, *overrides = tiny_args(*extra, run="stopped")
    cfg = load_config(path, overrides)
    with pytest.raises(RunError) as e:
        run_training(cfg, signal_at(stop_step, signal.SIGINT), log=lambda _: None)
    assert e.value.exit_code == 130 and f"SIGINT at step {stop_step}" in str(e.value)
    assert load_checkpoint(tmp_path / "stopped" / "ckpt_last.pt")["step"] == stop_step
    assert train_main(tiny_args(*extra, "train.resume=true", run="stopped")) == 0
    assert f"resumed from {tmp_path / 'stopped' / 'ckpt_last.pt'} at step {stop_step}" in (
        capsys.readouterr().out
    )
    assert rows(tmp_path / "stopped") == rows(tmp_path / "straight")
    assert_same_state(tmp_path / "stopped" / "ckpt_last.pt", tmp_path / "straight" / "ckpt_last.pt")
    assert_same_state(tmp_path / "stopped" / "ckpt_best.pt", tmp_path / "straight" / "ckpt_best.pt")


def test_resume_after_a_crash_rewrites_rows_past_the_checkpoint(
    tiny_args: Args, tmp_path: Path
) -> None:
    extra = ("train.max_steps=24", "train.eval_interval=8", "train.log_interval=2")
    assert train_main(tiny_args(*extra, run="straight")) == 0

    def crash(_: Trainer, s: int) -> None:
        if s == 21:  # rows up to 20 are on disk, the last checkpoint is from step 16
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        path, *overrides = tiny_args(*extra, run="crashed")
        run_training(load_config(path, overrides), Hooks(crash))
    assert read_log(tmp_path / "crashed" / "log.csv")[-1]["step"] == "20"
    assert train_main(tiny_args(*extra, "train.resume=true", run="crashed")) == 0
    assert rows(tmp_path / "crashed") == rows(tmp_path / "straight")
    assert_same_state(tmp_path / "crashed" / "ckpt_last.pt", tmp_path / "straight" / "ckpt_last.pt")


def test_resume_without_checkpoint_starts_fresh(tiny_args: Args, tmp_path: Path) -> None:
    assert train_main(tiny_args("train.resume=true")) == 0
    assert load_checkpoint(tmp_path / "run" / "ckpt_last.pt")["step"] == 20


def test_resume_can_extend_max_steps(tiny_args: Args, tmp_path: Path) -> None:
    assert train_main(tiny_args("train.max_steps=10")) == 0
    assert train_main(tiny_args("train.max_steps=20", "train.resume=true")) == 0
    assert load_checkpoint(tmp_path / "run" / "ckpt_last.pt")["step"] == 20
    assert [r["step"] for r in read_log(tmp_path / "run" / "log.csv")][-3:] == ["10", "15", "20"]


def test_sigterm_saves_and_exits_non_zero(
    tiny_args: Args, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(train_mod, "Hooks", lambda: signal_at(7, signal.SIGTERM))
    assert train_main(tiny_args()) == 128 + signal.SIGTERM
    err = one_error_line(capsys.readouterr().err)
    assert "SIGTERM at step 7" in err and "train.resume=true" in err
    assert load_checkpoint(tmp_path / "run" / "ckpt_last.pt")["step"] == 7
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back


# ---- faults ------------------------------------------------------------------------------------


def test_crash_mid_checkpoint_write_keeps_previous_checkpoint(
    tiny_cfg: Callable[..., Config], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []

    def hook(tmp: Path, final: Path) -> None:
        calls.extend([final.name] if final.suffix == ".pt" else [])
        if len(calls) == 3:  # step 10 wrote best + last; die while writing step 20's
            raise RuntimeError("power cut")

    monkeypatch.setattr(files, "BEFORE_REPLACE", hook)
    with pytest.raises(RuntimeError, match="power cut"):
        run_training(tiny_cfg(), log=lambda _: None)
    run = tmp_path / "run"
    assert load_checkpoint(run / "ckpt_last.pt")["step"] == 10
    assert load_checkpoint(run / "ckpt_best.pt")["step"] == 10
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_is_reported_and_previous_checkpoint_survives(
    tiny_args: Args, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls: list[object] = []

    def hook(tmp: Path, final: Path) -> None:
        calls.extend([final] if final.suffix == ".pt" else [])
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "BEFORE_REPLACE", hook)
    assert train_main(tiny_args()) == 1
    err = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in err and "ckpt_best.pt" in err  # step 20 writes best first
    assert load_checkpoint(tmp_path / "run" / "ckpt_last.pt")["step"] == 10


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_leaves_a_loadable_checkpoint(
    tiny_args: Args, tmp_path: Path
) -> None:
    code = (
        "import os, signal, sys\n"
        "from llm_tiny import files\n"
        "from llm_tiny.train import main\n"
        "n = []\n"
        "def kill(tmp, final):\n"
        "    n.extend([1] if final.suffix == '.pt' else [])\n"
        "    if len(n) == 3: os.kill(os.getpid(), signal.SIGKILL)\n"
        "files.BEFORE_REPLACE = kill\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *tiny_args()], cwd=ROOT, capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    run = tmp_path / "run"
    assert load_checkpoint(run / "ckpt_last.pt")["step"] == 10
    assert train_main(tiny_args("train.resume=true")) == 0  # the stale lock doesn't block
    assert load_checkpoint(run / "ckpt_last.pt")["step"] == 20


def test_non_finite_loss_raises_diverged_for_callers_like_sweep(tiny_args: Args) -> None:
    def poison(t: Trainer, s: int) -> None:
        if s == 3:
            with torch.no_grad():
                t.model.lm_head.weight.fill_(float("inf"))

    path, *overrides = tiny_args("train.max_steps=8", "train.log_interval=2")
    with pytest.raises(Diverged, match="non-finite training loss"):
        run_training(
            load_config(path, overrides), hooks=Hooks(after_step=poison), log=lambda _: None
        )


def test_non_finite_loss_stops_naming_the_step(
    tiny_args: Args, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def poison(t: Trainer, s: int) -> None:
        if s == 13:
            with torch.no_grad():
                t.model.lm_head.weight.fill_(float("nan"))

    monkeypatch.setattr(train_mod, "Hooks", lambda: Hooks(after_step=poison))
    assert train_main(tiny_args()) == 1
    err = one_error_line(capsys.readouterr().err)
    assert "non-finite training loss (nan) at step 14" in err
    assert "ckpt_last.pt (step 10) is intact" in err
    ck = load_checkpoint(tmp_path / "run" / "ckpt_last.pt")
    assert ck["step"] == 10 and all(torch.isfinite(v).all() for v in ck["model"].values())
    monkeypatch.setattr(train_mod, "Hooks", Hooks)
    assert train_main(tiny_args("train.resume=true", "train.lr=1e-3")) == 0  # lower lr resumes


def test_second_run_on_the_same_folder_is_refused(
    tiny_args: Args, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with RunLock(tmp_path / "run"):
        assert train_main(tiny_args()) == 2
    assert "is in use by pid" in one_error_line(capsys.readouterr().err)


# ---- options -----------------------------------------------------------------------------------


def test_grad_accum_matches_one_big_batch(tiny_cfg: Callable[..., Config], tmp_path: Path) -> None:
    for accum in (1, 4):
        run_training(tiny_cfg(f"train.grad_accum={accum}", run=f"a{accum}"), log=lambda _: None)
    a = load_checkpoint(tmp_path / "a1" / "ckpt_last.pt")["model"]
    b = load_checkpoint(tmp_path / "a4" / "ckpt_last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_bf16_autocast_on_cpu_trains(tiny_cfg: Callable[..., Config]) -> None:
    m = run_training(tiny_cfg("train.amp=bf16", "train.max_steps=10"), log=lambda _: None)
    assert math.isfinite(m["val_loss"]) and m["val_loss"] < math.log(300)


@pytest.mark.slow
def test_time_budget_ends_with_eval_and_checkpoint(
    tiny_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    msgs: list[str] = []
    cfg = tiny_cfg("train.time_budget_s=3", "train.max_steps=1000000", "train.eval_interval=50")
    m = run_training(cfg, log=msgs.append)
    assert m["step"] == m["total_steps"] < 1_000_000
    assert any("schedule over" in s for s in msgs)
    last = read_log(tmp_path / "run" / "log.csv")[-1]
    assert int(last["step"]) == m["step"] and last["val_loss"]
    assert load_checkpoint(tmp_path / "run" / "ckpt_last.pt")["step"] == m["step"]


# ---- bad input ---------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda t: ["data.path=" + str(t / "missing.txt")], "not found"),
        (lambda t: ["data.path=" + _write(t, "e.txt", b"")], "is empty"),
        (lambda t: ["data.path=" + _write(t, "b.txt", b"ok \xc3\x28 no")], "byte 0xc3 at offset 3"),
        (lambda t: ["data.path=" + _write(t, "s.txt", b"Tiny.\n" * 30)], "needs at least"),
        (lambda t: ["train.lrr=1"], "unknown config key"),
        (lambda t: ["train.lr=fast"], "bad value for train.lr"),
        (lambda t: ["train.batch_size=6", "train.grad_accum=4"], "divisible"),
        (lambda t: ["train.amp=fp16"], "needs a CUDA device"),
        (lambda t: ["--nope"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tiny_args: Args,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], list[str]],
    needle: str,
) -> None:
    assert train_main(tiny_args(*make(tmp_path))) == 2
    assert needle in one_error_line(capsys.readouterr().err)


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert train_main([str(tmp_path / "nope.yaml")]) == 2
    assert "config file" in one_error_line(capsys.readouterr().err)


def test_resume_with_another_tokenizer_is_refused(
    tiny_args: Args, tmp_path: Path, corpus_text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main(tiny_args("train.max_steps=10")) == 0
    other = tmp_path / "other.json"
    Tokenizer.train(corpus_text, 290).save(other)
    capsys.readouterr()
    assert train_main(tiny_args("train.resume=true", f"data.tokenizer={other}")) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "other.json" in err and "300 tokens" in err and "290 tokens" in err


def test_resume_with_another_model_shape_is_refused(
    tiny_args: Args, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main(tiny_args("train.max_steps=10")) == 0
    capsys.readouterr()
    assert train_main(tiny_args("train.resume=true", "model.n_embd=64")) == 2
    assert "'n_embd': 32" in one_error_line(capsys.readouterr().err)


def test_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert train_main(["--print-config", "train.lr=0.002"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.002" in out and "out_dir: runs/tiny" in out


def test_training_starts_no_tqdm_monitor_thread(tiny_args: Args) -> None:
    # tqdm's monitor thread holds tqdm's lock now and then; a process forked meanwhile (the fault
    # tests' fork server) hangs at its first bar. Our bar turns the monitor off.
    import threading

    from tqdm import tqdm

    if tqdm.monitor is not None:  # started by another library in this process: stop it first
        tqdm.monitor.exit()
        tqdm.monitor = None
    assert train_main(tiny_args("train.max_steps=2", "train.progress=true")) == 0
    assert not [t for t in threading.enumerate() if t.name == "tqdm_monitor"]


def test_an_open_trainer_holds_its_folder_and_a_failed_build_lets_it_go(
    tiny_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    threads = torch.get_num_threads()
    cfg = tiny_cfg("train.threads=1", run="held")
    with Trainer(cfg, log=lambda _: None) as trainer:
        assert torch.get_num_threads() == 1 and trainer.step == 0
        with pytest.raises(UserError, match="is in use by"):
            Trainer(cfg, log=lambda _: None)
    assert torch.get_num_threads() == threads  # the caller's setting is back
    missing = tiny_cfg("train.threads=1", f"data.path={tmp_path / 'nope.txt'}", run="held")
    with pytest.raises(UserError, match="not found"):
        Trainer(missing, log=lambda _: None)
    assert torch.get_num_threads() == threads
    with Trainer(cfg, log=lambda _: None):  # nothing still holds the folder
        pass
