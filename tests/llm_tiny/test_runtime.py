"""llm_tiny.runtime: device and precision choice, the environment's ranks, the stop signal."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from llm_tiny import runtime
from llm_tiny.errors import UserError


@pytest.mark.parametrize(
    ("cuda", "mps", "want"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"), (True, False, "cuda")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, want: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert runtime.auto_device() == want


def test_auto_on_this_machine_is_a_device_torch_has() -> None:
    dev = runtime.pick_device("auto")
    assert dev.type == runtime.auto_device()
    torch.zeros(1, device=dev)  # usable, not just named


def test_missing_backends_and_bad_names_are_one_line_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match="no GPU"):
        runtime.pick_device("cuda")
    with pytest.raises(UserError, match="no MPS backend"):
        runtime.pick_device("mps")
    with pytest.raises(UserError, match="bad value for train.device: 'gpu'"):
        runtime.pick_device("gpu")


def test_amp_choice_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert runtime.pick_amp("auto", cpu) is None
    assert runtime.pick_amp("off", cpu) is None
    assert runtime.pick_amp("bf16", cpu) is torch.bfloat16
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        runtime.pick_amp("fp16", cpu)


def test_autocast_computes_in_the_dtype_asked() -> None:
    cpu, a = torch.device("cpu"), torch.ones(4, 4)
    with runtime.autocast(cpu, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with runtime.autocast(cpu, None):
        assert (a @ a).dtype == torch.float32


def test_dist_reads_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    d = runtime.Dist.from_env()
    assert (d.rank, d.world_size, d.local_rank, d.master) == (3, 4, 1, False)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k)
    assert runtime.Dist.from_env() == runtime.Dist(0, 1, 0)


def test_single_process_group_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with runtime.process_group("cpu"):
        assert not torch.distributed.is_initialized()


def test_stop_signal_records_the_signal_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = runtime.StopSignal()
    with stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
