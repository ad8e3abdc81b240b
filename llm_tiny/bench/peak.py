"""The device's peak FLOP/s that MFU divides by: a datasheet table for CUDA GPUs, and for a CPU its
own matmul peak, measured by a probe of a few seconds (no table knows every CPU, and its thread
count, vector units and load decide what it can do).

MFU (model FLOPs utilisation) is the training FLOP/s a model achieves (`flops_per_token()` times
tokens per second) over the device's peak rate in the precision it computes in.
"""

from __future__ import annotations

import time

import torch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' datasheets. Matched by
# substring of torch.cuda.get_device_name(), first match wins, so the specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
)


def mfu(tokens_per_s: float, flops_per_token: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the device's peak (a fraction)."""
    return tokens_per_s * flops_per_token / (peak_tflops * 1e12)


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOP/s, device name) for MFU; None when the device is not in the table."""
    name = torch.cuda.get_device_name(device)
    for key, tf in PEAK_BF16_TFLOPS:
        if key in name:
            return tf, name
    return None, name


# square matmul sizes for the CPU probe: large enough to run at the peak, small enough to be quick
PROBE_SIZES = (1024, 2048)


def matmul_tflops(
    dtype: torch.dtype,
    threads: int,
    sizes: tuple[int, ...] = PROBE_SIZES,
    repeats: int = 3,
    slow_s: float = 0.5,
) -> float:
    """This CPU's matmul peak in TFLOP/s for dtype with `threads` torch threads: the best rate of
    n x n matmuls (2n³ FLOPs each), best of `repeats` per size after a warm-up call; a size whose
    call takes longer than slow_s (a dtype the CPU only emulates) is the last one tried."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = 0.0
    try:
        g = torch.Generator().manual_seed(0)
        for n in sizes:
            a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))
            torch.mm(a, b)  # the first call picks and sets up the kernel
            for _ in range(repeats):
                start = time.perf_counter()
                torch.mm(a, b)
                seconds = time.perf_counter() - start
                best = max(best, 2 * n**3 / seconds / 1e12)
            if seconds > slow_s:
                break
    finally:
        torch.set_num_threads(before)
    return best


def cpu_peaks(threads: list[int]) -> dict[tuple[str, int], float]:
    """The measured fp32 and bf16 matmul peaks in TFLOP/s for each thread count, by (amp, threads)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {
        (name, t): matmul_tflops(d, t) for t in sorted(set(threads)) for name, d in dtypes.items()
    }
