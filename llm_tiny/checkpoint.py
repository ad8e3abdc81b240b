"""Self-contained checkpoints: written atomically, read with `weights_only=True`, checked before use.

A checkpoint is a dict of tensors and plain Python values (see `KEYS`): the model and its config, the
resolved run config, optimizer and grad-scaler state, the step, the best validation loss, every RNG state
the run uses, the bookkeeping a bit-exact resume needs, and the tokenizer itself as JSON. `sample` and
`eval` need nothing else. Loading never unpickles code: torch's weights-only unpickler refuses it.
`load_any` also takes a Hugging Face model folder (GPT-2, or our own export; `llm_tiny.hf_in`) and
returns it as such a dict, step 0 and no run config, so every command reads both the same way.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from llm_tiny import hf_in
from llm_tiny.config import ModelCfg
from llm_tiny.errors import RunError, UserError, first_sentence, one_line
from llm_tiny.filekind import missing_hint, not_a_checkpoint, pickle_calls, run_checkpoints
from llm_tiny.files import atomic_write_bytes
from model.gpt import GPTConfig, TinyGPT
from tok.bpe import Tokenizer, TokenizerError

if TYPE_CHECKING:  # what a trainer holds; none of these modules imports this one
    from llm_tiny.budget import Budget
    from llm_tiny.config import Config
    from llm_tiny.data import Corpus
    from llm_tiny.runlog import Rows

FORMAT = "llm-tiny checkpoint"
VERSION = 1
# key -> the types its value may have (bool is an int to Python; step must not be one)
KEYS: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "version": (int,),
    "model": (dict,),
    "model_config": (dict,),
    "config": (dict,),
    "optimizer": (dict,),
    "scaler": (dict,),
    "step": (int,),
    "best_val_loss": (float, type(None)),
    "rng": (dict,),
    "train_state": (dict,),
    "tokenizer": (str,),
    "tokenizer_fingerprint": (str,),
}
_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


def clean_state_dict(sd: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict with DDP/compile wrapper prefixes removed from every key."""
    out = {}
    for k, v in sd.items():
        while k.startswith(_PREFIXES):
            k = k.split(".", 1)[1]
        out[k] = v
    return out


class Run(Protocol):
    """What a checkpoint is packed from: the training run's objects (llm_tiny.trainer.Trainer)."""

    model: TinyGPT
    cfg: Config
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gen: torch.Generator  # batch offsets
    corpus: Corpus  # its tokenizer
    fingerprint: str  # the tokenizer's
    step: int
    best: float  # inf while no evaluation was made
    total: int
    budget: Budget  # its plan
    rows: Rows  # its pending losses

    def elapsed(self) -> float: ...


def pack(run: Run) -> dict[str, Any]:
    """The checkpoint of a training run at its current step: the model and its config, the run's
    config, optimizer, scaler, every RNG state, the tokenizer, and the loop's place (step, best loss,
    schedule length, time-budget plan, seconds trained, losses not yet logged)."""
    device = next(run.model.parameters()).device
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": clean_state_dict(run.model.state_dict()),
        "model_config": asdict(run.model.cfg),
        "config": run.cfg.to_dict(),
        "optimizer": run.opt.state_dict(),
        "scaler": run.scaler.state_dict(),
        "step": run.step,
        "best_val_loss": None if math.isinf(run.best) else run.best,
        "rng": {"torch": torch.get_rng_state(), "cuda": cuda, "data": run.gen.get_state()},
        "train_state": {
            "total_steps": run.total,
            "budget_plan": run.budget.plan,
            "elapsed_s": run.elapsed(),
            "pending": [float(v) for v in run.rows.pending],
        },
        "tokenizer": run.corpus.tokenizer.to_json(),
        "tokenizer_fingerprint": run.fingerprint,
    }


def restore(
    ck: Mapping[str, Any],
    path: str | os.PathLike[str],
    model: TinyGPT,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    gen: torch.Generator,
) -> dict[str, Any]:
    """Load pack's weights, optimizer, scaler and RNG states into the run's objects; return the
    loop's place (step, best, budget_plan, elapsed_s, pending). A mismatch is a UserError."""
    if asdict(model.cfg) != ck["model_config"]:
        raise UserError(
            f"{path} was trained with model {ck['model_config']}, but the config "
            f"now asks for {asdict(model.cfg)}"
        )
    load_weights(model, ck["model"], path)
    try:
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        rng, st = ck["rng"], ck["train_state"]
        torch.set_rng_state(rng["torch"])
        if next(model.parameters()).device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        gen.set_state(rng["data"])
        plan = None if st["budget_plan"] is None else int(st["budget_plan"])
        elapsed, pending = float(st["elapsed_s"]), [float(x) for x in st["pending"]]
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise UserError(f"{path}: cannot restore training state: {one_line(e)}") from None
    best = math.inf if ck["best_val_loss"] is None else ck["best_val_loss"]
    return {
        "step": ck["step"],
        "best": best,
        "budget_plan": plan,
        "elapsed_s": elapsed,
        "pending": pending,
    }


def to_bytes(state: Mapping[str, Any]) -> bytes:
    """Serialize a checkpoint dict once (so ckpt_best and ckpt_last share one serialization)."""
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()


def save_checkpoint(state: Mapping[str, Any], paths: Iterable[str | os.PathLike[str]]) -> None:
    """Atomically write `state` to each path; a failed write leaves that path's old file intact."""
    data = to_bytes(state)
    for p in paths:
        try:
            atomic_write_bytes(p, data)
        except OSError as e:
            raise RunError(
                f"could not write checkpoint {p}: {e.strerror or e}; the previous file is intact"
            ) from None


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Read and structurally check a checkpoint; any problem is a one-line UserError naming the file."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"checkpoint {p} not found{missing_hint(p)}")
    why = not_a_checkpoint(p) if p.is_dir() or p.stat().st_size else f"checkpoint {p} is empty"
    if why:
        raise UserError(why)
    try:
        with (
            warnings.catch_warnings()
        ):  # e.g. "unusual pickle protocol": the error below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names the global it blocked; a plain pickle (not torch's format) we read ourselves
        m = re.search(r"GLOBAL (\S+)", str(e))
        calls = [m.group(1)] if m else pickle_calls(p)
        if calls:
            raise UserError(
                f"checkpoint {p} refused: loading it would call {calls[0]} (a pickle that runs "
                "code, not a file of weights); nothing in it was run"
            ) from None
        raise UserError(
            f"{p} is not a checkpoint: a pickle, but not of torch.save's format"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"checkpoint {p} is corrupt or truncated ({first_sentence(e)})") from None
    except Exception as e:  # the unpickler can raise nearly anything on hostile bytes
        raise UserError(
            f"checkpoint {p} is unreadable: {type(e).__name__}: {first_sentence(e)}"
        ) from None
    validate_checkpoint(ckpt, p)
    return ckpt


def load_any(path: str | os.PathLike[str], block_size: int | None = None) -> dict[str, Any]:
    """A checkpoint file (load_checkpoint), or a model folder as a checkpoint of step 0.

    block_size cuts a folder's context (its position table is cropped); a file's is its own."""
    if not hf_in.is_folder(path) or run_checkpoints(Path(path)):  # a run folder: which file to give
        return load_checkpoint(path)
    cfg, sd = hf_in.read_model(path, block_size)
    tok = hf_in.read_tokenizer(path)
    ck: dict[str, Any] = dict(format=FORMAT, version=VERSION, model=sd, model_config=asdict(cfg))
    ck |= dict(config={}, optimizer={}, scaler={}, step=0, best_val_loss=None, rng={})
    ck |= dict(train_state={}, tokenizer=tok.to_json(), tokenizer_fingerprint=tok.fingerprint())
    validate_checkpoint(ck, path)
    return ck


def validate_checkpoint(ckpt: object, path: str | os.PathLike[str]) -> None:
    """Check the checkpoint's keys, their types, the model config and the tokenizer it carries."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not an llm-tiny checkpoint")
    missing = [k for k in KEYS if k not in ckpt]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}")
    for k, types in KEYS.items():
        if not isinstance(ckpt[k], types) or (isinstance(ckpt[k], bool) and bool not in types):
            raise UserError(f"checkpoint {path}: {k} has type {type(ckpt[k]).__name__}")
    if ckpt["version"] != VERSION:
        raise UserError(f"checkpoint {path} has format version {ckpt['version']}, need {VERSION}")
    if not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["model"].items()
    ):
        raise UserError(f"checkpoint {path}: model state is not a mapping of names to tensors")
    if ckpt["step"] < 0:
        raise UserError(f"checkpoint {path}: step is {ckpt['step']}, not a count of steps")
    for k, v in ckpt["model"].items():  # a trainer never saves these: resuming them trains NaN
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UserError(f"checkpoint {path}: weight {k} holds NaN or infinite values")
    model_config(ckpt, path)
    tokenizer_of(ckpt, path)


def gpt_config(
    model: ModelCfg | Mapping[str, Any], vocab_size: int | None = None, where: str = ""
) -> GPTConfig:
    """The model.gpt.GPTConfig of a model section and a vocabulary size, or of a checkpoint's
    saved model_config (a mapping that has vocab_size); an unknown or bad field is a UserError
    that starts with `where` (e.g. "checkpoint runs/x/ckpt_last.pt: ")."""
    values = dict(model) if isinstance(model, Mapping) else asdict(model)
    values.update({} if vocab_size is None else {"vocab_size": vocab_size})
    unknown = sorted(set(values) - {f.name for f in fields(GPTConfig)})
    if unknown:
        raise UserError(f"{where}unknown model config keys {', '.join(unknown)}")
    try:
        return GPTConfig(**values)
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}bad model config: {one_line(e)}") from None


def model_config(ckpt: Mapping[str, Any], path: str | os.PathLike[str] = "checkpoint") -> GPTConfig:
    """The GPTConfig the checkpoint's model was built with."""
    return gpt_config(ckpt["model_config"], where=f"checkpoint {path}: ")


def tokenizer_of(ckpt: Mapping[str, Any], path: str | os.PathLike[str] = "checkpoint") -> Tokenizer:
    """The tokenizer stored in the checkpoint, checked against its fingerprint and the model's vocab."""
    try:
        tok = Tokenizer.from_json(ckpt["tokenizer"])
    except (TokenizerError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"checkpoint {path}: bad tokenizer: {one_line(e)}") from None
    if tok.fingerprint() != ckpt["tokenizer_fingerprint"]:
        raise UserError(f"checkpoint {path}: tokenizer does not match its recorded fingerprint")
    vocab = ckpt["model_config"].get("vocab_size")
    if tok.vocab_size != vocab:
        raise UserError(
            f"checkpoint {path}: its tokenizer has {tok.vocab_size} tokens but its model "
            f"expects vocab_size {vocab}"
        )
    return tok


def build_model(ckpt: Mapping[str, Any], path: str | os.PathLike[str] = "checkpoint") -> TinyGPT:
    """A TinyGPT with the checkpoint's config and weights (on CPU, in eval mode)."""
    cfg = model_config(ckpt, path)
    # Shapes first, on the meta device (no memory): a hostile config could otherwise ask for
    # terabytes before load_state_dict ever sees that the weights don't fit it.
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in TinyGPT(cfg).state_dict().items()}
    have = {k: tuple(v.shape) for k, v in clean_state_dict(ckpt["model"]).items()}
    if want != have:
        bad = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))[:3]
        detail = "; ".join(f"{k}: config {want.get(k)}, file {have.get(k)}" for k in bad)
        raise UserError(f"checkpoint {path} does not fit the model: {detail}")
    model = TinyGPT(cfg)
    load_weights(model, ckpt["model"], path)
    return model.eval()


def load_weights(
    model: torch.nn.Module, sd: Mapping[str, Any], path: str | os.PathLike[str]
) -> None:
    """load_state_dict(strict) with mismatches reported as a UserError naming the file."""
    try:
        model.load_state_dict(clean_state_dict(sd), strict=True)
    except RuntimeError as e:
        raise UserError(
            f"checkpoint {path} does not fit the model: {first_sentence(e, 300)}"
        ) from None
