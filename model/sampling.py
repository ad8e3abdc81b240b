"""Turning next-token logits into a token: temperature, top-k and nucleus (top-p) filtering."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ValueError naming the first sampling argument out of range."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set logits (..., V) outside the top-k, then outside the nucleus, to -inf; a max survives."""
    check_sampling(1.0, top_k, top_p)
    if top_k is not None and top_k < logits.size(-1):
        top = logits.topk(top_k, dim=-1)  # exactly k survive, ties broken by topk
        logits = torch.full_like(logits, float("-inf")).scatter(-1, top.indices, top.values)
    if top_p is not None and top_p < 1.0:
        srt, order = logits.sort(dim=-1, descending=True)
        probs = srt.softmax(-1)
        # drop a token once the mass strictly before it reaches p: the smallest set reaching p,
        # and never the first token, whose preceding mass is 0 < p
        drop = (probs.cumsum(-1) - probs) >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample_logits(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one token id per row of logits (B, V) -> (B, 1)."""
    check_sampling(temperature, top_k, top_p)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)
