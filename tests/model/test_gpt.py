"""TinyGPT core: config validation, shapes, causality, gradients, attention paths, tying, learning."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from model import GPTConfig, TinyGPT

PATHS = [(a, r) for a in ("sdpa", "naive") for r in (False, True)]


def make(seed: int = 0, **kw) -> TinyGPT:
    cfg = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    cfg.update(kw)
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(**cfg))


def tokens(B: int, T: int, V: int = 50, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("vocab_size", 0),
        ("block_size", -4),
        ("n_layer", 0),
        ("n_head", 0),
        ("n_embd", 32.0),
        ("n_layer", True),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("attn", "flash"),
    ],
)
def test_config_rejects_bad_field_and_names_it(field, value):
    kw = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    kw[field] = value
    with pytest.raises(ValueError, match=field):
        GPTConfig(**kw)


def test_config_rejects_n_embd_not_divisible_by_n_head():
    with pytest.raises(ValueError, match="n_head"):
        GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=3, n_embd=32)


def test_config_rejects_odd_head_dim_only_with_rope():
    GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=6)  # head dim 3 is fine
    with pytest.raises(ValueError, match="rope"):
        GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=6, rope=True)


# --- forward --------------------------------------------------------------------------------


def test_logits_have_shape_BTV_and_loss_is_none_without_targets():
    m = make()
    logits, loss = m(tokens(3, 11))
    assert logits.shape == (3, 11, 50)
    assert loss is None


def test_loss_is_mean_cross_entropy_ignoring_minus_one():
    m = make()
    x, y = tokens(2, 8), tokens(2, 8, seed=2)
    logits, loss = m(x, y)
    assert loss is not None
    assert torch.allclose(loss, F.cross_entropy(logits.flatten(0, 1), y.flatten()))
    y_half = y.clone()
    y_half[:, 4:] = -1
    _, loss_half = m(x, y_half)
    assert loss_half is not None
    expect = F.cross_entropy(logits[:, :4].flatten(0, 1), y[:, :4].flatten())
    assert torch.allclose(loss_half, expect)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("rope", [False, True])
def test_loss_at_init_is_within_ten_percent_of_log_vocab(rope, tie):
    V = 512
    m = make(vocab_size=V, n_embd=64, n_head=4, rope=rope, tie_weights=tie)
    _, loss = m(tokens(4, 16, V), tokens(4, 16, V, seed=3))
    assert loss is not None
    assert abs(loss.item() - math.log(V)) < 0.1 * math.log(V)


def test_forward_rejects_sequence_longer_than_block_size():
    with pytest.raises(ValueError, match="block_size"):
        make()(tokens(1, 17))


@pytest.mark.parametrize("attn,rope", PATHS)
def test_no_future_leakage(attn, rope):
    m = make(attn=attn, rope=rope).eval()
    x = tokens(2, 16)
    base = m(x)[0]
    for t in (0, 6, 14):
        x2 = x.clone()
        x2[:, t + 1 :] = (x2[:, t + 1 :] + 7) % 50
        out = m(x2)[0]
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0)
        assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-4)  # the edit counts


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("attn,rope", PATHS)
def test_every_parameter_gets_finite_nonzero_gradient(attn, rope, tie):
    m = make(attn=attn, rope=rope, tie_weights=tie, bias=True)
    _, loss = m(tokens(4, 16), tokens(4, 16, seed=5))
    assert loss is not None
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("rope", [False, True])
def test_sdpa_and_naive_agree_in_full_forward(rope):
    sdpa = make(attn="sdpa", rope=rope, bias=True).eval()
    naive = make(seed=9, attn="naive", rope=rope, bias=True).eval()
    naive.load_state_dict(sdpa.state_dict())
    x = tokens(3, 16)
    torch.testing.assert_close(naive(x)[0], sdpa(x)[0], atol=1e-5, rtol=0)


def test_auto_picks_sdpa_when_present_and_naive_otherwise(monkeypatch):
    assert make(attn="auto").attn_impl == "sdpa"
    ref = make(attn="naive").eval()
    monkeypatch.delattr(F, "scaled_dot_product_attention")
    m = make(attn="auto").eval()
    assert m.attn_impl == "naive"
    assert all(b.attn.impl == "naive" for b in m.blocks)
    x = tokens(2, 16)
    torch.testing.assert_close(m(x)[0], ref(x)[0])  # runs without the function, same init


@pytest.mark.parametrize("attn", ["sdpa", "naive"])
def test_dropout_acts_in_training_only(attn):
    m = make(attn=attn, dropout=0.5)
    x = tokens(2, 16)
    assert not torch.allclose(m(x)[0], m(x)[0])
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])


def test_attention_dropout_reaches_the_weights():
    torch.manual_seed(0)
    m = make(attn="naive", dropout=0.5)
    m.drop.p = 0.0  # silence every dropout except on the attention weights
    for b in m.blocks:
        b.attn.resid_drop.p = b.mlp.drop.p = 0.0
    x = tokens(2, 16)
    assert not torch.allclose(m(x)[0], m(x)[0])


@pytest.mark.parametrize("rope", [False, True])
def test_state_dict_holds_parameters_only(rope):
    m = make(rope=rope)
    keys = set(m.state_dict())
    assert keys == {n for n, _ in m.named_parameters(remove_duplicate=False)}
    assert not any("mask" in k or "rope" in k for k in keys)
    assert ("pos_emb.weight" in keys) != rope


# --- sizes and FLOPs -------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rope", [False, True])
@pytest.mark.parametrize("tie", [False, True])
def test_num_params_and_flops_follow_the_architecture(bias, rope, tie):
    V, T, L, C = 50, 16, 2, 32
    m = make(bias=bias, rope=rope, tie_weights=tie)
    # per block: qkv 3C², proj C², mlp 8C², two LN weights; with bias: LN 2C, qkv 3C, proj C, mlp 5C
    block = 12 * C * C + 2 * C + (11 * C if bias else 0)
    tok, pos, head = V * C, 0 if rope else T * C, 0 if tie else V * C
    total = tok + pos + L * block + C + (C if bias else 0) + head
    assert m.num_params() == total
    non_emb = total - pos - (0 if tie else tok)
    assert m.num_params(non_embedding=True) == non_emb
    assert m.flops_per_token() == 6 * non_emb + 12 * L * T * C
    assert m.flops_per_token(seq_len=4) == 6 * non_emb + 12 * L * 4 * C


def test_residual_projections_start_smaller():
    m = make(n_layer=8, n_embd=64, block_size=64)
    b = m.blocks[0]
    expect = 0.02 / math.sqrt(2 * 8)
    for w in (b.attn.proj.weight, b.mlp.proj.weight):
        assert abs(w.std().item() - expect) < 0.1 * expect
    assert abs(b.mlp.fc.weight.std().item() - 0.02) < 0.002


# --- weight tying ----------------------------------------------------------------------------


def test_tied_weights_share_storage_and_save_VC_params():
    tied, untied = make(tie_weights=True), make(tie_weights=False)
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert tied.lm_head.weight.data_ptr() == tied.tok_emb.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    assert untied.num_params() - tied.num_params() == 50 * 32


def test_tied_weights_survive_state_dict_round_trip():
    src = make(tie_weights=True)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst = make(seed=7, tie_weights=True)
    dst.load_state_dict(torch.load(buf, weights_only=True))
    assert dst.lm_head.weight is dst.tok_emb.weight
    assert torch.equal(dst.tok_emb.weight, src.tok_emb.weight)
    x = tokens(2, 8)
    assert torch.equal(dst(x)[0], src(x)[0])
    with torch.no_grad():
        dst.tok_emb.weight[3] += 1.0
    assert torch.equal(dst.lm_head.weight[3], dst.tok_emb.weight[3])


def test_optimizer_sees_tied_parameter_once_and_keeps_the_tie():
    m = make(tie_weights=True)
    params = list(m.parameters())
    assert sum(p is m.tok_emb.weight for p in params) == 1
    assert len(params) == len(list(make(tie_weights=False).parameters())) - 1
    opt = torch.optim.AdamW(params, lr=1e-2)
    _, loss = m(tokens(2, 8), tokens(2, 8, seed=4))
    assert loss is not None
    loss.backward()
    opt.step()
    assert m.lm_head.weight is m.tok_emb.weight


# --- learning --------------------------------------------------------------------------------


@pytest.mark.parametrize("rope", [False, True])
def test_two_layer_model_overfits_one_batch(rope):
    m = make(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=64, rope=rope)
    x = tokens(4, 17, 32, seed=11)
    x[:, 0] = torch.arange(4)  # distinct first tokens, so every next token is predictable
    x, y = x[:, :-1], x[:, 1:]
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(300):
        _, loss = m(x, y)
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1
