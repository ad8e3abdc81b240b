"""AdamW parameter groups, Muon, and the warmup + cosine / WSD learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llm_tiny import optim
from llm_tiny.optim import Muon, build_optimizer, lr_at, orthogonalize, param_groups
from model.gpt import GPTConfig, TinyGPT


def test_schedule_over_10000_steps() -> None:
    lr, min_lr, warmup, total = 6e-4, 6e-5, 500, 10_000
    lrs = [lr_at(s, lr, min_lr, warmup, total) for s in range(total)]
    for s in range(warmup):  # linear warmup: update s uses lr * (s + 1) / warmup
        assert lrs[s] == pytest.approx(lr * (s + 1) / warmup, rel=1e-12)
    assert lrs[warmup - 1] == pytest.approx(lr) and max(lrs) == pytest.approx(lr)
    assert lrs.index(max(lrs)) in (warmup - 1, warmup)  # the peak is at the end of warmup
    after = lrs[warmup - 1 :]
    assert all(b <= a for a, b in zip(after, after[1:], strict=False))  # never increasing after
    assert all(x >= min_lr for x in lrs[warmup:])  # never below min_lr
    assert lrs[-1] == pytest.approx(min_lr, rel=1e-12)  # min_lr at the end
    mid = warmup + (total - 1 - warmup) // 2  # cosine: halfway down at the midpoint
    assert lrs[mid] == pytest.approx((lr + min_lr) / 2, rel=1e-3)
    assert lr_at(total + 5, lr, min_lr, warmup, total) == min_lr  # a longer run stays at min_lr


@given(
    lr=st.floats(1e-6, 1.0),
    frac=st.floats(0.0, 1.0),
    warmup=st.integers(0, 200),
    total=st.integers(1, 2000),
)
def test_schedule_shape_for_any_settings(lr: float, frac: float, warmup: int, total: int) -> None:
    min_lr = lr * frac
    lrs = [lr_at(s, lr, min_lr, warmup, total) for s in range(total)]
    assert all(0 < x <= lr * (1 + 1e-12) or x == min_lr for x in lrs)
    w = min(warmup, total)
    assert all(b >= a for a, b in zip(lrs[:w], lrs[1:w], strict=False))  # rising in warmup
    tail = lrs[w:]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(tail, tail[1:], strict=False))
    assert all(x >= min_lr * (1 - 1e-12) for x in tail)
    if total > warmup:
        assert lrs[-1] == pytest.approx(min_lr, rel=1e-9, abs=1e-15)


def test_warmup_zero_starts_at_peak() -> None:
    assert lr_at(0, 1e-3, 1e-4, 0, 100) == pytest.approx(1e-3)


def _model(tie: bool, bias: bool = True) -> TinyGPT:
    cfg = GPTConfig(50, 8, n_layer=2, n_head=2, n_embd=16, bias=bias, tie_weights=tie)
    return TinyGPT(cfg)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_param_groups_decay_only_non_embedding_matrices(tie: bool, bias: bool) -> None:
    model = _model(tie, bias)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids))  # a tied weight appears once
    assert set(ids) == {id(p) for p in model.parameters()}  # and nothing is left out
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert all(p.dim() >= 2 for p in decay["params"])
    assert "tok_emb.weight" not in decayed and "pos_emb.weight" not in decayed
    assert ("lm_head.weight" in decayed) is (not tie)  # tied: the head is the embedding
    assert {n for n in decayed if n.endswith(".bias")} == set()
    assert any(n.endswith("qkv.weight") for n in decayed)
    assert all(p.dim() < 2 or names[id(p)].endswith("emb.weight") for p in no_decay["params"])


def test_build_optimizer_on_cpu_steps_and_decays() -> None:
    model = _model(tie=False)
    opt = build_optimizer(model, 1e-3, 0.5, (0.9, 0.95), "cpu")
    assert opt.defaults["betas"] == (0.9, 0.95)
    w = model.blocks[0].mlp.fc.weight
    before, emb = w.detach().clone(), model.tok_emb.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only weight decay moves a parameter
    opt.step()
    assert torch.allclose(w, before * (1 - 1e-3 * 0.5))
    assert torch.equal(model.tok_emb.weight, emb)
    assert math.isclose(opt.param_groups[0]["lr"], 1e-3)


# ---- Muon ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16, 16), (8, 48), (48, 8), (1, 20), (20, 1), (128, 512)])
def test_orthogonalize_gives_about_u_vt(shape: tuple[int, int]) -> None:
    g = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    o = orthogonalize(g)
    assert o.shape == g.shape
    sv = torch.linalg.svdvals(o)
    assert sv.min() > 0.5 and sv.max() < 1.3  # every direction about the same size
    u, _, vt = torch.linalg.svd(g, full_matrices=False)
    cos = (o * (u @ vt)).sum() / (o.norm() * (u @ vt).norm())
    assert cos > 0.95  # and pointing where U V^T points
    assert torch.allclose(orthogonalize(1e3 * g), o, atol=1e-5)  # the scale of g does not matter


@pytest.mark.parametrize("shape", [(12, 40), (40, 12), (32, 32)])
def test_orthogonalize_in_bf16_returns_the_input_dtype_close_to_fp32(
    shape: tuple[int, int],
) -> None:
    torch.manual_seed(0)
    g = torch.randn(*shape)
    low, full = orthogonalize(g, dtype=torch.bfloat16), orthogonalize(g)
    assert low.dtype == torch.float32 and low.shape == g.shape
    cos = (low * full).sum() / (low.norm() * full.norm())
    assert cos > 0.999 and (low - full).abs().max() < 0.05


def test_a_bf16_muon_steps_like_the_fp32_one() -> None:
    ws = [torch.nn.Parameter(torch.ones(16, 48)) for _ in range(2)]
    opts = [
        Muon(
            [{"params": [w], "weight_decay": 0.0, "muon": True}], 0.01, (0.9, 0.99), 3.0, ns_dtype=d
        )
        for w, d in zip(ws, (torch.float32, torch.bfloat16), strict=True)
    ]
    g = torch.randn(16, 48)
    for w, opt in zip(ws, opts, strict=True):
        w.grad = g.clone()
        opt.step()
    assert ws[1].dtype == torch.float32 and opts[1].state[ws[1]]["momentum"].dtype == torch.float32
    assert torch.allclose(ws[0], ws[1], atol=2e-3) and not torch.equal(ws[0], ws[1])


@pytest.mark.parametrize("shape", [(3, 16, 48), (2, 48, 16), (2, 2, 8, 8)])
def test_a_stack_of_matrices_is_orthogonalized_one_by_one(shape: tuple[int, ...]) -> None:
    g = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)))
    g[0] *= 1e3  # each matrix is normalized by its own norm, not the stack's
    o = orthogonalize(g)
    one_by_one = torch.stack([orthogonalize(m) for m in g.flatten(0, -3)]).view(shape)
    assert torch.allclose(o, one_by_one, atol=1e-6)


# the default (one stack of 3), a stack of 2 then 1, one by one
@pytest.mark.parametrize("stack_entries", [1 << 22, 100, 48])
def test_muon_orthogonalizes_same_shaped_matrices_apart(
    stack_entries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optim, "STACK_ENTRIES", stack_entries)
    torch.manual_seed(0)
    ws = [torch.nn.Parameter(torch.randn(12, 4)) for _ in range(3)] + [
        torch.nn.Parameter(torch.randn(4, 12))
    ]
    alone = [torch.nn.Parameter(w.detach().clone()) for w in ws]
    together = Muon([{"params": ws, "weight_decay": 0.1, "muon": True}], 0.01, (0.9, 0.99), 3.0)
    apart = [
        Muon([{"params": [w], "weight_decay": 0.1, "muon": True}], 0.01, (0.9, 0.99), 3.0)
        for w in alone
    ]
    for _ in range(3):
        for w, w2 in zip(ws, alone, strict=True):
            w.grad = torch.randn_like(w)
            w2.grad = w.grad.clone()
        together.step()
        for opt in apart:
            opt.step()
    for w, w2 in zip(ws, alone, strict=True):
        assert torch.allclose(w, w2, atol=1e-6)


def test_orthogonalize_of_zero_is_zero() -> None:
    assert torch.equal(orthogonalize(torch.zeros(4, 6)), torch.zeros(4, 6))


def test_muon_takes_the_hidden_matrices_and_decays_at_the_base_rate() -> None:
    model = _model(tie=True, bias=True)
    opt = build_optimizer(model, 1e-3, 0.5, (0.9, 0.95), "cpu", muon_lr=0.02)
    assert isinstance(opt, Muon) and opt.muon_ratio == pytest.approx(20)
    muon, adam = opt.param_groups
    assert muon["muon"] and not adam["muon"]
    assert {id(p) for p in muon["params"]} == {id(p) for p in param_groups(model, 0.5)[0]["params"]}
    w, emb = model.blocks[0].mlp.fc.weight, model.tok_emb.weight
    before_w, before_emb = w.detach().clone(), emb.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only weight decay moves a parameter
    opt.step()
    assert torch.allclose(w, before_w * (1 - 1e-3 * 0.5))  # lr * wd, not muon_lr * wd
    assert torch.equal(emb, before_emb)


def test_muon_step_is_the_scaled_orthogonalized_gradient() -> None:
    w = torch.nn.Parameter(torch.randn(12, 4))  # tall: scale sqrt(12 / 4)
    opt = Muon([{"params": [w], "weight_decay": 0.0, "muon": True}], 0.01, (0.9, 0.99), 3.0)
    before, g = w.detach().clone(), torch.randn(12, 4)
    w.grad = g.clone()
    opt.step()  # first step: Nesterov momentum is a multiple of g
    expected = before - 0.01 * 3.0 * math.sqrt(3) * orthogonalize(g)
    assert torch.allclose(w, expected, atol=1e-5)


def test_muon_updates_the_other_parameters_exactly_like_adamw() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))
    a2, b2 = (torch.nn.Parameter(p.detach().clone()) for p in (a, b))
    ours = Muon([{"params": [a, b], "weight_decay": 0.1}], 1e-2, (0.9, 0.95), 10.0)
    ref = torch.optim.AdamW([a2, b2], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    for _ in range(5):
        grads = [torch.randn_like(a), torch.randn_like(b)]
        for p, q, g in zip((a, b), (a2, b2), grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.allclose(a, a2, atol=1e-6) and torch.allclose(b, b2, atol=1e-6)


def test_muon_learns_a_batch() -> None:
    torch.manual_seed(0)
    model = _model(tie=True)
    opt = build_optimizer(model, 3e-3, 0.1, (0.9, 0.95), "cpu", muon_lr=0.02)
    x = torch.randint(0, 50, (4, 8))
    losses = []
    for _ in range(60):
        _, loss = model(x, x)
        assert loss is not None
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert losses[-1] < 0.3 * losses[0]
