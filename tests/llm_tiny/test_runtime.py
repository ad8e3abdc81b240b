"""llm_tiny.runtime: device and precision choice, the environment's ranks, the stop signal."""

from __future__ import annotations

import os
import signal
from pathlib import Path

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


@pytest.mark.parametrize(("native", "auto"), [("0", None), ("1", torch.bfloat16)])
def test_amp_choice_on_cpu_follows_native_bf16_and_explicit_values_win(
    monkeypatch: pytest.MonkeyPatch, native: str, auto: torch.dtype | None
) -> None:
    monkeypatch.setenv(runtime.CPU_BF16_ENV, native)
    cpu = torch.device("cpu")
    assert runtime.pick_amp("auto", cpu) is auto
    assert runtime.newton_schulz_dtype(cpu, auto) == (auto or torch.float32)
    assert runtime.pick_amp("off", cpu) is None
    assert runtime.pick_amp("bf16", cpu) is torch.bfloat16
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        runtime.pick_amp("fp16", cpu)


def test_gpu_runs_keep_fp32_newton_schulz() -> None:
    cuda = torch.device("cuda")
    assert runtime.newton_schulz_dtype(cuda, torch.bfloat16) == torch.float32
    assert runtime.newton_schulz_dtype(cuda, torch.float16) == torch.float32


def test_native_bf16_is_read_from_the_cpu_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(runtime.CPU_BF16_ENV, raising=False)
    info = tmp_path / "cpuinfo"
    for flags, want in [
        ("fpu avx2 avx512f", False),
        ("avx512f avx512_bf16", True),
        ("amx_bf16", True),
    ]:
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\nbugs\t\t: avx512_bf16\n")
        assert runtime.cpu_has_bf16(str(info)) is want  # the flags line only, whole words
    info.write_text("flags\t\t: avx512_bf16x\n")
    assert runtime.cpu_has_bf16(str(info)) is False
    assert runtime.cpu_has_bf16(str(tmp_path / "none")) is False  # no /proc (macOS, Windows)
    monkeypatch.setenv(runtime.CPU_BF16_ENV, "1")
    assert runtime.cpu_has_bf16(str(tmp_path / "none")) is True
    monkeypatch.setenv(runtime.CPU_BF16_ENV, "yes")
    with pytest.raises(UserError, match="LLM_TINY_CPU_BF16 must be 0 or 1, got 'yes'"):
        runtime.cpu_has_bf16()


def test_a_cpuinfo_field_is_the_first_line_of_that_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nmodel\t\t: 17\nmodel name\t: other\n"
    )
    assert runtime.cpuinfo_field("model name", str(info)) == "AMD EPYC 9R14"
    assert runtime.cpuinfo_field("model", str(info)) == "17"  # the whole name, not a prefix
    assert runtime.cpuinfo_field("flags", str(info)) is None
    assert runtime.cpuinfo_field("model name", str(tmp_path / "none")) is None


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
