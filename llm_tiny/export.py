"""Export a checkpoint as a Hugging Face transformers folder that loads with no custom code.

    python -m llm_tiny.export --ckpt runs/tiny/ckpt_best.pt --out runs/tiny/hf

Learned positions become GPT-2 (`GPT2LMHeadModel`: its Conv1D layers hold (in, out) matrices, so every
Linear weight is transposed), rotary ones GPT-NeoX (`GPTNeoXForCausalLM`, sequential residual, rotary
on the whole head: our rotation pairs (x[i], x[i + d/2]) as NeoX's rotate_half does, with the same base;
NeoX packs q, k, v per head, so the fused qkv rows are regrouped). Where ours has no bias, HF's is zero.
The tokenizer becomes an HF `tokenizers` byte-level BPE with the same ids: our byte b is GPT-2's
stand-in character for b, each merge the pair of its two sides' strings, special tokens added tokens
with our ids. A switch with no exact HF equivalent (model.qk_norm) is refused, never exported as a
different model; the folder is checked (logits and token ids) before it is written.
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from llm_tiny import checkpoint as ckpt_io
from llm_tiny.errors import ArgumentParser, RunError, UserError, cli, one_line
from model.gpt import ROPE_BASE, GPTConfig, TinyGPT
from tok.bpe import Tokenizer
from tok.gpt2 import byte_chars

INSTALL = 'python -m pip install "transformers>=5.0" "safetensors>=0.4"'
EOT = "<|endoftext|>"
SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token")  # all <|endoftext|>, as in GPT-2
TOLERANCE = 1e-4  # largest |logit difference| the check accepts (fp32)
# text the tokenizer check encodes both ways: letters, digits, contractions, CJK, emoji, whitespace
PROBE = "Hello, world! It's 2024: 3.14159\r\n\tdon't  stop   \u65e5\u672c \U0001f600\x00\nline\n\n"


# our modules in a Block -> theirs in an HF layer; the final LayerNorm by rope
GPT2_NAMES = {"ln1": "ln_1", "ln2": "ln_2", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj"}
GPT2_NAMES |= {"mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj"}
NEOX_NAMES = {"ln1": "input_layernorm", "ln2": "post_attention_layernorm"}
NEOX_NAMES |= {"attn.qkv": "attention.query_key_value", "attn.proj": "attention.dense"}
NEOX_NAMES |= {"mlp.fc": "mlp.dense_h_to_4h", "mlp.proj": "mlp.dense_4h_to_h"}
FINAL_NORM = {False: "ln_f", True: "final_layer_norm"}
ROTARY = {"rope_type": "default", "rope_theta": ROPE_BASE, "partial_rotary_factor": 1.0}


def refusal(cfg: GPTConfig) -> str | None:
    """Why this model has no faithful transformers equivalent, or None if it has one."""
    if cfg.qk_norm:
        return (
            "model.qk_norm=true has no equivalent in GPT-2 or GPT-NeoX (per-head RMS-norm of q, k)"
        )
    return None


def tokenizer_json(tok: Tokenizer) -> dict[str, Any]:
    """The HF `tokenizers` JSON of our tokenizer, with the same ids (UserError if none can be)."""
    chars = byte_chars()
    names = {i: "".join(chars[b] for b in bs) for i, bs in tok.vocab.items()}
    vocab: dict[str, int] = {}
    for i, name in names.items():
        if name in vocab:
            raise UserError(
                f"tokens {vocab[name]} and {i} have the same bytes; HF BPE has one id each"
            )
        vocab[name] = i
    for text, i in tok.special_tokens.items():  # in the model's vocab too, or HF renumbers them
        if text in vocab:
            raise UserError(f"special token {text!r} has the same text as token {vocab[text]}")
        vocab[text] = i
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False}
    byte_level["use_regex"] = False  # bytes -> characters only: the Split before it pre-splits
    split = {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated"}
    pre: list[dict[str, Any]] = [split | {"invert": False}] if tok.pattern else []
    added = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
    return {
        "version": "1.0",
        **dict.fromkeys(("truncation", "padding", "normalizer", "post_processor")),
        "added_tokens": [
            {"id": i, "content": text, **added, "special": True}
            for text, i in sorted(tok.special_tokens.items(), key=lambda item: item[1])
        ],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [*pre, byte_level]},
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            **dict.fromkeys(("dropout", "unk_token", "continuing_subword_prefix")),
            "end_of_word_suffix": None,
            **dict.fromkeys(("fuse_unk", "byte_fallback", "ignore_merges"), False),
            "vocab": vocab,
            "merges": [[names[a], names[b]] for a, b in tok.merges],
        },
    }


def tokenizer_config(tok: Tokenizer, block_size: int) -> dict[str, Any]:
    """tokenizer_config.json: a plain fast tokenizer, nothing added around the ids, spaces kept."""
    cfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
    cfg |= {"clean_up_tokenization_spaces": False, "model_max_length": block_size}
    cfg |= {"add_bos_token": False, "add_eos_token": False}
    if EOT in tok.special_tokens:
        cfg |= dict.fromkeys(SPECIAL_KEYS, EOT)
    return cfg


def _transformers() -> Any:
    try:
        import safetensors  # noqa: F401
        import transformers
    except ImportError:
        raise UserError(f"export needs transformers and safetensors: {INSTALL}") from None
    transformers.utils.logging.disable_progress_bar()  # one line of output, no bars or notices
    transformers.utils.logging.set_verbosity_error()
    return transformers


def hf_model(model: TinyGPT, eos: int | None) -> Any:
    """The transformers model (GPT-2 or GPT-NeoX) that computes exactly what `model` does."""
    tf, cfg = _transformers(), model.cfg
    C, H, L = cfg.n_embd, cfg.n_head, cfg.n_layer
    shared: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size, bos_token_id=eos, eos_token_id=eos, pad_token_id=None
    )
    shared |= dict(tie_word_embeddings=cfg.tie_weights, use_cache=True)
    attn_p = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
    act = "relu2" if cfg.activation == "relu2" else "gelu"  # "gelu" is torch's exact (erf) GELU
    kw: dict[str, Any]
    if cfg.rope:  # eps: torch's LayerNorm default, as ours; rotary on all of each head
        kw = dict(
            hidden_size=C, num_hidden_layers=L, num_attention_heads=H, intermediate_size=4 * C
        )
        kw |= dict(hidden_act=act, attention_dropout=attn_p, hidden_dropout=cfg.dropout)
        kw |= dict(max_position_embeddings=cfg.block_size, layer_norm_eps=1e-5)
        kw |= dict(use_parallel_residual=False, attention_bias=cfg.bias)
        hf = tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(rope_parameters=dict(ROTARY), **kw, **shared))
        base, blocks, names = hf.gpt_neox, hf.gpt_neox.layers, NEOX_NAMES
    else:
        kw = dict(n_embd=C, n_layer=L, n_head=H, n_inner=4 * C, n_positions=cfg.block_size)
        kw |= dict(activation_function=act, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout)
        kw |= dict(attn_pdrop=attn_p, layer_norm_epsilon=1e-5, scale_attn_weights=True)
        hf = tf.GPT2LMHeadModel(tf.GPT2Config(**kw, **shared))
        base, blocks, names = hf.transformer, hf.transformer.h, GPT2_NAMES
        base.wpe.weight.data.copy_(model.pos_emb.weight)  # type: ignore[union-attr]
    hf.eval()
    hd = C // H

    def put(dst: Any, src: Any, fused: bool = False) -> None:
        """Copy src's weight (and bias, or zeros) into dst, in dst's layout."""
        for w, to in ((src.weight, dst.weight), (src.bias, dst.bias)):
            if to is None:
                continue
            if w is None:  # ours has no bias here: HF's is zero
                w = torch.zeros(to.shape)
            if fused and cfg.rope:  # rows q (all heads), k, v -> per head: q_h, k_h, v_h
                w = w.reshape(3, H, hd, *w.shape[1:]).transpose(0, 1).reshape(w.shape)
            if w.dim() == 2 and not cfg.rope:  # GPT-2's Conv1D holds (in, out)
                w = w.t()
            to.data.copy_(w)

    with torch.no_grad():
        hf.get_input_embeddings().weight.copy_(model.tok_emb.weight)
        for blk, ours in zip(blocks, model.blocks, strict=True):
            for mine, theirs in names.items():
                put(blk.get_submodule(theirs), ours.get_submodule(mine), mine == "attn.qkv")
        put(base.get_submodule(FINAL_NORM[cfg.rope]), model.ln_f)
        if not cfg.tie_weights:
            hf.get_output_embeddings().weight.copy_(model.lm_head.weight)
    return hf


def val_bpb(ckpt_path: Path, best: float | None, step: int) -> float | None:
    """The val bpb logged (log.csv beside the checkpoint) with the checkpoint's best val loss."""
    log = ckpt_path.parent / "log.csv"
    if best is None or not log.is_file():
        return None
    with log.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in reversed(rows):  # the training log writes floats as %.6g
        logged, at = row.get("val_loss"), row.get("step") or ""
        if logged == f"{best:.6g}" and row.get("val_bpb") and at.isdigit() and int(at) <= step:
            return float(row["val_bpb"])
    return None


def model_card(
    ck: dict[str, Any], ckpt_path: Path, out: Path, arch: str, n_params: int, cmd: str
) -> str:
    """README.md for the folder: where the model comes from, what it saw, how well it did."""
    cfg, run = ck["model_config"], ck["config"]
    batch, step = run.get("train", {}).get("batch_size"), ck["step"]
    lines = [
        "---",
        "library_name: transformers",
        "tags: [llm-tiny]",
        "---",
        f"# {ckpt_path.parent.name or 'llm-tiny'} ({arch})",
        "",
        f"A {n_params:,}-parameter causal language model trained with llm-tiny and exported from "
        f"`{ckpt_path}` (step {step}) by `{cmd}`. It loads with `transformers` alone (no remote code).",
        "",
        f"- corpus: `{run.get('data', {}).get('path', 'unknown')}`",
    ]
    if isinstance(batch, int):
        seen = step * batch * cfg["block_size"]
        lines.append(
            f"- tokens seen: {seen:,} (step {step} x batch {batch} x block {cfg['block_size']}: "
            "the windows trained on, counted from the config, not measured)"
        )
    best = ck["best_val_loss"]
    if best is not None:
        bpb = val_bpb(ckpt_path, best, step)
        extra = f", {bpb:.4f} bits per byte (the run's log.csv)" if bpb is not None else ""
        lines.append(f"- best validation loss: {best:.4f} nats per token{extra}")
    shape = f"{cfg['n_layer']} layers, {cfg['n_head']} heads, width {cfg['n_embd']}"
    lines += [
        f"- shape: {shape}, context {cfg['block_size']} tokens (it never saw a longer one), "
        f"vocabulary {cfg['vocab_size']} (byte-level BPE)",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"tok = AutoTokenizer.from_pretrained({str(out)!r})",
        f"model = AutoModelForCausalLM.from_pretrained({str(out)!r})",
        'ids = tok("Hello", return_tensors="pt").input_ids',
        "print(tok.decode(model.generate(ids, max_new_tokens=50, do_sample=True)[0]))",
        "```",
        "",
    ]
    return "\n".join(lines)


def same_ids(encode: Any, decode: Any, tok: Tokenizer) -> bool:
    """Whether HF's encode/decode give our ids and text on PROBE and every special token."""
    text = PROBE + "".join(tok.special_tokens)
    ids = tok.encode(text, allowed_special="all")
    return bool(encode(text) == ids and decode(ids) == tok.decode(ids))


def check_tokenizer(tok: Tokenizer, tok_json: dict[str, Any]) -> None:
    """UserError unless HF `tokenizers` reads our split pattern and splits PROBE as we do."""
    import tokenizers  # transformers' own dependency

    try:
        hf = tokenizers.Tokenizer.from_str(json.dumps(tok_json))
    except Exception as e:  # Oniguruma's message, e.g. "undefined group option"
        raise UserError(f"HF tokenizers cannot read the split pattern: {one_line(e)}") from None
    if not same_ids(lambda t: hf.encode(t).ids, lambda i: hf.decode(i, False), tok):
        raise UserError(
            f"HF tokenizers (Oniguruma) splits text differently with the pattern {tok.pattern!r}"
        )


def check_folder(folder: Path, model: TinyGPT, tok: Tokenizer, vocab: dict[str, int]) -> None:
    """Load the folder as a user would; RunError unless its ids and logits are ours."""
    tf = _transformers()
    hf_tok = tf.AutoTokenizer.from_pretrained(folder)
    if hf_tok.get_vocab() != vocab or not same_ids(hf_tok.encode, hf_tok.decode, tok):
        raise RunError("the exported tokenizer's ids differ from ours (a bug: please report it)")
    hf = tf.AutoModelForCausalLM.from_pretrained(folder).eval()
    T = min(model.cfg.block_size, 64)
    x = torch.randint(model.cfg.vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((hf(x).logits - model(x)[0]).abs().max())
    if not diff <= TOLERANCE:
        raise RunError(f"the exported model's logits differ from ours by {diff:.2g} (a bug)")


def export(ckpt_path: Path, out: Path, cmd: str) -> dict[str, Any]:
    """Write the HF folder for the checkpoint at ckpt_path to out, checked; returns a summary."""
    ck = ckpt_io.load_checkpoint(ckpt_path)
    cfg = ckpt_io.model_config(ck, ckpt_path)
    why = refusal(cfg)
    if why:
        raise UserError(f"cannot export {ckpt_path}: {why}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    tf = _transformers()
    tok = ckpt_io.tokenizer_of(ck, ckpt_path)
    tok_json = tokenizer_json(tok)
    check_tokenizer(tok, tok_json)
    model = ckpt_io.build_model(ck, ckpt_path).float()
    eos = tok.special_tokens.get(EOT)
    hf = hf_model(model, eos)
    hf.generation_config = tf.GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    arch, n_params = type(hf).__name__, sum(p.numel() for p in hf.parameters())
    tok_cfg = tokenizer_config(tok, cfg.block_size)
    texts = {
        "tokenizer.json": json.dumps(tok_json, ensure_ascii=False, indent=1),
        "tokenizer_config.json": json.dumps(tok_cfg, indent=2),
        "special_tokens_map.json": json.dumps(
            {k: tok_cfg[k] for k in SPECIAL_KEYS if k in tok_cfg}
        ),
        "README.md": model_card(ck, ckpt_path, out, arch, n_params, cmd),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        folder = Path(tmp)
        hf.save_pretrained(folder)
        if cfg.rope:  # the older names too: transformers 5.0 reads these, not rope_parameters
            conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            conf |= {"rope_parameters": ROTARY, "rotary_pct": 1.0, "rotary_emb_base": ROPE_BASE}
            texts["config.json"] = json.dumps(conf, indent=2, sort_keys=True)
        for name, text in texts.items():
            (folder / name).write_text(text + "\n", encoding="utf-8")
        check_folder(folder, model, tok, tok_json["model"]["vocab"])
        out.mkdir(exist_ok=True)
        files = sorted(p.name for p in folder.iterdir())
        for name in files:
            shutil.move(str(folder / name), out / name)
    return {"arch": arch, "params": n_params, "ours": model.num_params(), "files": files}


@cli
def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.export --ckpt CKPT --out DIR"""
    p = ArgumentParser(
        prog="python -m llm_tiny.export",
        description="Write a checkpoint as a Hugging Face transformers folder (config.json, "
        "model.safetensors, tokenizer.json, ...) that AutoModelForCausalLM and AutoTokenizer load "
        "with no custom code. Needs: " + INSTALL,
        epilog="example: python -m llm_tiny.export --ckpt runs/tiny/ckpt_best.pt --out runs/tiny/hf",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file")
    p.add_argument("--out", required=True, help="folder to write (created; its files replaced)")
    a = p.parse_args(argv)
    cmd = shlex.join(["python", "-m", "llm_tiny.export", "--ckpt", a.ckpt, "--out", a.out])
    r = export(Path(a.ckpt), Path(a.out), cmd)
    files, extra = ", ".join(r["files"]), r["params"] - r["ours"]
    # GPT-NeoX's layout has biases where ours has none: they are written as zeros, so the model
    # computes the same, with more parameters on paper
    why = f" ({r['ours']:,} trained + {extra:,} zero biases {r['arch']} has)" if extra else ""
    print(
        f"wrote {a.out}: {r['arch']}, {r['params']:,} parameters{why}, checked against ours ({files})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
