"""Data parallel on CPU: 2 gloo processes give the weights of 1 process with the same global batch."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from llm_tiny.checkpoint import load_checkpoint
from llm_tiny.config import load_config
from llm_tiny.runlog import read_log
from llm_tiny.train import run_training


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun_env(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives each rank, which run_training reads."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )


def _worker(rank: int, world: int, port: int, args: list[str]) -> None:
    _torchrun_env(rank, world, port)
    path, *overrides = args
    run_training(load_config(path, overrides), log=lambda _: None)


@pytest.mark.slow
def test_two_gloo_processes_match_one(tiny_args: Callable[..., list[str]], tmp_path: Path) -> None:
    # grad_accum=2: each rank syncs gradients only on its second micro-step (no_sync on the first)
    extra = ("train.max_steps=12", "train.eval_interval=6", "train.log_interval=3")
    extra += ("train.grad_accum=2",)
    path, *overrides = tiny_args(*extra, run="one")
    run_training(load_config(path, overrides), log=lambda _: None)
    mp.spawn(_worker, args=(2, _free_port(), tiny_args(*extra, run="two")), nprocs=2, join=True)

    one, two = (load_checkpoint(tmp_path / r / "ckpt_last.pt") for r in ("one", "two"))
    assert one["step"] == two["step"] == 12
    for k, v in one["model"].items():
        assert not k.startswith(("module.", "_orig_mod."))
        torch.testing.assert_close(two["model"][k], v, rtol=1e-4, atol=1e-6)
    rows_one, rows_two = read_log(tmp_path / "one" / "log.csv"), read_log(
        tmp_path / "two" / "log.csv"
    )
    assert [r["step"] for r in rows_one] == [r["step"] for r in rows_two]
    for a, b in zip(rows_one, rows_two, strict=True):
        for col in ("lr", "train_loss", "val_loss"):
            if a[col]:
                assert float(b[col]) == pytest.approx(float(a[col]), rel=1e-4)


def _budget_worker(rank: int, world: int, port: int, args: list[str], out: Path) -> None:
    _torchrun_env(rank, world, port)
    path, *overrides = args
    m = run_training(load_config(path, overrides), log=lambda _: None)
    (out / f"rank{rank}.txt").write_text(f"{int(m['step'])} {int(m['total_steps'])}")


@pytest.mark.slow
def test_ranks_agree_on_the_time_budget_plan(
    tiny_args: Callable[..., list[str]], tmp_path: Path
) -> None:
    # each rank times its own steps; they must still plan, and stop, at the same step (else: hang)
    args = tiny_args("train.time_budget_s=2", "train.max_steps=100000", "train.log_interval=2")
    mp.spawn(_budget_worker, args=(2, _free_port(), args, tmp_path), nprocs=2, join=True)
    r0, r1 = ((tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1))
    assert r0 == r1 and int(r0[0]) == int(r0[1]) < 100000
    assert load_checkpoint(tmp_path / "run" / "ckpt_last.pt")["step"] == int(r0[0])
