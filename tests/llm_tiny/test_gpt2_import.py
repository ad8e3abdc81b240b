"""GPT-2 folders in: our logits and greedy tokens equal transformers' GPT2LMHeadModel on the same folder.

The folders are GPT-2-shaped models with random weights (every weight, biases and norms too) that
transformers itself writes; no tokenizer is involved here, only the weights and the config.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from checks import random_gpt2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_tiny import checkpoint as ckpt_io
from llm_tiny import hf_in
from llm_tiny.errors import UserError
from model.gpt import GPTConfig, TinyGPT

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

V, N_POS = 97, 32
SHAPE = dict(vocab_size=V, n_positions=N_POS, n_embd=32, n_layer=2, n_head=4)


def make_gpt2(folder: Path, seed: int = 0, **conf: Any) -> Any:
    """A random GPT-2-shaped model saved (save_pretrained) to folder; returned in eval mode."""
    return random_gpt2(
        folder, seed, **(SHAPE | dict(bos_token_id=V - 1, eos_token_id=V - 1) | conf)
    )


def ours(folder: Path, block_size: int | None = None) -> TinyGPT:
    """Our model of the folder, built the way every checkpoint is."""
    cfg, sd = hf_in.read_model(folder, block_size)
    return ckpt_io.build_model({"model": sd, "model_config": asdict(cfg)}, folder)


def max_diff(hf: Any, m: TinyGPT, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((hf(x).logits - m(x)[0]).abs().max())


def sequences(T: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(V, shape, generator=g) for shape in ((3, T), (1, 1), (2, T // 2 + 1))]


VARIANTS = [
    pytest.param({}, id="gpt2"),  # tied head, gelu_new: what openai-community/gpt2 is
    pytest.param(dict(n_layer=1), id="distilgpt2-shaped"),  # the family: fewer layers, same parts
    pytest.param(dict(tie_word_embeddings=False), id="untied"),
    pytest.param(dict(activation_function="gelu"), id="exact-gelu"),
    pytest.param(dict(activation_function="gelu_pytorch_tanh", n_inner=128), id="torch-tanh"),
]


@pytest.mark.parametrize("conf", VARIANTS)
def test_logits_and_greedy_tokens_equal_transformers(tmp_path: Path, conf: dict[str, Any]) -> None:
    hf = make_gpt2(tmp_path, **conf)
    m = ours(tmp_path)
    assert m.cfg.block_size == N_POS and m.cfg.bias and not m.cfg.rope
    assert m.cfg.tie_weights == conf.get("tie_word_embeddings", True)
    for x in sequences(N_POS):  # up to the whole context
        assert max_diff(hf, m, x) <= 1e-4
    prompt = torch.randint(V - 1, (2, 3), generator=torch.Generator().manual_seed(2))
    n = N_POS - prompt.size(1)
    mine = m.generate(prompt, n, top_k=1).tolist()
    theirs = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False
    ).tolist()
    for a, b in zip(mine, theirs, strict=True):
        stop = b.index(V - 1) + 1 if V - 1 in b[prompt.size(1) :] else len(b)  # HF stops at EOT
        assert a[:stop] == b[:stop] and stop > prompt.size(1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, TinyGPT]:
    folder = tmp_path_factory.mktemp("gpt2")
    return make_gpt2(folder, seed=3), ours(folder)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(0, V - 1), min_size=1, max_size=N_POS))
def test_any_sequence_up_to_the_context_gives_the_same_logits(
    pair: tuple[Any, TinyGPT], ids: list[int]
) -> None:
    hf, m = pair
    assert max_diff(hf, m, torch.tensor([ids])) <= 1e-4


def test_smaller_block_size_crops_the_position_table(tmp_path: Path) -> None:
    hf = make_gpt2(tmp_path)
    m = ours(tmp_path, block_size=8)
    assert m.cfg.block_size == 8 and m.pos_emb is not None and m.pos_emb.weight.shape == (8, 32)
    assert torch.equal(m.pos_emb.weight, hf.transformer.wpe.weight[:8])
    assert max_diff(hf, m, sequences(8)[0]) <= 1e-4  # the first 8 positions are GPT-2's
    with pytest.raises(UserError, match=r"model.block_size=33 .*n_positions=32.*never grown"):
        hf_in.read_model(tmp_path, block_size=33)


def test_hub_layout_without_prefix_with_mask_buffers_loads(tmp_path: Path) -> None:
    """openai-community/gpt2's file: names without `transformer.`, old causal-mask buffers, no head."""
    hf = make_gpt2(tmp_path / "made")
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "config.json").write_text((tmp_path / "made" / "config.json").read_text())
    sd = {
        k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if "lm_head" not in k
    }
    for i in range(2):
        sd[f"h.{i}.attn.bias"] = torch.ones(1, 1, N_POS, N_POS).tril()
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    safetensors_torch.save_file({k: v.contiguous() for k, v in sd.items()}, hub / hf_in.WEIGHTS)
    assert max_diff(hf, ours(hub), sequences(N_POS)[0]) <= 1e-4


def test_pickle_weights_are_read_weights_only(tmp_path: Path) -> None:
    hf = make_gpt2(tmp_path)
    (tmp_path / hf_in.WEIGHTS).unlink()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    assert max_diff(hf, ours(tmp_path), sequences(N_POS)[0]) <= 1e-4
    torch.save({"x": Path("not a tensor")}, tmp_path / "pytorch_model.bin")  # code-bearing pickle
    with pytest.raises(UserError, match=r"pytorch_model.bin refused: .*save_pretrained"):
        hf_in.read_model(tmp_path)


def edit_config(folder: Path, **changes: Any) -> None:
    conf = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(conf | changes))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(model_type="llama"), r"a 'llama' model .*supported: gpt2, gpt_neox"),
        (dict(scale_attn_by_inverse_layer_idx=True), r"scale_attn_by_inverse_layer_idx=True"),
        (dict(reorder_and_upcast_attn=True), r"reorder_and_upcast_attn=True cannot be"),
        (dict(activation_function="relu"), r"activation_function='relu' .*gelu_new"),
        (dict(n_inner=100), r"n_inner=100 .*4 x 32"),
        (dict(layer_norm_epsilon=1e-6), r"layer_norm_epsilon=1e-06"),
        (dict(scale_attn_weights=False), r"scale_attn_weights=False"),
        (dict(vocab_size=98), r"vocab_size 98 but the token embedding has 97 rows"),
        (dict(n_layer=3), r"the weights lack h.2.ln_1.weight"),
        (dict(n_head=5), r"n_embd \(32\) must be divisible by n_head \(5\)"),
        (dict(n_embd="32"), r"n_embd must be a positive int, got '32'"),
    ],
)
def test_what_tinygpt_cannot_compute_is_refused_in_one_line(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    make_gpt2(tmp_path)
    edit_config(tmp_path, **changes)
    with pytest.raises(UserError, match=message) as e:
        hf_in.read_model(tmp_path)
    assert "\n" not in str(e.value)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="has no config.json"):
        hf_in.read_model(tmp_path)
    make_gpt2(tmp_path)
    (tmp_path / hf_in.WEIGHTS).unlink()
    with pytest.raises(UserError, match=r"has no weights: model.safetensors not found"):
        hf_in.read_model(tmp_path)


def test_a_tied_head_that_differs_from_the_embedding_is_refused(tmp_path: Path) -> None:
    hf = make_gpt2(tmp_path)
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    safetensors_torch.save_file(sd, tmp_path / hf_in.WEIGHTS)
    with pytest.raises(UserError, match="tie_word_embeddings is true but lm_head differs"):
        hf_in.read_model(tmp_path)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(
            dict(rope=False, bias=True, activation="gelu_tanh", tie_weights=True), id="gpt2"
        ),
        pytest.param(dict(rope=True, activation="relu2"), id="neox"),
        pytest.param(dict(rope=True, bias=True, tie_weights=True), id="neox-bias-tied"),
    ],
)
def test_our_exported_folders_load_back_as_the_same_model(
    tmp_path: Path, model: dict[str, Any]
) -> None:
    from llm_tiny.export import hf_model

    cfg = GPTConfig(V, block_size=N_POS, n_layer=2, n_head=4, n_embd=32, **model)
    torch.manual_seed(0)
    m = TinyGPT(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    hf_model(m, None).save_pretrained(tmp_path)
    back = ours(tmp_path)
    assert back.cfg == cfg
    a, b = m.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_full_124m_shape_gives_transformers_logits_over_the_whole_context(
    tmp_path: Path,
) -> None:
    """openai-community/gpt2's own config (12 x 768, 1,024 positions, 50,257 tokens), random weights."""
    hf = random_gpt2(tmp_path, std=0.02)  # GPT2Config's defaults: the 124M model; GPT-2's init std
    m = ours(tmp_path)
    assert (m.cfg.n_layer, m.cfg.n_embd, m.cfg.block_size, m.cfg.vocab_size) == (
        12,
        768,
        1024,
        50257,
    )
    assert m.num_params() == sum(p.numel() for p in hf.parameters()) == 124_439_808
    x = torch.randint(50257, (1, 1024), generator=torch.Generator().manual_seed(0))
    assert max_diff(hf, m, x) <= 1e-4
    prompt = x[:, :8]
    theirs = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False
    )
    assert m.generate(prompt, 8, top_k=1).tolist() == theirs.tolist()


KEYS = [
    "n_embd",
    "n_layer",
    "n_head",
    "n_positions",
    "vocab_size",
    "n_inner",
    "activation_function",
]
KEYS += ["layer_norm_epsilon", "resid_pdrop", "attn_pdrop", "tie_word_embeddings", "model_type"]
KEYS += ["scale_attn_weights", "reorder_and_upcast_attn", "scale_attn_by_inverse_layer_idx"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 200),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["gpt2", "gpt_neox", "gelu", "relu2"]),
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A GPT-2 folder and its config.json, for tests that rewrite only the config."""
    folder = tmp_path_factory.mktemp("hostile")
    make_gpt2(folder)
    return folder, json.loads((folder / "config.json").read_text())


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1, max_size=3))
def test_any_config_json_loads_or_fails_as_one_user_error(
    base: tuple[Path, dict[str, Any]], changes: dict[str, Any]
) -> None:
    folder, conf = base
    (folder / "config.json").write_text(json.dumps(conf | changes))
    try:
        ours(folder)
    except UserError as e:
        assert "\n" not in str(e)
