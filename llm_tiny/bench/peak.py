"""The device's peak FLOP/s that MFU divides by: a datasheet table for CUDA GPUs.

MFU (model FLOPs utilisation) is the training FLOP/s a model achieves (`flops_per_token()` times
tokens per second) over the device's peak rate in the precision it computes in.
"""

from __future__ import annotations

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
