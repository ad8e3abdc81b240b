"""Hugging Face model folders in: GPT-2 (gpt2 ... gpt2-xl, distilgpt2) and our own exports, as TinyGPT.

A folder as `hf download openai-community/gpt2 --local-dir gpt2` writes it: config.json, the weights
(model.safetensors, or its sharded index; a pickle-only pytorch_model.bin is read with torch's weights-only
unpickler, never unpickled freely) and the tokenizer files. GPT-2 is TinyGPT with bias=true, learned
positions, a tied head and the tanh GELU; its Conv1D layers hold (in, out) matrices, so every one is
transposed. GPT-NeoX folders load if they are what `llm_tiny.export` writes for rotary models (sequential
residual, rotary on the whole head, base 10000). Anything else the config asks for that TinyGPT cannot
compute exactly is refused in one line, never loaded as a different model.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from llm_tiny.errors import UserError, one_line
from model.gpt import ROPE_BASE, GPTConfig
from tok.bpe import Tokenizer, TokenizerError

SUPPORTED = ("gpt2", "gpt_neox")  # config.json model_type values this reads
# our modules in a Block -> theirs in an HF layer; the final LayerNorm by rope (export writes these too)
GPT2_NAMES = {"ln1": "ln_1", "ln2": "ln_2", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj"}
GPT2_NAMES |= {"mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj"}
NEOX_NAMES = {"ln1": "input_layernorm", "ln2": "post_attention_layernorm"}
NEOX_NAMES |= {"attn.qkv": "attention.query_key_value", "attn.proj": "attention.dense"}
NEOX_NAMES |= {"mlp.fc": "mlp.dense_h_to_4h", "mlp.proj": "mlp.dense_4h_to_h"}
FINAL_NORM = {False: "ln_f", True: "final_layer_norm"}
# HF activation names -> ours (gelu_new and gelu_fast are GPT-2's tanh formula, written two ways)
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh"}
ACTIVATIONS |= {"gelu_pytorch_tanh": "gelu_tanh", "relu2": "relu2"}
# causal masks and rotary tables that old transformers versions saved beside the weights
BUFFERS = (
    ".attn.bias",
    ".attn.masked_bias",
    ".attention.bias",
    ".attention.masked_bias",
    "inv_freq",
)
WEIGHTS = "model.safetensors"
CONVERT = (
    'python -c "import sys, transformers as t; t.AutoModelForCausalLM.from_pretrained(sys.argv[1])'
    '.save_pretrained(sys.argv[1])" DIR'
)


def is_folder(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a model folder (rather than one of our checkpoint files)."""
    return Path(path).is_dir()


def read_config(folder: Path) -> dict[str, Any]:
    """config.json as a dict; a missing or broken one is a UserError naming it."""
    p = folder / "config.json"
    if not p.is_file():
        raise UserError(f"{folder} is not a model folder: it has no config.json")
    try:
        conf = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{p} is not valid JSON: {one_line(e)}") from None
    if not isinstance(conf, dict):
        raise UserError(f"{p} is not a JSON object")
    kind = conf.get("model_type")
    if kind not in SUPPORTED:
        raise UserError(
            f"{folder} holds a {kind!r} model (config.json model_type); supported: "
            f"{', '.join(SUPPORTED)} (GPT-2 and its family; GPT-NeoX as llm_tiny.export writes it)"
        )
    return conf


def refuse(folder: Path, key: str, value: Any, want: str) -> UserError:
    """The one-line error for a config.json option TinyGPT cannot reproduce."""
    return UserError(f"{folder}/config.json: {key}={value!r} cannot be reproduced ({want})")


def gpt_config(conf: dict[str, Any], folder: Path, block_size: int | None = None) -> GPTConfig:
    """The TinyGPT config computing what config.json describes, its context cut to block_size."""
    neox = conf["model_type"] == "gpt_neox"
    names = ("hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")
    if not neox:
        names = ("n_embd", "n_layer", "n_head", "n_positions")
    shape: list[int] = []
    for k in (*names, "vocab_size"):
        v = conf.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{folder}/config.json: {k} must be a positive int, got {v!r}")
        shape.append(v)
    C, L, H, n_pos, V = shape
    act_key = "hidden_act" if neox else "activation_function"
    act = conf.get(act_key, "gelu" if neox else "gelu_new")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise refuse(folder, act_key, act, f"supported: {', '.join(ACTIVATIONS)}")
    inner_key = "intermediate_size" if neox else "n_inner"
    if conf.get(inner_key) not in (None, 4 * C):
        raise refuse(folder, inner_key, conf[inner_key], f"TinyGPT's MLP is 4 x {C} wide")
    eps_key = "layer_norm_eps" if neox else "layer_norm_epsilon"
    if conf.get(eps_key, 1e-5) != 1e-5:
        raise refuse(folder, eps_key, conf[eps_key], "TinyGPT's LayerNorm uses 1e-5")
    fixed = neox_options(conf) if neox else gpt2_options(conf)
    for key, (value, want) in fixed.items():
        if value != want:
            raise refuse(folder, key, value, f"TinyGPT computes {key}={want!r}")
    if block_size is not None and not 1 <= block_size <= n_pos:
        key = "max_position_embeddings" if neox else "n_positions"
        raise UserError(
            f"model.block_size={block_size} but {folder} has {key}={n_pos}: it may only be cut "
            "(a smaller block_size crops the position table), never grown"
        )
    drop = number(conf, "hidden_dropout" if neox else "resid_pdrop", 0.0, folder)
    attn_drop = number(conf, "attention_dropout" if neox else "attn_pdrop", drop, folder)
    kw: dict[str, Any] = dict(vocab_size=V, block_size=block_size or n_pos, n_layer=L, n_head=H)
    kw |= dict(n_embd=C, dropout=drop, attn_dropout=None if attn_drop == drop else attn_drop)
    kw |= dict(bias=flag(conf, "attention_bias", folder), rope=neox)
    kw |= dict(tie_weights=flag(conf, "tie_word_embeddings", folder), activation=ACTIVATIONS[act])
    try:
        return GPTConfig(**kw)
    except ValueError as e:
        raise UserError(f"{folder}/config.json: {one_line(e)}") from None


def number(conf: dict[str, Any], key: str, default: float, folder: Path) -> float:
    """config.json's number at key (default if absent); anything else is a UserError naming it."""
    v = conf.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UserError(f"{folder}/config.json: {key} must be a number, got {v!r}")
    return float(v)


def flag(conf: dict[str, Any], key: str, folder: Path) -> bool:
    """config.json's true/false at key (true if absent, as transformers defaults both flags read)."""
    v = conf.get(key, True)
    if not isinstance(v, bool):
        raise UserError(f"{folder}/config.json: {key} must be true or false, got {v!r}")
    return v


def gpt2_options(conf: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """GPT-2 options -> (the folder's value, the one TinyGPT computes)."""
    keys = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False}
    keys |= {"reorder_and_upcast_attn": False, "add_cross_attention": False}
    return {k: (conf.get(k, want), want) for k, want in keys.items()}


def neox_options(conf: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """GPT-NeoX options -> (the folder's value, the one TinyGPT computes)."""
    rope = conf.get("rope_parameters")
    rope = rope if isinstance(rope, dict) else {}
    pct = rope.get("partial_rotary_factor", conf.get("rotary_pct", 1.0))
    base = rope.get("rope_theta", conf.get("rotary_emb_base", ROPE_BASE))
    return {  # an int 10000 equals ROPE_BASE; a string never does
        "use_parallel_residual": (conf.get("use_parallel_residual", True), False),
        "rotary_pct": (pct, 1.0),
        "rope_theta": (base, ROPE_BASE),
        "rope_type": (rope.get("rope_type", "default"), "default"),
    }


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weights by name (safetensors; a .bin only weights-only)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = folder / f"{WEIGHTS}.index.json"
    if (folder / WEIGHTS).is_file():
        files = [folder / WEIGHTS]
    elif index.is_file():  # sharded, as large models are saved
        try:
            shards = sorted(
                set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{index} is not a weights index: {one_line(e)}") from None
        files = [folder / s for s in shards]
    elif (folder / "pytorch_model.bin").is_file():
        return read_pickle(folder / "pytorch_model.bin")
    else:
        raise UserError(f"{folder} has no weights: {WEIGHTS} not found")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise UserError(f"{f} not found (named by {index.name})")
        try:
            out |= load_file(f)
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"{f} is not a readable safetensors file: {one_line(e)}") from None
    return out


def read_pickle(path: Path) -> dict[str, torch.Tensor]:
    """A pytorch_model.bin state dict, read with weights_only=True: no code in it can run."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise UserError(
            f"{path} refused: {one_line(e)[:160]}; convert the folder to {WEIGHTS} with {CONVERT}"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{path} is not a mapping of names to tensors")
    return sd


def our_state_dict(
    hf: dict[str, torch.Tensor], cfg: GPTConfig, folder: Path
) -> dict[str, torch.Tensor]:
    """The folder's tensors under TinyGPT's names and layouts (fp32), positions cut to block_size.

    Empties `hf` as it goes, so a large model is held once plus one tensor, not twice."""
    prefix = "gpt_neox." if cfg.rope else "transformer."
    sd = {k.removeprefix(prefix): v for k, v in hf.items() if not k.endswith(BUFFERS)}
    hf.clear()
    names, layer = (NEOX_NAMES, "layers") if cfg.rope else (GPT2_NAMES, "h")
    emb, head = ("embed_in", "embed_out") if cfg.rope else ("wte", "lm_head")
    H, hd = cfg.n_head, cfg.n_embd // cfg.n_head
    out: dict[str, torch.Tensor] = {}

    def take(theirs: str, ours: str, conv1d: bool = False) -> None:
        if theirs not in sd:
            raise UserError(f"{folder}: the weights lack {theirs}")
        w = sd.pop(theirs).float()
        if ours.endswith(("qkv.weight", "qkv.bias")) and cfg.rope:  # NeoX: per head q_h, k_h, v_h
            w = w.reshape(H, 3, hd, *w.shape[1:]).transpose(0, 1).reshape(w.shape)
        out[ours] = w.t().contiguous() if conv1d and w.dim() == 2 else w

    take(f"{emb}.weight", "tok_emb.weight")
    if out["tok_emb.weight"].size(0) != cfg.vocab_size:
        raise UserError(
            f"{folder}: config.json says vocab_size {cfg.vocab_size} but the token embedding has "
            f"{out['tok_emb.weight'].size(0)} rows"
        )
    if not cfg.rope:
        take("wpe.weight", "pos_emb.weight")
        out["pos_emb.weight"] = out["pos_emb.weight"][: cfg.block_size].clone()  # nanoGPT's crop
    parts = ("weight", "bias") if cfg.bias else ("weight",)
    for i in range(cfg.n_layer):
        for mine, theirs in names.items():
            for part in parts:  # GPT-2's Conv1D holds (in, out): transposed to Linear's (out, in)
                take(f"{layer}.{i}.{theirs}.{part}", f"blocks.{i}.{mine}.{part}", not cfg.rope)
    for part in parts:
        take(f"{FINAL_NORM[cfg.rope]}.{part}", f"ln_f.{part}")
    for k in [k for k in sd if k.endswith(".bias")] if not cfg.bias else []:
        if bool(sd.pop(k).any()):  # our bias=false exports write zeros where HF needs a bias
            raise UserError(f"{folder}: {k} is not zero, but config.json says attention_bias false")
    head_w = sd.pop(f"{head}.weight", None)
    if cfg.tie_weights:
        if head_w is not None and not torch.equal(head_w.float(), out["tok_emb.weight"]):
            raise UserError(f"{folder}: tie_word_embeddings is true but {head} differs from {emb}")
        out["lm_head.weight"] = out["tok_emb.weight"]
    elif head_w is None:
        raise UserError(
            f"{folder}: tie_word_embeddings is false but the weights lack {head}.weight"
        )
    else:
        out["lm_head.weight"] = head_w.float()
    if sd:
        raise UserError(f"{folder}: weights TinyGPT has no place for: {', '.join(sorted(sd)[:3])}")
    return out


def read_model(
    path: str | os.PathLike[str], block_size: int | None = None
) -> tuple[GPTConfig, dict[str, Any]]:
    """The TinyGPT config and state dict of the model folder at path (no tokenizer read)."""
    folder = Path(path)
    cfg = gpt_config(read_config(folder), folder, block_size)
    return cfg, our_state_dict(read_weights(folder), cfg, folder)


def read_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """The folder's tokenizer (vocab.json + merges.txt, or tokenizer.json) with its own ids."""
    try:
        from tok.gpt2 import load_gpt2
    except ImportError:
        raise UserError(f"{path}: this version of tok cannot read GPT-2 tokenizer files") from None
    try:
        return load_gpt2(path)
    except (TokenizerError, OSError, ValueError) as e:
        raise UserError(f"{path}: bad tokenizer: {one_line(e)}") from None
