"""TinyGPT: a small GPT with learned or rotary positions, two attention paths and KV-cached sampling."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from model.fastpaths import Dropout, sdpa
from model.sampling import check_sampling, sample_logits

ATTN_IMPLS = ("auto", "sdpa", "naive")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu2")  # gelu_tanh: GPT-2's tanh approximation
ROPE_BASE = 10000.0


@dataclass
class GPTConfig:
    """Model shape and switches; every flag picks a code path in exactly one place."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    attn_dropout: float | None = None  # on attention weights; None: `dropout`
    bias: bool = False  # biases in Linear and LayerNorm
    rope: bool = False  # rotary q/k instead of learned positions
    tie_weights: bool = False  # LM head shares the token embedding
    attn: str = "auto"  # "auto" | "sdpa" | "naive"
    qk_norm: bool = False  # RMS-normalise each head's q and k (before rotary)
    activation: str = "gelu"  # MLP nonlinearity: "gelu" (erf) | "gelu_tanh" | "relu2" (relu(x)^2)
    zero_init: bool = False  # residual output projections start at zero: blocks begin as identity

    def __post_init__(self) -> None:
        for f in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f} must be a positive int, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.rope and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head dim (n_embd / n_head), got {self.n_embd}")
        for f in ("dropout", "attn_dropout"):
            v = getattr(self, f)
            if v is not None and not 0.0 <= v < 1.0:
                raise ValueError(f"{f} must be in [0, 1), got {v!r}")
        if self.attn not in ATTN_IMPLS:
            raise ValueError(f"attn must be one of {ATTN_IMPLS}, got {self.attn!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")


def resolve_attn(name: str) -> str:
    """Map "auto" to "sdpa" when this torch has it, else "naive"."""
    if name != "auto":
        return name
    return "sdpa" if hasattr(F, "scaled_dot_product_attention") else "naive"


def rope_tables(n_pos: int, head_dim: int, base: float = ROPE_BASE) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (n_pos, head_dim // 2): angle m * base^(-2i/d) for position m, pair i."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.outer(torch.arange(n_pos, dtype=torch.float64), inv)
    return ang.cos().float(), ang.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[..., i], x[..., i + d/2]) of x (..., T, d) by the angles in cos/sin (T, d/2)."""
    # at least fp32 so low-precision runs keep accurate angles
    x1, x2 = x.to(torch.promote_types(x.dtype, torch.float32)).chunk(2, -1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).type_as(x)


def rms_norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the last dim, without a gain (QK-norm's unit-scale q and k)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class ReLU2(nn.Module):
    """relu(x)^2: sparse like ReLU, smooth at the origin's right, cheaper than GELU."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x).square()


class KVCache:
    """Keys and values of every layer for the first `n` positions of the current window."""

    def __init__(self, cfg: GPTConfig, batch_size: int) -> None:
        hd = cfg.n_embd // cfg.n_head
        self.shape = (cfg.n_layer, batch_size, cfg.n_head, cfg.block_size, hd)
        self.k: Tensor | None = None  # allocated on first use, with the device/dtype of the keys
        self.v: Tensor | None = None
        self.n = 0

    def reset(self) -> None:
        """Forget every position (storage is kept)."""
        self.n = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, nh, T, hd) at positions n..n+T of `layer`; return keys/values 0..n+T."""
        if self.k is None or self.v is None:
            self.k = k.new_zeros(self.shape)
            self.v = v.new_zeros(self.shape)
        end = self.n + k.size(2)
        self.k[layer, :, :, self.n : end] = k
        self.v[layer, :, :, self.n : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with an optional KV cache and rotary q/k."""

    mask: Tensor

    def __init__(self, cfg: GPTConfig, layer: int) -> None:
        super().__init__()
        C, bs = cfg.n_embd, cfg.block_size
        self.layer, self.nh = layer, cfg.n_head
        # Without it, SDPA on CPU can use its fused kernel: 1.5x faster for the issue-7 recipe.
        self.p = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        self.impl = resolve_attn(cfg.attn)
        self.qk_norm = cfg.qk_norm
        self.qkv = nn.Linear(C, 3 * C, bias=cfg.bias)
        self.proj = nn.Linear(C, C, bias=cfg.bias)
        self.attn_drop = Dropout(self.p)
        self.resid_drop = Dropout(cfg.dropout)
        # mask[i, j]: query at position i may see key j; non-persistent keeps state dicts clean
        self.register_buffer("mask", torch.ones(bs, bs, dtype=torch.bool).tril(), persistent=False)

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, cache: KVCache | None = None
    ) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        if self.qk_norm:  # bounded logits: q.k / sqrt(hd) lies in [-sqrt(hd), sqrt(hd)]
            q, k = rms_norm(q), rms_norm(k)
        if rope is not None:  # (B, nh, T, hd)
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nh, S, hd), S = cached + T
        S = k.size(2)
        if self.impl == "sdpa":
            p = self.p if self.training else 0.0
            if S == T:  # full causal window
                y = sdpa(q, k, v, dropout_p=p, is_causal=True)
            else:  # new queries sit at the end: they see every cached key plus earlier new ones
                m = None if T == 1 else self.mask[S - T : S, :S]
                y = sdpa(q, k, v, attn_mask=m, dropout_p=p)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, S)
            att = att.masked_fill(~self.mask[S - T : S, :S], float("-inf"))
            y = self.attn_drop(att.softmax(-1)) @ v  # (B, nh, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward net of width 4C."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        tanh = "tanh" if cfg.activation == "gelu_tanh" else "none"
        self.act: nn.Module = ReLU2() if cfg.activation == "relu2" else nn.GELU(approximate=tanh)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig, layer: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, cache: KVCache | None = None
    ) -> Tensor:
        x = x + self.attn(self.ln1(x), rope, cache)
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Decoder-only transformer language model."""

    rope_cos: Tensor
    rope_sin: Tensor

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        V, C, L = cfg.vocab_size, cfg.n_embd, cfg.n_layer
        self.tok_emb = nn.Embedding(V, C)
        self.pos_emb = None if cfg.rope else nn.Embedding(cfg.block_size, C)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(L))
        self.ln_f = nn.LayerNorm(C, bias=cfg.bias)
        self.lm_head = nn.Linear(C, V, bias=False)
        if cfg.rope:
            cos, sin = rope_tables(cfg.block_size, C // cfg.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        if cfg.tie_weights:  # one Parameter: load_state_dict copies into it, so the tie survives
            self.lm_head.weight = self.tok_emb.weight

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, (CausalSelfAttention, MLP)):  # apply() visits it after its Linears
            # residual writes shrink with depth so the stream's variance stays ~1
            if self.cfg.zero_init:  # blocks start as the identity; gradients still reach proj
                nn.init.zeros_(m.proj.weight)
            else:
                nn.init.normal_(m.proj.weight, std=0.02 / math.sqrt(2 * self.cfg.n_layer))

    @property
    def attn_impl(self) -> str:
        """The attention path in use ("sdpa" or "naive")."""
        return resolve_attn(self.cfg.attn)

    def num_params(self, non_embedding: bool = False) -> int:
        """Distinct parameters; non_embedding drops lookup tables (pos, and tok unless tied)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
            if not self.cfg.tie_weights:  # a tied table is the LM head's matmul, which costs FLOPs
                n -= self.tok_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training (forward + backward) FLOPs per token: 6N + 12·L·T·C, N non-embedding params."""
        T = self.cfg.block_size if seq_len is None else seq_len
        return 6 * self.num_params(non_embedding=True) + 12 * self.cfg.n_layer * T * self.cfg.n_embd

    def hidden(self, idx: Tensor, cache: KVCache | None = None) -> Tensor:
        """Final-LayerNorm hidden states (B, T, C) for token ids idx (B, T), after `cache` if given."""
        B, T = idx.shape
        t0 = 0 if cache is None else cache.n
        if t0 + T > self.cfg.block_size:
            raise ValueError(f"sequence length {t0 + T} exceeds block_size {self.cfg.block_size}")
        x = self.tok_emb(idx)  # (B, T, C)
        rope = None
        if self.pos_emb is None:  # rotary: positions continue from the cache length
            rope = (self.rope_cos[t0 : t0 + T], self.rope_sin[t0 : t0 + T])
        else:
            x = x + self.pos_emb(torch.arange(t0, t0 + T, device=idx.device))
        x = self.drop(x)
        for b in self.blocks:
            x = b(x, rope, cache)
        if cache is not None:
            cache.n += T
        return self.ln_f(x)

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) and, given targets (B, T), the mean cross-entropy (targets -1 ignored)."""
        logits = self.lm_head(self.hidden(idx, cache))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Extend idx (B, T) by max_new_tokens sampled ids, in eval mode -> (B, T + max_new_tokens).

        Window rule: the model sees a window of at most block_size tokens, starting as the last
        block_size tokens of the prompt. When the next token would overflow a full window, the
        window restarts from its most recent max(1, block_size // 2) tokens (the new one included)
        and the KV cache is rebuilt once from them, so the rebuild cost is amortised over the next
        block_size // 2 steps. use_cache=False recomputes the same window at every step: the tokens
        are the same either way, only slower.
        """
        args = (temperature, top_k, top_p, generator, use_cache)
        steps = self.stream(idx, max_new_tokens, *args)  # checks the arguments now
        was_training = self.training
        self.eval()
        try:
            return torch.cat([idx.long(), *steps], 1)
        finally:
            self.train(was_training)

    def stream(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Iterator[Tensor]:
        """Yield generate's new ids (B, 1) one step at a time, as they are drawn; call .eval() first."""
        V, W = self.cfg.vocab_size, self.cfg.block_size
        if idx.dim() != 2 or idx.numel() == 0 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"idx must be a non-empty (B, T) int tensor, got {idx.dtype} {tuple(idx.shape)}"
            )
        if idx.min() < 0 or idx.max() >= V:
            raise ValueError(f"idx holds ids outside [0, {V}): {idx.min()}..{idx.max()}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens!r}")
        check_sampling(temperature, top_k, top_p)

        @torch.no_grad()
        def steps() -> Iterator[Tensor]:
            (B, T0), end = idx.shape, idx.size(1) + max_new_tokens
            out = F.pad(idx.long(), (0, max_new_tokens))  # (B, T0 + max_new_tokens)
            cache = KVCache(self.cfg, B) if use_cache else None
            n, fresh = min(T0, W), True  # n: tokens in the window; fresh: rebuild the cache
            for t in range(T0, end):
                if fresh and cache is not None:
                    cache.reset()
                h = self.hidden(out[:, t - n if fresh else t - 1 : t], cache)
                nxt = sample_logits(self.lm_head(h[:, -1]), temperature, top_k, top_p, generator)
                out[:, t : t + 1] = nxt
                yield nxt
                fresh = n == W or cache is None
                n = max(1, W // 2) if n == W else n + 1

        return steps()
