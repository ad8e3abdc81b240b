"""A CPU run's precision: with native bf16 (forced here either way, so any machine tests both),
train.amp=auto autocasts to bf16 with the CPU fast paths; without it, it is the fp32 run exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from checks import assert_same_state, rows

from llm_tiny.checkpoint import load_checkpoint
from llm_tiny.runtime import CPU_BF16_ENV
from llm_tiny.train import main as train_main

Args = Callable[..., list[str]]
RUN = ("model.dropout=0.1", "train.optimizer=muon", "train.max_steps=12")


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "ckpt_last.pt")["model"]


def train_each(tiny_args: Args, native: str, monkeypatch: pytest.MonkeyPatch, *amps: str) -> None:
    """One run per train.amp value, in a folder of that name, on a CPU said to have native bf16 or not."""
    monkeypatch.setenv(CPU_BF16_ENV, native)
    for amp in amps:
        assert train_main(tiny_args(*RUN, f"train.amp={amp}", run=amp)) == 0


def test_without_native_bf16_auto_is_the_fp32_run_bit_for_bit(
    tiny_args: Args, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_each(tiny_args, "0", monkeypatch, "auto", "off")
    assert rows(tmp_path / "auto") == rows(tmp_path / "off")
    assert_same_state(tmp_path / "auto" / "ckpt_last.pt", tmp_path / "off" / "ckpt_last.pt")


def test_with_native_bf16_auto_is_bf16_with_fp32_weights_and_state(
    tiny_args: Args, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_each(tiny_args, "1", monkeypatch, "auto", "bf16", "off")
    assert_same_state(tmp_path / "auto" / "ckpt_last.pt", tmp_path / "bf16" / "ckpt_last.pt")
    low, full = weights(tmp_path / "auto"), weights(tmp_path / "off")
    assert all(t.dtype == torch.float32 for t in low.values())
    state = load_checkpoint(tmp_path / "auto" / "ckpt_last.pt")["optimizer"]["state"]
    assert all(
        v.dtype == torch.float32
        for s in state.values()
        for v in s.values()
        if torch.is_tensor(v) and v.is_floating_point()
    )
    assert any(not torch.equal(low[k], full[k]) for k in low)  # it did compute in bf16
    lo, hi = (
        float(r["val_loss"]) for r in (rows(tmp_path / "auto")[-1], rows(tmp_path / "off")[-1])
    )
    assert abs(lo - hi) < 0.05 * hi  # and learned as much
