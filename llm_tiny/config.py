"""Experiment configuration: three dataclass sections, loaded from YAML, then dotted `key=value` overrides.

    cfg = load_config("configs/tiny.yaml", ["train.lr=3e-4", "model.rope=true"])

Every value is parsed to its field's type (bools accept true/false/1/0/yes/no/on/off, optional fields accept
none/null) and range-checked; an unknown key is a UserError that names the key it most likely meant
(`llm_tiny.suggest`), a bad value one that says what is allowed.
Relative paths are relative to the current directory (the repo root when run through `make`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from llm_tiny.errors import UserError
from llm_tiny.files import atomic_write_text
from llm_tiny.suggest import closest_keys, config_file_error, not_a_config

SECTIONS = ("model", "data", "train")
_NONE_WORDS = {"none", "null", "~", ""}
_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}
DEFAULT_TOKENIZER_BYTES = 500_000_000  # keeps preparing a corpus of any size within about 2 GB


def _f(default: Any, check: Callable[[Any], bool] | None = None, why: str = "", choices=()) -> Any:
    """A dataclass field with a range check (`why` says what is allowed) or a set of choices."""
    return field(default=default, metadata={"check": check, "why": why, "choices": tuple(choices)})


def _pos(v: Any) -> bool:
    return v >= 1


def _opt_pos(v: Any) -> bool:
    return v is None or v > 0


@dataclass
class ModelCfg:
    """The model's shape; mirrors model.gpt.GPTConfig except vocab_size, which the tokenizer sets."""

    block_size: int = _f(64, _pos, ">= 1")
    n_layer: int = _f(4, _pos, ">= 1")
    n_head: int = _f(4, _pos, ">= 1")
    n_embd: int = _f(128, _pos, ">= 1")
    dropout: float = _f(0.0, lambda v: 0 <= v < 1, "in [0, 1)")
    # dropout on attention weights; none: the same as dropout
    attn_dropout: float | None = _f(None, lambda v: v is None or 0 <= v < 1, "in [0, 1) or none")
    bias: bool = False
    rope: bool = False
    tie_weights: bool = False
    attn: str = _f("auto", choices=("auto", "sdpa", "naive"))
    qk_norm: bool = False  # RMS-normalised q and k per head
    activation: str = _f("gelu", choices=("gelu", "gelu_tanh", "relu2"))
    zero_init: bool = False  # attention and MLP output projections start at zero


@dataclass
class DataCfg:
    """The corpus, its tokenizer and the train/validation split."""

    path: str = "data/tiny.txt"
    # Tokenizer JSON file, trained on the training split if missing. None: a file in cache_dir
    # named by the corpus, vocab_size and pattern, so changing any of them trains a new one.
    tokenizer: str | None = None
    vocab_size: int = _f(512, lambda v: v >= 256, ">= 256 (the 256 single bytes come first)")
    pattern: str = "gpt4"  # pre-split regex: "gpt4", "gpt2", "none" or a regex of your own
    val_frac: float = _f(0.1, lambda v: 0 < v < 1, "in (0, 1)")
    cache_dir: str = "runs/cache"  # token caches (.bin) and default tokenizers
    # the record field that holds a JSON Lines document's text
    text_field: str = _f("text", lambda v: bool(v), "a non-empty field name")
    # processes that count chunks and encode text; none: every core this process may use
    workers: int | None = _f(None, _opt_pos, ">= 1 or none")
    # the tokenizer learns from at most this many bytes of the training split, spread evenly over
    # it (none: all of it); memory for training follows the distinct chunks in what it reads
    tokenizer_max_bytes: int | None = _f(DEFAULT_TOKENIZER_BYTES, _opt_pos, ">= 1 or none")
    # a file that is not UTF-8 (or a JSONL file with a broken line): error, or skip it and say so
    on_bad_file: str = _f("error", choices=("error", "skip"))


@dataclass
class TrainCfg:
    """Optimisation, evaluation, checkpointing and the machine to run on."""

    out_dir: str | None = None  # run folder; None: runs/<config file stem>
    seed: int = 1337
    device: str = "auto"  # auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps
    batch_size: int = _f(32, _pos, ">= 1")  # sequences per optimizer step, over all processes
    grad_accum: int = _f(1, _pos, ">= 1")  # micro-steps each process splits its share into
    max_steps: int = _f(1000, _pos, ">= 1")
    lr: float = _f(1e-3, lambda v: 0 < v < math.inf, "> 0")
    min_lr: float = _f(1e-4, lambda v: 0 <= v < math.inf, ">= 0")
    warmup_steps: int = _f(100, lambda v: v >= 0, ">= 0")
    # after warmup: cosine to min_lr, or wsd (warmup-stable-decay): lr held, then a linear decay to
    # min_lr over the last decay_frac of the steps
    schedule: str = _f("cosine", choices=("cosine", "wsd"))
    decay_frac: float = _f(0.3, lambda v: 0 < v <= 1, "in (0, 1]")
    weight_decay: float = _f(0.1, lambda v: 0 <= v < math.inf, ">= 0")
    beta1: float = _f(0.9, lambda v: 0 <= v < 1, "in [0, 1)")
    beta2: float = _f(0.95, lambda v: 0 <= v < 1, "in [0, 1)")
    grad_clip: float = _f(1.0, lambda v: 0 <= v < math.inf, ">= 0 (0 turns clipping off)")
    eval_interval: int = _f(100, _pos, ">= 1")
    eval_batches: int = _f(10, _pos, ">= 1")  # fixed validation windows: eval_batches x batch_size
    log_interval: int = _f(10, _pos, ">= 1")
    # optimizer: adamw everywhere, or muon: Muon (orthogonalized momentum) for the hidden matrices at
    # peak rate muon_lr (scheduled like lr), AdamW for embeddings, norms and biases
    optimizer: str = _f("adamw", choices=("adamw", "muon"))
    muon_lr: float = _f(0.02, lambda v: 0 < v < math.inf, "> 0")
    # auto: bf16 on GPUs that have it (else fp16), bf16 on CPUs with native bf16, else fp32 (off)
    amp: str = _f("auto", choices=("auto", "bf16", "fp16", "off"))
    compile: bool = False
    resume: bool = False  # continue this run from out_dir/ckpt_last.pt: same step, optimizer, RNG
    # start over in an out_dir that holds a run's checkpoints, deleting them; without it (and without
    # resume) such a folder is refused, so re-running a stopped command never loses the run
    overwrite: bool = False
    # a checkpoint to start a new run from (fine-tuning): its weights, tokenizer and model shape;
    # optimizer, schedule and step start fresh. With resume=true, an existing ckpt_last.pt wins
    init_from: str | None = None
    time_budget_s: float | None = _f(None, _opt_pos, "> 0 or none")
    threads: int | None = _f(None, _opt_pos, ">= 1 or none")  # torch CPU threads; none: torch's
    progress: bool = True  # tqdm bar (also off when stderr is not a terminal)


@dataclass
class Config:
    """A whole experiment: model, data and train sections."""

    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (YAML- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> Config:
        """Build and validate a Config from a nested mapping; unknown keys are a UserError."""
        cfg = cls()
        if not isinstance(d, Mapping):
            raise UserError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}")
        for sec, values in d.items():
            if sec not in SECTIONS:
                raise UserError(f"{source}: unknown section {sec!r}; valid: {', '.join(SECTIONS)}")
            if values is None:
                continue
            if not isinstance(values, Mapping):
                raise UserError(f"{source}: section {sec!r} must be a mapping of key: value")
            for k, v in values.items():
                set_key(cfg, f"{sec}.{k}", v, source=source)
        validate(cfg)
        return cfg


def valid_keys(section: str | None = None) -> list[str]:
    """Every dotted key (optionally only one section's), in declaration order."""
    cfg = Config()
    secs = SECTIONS if section is None else (section,)
    return [f"{s}.{f.name}" for s in secs for f in fields(getattr(cfg, s))]


def _unknown_key(key: str, source: str) -> UserError:
    close = closest_keys(key, valid_keys())
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return UserError(
        f"{source}: unknown config key {key!r}{hint}; "
        "`python -m llm_tiny.train --print-config` lists every key"
    )


def set_key(cfg: Config, key: str, value: object, source: str = "override") -> None:
    """Set one dotted key, parsing `value` (a YAML value or a command-line string) to the field's type."""
    sec, _, name = key.partition(".")
    if sec not in SECTIONS or not name:
        raise _unknown_key(key, source)
    obj = getattr(cfg, sec)
    hints = typing.get_type_hints(type(obj))
    if name not in hints:
        raise _unknown_key(key, source)
    fmeta = next(f.metadata for f in fields(obj) if f.name == name)
    parsed = _coerce(value, hints[name], key, source)
    bad = field_error(key, parsed, value, fmeta)
    if bad:
        raise UserError(f"{source}: {bad}")
    setattr(obj, name, parsed)


def field_error(key: str, value: Any, shown: object, fmeta: Mapping[str, Any]) -> str | None:
    """What is wrong with one field's value by its own rule (choices or range), or None; `shown`
    is the value as the user wrote it."""
    choices = fmeta.get("choices") or ()
    if choices and value not in choices:
        return f"bad value for {key}: {shown!r}; choose one of {', '.join(choices)}"
    check = fmeta.get("check")
    if check is not None and value is not None and not check(value):
        return f"bad value for {key}: {shown!r}; must be {fmeta['why']}"
    return None


def _coerce(value: object, tp: Any, key: str, source: str) -> object:
    """Parse value to type tp (int, float, bool, str or Optional of one of them)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner, key, source)
    bad = UserError(f"{source}: bad value for {key}: {value!r} is not {_type_name(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise bad
    if isinstance(value, bool) or value is None:
        raise bad  # True is an int to Python, but never a number to a user
    if tp is str:
        if isinstance(value, (str, int, float)):
            return str(value)
        raise bad
    if tp is int:
        if isinstance(value, int):
            return value
        num = _number(value)
        if num is None or not math.isfinite(num) or not float(num).is_integer():
            raise bad
        return int(num)
    if tp is float:
        num = _number(value)
        if num is None or math.isnan(num):
            raise bad
        return float(num)
    raise TypeError(f"config field {key} has unsupported type {tp!r}")  # a bug here, not user input


def _number(value: object) -> float | int | None:
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        s = value.strip().replace("_", "")
        try:
            return int(s)
        except ValueError:
            pass
        try:
            return float(s)  # YAML reads 3e-4 as a string; we don't
        except ValueError:
            return None
    return None


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, str(tp)
    )


def validate(cfg: Config) -> None:
    """Cross-field checks (single-field ranges are checked as each key is set)."""
    m, t = cfg.model, cfg.train
    for sec in SECTIONS:  # defaults and values set directly on the dataclasses get checked too
        obj = getattr(cfg, sec)
        for f in fields(obj):
            v = getattr(obj, f.name)
            bad = field_error(f"{sec}.{f.name}", v, v, f.metadata)
            if bad:
                raise UserError(bad)
    if m.n_embd % m.n_head:
        raise UserError(f"model.n_embd ({m.n_embd}) must be divisible by model.n_head ({m.n_head})")
    if m.rope and (m.n_embd // m.n_head) % 2:
        raise UserError(
            f"model.rope needs an even head size, got n_embd/n_head = {m.n_embd // m.n_head}"
        )
    if t.min_lr > t.lr:
        raise UserError(f"train.min_lr ({t.min_lr}) must not exceed train.lr ({t.lr})")


def parse_overrides(cfg: Config, overrides: Sequence[str]) -> None:
    """Apply `section.key=value` strings in order (later ones win)."""
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"override {item!r} is not key=value (e.g. train.lr=3e-4)")
        set_key(cfg, key.strip(), value, source="override")


def split_args(config: str | None, overrides: list[str]) -> tuple[str, list[str]]:
    """(config file, overrides) from a command line whose first word may already be an override;
    the file defaults to configs/tiny.yaml."""
    if config is not None and "=" in config:  # only overrides were given
        return "configs/tiny.yaml", [config, *overrides]
    return config or "configs/tiny.yaml", overrides


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> Config:
    """Defaults, then the YAML file (if any), then overrides; out_dir defaults to runs/<file stem>."""
    return read_config(path, overrides)[0]


def read_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> tuple[Config, frozenset[str]]:
    """load_config's Config, and the dotted keys the YAML file and overrides set (train.init_from)."""
    keys = {item.partition("=")[0].strip() for item in overrides}
    if path is None:
        cfg = Config()
    else:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise UserError(config_file_error(p, e, SECTIONS)) from None
        if raw is not None and not isinstance(raw, Mapping) and p.suffix not in (".yaml", ".yml"):
            raise UserError(not_a_config(p))
        cfg = Config.from_dict(raw or {}, source=str(p))
        for sec, values in (raw or {}).items():
            keys.update(f"{sec}.{k}" for k in (values or {}))
    parse_overrides(cfg, overrides)
    validate(cfg)
    if cfg.train.out_dir is None:
        cfg.train.out_dir = str(Path("runs") / (Path(path).stem if path is not None else "default"))
    return cfg, frozenset(keys)


def dump_config(cfg: Config) -> str:
    """The config as YAML text, sections and keys in declaration order."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML, atomically (a reader never sees half a file)."""
    atomic_write_text(path, dump_config(cfg))
