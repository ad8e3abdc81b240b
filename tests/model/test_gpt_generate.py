"""Generation: KV cache equals recompute, the out-of-block rule, sampling filters, seeds, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model import GPTConfig, KVCache, TinyGPT, filter_logits, sample_logits

PATHS = [(a, r) for a in ("sdpa", "naive") for r in (False, True)]
V = 50


def make(seed: int = 0, **kw) -> TinyGPT:
    cfg = dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32)
    cfg.update(kw)
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(**cfg)).eval()


def tokens(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the cache -------------------------------------------------------------------------------


@pytest.mark.parametrize("attn,rope", PATHS)
def test_cached_logits_equal_full_forward_step_by_step(attn, rope):
    m = make(attn=attn, rope=rope)
    x = tokens(2, 16)
    full = m(x)[0]
    cache = KVCache(m.cfg, 2)
    m(x[:, :5], cache=cache)
    for t in range(5, 16):
        step = m(x[:, t : t + 1], cache=cache)[0]
        torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-5, rtol=0)
    assert cache.n == 16


@pytest.mark.parametrize("attn,rope", PATHS)
def test_chunks_against_a_cache_equal_full_forward(attn, rope):
    m = make(attn=attn, rope=rope)
    x = tokens(2, 13)
    cache = KVCache(m.cfg, 2)
    parts = [m(x[:, a:b], cache=cache)[0] for a, b in ((0, 5), (5, 9), (9, 10), (10, 13))]
    torch.testing.assert_close(torch.cat(parts, 1), m(x)[0], atol=1e-5, rtol=0)


def test_cache_refuses_to_grow_past_block_size():
    m = make()
    cache = KVCache(m.cfg, 1)
    m(tokens(1, 16), cache=cache)
    with pytest.raises(ValueError, match="block_size"):
        m(tokens(1, 1), cache=cache)
    cache.reset()
    assert m(tokens(1, 1), cache=cache)[0].shape == (1, 1, V)


@pytest.mark.parametrize("attn,rope", PATHS)
def test_greedy_cached_tokens_equal_full_recompute_at_every_step(attn, rope):
    m = make(attn=attn, rope=rope)
    for T0 in (1, 3, 15):
        out = m.generate(tokens(2, T0), 16 - T0, top_k=1)
        assert out.shape == (2, 16)
        for t in range(T0, 16):
            expect = m(out[:, :t])[0][:, -1].argmax(-1)
            assert torch.equal(out[:, t], expect), (T0, t)


def reference_window_rule(m: TinyGPT, idx: torch.Tensor, n_new: int) -> torch.Tensor:
    """Greedy decoding by full recompute, with the documented window rule written out."""
    W = m.cfg.block_size
    seq, start = idx, max(0, idx.size(1) - W)
    for _ in range(n_new):
        nxt = m(seq[:, start:])[0][:, -1].argmax(-1, keepdim=True)
        seq = torch.cat((seq, nxt), 1)
        if seq.size(1) - start > W:  # the window overflowed: keep its newest W // 2 (at least 1)
            start = seq.size(1) - max(1, W // 2)
    return seq


@pytest.mark.parametrize("attn,rope", PATHS)
@pytest.mark.parametrize("block_size,T0", [(8, 3), (8, 11), (7, 2), (1, 2)])
def test_out_of_block_generation_follows_the_window_rule(attn, rope, block_size, T0):
    m = make(attn=attn, rope=rope, block_size=block_size)
    idx = tokens(2, T0)
    out = m.generate(idx, 30, top_k=1)
    assert torch.equal(out, reference_window_rule(m, idx, 30))
    assert torch.equal(m.generate(idx, 30, top_k=1, use_cache=False), out)


@pytest.mark.parametrize("rope", [False, True])
def test_cache_and_recompute_give_the_same_sampled_text(rope):
    m = make(rope=rope, block_size=8)
    idx = tokens(3, 4)
    a = m.generate(idx, 40, temperature=1.5, generator=gen(5))
    b = m.generate(idx, 40, temperature=1.5, generator=gen(5), use_cache=False)
    assert torch.equal(a, b)


def count_positions(m: TinyGPT, **kw) -> int:
    seen = []
    h = m.tok_emb.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].size(1)))
    m.generate(tokens(1, 4), 200, **kw)
    h.remove()
    return sum(seen)


def test_cache_costs_about_one_position_per_token_beyond_the_block():
    m = make(block_size=16)
    cached, full = count_positions(m), count_positions(m, use_cache=False)
    # step 0 reads the 4-token prompt; the window (16) is full after step 11, so steps 12, 21, ...,
    # 192 (every 16 // 2 + 1 steps) rebuild from 8 tokens: 21 rebuilds; every other step reads one
    rebuilds = len(range(12, 200, 9))
    assert rebuilds == 21
    assert cached == 4 + (199 - rebuilds) + 8 * rebuilds
    assert cached < 2.5 * 200 < full


@pytest.mark.parametrize("rope", [False, True])
def test_sdpa_and_naive_agree_in_cached_generation(rope):
    a = make(attn="sdpa", rope=rope, block_size=8)
    b = make(seed=3, attn="naive", rope=rope, block_size=8)
    b.load_state_dict(a.state_dict())
    idx = tokens(2, 5)
    assert torch.equal(a.generate(idx, 30, top_k=1), b.generate(idx, 30, top_k=1))
    ca, cb = KVCache(a.cfg, 2), KVCache(b.cfg, 2)
    torch.testing.assert_close(a(idx, cache=ca)[0], b(idx, cache=cb)[0], atol=1e-5, rtol=0)
    for t in range(3):
        nxt = tokens(2, 1, seed=t)
        torch.testing.assert_close(a(nxt, cache=ca)[0], b(nxt, cache=cb)[0], atol=1e-5, rtol=0)


def test_batch_rows_are_generated_independently():
    m = make(rope=True, block_size=8)
    idx = tokens(3, 5)
    out = m.generate(idx, 20, top_k=1)
    for i in range(3):
        assert torch.equal(out[i : i + 1], m.generate(idx[i : i + 1], 20, top_k=1))


def test_generate_keeps_prompt_and_mode_and_accepts_int32():
    m = make()
    m.train()
    idx = tokens(2, 5)
    keep = idx.clone()
    out = m.generate(idx.int(), 7, top_k=1)
    assert m.training
    assert torch.equal(idx, keep)
    assert out.dtype == torch.long and torch.equal(out[:, :5], idx)
    assert torch.equal(m.generate(idx, 0), idx)


def test_stream_yields_the_ids_generate_appends_one_step_at_a_time():
    m = make(rope=True, block_size=8)
    idx = tokens(2, 5)
    it = m.stream(idx, 30, temperature=1.3, top_p=0.9, generator=gen(3))
    first = next(it)
    assert first.shape == (2, 1)
    ids = torch.cat([idx, first, *it], 1)
    assert torch.equal(ids, m.generate(idx, 30, temperature=1.3, top_p=0.9, generator=gen(3)))


def test_stream_checks_its_arguments_before_the_first_step():
    with pytest.raises(ValueError, match="top_k"):
        make().stream(tokens(1, 3), 5, top_k=0)  # no next(): the error comes at the call


# --- seeds -----------------------------------------------------------------------------------


def test_same_seed_same_text_and_different_seeds_different_text():
    m = make()  # at init the model is close to uniform over V: high entropy
    idx = tokens(1, 3)
    a = m.generate(idx, 40, generator=gen(1))
    assert torch.equal(a, m.generate(idx, 40, generator=gen(1)))
    assert not torch.equal(a, m.generate(idx, 40, generator=gen(2)))


# --- sampling filters ------------------------------------------------------------------------

# a hand-built distribution, in shuffled token order so the filters cannot lean on the index
PROBS = torch.tensor([0.06, 0.25, 0.04, 0.4, 0.1, 0.15])  # ranks: 3, 1, 5, 4, 0, 2
DRAWS = 20000


def draws(**kw) -> torch.Tensor:
    logits = PROBS.log().expand(DRAWS, -1)
    return sample_logits(logits, generator=gen(0), **kw)[:, 0]


def frequencies(ids: torch.Tensor) -> torch.Tensor:
    return torch.bincount(ids, minlength=len(PROBS)).float() / len(ids)


def renorm(keep: list[int]) -> torch.Tensor:
    p = torch.zeros_like(PROBS)
    p[keep] = PROBS[keep] / PROBS[keep].sum()
    return p


@pytest.mark.parametrize(
    "kw,keep",
    [
        ({}, [0, 1, 2, 3, 4, 5]),
        ({"top_k": 3}, [3, 1, 5]),
        ({"top_k": 1}, [3]),
        ({"top_k": 99}, [0, 1, 2, 3, 4, 5]),
        ({"top_p": 0.5}, [3, 1]),  # 0.4 < 0.5 <= 0.65
        ({"top_p": 0.75}, [3, 1, 5]),  # 0.65 < 0.75 <= 0.8
        ({"top_p": 0.3}, [3]),  # the top token alone already reaches p
        ({"top_p": 1.0}, [0, 1, 2, 3, 4, 5]),
        ({"top_k": 4, "top_p": 0.7}, [3, 1]),  # nucleus of the renormalised top 4: 0.44+0.27
        ({"top_k": 2, "top_p": 0.01}, [3]),
    ],
)
def test_samples_stay_inside_the_filtered_set_with_the_right_frequencies(kw, keep):
    f = frequencies(draws(**kw))
    outside = [i for i in range(len(PROBS)) if i not in keep]
    assert f[outside].sum() == 0
    torch.testing.assert_close(f, renorm(keep), atol=0.015, rtol=0)


def test_temperature_sharpens_and_flattens():
    cold, hot = frequencies(draws(temperature=0.1)), frequencies(draws(temperature=10.0))
    assert cold[3] > 0.98
    assert (hot - 1 / 6).abs().max() < 0.03
    squared = PROBS**2 / (PROBS**2).sum()  # softmax(log p / 0.5) is p² renormalised
    torch.testing.assert_close(frequencies(draws(temperature=0.5)), squared, atol=0.015, rtol=0)


logit_rows = st.lists(
    st.floats(-20, 20, allow_nan=False, allow_subnormal=False), min_size=1, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(row=logit_rows, k=st.integers(1, 50), p=st.floats(1e-6, 1.0))
def test_filters_keep_a_best_set_that_is_never_empty(row, k, p):
    logits = torch.tensor(row)
    n = len(row)
    top = filter_logits(logits, top_k=k)
    kept = torch.isfinite(top)
    assert kept.sum() == min(k, n)
    assert torch.equal(top[kept], logits[kept])
    if not kept.all():
        assert logits[kept].min() >= logits[~kept].max()
    nuc = torch.isfinite(filter_logits(logits, top_p=p))
    probs = logits.softmax(-1)
    assert logits[nuc].max() == logits.max()  # a most likely token survives (ties: any one)
    assert probs[nuc].sum() >= p - 1e-5  # reaches p ...
    assert probs[nuc].sum() - probs[nuc].min() < p + 1e-5  # ... and is the smallest such set
    if not nuc.all():
        assert probs[nuc].min() >= probs[~nuc].max()
    both = torch.isfinite(filter_logits(logits, top_k=k, top_p=p))
    assert logits[both].max() == logits.max()
    assert (both & ~kept).sum() == 0


@pytest.mark.parametrize("n,p,kept", [(2, 0.5, 1), (4, 0.5, 2), (4, 0.75, 3), (4, 0.76, 4)])
def test_nucleus_stops_as_soon_as_p_is_reached(n, p, kept):
    # equal logits give exact probabilities 1/n, so "reaches p" is tested at the boundary
    assert torch.isfinite(filter_logits(torch.zeros(n), top_p=p)).sum() == kept


def test_filters_work_on_batches():
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    out = filter_logits(logits, top_k=1)
    assert torch.isfinite(out).tolist() == [[False, False, True], [True, False, False]]


# --- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"idx": torch.zeros(1, 0, dtype=torch.long)}, "idx"),
        ({"idx": torch.zeros(0, 3, dtype=torch.long)}, "idx"),
        ({"idx": torch.zeros(3, dtype=torch.long)}, "idx"),
        ({"idx": torch.tensor([[1, V]])}, "idx"),
        ({"idx": torch.tensor([[-1, 2]])}, "idx"),
        ({"idx": torch.tensor([[1.0, 2.0]])}, "idx"),
    ],
)
def test_bad_generate_arguments_raise_value_error_naming_them(kw, name):
    args = {"idx": tokens(1, 3), "max_new_tokens": 5} | kw
    with pytest.raises(ValueError, match=name):
        make().generate(**args)


@pytest.mark.parametrize("kw,name", [({"top_k": 0}, "top_k"), ({"top_p": -0.1}, "top_p")])
def test_bad_filter_arguments_raise_value_error_naming_them(kw, name):
    with pytest.raises(ValueError, match=name):
        filter_logits(torch.zeros(4), **kw)
