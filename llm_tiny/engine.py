"""The two things done to a model while it learns: one optimizer step, and one bits-per-byte evaluation.

`train` and `bench` take the same step; `train` (on its fixed validation windows) and `eval` (over a
whole split) score with the same sums.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from llm_tiny.metrics import bits_per_byte, perplexity
from llm_tiny.runtime import autocast


def train_step(
    fwd: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: tuple[torch.Tensor, torch.Tensor],
    grad_accum: int,
    grad_clip: float,
    params: Sequence[torch.nn.Parameter],
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """One optimizer step over `batch` in grad_accum equal micro-batches, each loss scaled by
    1/grad_accum (a DDP model syncs gradients on the last one only); then clipping (grad_clip > 0)
    and the step. Returns the batch's mean loss, detached, on the batch's device."""
    x, y = batch
    micro = x.size(0) // grad_accum
    step_loss = torch.zeros((), device=x.device)
    for i in range(grad_accum):
        xb, yb = (v[i * micro : (i + 1) * micro] for v in (x, y))
        last = i == grad_accum - 1
        sync = fwd.no_sync() if isinstance(fwd, DDP) and not last else None
        with sync or contextlib.nullcontext(), autocast(x.device, amp):
            _, loss = fwd(xb, yb)
            assert loss is not None
            loss = loss / grad_accum
            step_loss += loss.detach()
            scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    return step_loss


@torch.no_grad()
def bpb_sums(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    token_bytes: torch.Tensor,
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """(nats, predicted tokens, their UTF-8 bytes) summed over the batches, a float64 tensor on
    token_bytes' device (where the batches go); the model is in eval mode meanwhile."""
    device = token_bytes.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            with autocast(device, amp):
                _, loss = model(x, y)
            assert loss is not None
            sums[0] += loss.double() * y.numel()
            sums[1] += y.numel()
            sums[2] += token_bytes[y].sum()
    finally:
        model.train(was_training)
    return sums


def bpb_metrics(sums: torch.Tensor) -> dict[str, float]:
    """loss (mean nats per token), ppl, bpb, and the totals, from bpb_sums' (nats, tokens, bytes)."""
    nats, n, nbytes = sums.tolist()
    return {
        "loss": nats / n,
        "ppl": perplexity(nats / n),
        "bpb": bits_per_byte(nats, int(nbytes)),
        "tokens": n,
        "bytes": nbytes,
        "nats": nats,
    }
