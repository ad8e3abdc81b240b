"""AdamW with weight decay on matrices only (or Muon for the hidden matrices), and the learning-rate schedule.

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

from llm_tiny.config import TrainCfg
from llm_tiny.runtime import newton_schulz_dtype


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
    muon_lr: float | None = None,
    ns_dtype: torch.dtype = torch.float32,
) -> torch.optim.Optimizer:
    """AdamW over param_groups (the fused kernel on CUDA), or, given `muon_lr`, Muon for the decayed
    matrices at peak rate `muon_lr` (orthogonalized in `ns_dtype`) and AdamW for the rest."""
    groups = param_groups(model, weight_decay)
    if muon_lr is not None:
        groups[0]["muon"] = True  # the decayed matrices
        return Muon(groups, lr=lr, betas=betas, muon_ratio=muon_lr / lr, ns_dtype=ns_dtype)
    fused = device_type == "cuda"
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def optimizer_for(
    model: nn.Module, t: TrainCfg, device: torch.device, amp: torch.dtype | None = None
) -> torch.optim.Optimizer:
    """The optimizer a config's train section asks for (train.optimizer, lr, muon_lr, decay, betas),
    for a run on `device` autocasting to `amp`."""
    muon_lr = t.muon_lr if t.optimizer == "muon" else None
    betas, ns = (t.beta1, t.beta2), newton_schulz_dtype(device, amp)
    return build_optimizer(model, t.lr, t.weight_decay, betas, device.type, muon_lr, ns)


def orthogonalize(
    g: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """About U V^T for g = U S V^T: every singular value moved into roughly [0.7, 1.2].

    A quintic Newton-Schulz iteration x <- a x + (b s + c s^2) x with s = x x^T, started from g over
    its Frobenius norm (so all singular values are <= 1). The coefficients (Keller Jordan's, for
    Muon) trade exact convergence to 1 for a fast rise of small singular values in 5 steps. `g` may
    be a stack of matrices (..., rows, cols), each orthogonalized on its own in one batched product.
    It iterates in `dtype` (default g's) and returns g's dtype.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    wide = g.size(-2) <= g.size(-1)
    x = (g if wide else g.mT).to(dtype or g.dtype)  # the side where s = x x^T is the smaller square
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        s = x @ x.mT
        x = a * x + (b * s + c * s @ s) @ x
    return (x if wide else x.mT).to(g.dtype)


# Muon's same-shaped matrices are orthogonalized in stacks of up to this many entries (16 MB in fp32):
# stacking pays for small matrices, whose products alone leave the cores idle, while large ones already
# fill them, and the bound keeps a large model's step memory what it was one matrix at a time.
STACK_ENTRIES = 1 << 22


class Muon(torch.optim.Optimizer):
    """Muon for the groups flagged "muon" (the hidden matrices), AdamW for the others.

    Muon: Nesterov momentum (beta 0.95) whose update is orthogonalized (`orthogonalize`) and scaled by
    sqrt(max(1, rows / cols)), at rate lr * muon_ratio. Every update has the same size in every
    direction, so rare directions learn as fast as common ones. Weight decay is decoupled and uses the
    base rate in both rules, p <- p (1 - lr wd), so it means the same as under AdamW.
    """

    def __init__(
        self,
        groups: list[dict],
        lr: float,
        betas: tuple[float, float],
        muon_ratio: float,
        momentum: float = 0.95,
        eps: float = 1e-8,
        ns_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(groups, {"lr": lr, "weight_decay": 0.0, "muon": False})
        self.betas, self.muon_ratio, self.momentum, self.eps = betas, muon_ratio, momentum, eps
        self.ns_dtype = ns_dtype  # orthogonalize's precision (bf16 for CPU bf16 runs)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """One update of every parameter that has a gradient. Muon's matrices of one shape are
        orthogonalized together, in stacks of up to STACK_ENTRIES entries (a few batched products
        instead of many small ones)."""
        (b1, b2), mu = self.betas, self.momentum
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            same_shape: dict[torch.Size, list[nn.Parameter]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, st = p.grad, self.state[p]
                p.mul_(1 - lr * wd)
                if group.get("muon"):
                    buf = st.setdefault("momentum", torch.zeros_like(p))
                    buf.lerp_(g, 1 - mu)
                    same_shape.setdefault(p.shape, []).append(p)
                    continue
                m = st.setdefault("exp_avg", torch.zeros_like(p))
                v = st.setdefault("exp_avg_sq", torch.zeros_like(p))
                st["step"] = k = st.get("step", 0) + 1
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / (1 - b2**k)).sqrt_().add_(self.eps)
                p.addcdiv_(m, denom, value=-lr / (1 - b1**k))
            for (rows, cols), same in same_shape.items():
                per_stack = max(1, STACK_ENTRIES // (rows * cols))
                for k in range(0, len(same), per_stack):  # one bounded stack at a time in memory
                    self._muon_update(same[k : k + per_stack], -lr * self.muon_ratio)

    def _muon_update(self, ps: list[nn.Parameter], rate: float) -> None:
        """Add the orthogonalized Nesterov momentum of same-shaped matrices ps, orthogonalized as one
        stack, at `rate` times sqrt(max(1, rows / cols))."""
        rows, cols = ps[0].shape
        nesterov = torch.empty((len(ps), rows, cols), dtype=ps[0].dtype, device=ps[0].device)
        for p, out in zip(ps, nesterov, strict=True):
            assert p.grad is not None
            torch.lerp(p.grad, self.state[p]["momentum"], self.momentum, out=out)
        updates = orthogonalize(nesterov, dtype=self.ns_dtype)
        for p, u in zip(ps, updates, strict=True):
            p.add_(u, alpha=rate * max(1.0, rows / cols) ** 0.5)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group the learning rate `lr` (the schedule's value for this step)."""
    for g in opt.param_groups:
        g["lr"] = lr


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
