"""The speed-run switches: QK-norm, ReLU², zero-init projections and the warmup-stable-decay schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_tiny.config import Config, load_config
from llm_tiny.errors import UserError
from llm_tiny.optim import lr_at
from llm_tiny.train import run_training
from model.gpt import GPTConfig, TinyGPT, rms_norm


def _model(**flags: object) -> TinyGPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16, **flags)  # type: ignore[arg-type]
    return TinyGPT(cfg).eval()


def _ids() -> torch.Tensor:
    return torch.randint(0, 50, (3, 8), generator=torch.Generator().manual_seed(1))


@given(st.floats(0.1, 100.0))  # eps (1e-6) is negligible against the mean square
@settings(max_examples=25, deadline=None)
def test_rms_norm_has_unit_rms_whatever_the_scale(scale: float) -> None:
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = rms_norm(x * scale)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(4, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(y, rms_norm(x), atol=1e-3)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_qk_norm_makes_attention_blind_to_the_scale_of_q_and_k(qk_norm: bool) -> None:
    model, idx = _model(qk_norm=qk_norm), _ids()
    before = model(idx)[0]
    with torch.no_grad():
        for b in model.blocks:
            C = model.cfg.n_embd
            b.attn.qkv.weight[: 2 * C] *= 7.0  # the q and k rows only
    after = model(idx)[0]
    assert torch.allclose(before, after, atol=1e-4) == qk_norm


def test_relu2_mlp_computes_relu_squared() -> None:
    model = _model(activation="relu2")
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(model.blocks[0].mlp.act(x), torch.relu(x) ** 2)
    assert not torch.allclose(model(_ids())[0], _model()(_ids())[0])  # gelu differs


def test_zero_init_blocks_start_as_identity_but_still_learn() -> None:
    model, idx = _model(zero_init=True, rope=True), _ids()
    x = model.tok_emb(idx)
    assert torch.equal(model.blocks[0](x), x)
    assert torch.equal(model.hidden(idx), model.ln_f(x))
    model.train()
    _, loss = model(idx, idx)
    assert loss is not None
    loss.backward()
    for b in model.blocks:
        assert b.attn.proj.weight.grad is not None and b.attn.proj.weight.grad.abs().sum() > 0
        assert b.mlp.proj.weight.grad is not None and b.mlp.proj.weight.grad.abs().sum() > 0


def test_default_flags_keep_the_baseline_model() -> None:
    a, b = _model(), _model(qk_norm=False, activation="gelu", zero_init=False)
    assert torch.equal(a(_ids())[0], b(_ids())[0])
    assert isinstance(a.blocks[0].mlp.act, torch.nn.GELU)


def test_bad_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="activation"):
        _model(activation="swish")
    with pytest.raises(UserError, match="model.activation"):
        load_config(None, ["model.activation=swish"])
    with pytest.raises(UserError, match="train.schedule"):
        load_config(None, ["train.schedule=step"])


@given(
    total=st.integers(2, 400),
    warmup=st.integers(0, 50),
    frac=st.floats(0.05, 1.0),
    lr=st.floats(1e-4, 1.0),
)
@settings(max_examples=80, deadline=None)
def test_wsd_warms_up_holds_then_decays_linearly_to_min_lr(
    total: int, warmup: int, frac: float, lr: float
) -> None:
    min_lr = lr / 10
    lrs = [lr_at(s, lr, min_lr, warmup, total, "wsd", frac) for s in range(total + 3)]
    if total - 1 > warmup:
        assert lrs[total - 1] == pytest.approx(min_lr) and lrs[-1] == pytest.approx(min_lr)
    after = lrs[warmup:]
    assert all(a >= b - 1e-12 for a, b in zip(after, after[1:], strict=False))  # never goes up
    assert all(min_lr - 1e-12 <= v <= lr + 1e-12 for v in after)  # warmup may start below
    decay = min(total - 1 - warmup, max(1, round(frac * total)))
    stable_end = total - 1 - decay  # the last update still at the peak
    if stable_end >= warmup and total - 1 > warmup:
        assert lrs[stable_end] == pytest.approx(lr)
        steps = lrs[stable_end:total]  # equal steps down: linear
        diffs = [a - b for a, b in zip(steps, steps[1:], strict=False)]
        assert all(math.isclose(d, diffs[0], rel_tol=1e-6, abs_tol=1e-12) for d in diffs)


def test_cosine_is_still_the_default_schedule() -> None:
    for s in range(30):
        assert lr_at(s, 1e-3, 1e-4, 5, 30) == lr_at(s, 1e-3, 1e-4, 5, 30, "cosine", 0.5)
    assert lr_at(10, 1e-3, 1e-4, 5, 30, "wsd", 0.5) == pytest.approx(1e-3)  # still stable
    assert lr_at(10, 1e-3, 1e-4, 5, 30) < 1e-3  # cosine already decaying


def test_training_with_every_new_switch_learns(tiny_cfg: Callable[..., Config]) -> None:
    flags = ["model.qk_norm=true", "model.activation=relu2", "model.zero_init=true"]
    cfg = tiny_cfg(*flags, "model.rope=true", "train.schedule=wsd", "train.decay_frac=0.4")
    m = run_training(cfg, log=lambda _: None)
    assert m["step"] == 20 and math.isfinite(m["val_loss"])
    assert m["val_loss"] < math.log(300)  # better than uniform over the 300-token vocabulary


@pytest.mark.parametrize("attn", ["sdpa", "naive"])
def test_attn_dropout_is_its_own_switch(attn: str) -> None:
    def two_train_passes(**flags: object) -> tuple[torch.Tensor, torch.Tensor]:
        m = _model(attn=attn, **flags).train()
        torch.manual_seed(3)
        a, _ = m(_ids())
        torch.manual_seed(4)
        b, _ = m(_ids())
        return a, b

    a, b = two_train_passes(dropout=0.0, attn_dropout=0.5)  # attention weights dropped only
    assert not torch.equal(a, b)
    a, b = two_train_passes(dropout=0.0, attn_dropout=0.0)
    assert torch.equal(a, b)
    a, b = two_train_passes(dropout=0.3, attn_dropout=0.0)  # residual dropout stays on
    assert not torch.equal(a, b)
    assert _model(dropout=0.3).blocks[0].attn.p == 0.3  # None: the model's dropout
    assert _model(dropout=0.3, attn_dropout=0.0).blocks[0].attn.p == 0.0
    with pytest.raises(ValueError, match="attn_dropout must be in"):
        _model(attn_dropout=1.0)
