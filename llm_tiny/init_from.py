"""train.init_from: start a new run from another run's checkpoint (fine-tuning).

The new run takes the checkpoint's weights, its tokenizer (the new corpus is encoded with it, no new one
is trained) and its model shape; the optimizer, the LR schedule, the step and the best loss start fresh.
`train.resume=true` is different: it continues the same run (same step, optimizer state and RNG).
The source may be a Hugging Face GPT-2 folder (`llm_tiny.hf_in`): a set model.block_size below its
n_positions crops its position table, as nanoGPT does; every other shape field is the folder's.

The model section is the checkpoint's. Only the fields in FREE keep the config's value: dropout is a
training choice, and `attn` picks an implementation of the same function. Every other field, and
data.vocab_size, must be left unset or set to the checkpoint's value; anything else is refused with one
line naming the field and both values, since it would not fit (or silently change) the weights.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from llm_tiny import checkpoint as ckpt_io
from llm_tiny.config import Config, DataCfg, ModelCfg, validate
from llm_tiny.errors import UserError
from llm_tiny.files import atomic_write_text

FREE = ("dropout", "attn_dropout", "attn")  # model fields a fine-tuning run may change
TOKENIZER_FILE = "tokenizer.json"  # the checkpoint's tokenizer, written into the run folder
OWN_FILES = ("ckpt_last.pt", "ckpt_best.pt")  # a run's own checkpoints, which a fresh start deletes


def _is_set(key: str, value: Any, default: Any, explicit: Collection[str] | None) -> bool:
    # without the list of keys the user wrote (a Config built in Python), a value other than the
    # default is taken as set: a value equal to the default then yields to the checkpoint's
    return key in explicit if explicit is not None else value != default


def adopt_checkpoint(
    cfg: Config,
    ck: Mapping[str, Any],
    source: str | os.PathLike[str],
    explicit: Collection[str] | None = None,
) -> Config:
    """A copy of cfg whose model section and data.vocab_size are the checkpoint's (FREE fields aside).

    `explicit` lists the keys the user set (config.read_config); None treats non-default values as set.
    A set shape field that differs from the checkpoint's is a UserError naming it and both values.
    """
    have = asdict(ckpt_io.model_config(ck, source))  # every GPTConfig field, defaults filled in
    out = copy.deepcopy(cfg)
    defaults = ModelCfg()
    for f in fields(ModelCfg):
        if f.name in FREE:
            continue
        mine, theirs = getattr(cfg.model, f.name), have[f.name]
        key = f"model.{f.name}"
        if mine != theirs and _is_set(key, mine, getattr(defaults, f.name), explicit):
            raise UserError(
                f"{key} is {mine!r} but {source} has {theirs!r}; train.init_from keeps the "
                f"checkpoint's model (only model.{', model.'.join(FREE)} may change)"
            )
        setattr(out.model, f.name, theirs)
    vocab = have["vocab_size"]
    mine_v = cfg.data.vocab_size
    if mine_v != vocab and _is_set("data.vocab_size", mine_v, DataCfg().vocab_size, explicit):
        raise UserError(
            f"data.vocab_size is {mine_v} but {source} has a {vocab}-token tokenizer; "
            "train.init_from encodes the new corpus with the checkpoint's tokenizer"
        )
    out.data.vocab_size = vocab
    validate(out)
    return out


def tokenizer_path(cfg: Config, out_dir: Path) -> str:
    """Where the run reads its (the checkpoint's) tokenizer: data.tokenizer if named, else a file in
    the run folder. Not the default cache name: a tokenizer trained on the new corpus may sit there.
    """
    return cfg.data.tokenizer or str(out_dir / TOKENIZER_FILE)


def sources(
    cfg: Config, resume: Mapping[str, Any] | None, out_dir: Path, explicit: Collection[str] | None
) -> tuple[Config, dict[str, Any] | None, Mapping[str, Any] | None, Path]:
    """(the run's config, the checkpoint whose weights start it, the checkpoint whose tokenizer
    it uses (None: it trains its own), that checkpoint's path) for any run: fresh, resumed
    (`resume`, its own ckpt_last.pt) or train.init_from.

    With train.init_from the config gets the source's model section, and data.tokenizer names
    where the run keeps a copy of the source's tokenizer (tokenizer_path). When resuming, the source
    is the run's own checkpoint and train.init_from is not read at all: no weights to start from."""
    last = out_dir / OWN_FILES[0]
    if cfg.train.init_from is None:
        return cfg, None, resume, last
    if resume is None:
        own = {(out_dir / name).resolve() for name in OWN_FILES}
        if Path(cfg.train.init_from).resolve() in own:  # a fresh start would delete it
            raise UserError(
                f"train.init_from={cfg.train.init_from} is this run's own checkpoint: continue the "
                "run with train.resume=true, or start the new one in another train.out_dir"
            )
        bs = cfg.model.block_size  # a model folder's context may be cut to a set block_size
        cut = _is_set("model.block_size", bs, ModelCfg().block_size, explicit)
        src: Mapping[str, Any] = ckpt_io.load_any(cfg.train.init_from, bs if cut else None)
        src_path = Path(cfg.train.init_from)
    else:
        src, src_path = resume, last
    out = adopt_checkpoint(cfg, src, src_path, explicit)
    out.data.tokenizer = tokenizer_path(cfg, out_dir)
    return out, (dict(src) if resume is None else None), src, src_path


def save_tokenizer_copy(cfg: Config, src: Mapping[str, Any]) -> None:
    """Rank 0 of a train.init_from run: the source's tokenizer as a file at data.tokenizer, for the
    user, unless one is there already (the run itself was handed the tokenizer, not this file)."""
    path = Path(cfg.data.tokenizer or TOKENIZER_FILE)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, src["tokenizer"])


def load_start_weights(
    model: torch.nn.Module,
    init: Mapping[str, Any] | None,
    src_path: Path,
    log: Callable[[str], None],
) -> None:
    """Put the source checkpoint's weights into a new run's model (nothing when init is None)."""
    if init is None:
        return
    ckpt_io.load_weights(model, init["model"], src_path)
    log(
        f"initialized from {src_path} (trained {init['step']} steps); optimizer, "
        "schedule and step start fresh"
    )
