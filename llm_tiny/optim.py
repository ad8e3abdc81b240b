"""AdamW with weight decay on matrices only, and the learning-rate schedule (linear warmup, cosine decay).

Decay choice: every parameter of dimension >= 2 decays except embedding tables. Biases and norm gains are
1-D and never decay (shrinking a gain towards 0 isn't regularisation, it's damage). Embedding rows only get
a gradient when their token appears, so decay would shrink rare tokens' rows towards zero between
sightings; we leave them out. A tied embedding / LM head weight is one tensor, listed once, as an
embedding.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed matrices, and everything else (biases, norms, embeddings)."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():  # parameters() yields a shared (tied) tensor once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embedding_ids else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    device_type: str,
) -> torch.optim.AdamW:
    """AdamW over param_groups, using the fused kernel on CUDA (one launch for all parameters)."""
    fused = device_type == "cuda"
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, fused=fused or None
    )


def lr_at(
    step: int,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "cosine",
    decay_frac: float = 0.3,
) -> float:
    """Learning rate for update number `step` (0-based) of `total_steps`.

    Linear warmup over updates 0..warmup_steps-1 reaching `lr` at the last of them, then down to exactly
    `min_lr` at update total_steps-1 (and after, should a run go on): by a cosine over all the remaining
    updates (schedule="cosine"), or, for "wsd" (warmup-stable-decay), held at `lr` and then linear over
    the last `decay_frac` of the total_steps.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = total_steps - 1 - warmup_steps
    if decay_steps <= 0:  # no room left to decay: the last update (and any after) uses min_lr
        return min_lr
    if schedule == "wsd":
        decay_steps = min(decay_steps, max(1, round(decay_frac * total_steps)))
        left = total_steps - 1 - step  # updates still to come after this one
        return min_lr + (lr - min_lr) * min(1.0, max(0.0, left / decay_steps))
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}; choose cosine or wsd")
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
