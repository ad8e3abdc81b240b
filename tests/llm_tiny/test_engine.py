"""llm_tiny.engine: the one train step (train and bench) and the one bits-per-byte sum (train and eval)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_tiny.engine import bpb_metrics, bpb_sums, train_step
from model.gpt import GPTConfig, TinyGPT

V, T = 40, 8


def tiny_model(seed: int = 0) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(V, T, n_layer=1, n_head=2, n_embd=16))


def batch(rows: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    xy = torch.randint(V, (rows, T + 1), generator=torch.Generator().manual_seed(seed))
    return xy[:, :-1], xy[:, 1:]


def step(model: TinyGPT, xy: tuple[torch.Tensor, torch.Tensor], accum: int, clip: float) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = train_step(model, opt, scaler, xy, accum, clip, list(model.parameters()))
    assert not any(p.grad is not None for p in model.parameters())  # zeroed for the next step
    return float(loss)


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_accumulated_step_equals_one_full_batch_step(clip: float) -> None:
    xy = batch(8)
    whole, parts = tiny_model(), tiny_model()
    loss_whole = step(whole, xy, 1, clip)
    loss_parts = step(parts, xy, 4, clip)
    assert loss_parts == pytest.approx(loss_whole, rel=1e-5)  # the batch's mean loss
    for a, b in zip(whole.parameters(), parts.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_step_moves_the_weights_against_the_gradient() -> None:
    model, xy = tiny_model(), batch(4)
    before = copy.deepcopy(model)
    first = step(model, xy, 2, 0.0)
    assert any(
        not torch.equal(a, b) for a, b in zip(model.parameters(), before.parameters(), strict=True)
    )
    with torch.no_grad():
        _, after = model(*xy)
    assert after is not None and float(after) < first


def test_bpb_sums_are_nats_tokens_and_bytes_and_keep_the_mode() -> None:
    model, (x, y) = tiny_model(), batch(3)
    token_bytes = torch.arange(V) % 3 + 1  # 1 to 3 bytes per token
    model.train()
    sums = bpb_sums(model, [(x, y)], token_bytes)
    assert model.training
    with torch.no_grad():
        logits, _ = model.eval()(x, y)
    nats = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction="sum").item()
    n_tok, n_bytes = y.numel(), int(token_bytes[y].sum())
    assert sums.dtype == torch.float64
    assert sums.tolist() == pytest.approx([nats, n_tok, n_bytes], rel=1e-5)
    m = bpb_metrics(sums)
    assert m["loss"] == pytest.approx(nats / n_tok, rel=1e-5)
    assert m["ppl"] == pytest.approx(math.exp(m["loss"]))
    assert m["bpb"] == pytest.approx(nats / (math.log(2) * n_bytes), rel=1e-5)


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 6), split=st.integers(1, 6))
def test_bpb_sums_do_not_depend_on_how_windows_are_batched(rows: int, split: int) -> None:
    model, (x, y) = tiny_model().eval(), batch(rows, seed=rows)
    token_bytes = torch.ones(V, dtype=torch.long)
    one = bpb_sums(model, [(x, y)], token_bytes)
    many = bpb_sums(
        model, [(x[i : i + split], y[i : i + split]) for i in range(0, rows, split)], token_bytes
    )
    assert many[1:].tolist() == one[1:].tolist()  # counts exactly
    assert float(many[0]) == pytest.approx(float(one[0]), rel=1e-5)
