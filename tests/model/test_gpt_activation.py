"""MLP activations: GPT-2's tanh GELU beside the exact one, with nothing else in the model changed."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model import GPTConfig, TinyGPT
from model.gpt import MLP

SHAPE = dict(vocab_size=40, block_size=8, n_layer=2, n_head=2, n_embd=16)


def gpt2_gelu(x: float) -> float:
    """GPT-2's own formula (its gelu_new), written out."""
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-8.0, 8.0, allow_nan=False), min_size=1, max_size=16))
def test_gelu_tanh_is_gpt2s_formula(xs: list[float]) -> None:
    act = MLP(GPTConfig(**SHAPE, activation="gelu_tanh")).act
    got = act(torch.tensor(xs, dtype=torch.float64)).tolist()
    assert got == pytest.approx([gpt2_gelu(x) for x in xs], abs=1e-12)


def test_gelu_tanh_differs_from_the_exact_gelu_but_only_in_the_activation() -> None:
    torch.manual_seed(0)
    exact = TinyGPT(GPTConfig(**SHAPE))
    torch.manual_seed(0)
    tanh = TinyGPT(GPTConfig(**SHAPE, activation="gelu_tanh"))
    a, b = exact.state_dict(), tanh.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same init
    x = torch.randint(40, (2, 8), generator=torch.Generator().manual_seed(1))
    diff = float((exact(x)[0] - tanh(x)[0]).abs().max())
    assert 0 < diff < 1e-2  # the approximations differ by at most ~1e-3 per unit


def test_default_activation_is_the_exact_gelu() -> None:
    assert GPTConfig(**SHAPE).activation == "gelu"
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    got = MLP(GPTConfig(**SHAPE)).act(x)
    assert torch.allclose(got, 0.5 * x * (1 + torch.erf(x / math.sqrt(2))), atol=1e-12)


def test_unknown_activation_names_the_choices() -> None:
    with pytest.raises(ValueError, match="gelu_tanh"):
        GPTConfig(**SHAPE, activation="gelu_new")
