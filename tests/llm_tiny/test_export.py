"""Export to Hugging Face transformers: the folder loads with no custom code and computes what we do."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_tiny import checkpoint as ck
from llm_tiny.export import main as export_main
from llm_tiny.train import main as train_main
from model.gpt import GPTConfig, TinyGPT
from tok.bpe import GPT2_PATTERN, Tokenizer

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

EOT = "<|endoftext|>"
# text with many scripts, so merges of multi-byte characters exist too
WORLD = "日本語のテキスト、中文文本。 😀😀 🎉 naïve café — ĳ ſ Ελληνικά Кириллица \r\n\t  x\x00\x1f\x7f "


@pytest.fixture(scope="module")
def tok(corpus_text: str) -> Tokenizer:
    """A 400-id tokenizer with <|endoftext|> (the last id), trained on English and a few scripts."""
    return Tokenizer.train(corpus_text[:6000] + WORLD * 20, 400, special_tokens=[EOT])


def write_ckpt(path: Path, tok: Tokenizer, seed: int = 0, **model: Any) -> TinyGPT:
    """A checkpoint of a tiny TinyGPT whose every weight (biases and norms too) is random and large."""
    cfg = GPTConfig(tok.vocab_size, block_size=24, n_layer=2, n_head=4, n_embd=32, **model)
    torch.manual_seed(seed)
    m = TinyGPT(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    state = {
        "format": ck.FORMAT,
        "version": ck.VERSION,
        "model": m.state_dict(),
        "model_config": asdict(cfg),
        "config": {"data": {"path": "corpus.txt"}, "train": {"batch_size": 8}},
        "optimizer": {},
        "scaler": {},
        "step": 7,
        "best_val_loss": 1.5,
        "rng": {},
        "train_state": {},
        "tokenizer": tok.to_json(),
        "tokenizer_fingerprint": tok.fingerprint(),
    }
    ck.save_checkpoint(state, [path])
    return m


def export(tmp_path: Path, tok: Tokenizer, **model: Any) -> tuple[TinyGPT, Path]:
    m = write_ckpt(tmp_path / "ckpt.pt", tok, **model)
    out = tmp_path / "hf"
    assert export_main(["--ckpt", str(tmp_path / "ckpt.pt"), "--out", str(out)]) == 0
    return m, out


def load(out: Path) -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(out).eval()


def max_diff(hf: Any, m: TinyGPT, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((hf(x).logits - m(x)[0]).abs().max())


ARCHS = [
    pytest.param(dict(rope=False), "GPT2LMHeadModel", id="gpt2"),
    pytest.param(dict(rope=False, tie_weights=True), "GPT2LMHeadModel", id="gpt2-tied"),
    pytest.param(
        dict(rope=False, bias=True, activation="relu2"), "GPT2LMHeadModel", id="gpt2-bias-relu2"
    ),
    pytest.param(  # GPT-2's own switches
        dict(rope=False, bias=True, tie_weights=True, activation="gelu_tanh"),
        "GPT2LMHeadModel",
        id="gpt2-shape",
    ),
    pytest.param(dict(rope=True), "GPTNeoXForCausalLM", id="neox"),
    pytest.param(dict(rope=True, activation="gelu_tanh"), "GPTNeoXForCausalLM", id="neox-tanh"),
    pytest.param(
        dict(rope=True, tie_weights=True, bias=True), "GPTNeoXForCausalLM", id="neox-tied-bias"
    ),
    pytest.param(dict(rope=True, activation="relu2"), "GPTNeoXForCausalLM", id="neox-relu2"),
]


@pytest.mark.parametrize("model, arch", ARCHS)
def test_exported_logits_and_greedy_tokens_equal_ours(
    tmp_path: Path, tok: Tokenizer, corpus_text: str, model: dict[str, Any], arch: str
) -> None:
    m, out = export(tmp_path, tok, **model)
    hf = load(out)
    assert type(hf).__name__ == arch
    T, V = m.cfg.block_size, m.cfg.vocab_size
    g = torch.Generator().manual_seed(1)
    real = torch.tensor(tok.encode(corpus_text[:2000])[: 3 * T]).view(3, T)
    for x in (torch.randint(V, (4, T), generator=g), torch.randint(V, (1, 1), generator=g), real):
        assert max_diff(hf, m, x) <= 1e-4
    assert (hf.get_output_embeddings().weight is hf.get_input_embeddings().weight) == bool(
        model.get("tie_weights")
    )
    for prompt in (real[:1, :5], torch.randint(V - 1, (2, 3), generator=g)):
        n = T - prompt.size(1)  # the whole window: HF has no window rule past block_size
        ours = m.generate(prompt, n, top_k=1)
        theirs = hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False
        )
        for a, b in zip(ours.tolist(), theirs.tolist(), strict=True):
            stop = b.index(V - 1) + 1 if V - 1 in b[prompt.size(1) :] else len(b)  # HF stops at EOT
            assert a[:stop] == b[:stop]


def test_config_and_files_say_what_the_model_is(tmp_path: Path, tok: Tokenizer) -> None:
    _, out = export(tmp_path, tok, rope=False, dropout=0.1, attn_dropout=0.2)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["activation_function"] == "gelu"  # exact erf GELU, as nn.GELU(), not gelu_new
    assert (cfg["resid_pdrop"], cfg["embd_pdrop"], cfg["attn_pdrop"]) == (0.1, 0.1, 0.2)
    assert cfg["eos_token_id"] == tok.special_tokens[EOT] == cfg["bos_token_id"]
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.special_tokens[EOT] == gen["pad_token_id"]
    assert "auto_map" not in cfg  # nothing custom: no remote code to trust
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # temp folder gone
    _, out = export(tmp_path, tok, rope=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["use_parallel_residual"] is False and cfg["layer_norm_eps"] == 1e-5
    assert cfg["rope_parameters"]["partial_rotary_factor"] == 1.0
    assert cfg["rope_parameters"]["rope_theta"] == 10000.0


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory: pytest.TempPathFactory, tok: Tokenizer) -> Any:
    tmp = tmp_path_factory.mktemp("export-tok")
    export(tmp, tok)
    return transformers.AutoTokenizer.from_pretrained(tmp / "hf")


PIECES = [
    "\r\n",
    "\n\n",
    "   ",
    " \t ",
    "日本語",
    "😀",
    "👩‍💻",
    "'s",
    "'LL",
    "\x00",
    "\x1c",
    "\x85",
]
PIECES += ["\u2028", "\u00a0", "ſ", "123456", EOT, "<|endoftext", "naïve", " 中文", "\r"]
TEXTS = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(PIECES)), max_size=12).map("".join)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXTS)
def test_exported_tokenizer_gives_our_ids_and_our_text(
    hf_tok: Any, tok: Tokenizer, text: str
) -> None:
    ids = tok.encode(text, allowed_special="all")  # HF always recognises added special tokens
    assert hf_tok.encode(text) == ids
    assert hf_tok.decode(ids) == tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.integers(0, 399), max_size=20))
def test_exported_tokenizer_decodes_any_ids_as_we_do(
    hf_tok: Any, tok: Tokenizer, ids: list[int]
) -> None:
    assert hf_tok.decode(ids) == tok.decode(ids)  # bytes that are no UTF-8: U+FFFD both ways


def test_exported_vocabulary_is_ours_id_for_id(hf_tok: Any, tok: Tokenizer) -> None:
    vocab = hf_tok.get_vocab()
    assert len(vocab) == tok.vocab_size
    assert vocab[EOT] == tok.special_tokens[EOT] and hf_tok.eos_token == EOT
    for i, b in tok.vocab.items():
        assert hf_tok.convert_tokens_to_string([hf_tok.convert_ids_to_tokens(i)]).encode(
            "utf-8", "replace"
        ) == b.decode("utf-8", "replace").encode("utf-8", "replace")
    assert hf_tok.encode(f"a{EOT}b") == [
        *tok.encode("a"),
        tok.special_tokens[EOT],
        *tok.encode("b"),
    ]


def test_special_ids_above_a_gap_and_other_patterns_keep_their_ids(
    tmp_path: Path, corpus_text: str
) -> None:
    for name, pattern in (("gpt2", GPT2_PATTERN), ("none", "")):
        tok = Tokenizer.train(corpus_text[:3000], 290, pattern=pattern, special_tokens={EOT: 299})
        out = export(tmp_path / name, tok)[1]
        hf_tok = transformers.AutoTokenizer.from_pretrained(out)
        text = f"Hello  world's\r\n{EOT}x 日本"
        assert hf_tok.encode(text) == tok.encode(text, allowed_special="all")
        assert hf_tok.convert_tokens_to_ids(EOT) == 299


def test_a_real_run_exports_with_its_card(
    tiny_args: Callable[..., list[str]],
    tmp_path: Path,
    corpus_text: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert train_main(tiny_args("train.max_steps=10", "model.n_layer=2")) == 0
    ckpt = tmp_path / "run" / "ckpt_best.pt"
    out = tmp_path / "run" / "hf"
    capsys.readouterr()
    assert export_main(["--ckpt", str(ckpt), "--out", str(out)]) == 0
    c = ck.load_checkpoint(ckpt)
    m, tok = ck.build_model(c), ck.tokenizer_of(c)
    # the count training printed, and why the folder's is larger: the layout's biases, all zero
    hf = load(out)
    zeros = sum(v.numel() for k, v in hf.state_dict().items() if k.endswith("bias") and not v.any())
    line = capsys.readouterr().out
    arch = type(hf).__name__
    assert f"({m.num_params():,} trained + {zeros:,} zero biases {arch} has)" in line
    ids = torch.tensor([tok.encode(corpus_text[-500:])[:16]])
    assert max_diff(load(out), m, ids) <= 1e-4
    card = (out / "README.md").read_text()
    assert f"tokens seen: {c['step'] * 8 * 16:,} (step {c['step']} x batch 8 x block 16" in card
    assert f"best validation loss: {c['best_val_loss']:.4f} nats per token, " in card
    assert "bits per byte" in card and f"python -m llm_tiny.export --ckpt {ckpt}" in card
    assert f"corpus: `{tmp_path / 'corpus.txt'}`" in card
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen.get("eos_token_id") is None  # one document: the tokenizer has no <|endoftext|>


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_a_model_with_no_faithful_equivalent_is_refused(
    tmp_path: Path, tok: Tokenizer, capsys: pytest.CaptureFixture[str]
) -> None:
    write_ckpt(tmp_path / "c.pt", tok, qk_norm=True)
    assert export_main(["--ckpt", str(tmp_path / "c.pt"), "--out", str(tmp_path / "hf")]) == 2
    assert "model.qk_norm" in one_error(capsys)
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize(
    "merges, specials, says",
    [  # 257 and 259 are both "abc"; a special token spelled like token 256
        ({(97, 98): 256, (256, 99): 257, (98, 99): 258, (97, 258): 259}, {}, "same bytes"),
        ({(97, 98): 256}, {"ab": 257}, "same text as token 256"),
    ],
)
def test_a_tokenizer_hf_cannot_hold_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], merges: Any, specials: Any, says: str
) -> None:
    write_ckpt(tmp_path / "c.pt", Tokenizer(merges, special_tokens=specials))
    assert export_main(["--ckpt", str(tmp_path / "c.pt"), "--out", str(tmp_path / "hf")]) == 2
    assert says in one_error(capsys)


@pytest.mark.parametrize(
    "pattern, says",
    [  # Oniguruma has no (?V1); its $ matches before any newline, Python's at the end only
        (r"(?V1)\p{L}+|[\s\S]", "cannot read the split pattern: Oniguruma error"),
        (r"[a-z]+$|[\s\S]", "splits text differently"),
    ],
)
def test_a_pattern_hf_reads_otherwise_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pattern: str, says: str
) -> None:
    write_ckpt(tmp_path / "c.pt", Tokenizer({(110, 101): 256}, pattern))  # "ne" merges
    assert export_main(["--ckpt", str(tmp_path / "c.pt"), "--out", str(tmp_path / "hf")]) == 2
    assert says in one_error(capsys)


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    tok: Tokenizer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ckpt = tmp_path / "c.pt"
    assert export_main(["--ckpt", str(ckpt), "--out", str(tmp_path / "hf")]) == 2
    assert "not found" in one_error(capsys)
    write_ckpt(ckpt, tok)
    assert export_main(["--ckpt", str(ckpt), "--out", str(ckpt)]) == 2
    assert "not a folder" in one_error(capsys)
    assert export_main(["--ckpt", str(ckpt)]) == 2
    assert "--out" in one_error(capsys)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    assert export_main(["--ckpt", str(ckpt), "--out", str(tmp_path / "hf")]) == 2
    assert 'pip install "transformers>=' in one_error(capsys)


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        export_main(["--help"])
    assert e.value.code == 0
    assert "example: python -m llm_tiny.export --ckpt" in capsys.readouterr().out
