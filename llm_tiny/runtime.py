"""Where and how a process computes: device, precision, autocast, the process group, the stop signal.

Every command (train, eval, sample, bench) picks its device here, so `auto` means the same everywhere:
CUDA when torch sees a GPU, else Apple's MPS, else the CPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from llm_tiny.errors import UserError, one_line

T = TypeVar("T")


@dataclass
class Dist:
    """Where this process sits in a (possibly single-process) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        """The rank, world size and local rank torchrun put in the environment (else one process)."""
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def master(self) -> bool:
        """Rank 0 alone logs and writes files."""
        return self.rank == 0


def auto_device() -> str:
    """The best device torch sees here: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """train.device (or --device) to a torch.device; cuda is this rank's GPU."""
    if name == "auto":
        name = auto_device()
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"bad value for train.device: {name!r} ({one_line(e)})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device asks for CUDA but torch sees no GPU (use train.device=cpu)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("train.device=mps but this machine has no MPS backend")
    return dev


CPU_BF16_ENV = "LLM_TINY_CPU_BF16"  # 1 or 0: say whether this CPU computes bf16 natively
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


def cpuinfo_field(key: str, cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The value of the first `key : value` line of Linux's /proc/cpuinfo (e.g. "model name",
    "flags"), or None where there is no such file or line (macOS, Windows)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep and name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX), by its Linux flags,
    unless LLM_TINY_CPU_BF16=1/0 says so. Elsewhere (no /proc/cpuinfo) False: fp32 stays the safe
    default where bf16 would be emulated, and slower."""
    forced = os.environ.get(CPU_BF16_ENV)
    if forced is not None:
        if forced not in ("0", "1"):
            raise UserError(f"{CPU_BF16_ENV} must be 0 or 1, got {forced!r}")
        return forced == "1"
    flags = (cpuinfo_field("flags", cpuinfo) or "").split()
    return any(f in flags for f in CPU_BF16_FLAGS)


def pick_amp(amp: str, dev: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: full fp32) for train.amp on this device.

    `auto`: bf16 on a GPU that has it (else fp16), bf16 on a CPU with native bf16 (`cpu_has_bf16`),
    fp32 on other CPUs and on MPS. Under CPU autocast, torch runs matmuls in bf16 and keeps softmax,
    norms and losses in fp32; the model adds its CPU fast paths (`model.fastpaths`: attention in
    fp32, dropout masks from cheap random bits) and Muon orthogonalizes in bf16
    (`newton_schulz_dtype`). Weights, optimizer state and checkpoints stay fp32 in every case.
    """
    if amp == "auto":
        if dev.type == "cpu":
            return torch.bfloat16 if cpu_has_bf16() else None
        if dev.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and dev.type != "cuda":
        raise UserError("train.amp=fp16 needs a CUDA device; use train.amp=bf16 or off")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def newton_schulz_dtype(dev: torch.device, amp: torch.dtype | None) -> torch.dtype:
    """Muon's orthogonalization precision: bf16 where a CPU run autocasts to bf16 (the same loss at
    300 steps, BENCH.md), else fp32 (GPU runs as they were)."""
    return torch.bfloat16 if dev.type == "cpu" and amp == torch.bfloat16 else torch.float32


def autocast(dev: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for dtype, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=dtype)


@contextlib.contextmanager
def process_group(device: str) -> Iterator[None]:
    """Join torchrun's process group for the block (NCCL on GPUs, gloo on CPU), unless there is
    one process only or the caller has already joined one."""
    d = Dist.from_env()
    own_group = d.world_size > 1 and not dist.is_initialized()
    if own_group:
        use_nccl = device in ("auto", "cuda") and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    try:
        yield
        if own_group:  # no rank tears gloo down while another is still inside a collective
            dist.barrier()
    finally:
        if own_group:
            dist.destroy_process_group()


class StopSignal:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def vote(self, late: bool, is_row: bool, device: torch.device) -> tuple[bool, bool]:
        """(stop now, out of time): this process's view, or in DDP the ranks' common one, which
        they agree on at log rows only (one small all_reduce there, none on other steps)."""
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return self.signum is not None, late
        if not is_row:
            return False, False
        flags = agree([float(self.signum is not None), float(late)], device, "max")
        agreed_stop, agreed_late = (bool(v > 0) for v in flags)
        if agreed_stop and self.signum is None:  # another rank was signalled
            self.signum = signal.SIGTERM
        return agreed_stop, agreed_late

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignal]:
        """Install the handlers for the duration of the block (main thread only; else a no-op)."""
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for signum, handler in self._old.items():
                signal.signal(signum, handler)
            self._old.clear()


def agree(values: list[float], device: torch.device, op: str = "max") -> list[float]:
    """The ranks' common view of a few numbers (their max or min; one small all_reduce), or the
    values themselves in a single process."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.MIN)
    return t.tolist()


def rank_zero_first(make: Callable[[], T], d: Dist) -> T:
    """make() on rank 0, then on the other ranks (which then find rank 0's caches on disk)."""
    if d.master:
        out = make()
    if d.world_size > 1:
        dist.barrier()
    if not d.master:
        out = make()
    return out


def wrap_model(model: torch.nn.Module, compile: bool, d: Dist) -> torch.nn.Module:
    """What a training loop calls: the model, compiled if asked, in DDP when there are several
    processes (gradients all-reduced on each step's last micro-batch)."""
    fwd = model
    if compile:
        fwd = torch.compile(model)  # type: ignore[assignment]
    if d.world_size > 1:
        device = next(model.parameters()).device
        fwd = DDP(fwd, device_ids=[device.index] if device.type == "cuda" else None)
    return fwd
