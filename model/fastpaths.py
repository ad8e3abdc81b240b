"""The CPU's fast paths, taken only under CPU autocast (bf16): dropout from cheap random bits, and
attention kept in fp32.

Outside CPU autocast (fp32 on any CPU, every GPU run) both are torch's own `F.dropout` and
`F.scaled_dot_product_attention`, so those runs are exactly what they were. The choice to autocast
is made once, in `llm_tiny.runtime.pick_amp`; this module only follows it. Measured on a 2-core
Zen 4 CPU (BENCH.md, issue 20): `bernoulli_` is single-threaded, 3.4 ms for a (32, 128, 128) mask,
against 0.8 ms for the mask below; SDPA's forward + backward in bf16 takes 2-2.4x as long as in fp32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

LEVELS = 1 << 16  # a keep test on 16 random bits: the drop probability is p to within 1 / 2^17


def cpu_autocast(x: Tensor) -> bool:
    """Whether x is a CPU tensor inside a CPU autocast region (the bf16 runs `llm_tiny.runtime`
    chose for this CPU): the one test both fast paths take."""
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu")


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> Tensor:
    """A bool mask of `shape`, each entry True with probability 1 - round(p * 2^16) / 2^16.

    Four entries per int64 draw from torch's default generator (so a seed, and a restored RNG state,
    give the same masks); each entry compares its 16 bits with a threshold.
    """
    n = shape.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    bits.random_(-(1 << 63), (1 << 63) - 1)  # the whole int64 range: all 64 bits random
    threshold = round(p * LEVELS) - LEVELS // 2  # int16 values below it drop
    return bits.view(torch.int16)[:n].view(shape) >= threshold


class Dropout(nn.Dropout):
    """nn.Dropout, but under CPU autocast the mask comes from `keep_mask` (4x fewer random draws,
    none single-threaded); kept entries are scaled by 1 / (1 - p) as usual."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.p > 0 and cpu_autocast(x)):
            return super().forward(x)
        scale = keep_mask(x.shape, self.p, x.device).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scale


def sdpa(q: Tensor, k: Tensor, v: Tensor, **kw: object) -> Tensor:
    """F.scaled_dot_product_attention, in fp32 under CPU autocast (bf16 attention is slower there)."""
    if not cpu_autocast(q):
        return F.scaled_dot_product_attention(q, k, v, **kw)  # type: ignore[arg-type]
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kw)  # type: ignore[arg-type]
