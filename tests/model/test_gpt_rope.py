"""Rotary position embeddings: norm-preserving, relative, and equal to a complex-number reference."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model import GPTConfig, TinyGPT, apply_rope, rope_tables

N_POS = 256
dims = st.sampled_from([2, 4, 8, 16, 32, 64])
positions = st.integers(0, N_POS - 1)
seeds = st.integers(0, 2**31 - 1)


def rotate(x: torch.Tensor, pos: int) -> torch.Tensor:
    """x (d,) rotated as if it sat at position pos."""
    cos, sin = rope_tables(N_POS, x.size(-1))
    return apply_rope(x[None], cos[pos : pos + 1], sin[pos : pos + 1])[0]


def randn(d: int, seed: int) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=50, deadline=None)
@given(d=dims, pos=positions, seed=seeds)
def test_rotation_preserves_norm(d, pos, seed):
    x = randn(d, seed)
    assert math.isclose(rotate(x, pos).norm().item(), x.norm().item(), rel_tol=1e-5)


@settings(max_examples=50, deadline=None)
@given(d=dims, m=st.integers(0, 127), n=st.integers(0, 127), s=st.integers(0, 127), seed=seeds)
def test_score_depends_only_on_relative_position(d, m, n, s, seed):
    q, k = randn(d, seed), randn(d, seed + 1)
    a = rotate(q, m) @ rotate(k, n)
    b = rotate(q, m + s) @ rotate(k, n + s)
    assert math.isclose(a.item(), b.item(), rel_tol=1e-4, abs_tol=1e-4)


def test_position_zero_is_identity_and_other_positions_are_not():
    x = randn(16, 0)
    assert torch.equal(rotate(x, 0), x)
    assert not torch.allclose(rotate(x, 1), x)


def complex_reference(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """x (B, H, T, d): pair i is the complex number x[i] + j·x[i + d/2], turned by e^{j·t·θ_i}."""
    T, d = x.shape[-2], x.shape[-1]
    theta = base ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)
    turn = torch.polar(torch.ones(T, d // 2, dtype=torch.float64), torch.arange(T)[:, None] * theta)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double()) * turn
    return torch.cat((z.real, z.imag), -1).float()


def test_matches_complex_number_reference():
    x = torch.randn(2, 3, 200, 32, generator=torch.Generator().manual_seed(3))
    cos, sin = rope_tables(200, 32)
    torch.testing.assert_close(apply_rope(x, cos, sin), complex_reference(x), atol=1e-5, rtol=1e-5)


def test_keeps_dtype_and_computes_low_precision_in_fp32():
    x = torch.randn(1, 1, 64, 16, generator=torch.Generator().manual_seed(4))
    cos, sin = rope_tables(64, 16)
    out = apply_rope(x.bfloat16(), cos, sin)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float(), complex_reference(x.bfloat16().float()), atol=2e-2, rtol=0
    )


def test_rope_model_has_no_learned_positions_and_sees_order():
    torch.manual_seed(0)
    m = TinyGPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32, rope=True))
    assert m.pos_emb is None
    x = torch.tensor([[1, 2, 3, 4]])
    # the last position sees the same bag of tokens in a different order: rotary must tell them apart
    a = m(x)[0][0, -1]
    b = m(torch.tensor([[3, 2, 1, 4]]))[0][0, -1]
    assert not torch.allclose(a, b, atol=1e-5)
