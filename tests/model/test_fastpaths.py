"""model.fastpaths: the CPU autocast paths (dropout from random bits, fp32 attention), and that
outside CPU autocast the model runs torch's own kernels, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from model.fastpaths import LEVELS, Dropout, keep_mask, sdpa
from model.gpt import GPTConfig, TinyGPT

CPU = torch.device("cpu")


def bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


@settings(max_examples=25, deadline=None)
@given(p=st.floats(0.0, 0.95), seed=st.integers(0, 2**31 - 1))
def test_keep_mask_keeps_each_entry_with_probability_one_minus_p(p: float, seed: int) -> None:
    torch.manual_seed(seed)
    n = 1 << 20
    keep = keep_mask(torch.Size([n]), p, CPU)
    want = 1 - round(p * LEVELS) / LEVELS  # p itself to within 2^-17
    assert abs(want - (1 - p)) <= 0.5 / LEVELS
    sigma = (want * (1 - want) / n) ** 0.5
    assert abs(keep.float().mean().item() - want) <= 6 * sigma + 1e-12


def test_keep_mask_has_no_pattern_across_the_four_entries_of_a_draw() -> None:
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([1 << 20]), 0.5, CPU).view(-1, 4).float()
    # each of the 4 int16 lanes of an int64 (the top one included) is fair, and lanes are independent
    assert torch.allclose(keep.mean(0), torch.full((4,), 0.5), atol=0.005)
    corr = torch.corrcoef(keep.T)
    assert (corr - torch.eye(4)).abs().max() < 0.01


def test_keep_mask_follows_the_seed_and_odd_shapes() -> None:
    shape = torch.Size([3, 5, 7])  # 105 entries: not a multiple of 4
    torch.manual_seed(5)
    a = keep_mask(shape, 0.3, CPU)
    torch.manual_seed(5)
    assert torch.equal(a, keep_mask(shape, 0.3, CPU)) and a.shape == shape
    assert not torch.equal(a, keep_mask(shape, 0.3, CPU))  # the generator moved on


def test_dropout_outside_cpu_autocast_is_torchs_own_bit_for_bit() -> None:
    x = torch.randn(4, 16, 32)
    torch.manual_seed(1)
    ours = Dropout(0.2)(x)
    torch.manual_seed(1)
    assert torch.equal(ours, nn.Dropout(0.2)(x))


def test_dropout_under_cpu_autocast_zeroes_or_scales_and_passes_the_same_mask_back() -> None:
    x = torch.randn(8, 64, 32, requires_grad=True)
    d = Dropout(0.25)
    torch.manual_seed(3)
    with bf16():
        y = d(x)
    kept = y != 0
    torch.manual_seed(3)
    assert torch.equal(kept, keep_mask(x.shape, 0.25, CPU))  # the random-bit mask, not bernoulli_
    assert torch.allclose(y[kept], x[kept] / 0.75)
    assert 0.7 < kept.float().mean().item() < 0.8
    y.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad != 0, kept) and torch.allclose(x.grad[kept], torch.tensor(1 / 0.75))
    d.eval()
    with bf16():
        assert torch.equal(d(x), x)  # no dropout in eval mode


def test_sdpa_is_fp32_under_cpu_autocast_and_torchs_own_outside() -> None:
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    assert torch.equal(
        sdpa(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True)
    )
    qb, kb, vb = (t.bfloat16() for t in (q, k, v))
    with bf16():
        y = sdpa(qb, kb, vb, is_causal=True)
        default = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True)
    assert y.dtype == torch.float32 and default.dtype == torch.bfloat16
    ref = F.scaled_dot_product_attention(qb.float(), kb.float(), vb.float(), is_causal=True)
    assert torch.equal(y, ref)


@pytest.mark.parametrize("attn", ["sdpa", "naive"])
def test_a_bf16_step_of_the_model_matches_fp32_closely(attn: str) -> None:
    cfg = GPTConfig(
        vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, rope=True, attn=attn
    )
    model = TinyGPT(cfg).eval()
    x = torch.randint(0, 64, (4, 16))
    _, fp32 = model(x, x)
    with bf16():
        _, low = model(x, x)
    assert low is not None and fp32 is not None
    assert low.dtype == torch.float32  # the loss is fp32 under autocast
    assert low.item() != fp32.item()  # autocast did compute in bf16
    assert abs(low.item() - fp32.item()) < 0.02 * fp32.item()
